"""Step 2, transform: an Apache Beam pipeline from the raw CSV to train/eval/test splits.

The same pipeline runs locally on Beam's DirectRunner (the default) and on a cluster
runner when Beam pipeline options say so (``--runner=DataflowRunner --project=…
--region=… --temp_location=gs://…``, or ``--runner=FlinkRunner`` /
``--runner=SparkRunner`` with their ``--flink_master`` / ``--spark_master_url``).

The graph::

    file --PlanRanges--> byte ranges --Reshuffle--> each range, read by three passes:
    1 CountRange: rows per coin, date evidence, blank lines --> counts
                  rows of the wrong width --> rejects
      date evidence of the whole file --> date style (side input)
    2 ValidateRange(style): the coin's rows parsed and checked --> rejects (reason)
                  valid rows --FirstOfEachDate (combined per date)--> first row and count
    3 FindDuplicates(style, repeated dates): the later rows of a repeated date --> rejects
    first row of each date --one group--> sort by date, split by date
        --> train / eval / test CSV; rejects CSV; counts

The file is cut into line-aligned byte ranges (a cheap pass that only counts newlines)
and each worker reads and parses its own ranges: lines never travel one by one as Beam
elements, which would cost far more than parsing them. What passes from one stage to the
next grows with the number of dates and coins, never with the number of rows: a runner
holds that data between stages (the DirectRunner in memory), so the passes read the file
again rather than pass rows on, and each writes its rejects as it goes. Only one row per
date reaches the last stage, where a sort by date is cheap. Pass 3 reads nothing when no
date repeats.

Nothing is lost without being counted: ``rows_read = rows_kept + rows_rejected +
duplicates + other_coins``. Rejected rows and dropped duplicates are written, with their
line number, reason and raw text, to the ``rejects`` output. A byte-order mark at the
start of a data line (a file joined from files) is no character of the row: it is removed,
and counted (``byte_order_marks_removed``).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import itertools
import json
import os
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from crypto_pipeline import schema
from crypto_pipeline.config import TransformConfig, cluster_uri
from crypto_pipeline.errors import (
    CoinNotFoundError,
    ConfigError,
    DateFormatError,
    PipelineError,
    SchemaError,
    SourceError,
    read_step_output,
    storage_error,
)
from crypto_pipeline.ingest import check_text, header_text_lines, no_data_rows
from crypto_pipeline.schema import COLUMNS, Header, MarketRow, Rejection
from crypto_pipeline.splits import SPLITS

STATS_NAME = "stats.json"
REJECTS_HEADER = "line,reason,detail,raw"
REJECTS_FILE = "rejects-00000-of-00001.csv"
_COUNTS_NAME = "_counts"
_REJECTS_PARTS = ("_rejects_parse", "_rejects_rows", "_rejects_duplicates")
_RANGE_BYTES = 8 << 20
_READ_BYTES = 1 << 20
_REJECTED = "rejected:"
_EVIDENCE = "date:"
_COIN = "coin:"
_LABEL = "label:"
_LABEL_COLUMNS = ("symbol", "name")
"""Columns that may name an asset beside its slug: a file without a slug column must not
hold more than one value in them (``_check``)."""
_ERROR = "error:problem"
_ERROR_FIX = "error:fix"


def _csv_line(fields: Iterable[object]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(fields)
    return buffer.getvalue()


def plan_ranges(
    path: str, header_lines: int = 1, target_bytes: int = _RANGE_BYTES
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
        while block := f.read(min(_READ_BYTES, target_bytes)):
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
    return byte_range[0], "\n".join(_csv_line(r) for r in rejects)


class WriteRejects(beam.DoFn):
    """Writes each range's block of rejects to a file of its own, named by the range.

    The writes happen where the rejects arise: nothing is grouped or held between
    stages. A retried range rewrites the same file. ``join_rejects`` puts the files
    together after the run.
    """

    def __init__(self, out_dir: str, part: str):
        self._prefix = f"{out_dir}/{part}"

    def process(self, block: tuple[int, str]) -> None:
        start, text = block
        with FileSystems.create(
            f"{self._prefix}-{start:015d}.csv", compression_type=CompressionTypes.UNCOMPRESSED
        ) as f:
            f.write(text.encode() + b"\n")


class _RangeFn(beam.DoFn):
    def __init__(self, path: str, header: Header, coin: str, last: dt.date | None = None):
        self._path = path
        self._header = header
        self._coin = coin
        self._last = last or schema.last_day()  # the latest date a row may carry
        self._width = len(header.names)
        self._slug_at = header.index.get("slug")  # None: a single-asset file, all the coin's
        self._date_at = header.index["date"]
        self._labels_at = (
            [(c, header.index[c]) for c in _LABEL_COLUMNS if c in header.index]
            if header.single_asset
            else []
        )

    def _coin_rows(self, byte_range: tuple[int, int, int]) -> Iterator[tuple[int, str, list[str]]]:
        """The range's rows of the coin that have the header's width."""
        text, _ = schema.remove_line_marks(_range_text(self._path, byte_range))
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
            yield {_ERROR: exc.problem, _ERROR_FIX: exc.fix}
            return
        text, marks = schema.remove_line_marks(text)
        width, slug_at, date_at, coin = self._width, self._slug_at, self._date_at, self._coin
        delimiter, labels_at = self._header.delimiter, self._labels_at
        labels: Counter[str] = Counter()
        classify = schema.classify_date
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
                rejects.append((number, schema.WRONG_FIELD_COUNT, detail, raw))
                continue
            date = fields[date_at]
            # Only slashed dates can be ambiguous; the others are checked when parsed.
            evidence[classify(date) if "/" in date else "not_slashed"] += 1
            slug = coin if slug_at is None else fields[slug_at].strip()
            per_coin[slug] += 1
            for column, at in labels_at:  # only in a file without a slug column
                if label := fields[at].strip().casefold():
                    labels[f"{_LABEL}{column}:{label}"] += 1
            if slug != coin:
                other += 1
        counts: Counter[str] = Counter(
            rows_read=sum(per_coin.values()) + len(rejects),
            other_coins=other,
            blank_lines=blank,
            byte_order_marks=marks,
        )
        counts[_REJECTED + schema.WRONG_FIELD_COUNT] = len(rejects)
        counts.update({_EVIDENCE + k: v for k, v in evidence.items()})
        counts.update({_COIN + k: v for k, v in per_coin.items()})
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

    def process(self, byte_range: tuple[int, int, int], style: str | None) -> Iterator[Any]:
        rejected: Counter[str] = Counter()
        rejects = []
        # One element per date and range: a file of one coin whose dates repeat would
        # otherwise send every row through the combine.
        firsts: dict[str, list[Any]] = {}
        for number, raw, fields in self._coin_rows(byte_range):
            if style is None:
                result: MarketRow | Rejection = Rejection(
                    schema.AMBIGUOUS_DATE, "the file's date style is undecided"
                )
            else:
                result = schema.validate_row(fields, self._header, style, self._coin, self._last)
            if isinstance(result, Rejection):
                rejected[result.reason] += 1
                rejects.append((number, result.reason, result.detail, raw))
            else:
                first = firsts.setdefault(result.date.isoformat(), [(number, result), 0])
                first[1] += 1
        for day, (first, rows) in firsts.items():
            yield day, (first, rows)
        if rejects:
            yield beam.pvalue.TaggedOutput("rejects", _block(byte_range, rejects))
            yield beam.pvalue.TaggedOutput(
                "counts", {_REJECTED + k: v for k, v in rejected.items()}
            )


class FindDuplicates(_RangeFn):
    """Pass 3: the valid rows of a repeated date after its first, as ``duplicate_date``.

    Side inputs: the date style, and the line of the first valid row of each date that
    has more than one; with none, the range is not read. Output: one block of rejects
    CSV lines per range.
    """

    def process(
        self, byte_range: tuple[int, int, int], style: str | None, first_lines: dict[str, int]
    ) -> Iterator[tuple[int, str]]:
        if not first_lines or style is None:
            return
        rejects = []
        for number, raw, fields in self._coin_rows(byte_range):
            try:
                day = schema.parse_date(fields[self._date_at], style).isoformat()
            except ValueError:
                continue
            first = first_lines.get(day)
            if first is None or first == number:
                continue
            row = schema.validate_row(fields, self._header, style, self._coin, self._last)
            if isinstance(row, MarketRow):
                rejects.append(
                    (number, schema.DUPLICATE_DATE, f"{day} already on line {first}", raw)
                )
        if rejects:
            yield _block(byte_range, rejects)


def _merge_counts(dicts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Adds numbers and keeps the (single) value of text entries such as split dates."""
    total: dict[str, Any] = {}
    for d in dicts:
        for key, value in d.items():
            if isinstance(value, str):
                total[key] = value
            else:
                total[key] = total.get(key, 0) + value
    return total


