"""The transform's reads of the raw CSV: the file cut into byte ranges, and three passes over them.

``plan_ranges`` cuts the file's data lines into line-aligned byte ranges (a cheap pass
that only counts newlines); each worker then reads and parses its own ranges, so lines
never travel one by one as Beam elements. Each range is read by three passes:

1. ``CountRange``: rows per coin, date evidence, blank lines, and the rows of the wrong
   width as rejects;
2. ``ValidateRange``: the coin's rows parsed and checked under the file's date style,
   giving the first valid row of each date and the rejects with their reason;
3. ``FindDuplicates``: the later valid rows of a repeated date, as rejects.

What they count goes into dicts of counts, under the keys below; ``evidence`` and
``style_or_none`` read the file's date style from them.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from crypto_pipeline import dates, rows
from crypto_pipeline.errors import DateFormatError, SourceError
from crypto_pipeline.raw_file import check_text
from crypto_pipeline.rows import MarketRow, Rejection
from crypto_pipeline.schema import Header

READ_BYTES = 1 << 20
"""Bytes read at a time when a file is scanned whole (planning ranges, joining rejects)."""
# The keys of the passes' counts that are not plain totals: a prefix, then what is counted.
REJECTED_KEY = "rejected:"  # rows rejected, by reason
EVIDENCE_KEY = "date:"  # rows by the shape of their date (``dates.classify_date``)
COIN_KEY = "coin:"  # rows by coin
LABEL_KEY = "label:"  # rows by symbol or name, in a file without a slug column
ERROR_KEY = "error:problem"  # a range that is not UTF-8 text: the error's problem
ERROR_FIX_KEY = "error:fix"  # and its fix, for the driver to raise
LABEL_COLUMNS = ("symbol", "name")
"""Columns that may name an asset beside its slug: a file without a slug column must not
hold more than one value in them (``transform_stats.check_usable``)."""


def csv_line(fields: Iterable[object]) -> str:
    """FIELDS as one line of CSV, without its line end."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(fields)
    return buffer.getvalue()


def plan_ranges(
    path: str, header_lines: int = 1, *, target_bytes: int
) -> Iterator[tuple[int, int, int]]:
    """Cuts a file's data lines into byte ranges that start and end on line boundaries.

    Planning only counts newlines in raw bytes, a small fraction of the cost of
    parsing; in exchange every range knows the number of its first line, which
    rejects report.

    Args:
        path: The CSV file; its first ``header_lines`` non-blank lines are the header
            and are skipped, with the blank lines before and between them.
        header_lines: How many lines the header takes (``Header.lines``).
        target_bytes: About how many bytes each range holds.

    Yields:
        ``(start_byte, end_byte, first_line_number)`` for each range, in file order.
    """
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        position = 0
        lines = 0
        header_left = header_lines
        while header_left:  # skip blank lines and the header
            line = f.readline()
            if not line:
                return
            position += len(line)
            lines += 1
            if line.strip():
                header_left -= 1
        range_start, first_line, lines_in_range = position, lines + 1, 0
        while block := f.read(min(READ_BYTES, target_bytes)):
            newlines = block.count(b"\n")
            if position + len(block) - range_start >= target_bytes and newlines:
                end = position + block.rfind(b"\n") + 1
                yield range_start, end, first_line
                first_line += lines_in_range + newlines
                range_start, lines_in_range = end, 0
            else:
                lines_in_range += newlines
            position += len(block)
        if position > range_start:
            yield range_start, position, first_line


def _range_text(path: str, byte_range: tuple[int, int, int], strict: bool = False) -> str:
    """Reads one range's text.

    Args:
        path: The CSV file.
        byte_range: ``(start_byte, end_byte, first_line_number)`` from ``plan_ranges``.
        strict: Refuse bytes that are not UTF-8 text (pass 1 does, for the whole file);
            otherwise they are replaced.

    Raises:
        SourceError: With ``strict``, the range holds binary or non-UTF-8 bytes.
    """
    start, end, _ = byte_range
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.seek(start)
        data = f.read(end - start)
    return check_text(data, start, path) if strict else data.decode("utf-8", errors="replace")