def _evidence(counts: dict[str, int]) -> dict[str, int]:
    return {k[len(_EVIDENCE) :]: v for k, v in counts.items() if k.startswith(_EVIDENCE)}


def _style_or_none(counts: dict[str, int], requested: str) -> str | None:
    """The date style for the side input; ``None`` when the file cannot decide."""
    try:
        return schema.resolve_date_style(requested, _evidence(counts))
    except DateFormatError:
        return None  # the driver raises the error with its message after the run


def split_rows(
    rows: Iterable[MarketRow], fractions: tuple[float, float, float]
) -> dict[str, list[MarketRow]]:
    """Sorts one coin's rows (one per date) by date and splits them by date.

    Train takes the first ``floor(n * train)`` days, eval the next ``floor(n * eval)``,
    test the rest: contiguous, in order, without overlap.

    Args:
        rows: One row per date of one coin.
        fractions: Train, eval and test fractions.

    Returns:
        The rows of each split.
    """
    kept = sorted(rows, key=lambda r: r.date)
    n_train = int(len(kept) * fractions[0])
    n_eval = int(len(kept) * fractions[1])
    return {
        "train": kept[:n_train],
        "eval": kept[n_train : n_train + n_eval],
        "test": kept[n_train + n_eval :],
    }


class SplitByDate(beam.DoFn):
    """Runs ``split_rows`` on the first row of each date; emits each split as CSV text.

    Input: the coin's single group of ``((line_number, row), rows_of_that_date)``.
    """

    def __init__(self, fractions: tuple[float, float, float]):
        self._fractions = fractions

    def process(
        self, keyed: tuple[Any, Iterable[tuple[tuple[int, MarketRow], int]]]
    ) -> Iterator[Any]:
        rows = []
        duplicates = 0
        for (_, row), count in keyed[1]:
            rows.append(row)
            duplicates += count - 1
        counts: dict[str, Any] = {"duplicates": duplicates}
        for name, part in split_rows(rows, self._fractions).items():
            counts[f"split:{name}:rows"] = len(part)
            if part:
                counts[f"split:{name}:first_date"] = part[0].date.isoformat()
                counts[f"split:{name}:last_date"] = part[-1].date.isoformat()
                text = "\n".join(_csv_line(r.to_csv_fields()) for r in part)
                yield beam.pvalue.TaggedOutput(name, text)
        yield beam.pvalue.TaggedOutput("split_counts", counts)


def build_pipeline(
    p: beam.Pipeline, input_path: str, header: Header, config: TransformConfig, out_dir: str
) -> None:
    """Adds the transform's steps to a Beam pipeline.

    Args:
        p: The pipeline to add to.
        input_path: The raw CSV (a local path, or a ``gs://`` URI on Dataflow).
        header: The file's parsed header.
        config: Coin, date format and split.
        out_dir: Where the outputs go (``train-*.csv``, …, and the rejects in parts for
            ``join_rejects``).
    """
    ranges = (
        p
        | "File" >> beam.Create([input_path])
        | "PlanRanges" >> beam.FlatMap(plan_ranges, header.lines, _RANGE_BYTES)
        | "Spread" >> beam.Reshuffle()
    )
    counted = ranges | "CountRange" >> beam.ParDo(
        CountRange(input_path, header, config.coin)
    ).with_outputs("rejects", main="counts")
    parse_counts = counted.counts | "SumParseCounts" >> beam.CombineGlobally(_merge_counts)
    style = parse_counts | "DateStyle" >> beam.Map(_style_or_none, config.date_format)
    last = schema.last_day()  # one latest date for every row, whichever worker reads it
    validated = ranges | "ValidateRange" >> beam.ParDo(
        ValidateRange(input_path, header, config.coin, last),
        style=beam.pvalue.AsSingleton(style),
    ).with_outputs("rejects", "counts", main="rows")
    first_of_dates = validated.rows | "FirstOfEachDate" >> beam.CombinePerKey(
        beam.combiners.TupleCombineFn(min, sum)
    )
    repeated = first_of_dates | "RepeatedDates" >> beam.FlatMap(
        lambda kv: [(kv[0], kv[1][0][0])] if kv[1][1] > 1 else []
    )
    duplicates = ranges | "FindDuplicates" >> beam.ParDo(
        FindDuplicates(input_path, header, config.coin, last),
        style=beam.pvalue.AsSingleton(style),
        first_lines=beam.pvalue.AsDict(repeated),
    )
    fractions = (config.split.train, config.split.eval, config.split.test)
    splits = (
        first_of_dates
        | "OneGroup" >> beam.Map(lambda kv: (None, kv[1]))
        | "GroupCoin" >> beam.GroupByKey()
        | "SplitByDate"
        >> beam.ParDo(SplitByDate(fractions)).with_outputs("split_counts", *SPLITS, main="unused")
    )
    csv_header = ",".join(COLUMNS)
    for name in SPLITS:
        _ = splits[name] | f"Write{name.title()}" >> beam.io.WriteToText(
            f"{out_dir}/{name}", file_name_suffix=".csv", header=csv_header, num_shards=1
        )
    for part, rejects in zip(
        _REJECTS_PARTS, (counted.rejects, validated.rejects, duplicates), strict=True
    ):
        _ = rejects | f"Write{part.title()}" >> beam.ParDo(WriteRejects(out_dir, part))
    _ = (
        (parse_counts, validated.counts, splits.split_counts)
        | "AllCounts" >> beam.Flatten()
        | "SumCounts" >> beam.CombineGlobally(_merge_counts)
        | "CountsToJson" >> beam.Map(json.dumps, sort_keys=True)
        | "WriteCounts"
        >> beam.io.WriteToText(
            f"{out_dir}/{_COUNTS_NAME}", file_name_suffix=".json", shard_name_template=""
        )
    )