def _lines_with(text: str, first: int, containing: str) -> Iterator[tuple[int, str]]:
    """Yields ``(line_number, line)`` for the lines of a range's text that hold ``containing``.

    The lines are found by searching the text, so that the others cost nothing (most
    lines, in a file of many coins).
    """
    number, counted = first, 0
    found = text.find(containing)
    while found >= 0:
        start = text.rfind("\n", 0, found) + 1
        end = text.find("\n", found)
        end = len(text) if end < 0 else end
        number += text.count("\n", counted, start)
        counted = start
        yield number, text[start:end]
        found = text.find(containing, end + 1)


def _block(
    byte_range: tuple[int, int, int], rejects: list[tuple[int, str, str, str]]
) -> tuple[int, str]:
    """A range's rejects as lines of the rejects CSV: one element, keyed by the range's start."""
    return byte_range[0], "\n".join(csv_line(r) for r in rejects)


class _RangeFn(beam.DoFn):
    def __init__(self, path: str, header: Header, coin: str, last: dt.date | None = None):
        self._path = path
        self._header = header
        self._coin = coin
        self._last = last or dates.last_day()  # the latest date a row may carry
        self._width = len(header.names)
        self._slug_at = header.index.get("slug")  # None: a single-asset file, all the coin's
        self._date_at = header.index["date"]
        self._labels_at = (
            [(c, header.index[c]) for c in LABEL_COLUMNS if c in header.index]
            if header.single_asset
            else []
        )

    def _coin_rows(self, byte_range: tuple[int, int, int]) -> Iterator[tuple[int, str, list[str]]]:
        """The range's rows of the coin that have the header's width."""
        text, _ = rows.remove_line_marks(_range_text(self._path, byte_range))
        slug_at = self._slug_at
        # In a file of many coins, only the lines that hold the coin's slug are split.
        lines = (
            enumerate(text.split("\n"), byte_range[2])
            if slug_at is None
            else _lines_with(text, byte_range[2], self._coin)
        )
        for number, line in lines:
            raw = line.removesuffix("\r")
            fields = self._header.split(raw)
            if len(fields) == self._width and (
                slug_at is None or fields[slug_at].strip() == self._coin
            ):
                yield number, raw, fields


class CountRange(_RangeFn):
    """Pass 1: counts a range's rows by coin and by the shape of their dates.

    Main output: one dict of counts per range (rows read, rows per coin, other coins,
    blank lines, date evidence). Tagged output ``rejects``: the range's rows with the
    wrong number of fields, as one block of rejects CSV lines. A range that is not UTF-8
    text gives the error in its counts instead, for the driver to raise.
    """

    def process(self, byte_range: tuple[int, int, int]) -> Iterator[Any]:
        try:
            text = _range_text(self._path, byte_range, strict=True)
        except SourceError as exc:
            yield {ERROR_KEY: exc.problem, ERROR_FIX_KEY: exc.fix}
            return
        text, marks = rows.remove_line_marks(text)
        width, slug_at, date_at, coin = self._width, self._slug_at, self._date_at, self._coin
        delimiter, labels_at = self._header.delimiter, self._labels_at
        labels: Counter[str] = Counter()
        classify = dates.classify_date
        per_coin: Counter[str] = Counter()
        evidence: Counter[str] = Counter()
        rejects = []
        blank = other = 0
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()  # after the newline that ends the range
        for number, line in enumerate(lines, byte_range[2]):
            raw = line.removesuffix("\r")
            if '"' in raw:
                fields = self._header.split(raw)
            else:  # the common case, inline: this loop runs for every line of the file
                fields = raw.split(delimiter) if raw else []
            if not fields:
                blank += 1
                continue
            if len(fields) != width:
                detail = f"{len(fields)} fields, the header has {width}"
                rejects.append((number, rows.WRONG_FIELD_COUNT, detail, raw))
                continue
            date = fields[date_at]
            # Only slashed dates can be ambiguous; the others are checked when parsed.
            evidence[classify(date) if "/" in date else "not_slashed"] += 1
            slug = coin if slug_at is None else fields[slug_at].strip()
            per_coin[slug] += 1
            for column, at in labels_at:  # only in a file without a slug column
                if label := fields[at].strip().casefold():
                    labels[f"{LABEL_KEY}{column}:{label}"] += 1
            if slug != coin:
                other += 1
        counts: Counter[str] = Counter(
            rows_read=sum(per_coin.values()) + len(rejects),
            other_coins=other,
            blank_lines=blank,
            byte_order_marks=marks,
        )
        counts[REJECTED_KEY + rows.WRONG_FIELD_COUNT] = len(rejects)
        counts.update({EVIDENCE_KEY + k: v for k, v in evidence.items()})
        counts.update({COIN_KEY + k: v for k, v in per_coin.items()})
        counts.update(labels)
        yield dict(+counts)
        if rejects:
            yield beam.pvalue.TaggedOutput("rejects", _block(byte_range, rejects))