def join_rejects(out_dir: str) -> None:
    """Puts the rejects that the passes wrote in parts into one file, under one header.

    Streams the parts one after another into ``rejects-00000-of-00001.csv`` (pass 1's
    first, then pass 2's, then pass 3's, each in file order) and deletes them.
    """
    parts = [
        m.path
        for part in _REJECTS_PARTS
        for m in sorted(
            FileSystems.match([f"{out_dir}/{part}-*"])[0].metadata_list, key=lambda m: m.path
        )
    ]
    with FileSystems.create(
        f"{out_dir}/{REJECTS_FILE}", compression_type=CompressionTypes.UNCOMPRESSED
    ) as out:
        out.write(REJECTS_HEADER.encode() + b"\n")
        for path in parts:
            with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
                shutil.copyfileobj(f, out, _READ_BYTES)
    FileSystems.delete(parts)


def read_header(input_path: str) -> Header:
    """Reads and checks the header of the raw CSV.

    Raises:
        SourceError: The file is missing, a folder, empty, compressed, an archive or
            not UTF-8 text.
        SchemaError: A required column is missing.
    """
    if "://" not in input_path and os.path.isdir(input_path):
        inside = Path(input_path, "crypto-markets.csv")
        raise SourceError(
            f"transform input is a folder, not a file: {input_path}",
            f"pass the CSV file itself (--input {inside})",
        )
    if not FileSystems.exists(input_path):
        raise SourceError(
            f"transform input not found: {input_path}",
            "pass the crypto-markets.csv written by the ingest step "
            "(--input DIR/crypto-markets.csv)",
        )
    try:
        with FileSystems.open(input_path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            first = header_text_lines(iter(lambda: f.read(_READ_BYTES), b""), input_path)
    except OSError as exc:
        raise SourceError(
            f"cannot read {input_path}: {exc.strerror or exc}",
            "check the file's permissions (ls -l), or pass a copy that you can read",
        ) from exc
    if not first:
        raise SourceError(f"{input_path} is empty", "run the ingest step on a non-empty file first")
    return schema.header_from_lines(first)


def _stats(
    counts: dict[str, Any],
    input_path: str,
    header: Header,
    config: TransformConfig,
    style: str,
    runner: str,
) -> dict[str, Any]:
    rejected = {
        k[len(_REJECTED) :]: v for k, v in sorted(counts.items()) if k.startswith(_REJECTED)
    }
    coins = Counter({k[len(_COIN) :]: v for k, v in counts.items() if k.startswith(_COIN)})
    splits = {}
    for name in SPLITS:
        splits[name] = {
            "rows": counts.get(f"split:{name}:rows", 0),
            "first_date": counts.get(f"split:{name}:first_date"),
            "last_date": counts.get(f"split:{name}:last_date"),
            "file": f"{name}-00000-of-00001.csv",
        }
    rows_rejected = sum(rejected.values())
    duplicates = counts.get("duplicates", 0)
    rows_kept = sum(s["rows"] for s in splits.values())
    return {
        "input": input_path,
        "format": header.format,
        "coin": config.coin,
        "coin_from": "--coin (a single-asset file)" if header.single_asset else "slug column",
        "columns_used": header.column_map(),
        "date_format": {"requested": config.date_format, "used_for_slashed_dates": style},
        "rows_read": counts.get("rows_read", 0),
        "rows_valid": rows_kept + duplicates,
        "rows_kept": rows_kept,
        "rows_rejected": rows_rejected,
        "rejected_by_reason": rejected,
        "duplicates": duplicates,
        "other_coins": counts.get("other_coins", 0),
        "blank_lines": counts.get("blank_lines", 0),
        "byte_order_marks_removed": counts.get("byte_order_marks", 0),
        "coins_in_file": len(coins),
        "top_coins": dict(coins.most_common(10)),
        "date_evidence": _evidence(counts),
        "split_fractions": dataclasses.asdict(config.split),
        "splits": splits,
        "rejects_file": REJECTS_FILE,
        "runner": runner,
    }


def _first_rejects(rejects_path: str, limit: int = 3) -> list[str]:
    with FileSystems.open(rejects_path) as f:
        rows = list(
            itertools.islice(csv.reader(io.TextIOWrapper(f, encoding="utf-8")), 1, limit + 1)
        )
    return [f"line {line}: {reason}: {detail}" for line, reason, detail, _ in rows]


def _one_asset(counts: dict[str, Any], header: Header, input_path: str) -> None:
    """Refuses a file without a slug column whose symbol or name column names several assets.

    Such a file does not say which rows are the coin's: taking them all would mix the
    assets' prices under one name.
    """
    for column in _LABEL_COLUMNS:
        prefix = f"{_LABEL}{column}:"
        values = Counter({k[len(prefix) :]: v for k, v in counts.items() if k.startswith(prefix)})
        if len(values) < 2:
            continue
        name = header.names[header.index[column]]
        listing = ", ".join(
            f"{v} ({n:,} row{'' if n == 1 else 's'})" for v, n in values.most_common(5)
        )
        first = values.most_common(1)[0][0]
        raise SchemaError(
            f"{input_path} has no coin column (slug), but its {name} column names "
            f"{len(values)} different assets: {listing}",
            "a file without a slug column must hold one asset: keep the rows of the one you "
            f"want (in pandas: df[df[{name!r}].str.lower() == {first!r}].to_csv(new_path, "
            "index=False)) and name it with --coin, or add a slug column that names each "
            "row's coin",
        )


def _check(
    stats: dict[str, Any],
    counts: dict[str, Any],
    header: Header,
    config: TransformConfig,
    work: str,
) -> None:
    """Raises the clear error for a run whose output cannot be used."""
    if stats["rows_read"] == 0:
        raise no_data_rows(stats["input"])
    _one_asset(counts, header, stats["input"])
    schema.resolve_date_style(config.date_format, _evidence(counts))
    if stats["rows_kept"] == 0:
        single_asset = stats["coin_from"] != "slug column"
        of_coin = stats["rows_read"] if single_asset else counts.get(_COIN + config.coin, 0)
        if of_coin == 0:
            listing = ", ".join(f"{c} ({n:,})" for c, n in stats["top_coins"].items()) or "none"
            raise CoinNotFoundError(
                f"coin {config.coin!r} is not in the file; coins with the most rows: {listing}",
                "pass --coin with one of those slugs (lower case, as in the slug column)",
            )
        whose = f"of {stats['input']}" if single_asset else f"of coin {config.coin!r}"
        reasons = ", ".join(f"{k} {v:,}" for k, v in stats["rejected_by_reason"].items())
        examples = "\n    ".join(_first_rejects(f"{work}/{stats['rejects_file']}"))
        raise CoinNotFoundError(
            f"all {of_coin:,} rows {whose} were rejected ({reasons}); for example:\n    {examples}",
            "fix those rows in the data, or pass the --date-format that the file uses, "
            "and run again",
        )


LOCAL_RUNNERS = ("DirectRunner", "PrismRunner")
"""Beam runners whose workers run in this process's machine (the pipeline step's pod)."""


def beam_io(
    raw_path: str, raw_uri: str, data_path: str, data_uri: str, beam_args: Sequence[str]
) -> tuple[str, str]:
    """Where the transform step reads and writes: the pod's paths, or the artifacts' URIs.

    A local runner reads the input artifact where Kubeflow Pipelines put it in the step's
    container. Dataflow's (or Flink's, Spark's) workers run on other machines: they get
    the artifacts' bucket URIs, and the output is written there in place.

    Args:
        raw_path: The ingest step's artifact, as the step's container sees it.
        raw_uri: The same artifact's URI (``gs://…``, ``minio://…`` on a cluster).
        data_path: The transform step's output artifact, as the container sees it.
        data_uri: The same artifact's URI.
        beam_args: The Beam pipeline options of the step.

    Returns:
        The input folder and the output folder.

    Raises:
        ConfigError: A remote runner but artifacts on this machine's disk.
    """
    runner = PipelineOptions(list(beam_args)).view_as(StandardOptions).runner or "DirectRunner"
    if runner.removesuffix("Runner").lower() in {
        r.removesuffix("Runner").lower() for r in LOCAL_RUNNERS
    }:
        return raw_path, data_path
    if "://" not in raw_uri or "://" not in data_uri or raw_uri.startswith("file://"):
        raise ConfigError(
            f"the {runner}'s workers cannot read this machine's files ({raw_uri})",
            "run the pipeline on Kubeflow Pipelines with a bucket pipeline root "
            "(gs://… for Dataflow), or leave out --runner to use the DirectRunner",
        )
    return cluster_uri(raw_uri), cluster_uri(data_uri)


def read_stats(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``stats.json`` a finished transform wrote in FOLDER (its output folder).

    Raises:
        ConfigError: FOLDER holds no stats.json.
    """
    return read_step_output(folder, STATS_NAME, "transform", ConfigError)


def transform(
    input_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    config: TransformConfig | None = None,
) -> dict[str, Any]:
    """Runs the Beam transform and writes the splits, the rejects and ``stats.json``.

    Local output folders are written atomically: the pipeline writes to a hidden
    staging folder beside ``output_dir`` that replaces it only when the run succeeded.
    Bucket URIs (for cluster runners) are written in place.

    Args:
        input_path: The raw CSV from the ingest step.
        output_dir: The folder for ``train-*.csv``, ``eval-*.csv``, ``test-*.csv``,
            ``rejects-*.csv`` and ``stats.json``.
        config: Coin, date format, split and Beam options; defaults if omitted.

    Returns:
        The contents of ``stats.json``.

    Raises:
        SourceError, SchemaError: The input is missing, a folder, empty, header-only,
            compressed, binary or not UTF-8, or lacks columns.
        DateFormatError: ``auto`` cannot tell the file's date style.
        CoinNotFoundError: The coin has no rows in the file, or none that is valid.
        StorageError: The output folder is read-only or its disk is full; nothing of
            this run is left in it.
    """
    config = config or TransformConfig()
    input_path = os.fspath(input_path)
    output_dir = os.fspath(output_dir)
    header = read_header(input_path)
    local = "://" not in output_dir
    if local:
        final = Path(output_dir).resolve()
        work = str(final.parent / f".{final.name}.staging-{uuid.uuid4().hex[:8]}")
    else:
        work = output_dir.rstrip("/")
    options = PipelineOptions(list(config.beam_args))
    runner = options.view_as(StandardOptions).runner or "DirectRunner"
    started = time.perf_counter()
    try:
        if local:
            final.parent.mkdir(parents=True, exist_ok=True)
        with beam.Pipeline(options=options) as p:
            build_pipeline(p, input_path, header, config, work)
        counts_path = f"{work}/{_COUNTS_NAME}.json"
        with FileSystems.open(counts_path) as f:
            counts = json.loads(f.read())
        FileSystems.delete([counts_path])
        if _ERROR in counts:
            raise SourceError(counts[_ERROR], counts[_ERROR_FIX])
        join_rejects(work)
        style = _style_or_none(counts, config.date_format) or "undecided"
        stats = _stats(counts, input_path, header, config, style, runner)
        stats["seconds"] = round(time.perf_counter() - started, 3)
        _check(stats, counts, header, config, work)
        with FileSystems.create(f"{work}/{STATS_NAME}") as f:
            f.write(json.dumps(stats, indent=2).encode() + b"\n")
        if local:
            if final.exists():
                shutil.rmtree(final)
            os.replace(work, final)
    except PipelineError:
        raise
    except Exception as exc:
        error = storage_error(exc, output_dir)
        if error is None:
            raise
        raise error from exc
    finally:
        if local and Path(work).exists():
            shutil.rmtree(work, ignore_errors=True)
    return stats