class ValidateRange(_RangeFn):
    """Pass 2: parses and checks a range's rows of the coin under the file's date style.

    Main output: ``(iso_date, ((line_number, row), rows))`` for the first valid row of
    each date in the range and the number of valid rows of that date there, for
    ``FirstOfEachDate``. Tagged outputs: ``rejects`` (one block of rejects CSV lines)
    and ``counts`` (rows rejected, by reason).
    """

    def process(
        self, byte_range: tuple[int, int, int], style: dates.DateStyle | None
    ) -> Iterator[Any]:
        rejected: Counter[str] = Counter()
        rejects = []
        # One element per date and range: a file of one coin whose dates repeat would
        # otherwise send every row through the combine.
        firsts: dict[str, list[Any]] = {}
        for number, raw, fields in self._coin_rows(byte_range):
            if style is None:
                result: MarketRow | Rejection = Rejection(
                    rows.AMBIGUOUS_DATE, "the file's date style is undecided"
                )
            else:
                result = rows.validate_row(fields, self._header, style, self._coin, self._last)
            if isinstance(result, Rejection):
                rejected[result.reason] += 1
                rejects.append((number, result.reason, result.detail, raw))
            else:
                first = firsts.setdefault(result.date.isoformat(), [(number, result), 0])
                first[1] += 1
        for day, (first, count) in firsts.items():
            yield day, (first, count)
        if rejects:
            yield beam.pvalue.TaggedOutput("rejects", _block(byte_range, rejects))
            yield beam.pvalue.TaggedOutput(
                "counts", {REJECTED_KEY + k: v for k, v in rejected.items()}
            )


class FindDuplicates(_RangeFn):
    """Pass 3: the valid rows of a repeated date after its first, as ``duplicate_date``.

    Side inputs: the date style, and the line of the first valid row of each date that
    has more than one; with none, the range is not read. Output: one block of rejects
    CSV lines per range.
    """

    def process(
        self,
        byte_range: tuple[int, int, int],
        style: dates.DateStyle | None,
        first_lines: dict[str, int],
    ) -> Iterator[tuple[int, str]]:
        if not first_lines or style is None:
            return
        rejects = []
        for number, raw, fields in self._coin_rows(byte_range):
            try:
                day = dates.parse_date(fields[self._date_at], style).isoformat()
            except ValueError:
                continue
            first = first_lines.get(day)
            if first is None or first == number:
                continue
            row = rows.validate_row(fields, self._header, style, self._coin, self._last)
            if isinstance(row, MarketRow):
                rejects.append((number, rows.DUPLICATE_DATE, f"{day} already on line {first}", raw))
        if rejects:
            yield _block(byte_range, rejects)


def evidence(counts: dict[str, int]) -> dict[str, int]:
    """The date evidence in COUNTS: rows by the shape of their date."""
    return {k[len(EVIDENCE_KEY) :]: v for k, v in counts.items() if k.startswith(EVIDENCE_KEY)}


def style_or_none(counts: dict[str, int], requested: dates.DateFormat) -> dates.DateStyle | None:
    """The date style for the side input; ``None`` when the file cannot decide."""
    try:
        return dates.resolve_date_style(requested, evidence(counts))
    except DateFormatError:
        return None  # the driver raises the error with its message after the run
