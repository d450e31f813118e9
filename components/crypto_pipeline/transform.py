"""Step 2, transform: an Apache Beam pipeline from the raw CSV to train/eval/test splits.

The same pipeline runs locally on Beam's DirectRunner (the default) and on a cluster
runner when Beam pipeline options say so (``--runner=DataflowRunner --project=…
--region=… --temp_location=gs://…``, or ``--runner=FlinkRunner`` /
``--runner=SparkRunner`` with their ``--flink_master`` / ``--spark_master_url``).

The graph::

    file --PlanRanges--> byte ranges --Reshuffle--> ParseRange --+--> rows of the coin
                                                                     +--> rejects (reason)
                                                                     +--> counts, date evidence
    date evidence of the whole file --> date style (side input)
    rows of the coin --Validate(style)--> valid rows / rejects
    valid rows --one group--> sort by date, drop duplicate dates, split by date
               --> train / eval / test CSV, rejects CSV, counts

The file is cut into line-aligned byte ranges (a cheap pass that only counts newlines)
and each worker reads and parses its own ranges: lines never travel one by one as Beam
elements, which would cost far more than parsing them. The last stage puts
one coin's rows into a single group: a coin has at most one row per day (a few thousand
rows), so a global sort by date is cheap there, while the heavy part (parsing and
validating the whole file) stays parallel.

Nothing is lost without being counted: ``rows_read = rows_kept + rows_rejected +
duplicates + other_coins``. Rejected rows and dropped duplicates are written, with their
line number, reason and raw text, to the ``rejects`` output.
"""

from __future__ import annotations

import csv
import dataclasses
import io
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
from crypto_pipeline.errors import CoinNotFoundError, ConfigError, DateFormatError, SourceError
from crypto_pipeline.schema import COLUMNS, Header, MarketRow, Rejection
from crypto_pipeline.splits import SPLITS

STATS_NAME = "stats.json"
REJECTS_HEADER = "line,reason,detail,raw"
_COUNTS_NAME = "_counts"
_RANGE_BYTES = 8 << 20
_READ_BYTES = 1 << 20
_REJECTED = "rejected:"
_EVIDENCE = "date:"
_COIN = "coin:"


def _csv_line(fields: Iterable[object]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(fields)
    return buffer.getvalue()


def plan_ranges(path: str, target_bytes: int = _RANGE_BYTES) -> Iterator[tuple[int, int, int]]:
    """Cuts a file's data lines into byte ranges that start and end on line boundaries.

    Planning only counts newlines in raw bytes, a small fraction of the cost of
    parsing; in exchange every range knows the number of its first line, which
    rejects report.

    Args:
        path: The CSV file; its first non-blank line is the header and is skipped.
        target_bytes: About how many bytes each range holds.

    Yields:
        ``(start_byte, end_byte, first_line_number)`` for each range, in file order.
    """
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        position = 0
        lines = 0
        while True:  # skip blank lines and the header
            line = f.readline()
            if not line:
                return
            position += len(line)
            lines += 1
            if line.strip():
                break
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


class ParseRange(beam.DoFn):
    """Splits a range's lines into fields, keeps the coin's rows and counts the rest.

    Main output: ``(line_number, raw_line, fields)`` for rows of the coin. Tagged
    outputs: ``rejects`` (rows with the wrong number of fields) and ``counts`` (one
    dict per range: rows read, other coins, blank lines, date evidence, rows per coin).

    A record is one line: quoted fields may hold commas, not line breaks.
    """

    def __init__(self, path: str, header: Header, coin: str):
        self._path = path
        self._header = header
        self._coin = coin

    def process(self, byte_range: tuple[int, int, int]) -> Iterator[Any]:
        start, end, first = byte_range
        with FileSystems.open(self._path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            f.seek(start)
            lines = f.read(end - start).decode("utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()  # after the newline that ends the range
        width = len(self._header.names)
        slug_at = self._header.index["slug"]
        date_at = self._header.index["date"]
        coin = self._coin
        classify = schema.classify_date
        per_coin: Counter[str] = Counter()
        evidence: Counter[str] = Counter()
        blank = wrong_width = other = 0
        for offset, raw in enumerate(lines):
            raw = raw.removesuffix("\r")
            if '"' in raw:  # only quoted fields need the csv module
                fields = next(csv.reader([raw]), [])
            else:
                fields = raw.split(",") if raw else []
            if not fields:
                blank += 1
                continue
            if len(fields) != width:
                wrong_width += 1
                detail = f"{len(fields)} fields, the header has {width}"
                yield beam.pvalue.TaggedOutput(
                    "rejects", (first + offset, schema.WRONG_FIELD_COUNT, detail, raw)
                )
                continue
            date = fields[date_at]
            # Only slashed dates can be ambiguous; the others are checked when parsed.
            evidence[classify(date) if "/" in date else "not_slashed"] += 1
            slug = fields[slug_at].strip()
            per_coin[slug] += 1
            if slug != coin:
                other += 1
                continue
            yield first + offset, raw, fields
        counts: Counter[str] = Counter(
            rows_read=sum(per_coin.values()) + wrong_width, other_coins=other, blank_lines=blank
        )
        counts[_REJECTED + schema.WRONG_FIELD_COUNT] = wrong_width
        counts.update({_EVIDENCE + k: v for k, v in evidence.items()})
        counts.update({_COIN + k: v for k, v in per_coin.items()})
        yield beam.pvalue.TaggedOutput("counts", dict(+counts))


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


class ValidateRow(beam.DoFn):
    """Parses and checks one row of the coin under the file's date style."""

    def __init__(self, header: Header):
        self._header = header

    def process(self, element: tuple[int, str, list[str]], style: str | None) -> Iterator[Any]:
        number, raw, fields = element
        if style is None:
            result: MarketRow | Rejection = Rejection(
                schema.AMBIGUOUS_DATE, "the file's date style is undecided"
            )
        else:
            result = schema.validate_row(fields, self._header, style)
        if isinstance(result, Rejection):
            yield beam.pvalue.TaggedOutput("counts", {_REJECTED + result.reason: 1})
            yield beam.pvalue.TaggedOutput("rejects", (number, result.reason, result.detail, raw))
        else:
            yield number, raw, result


def split_rows(
    rows: Iterable[tuple[int, str, MarketRow]], fractions: tuple[float, float, float]
) -> tuple[dict[str, list[MarketRow]], list[tuple[int, str, str, str]]]:
    """Sorts one coin's rows by date, drops repeated dates and splits by date.

    The first row of a date (in file order) is kept; later ones are returned as
    rejects. Train takes the first ``floor(n * train)`` days, eval the next
    ``floor(n * eval)``, test the rest: contiguous, in order, without overlap.

    Args:
        rows: ``(line_number, raw_line, row)`` of one coin.
        fractions: Train, eval and test fractions.

    Returns:
        The rows of each split, and the dropped duplicates as rejects.
    """
    ordered = sorted(rows, key=lambda r: (r[2].date, r[0]))
    kept: list[MarketRow] = []
    duplicates: list[tuple[int, str, str, str]] = []
    kept_line: dict[Any, int] = {}
    for number, raw, row in ordered:
        if row.date in kept_line:
            detail = f"{row.date.isoformat()} already on line {kept_line[row.date]}"
            duplicates.append((number, schema.DUPLICATE_DATE, detail, raw))
        else:
            kept_line[row.date] = number
            kept.append(row)
    n_train = int(len(kept) * fractions[0])
    n_eval = int(len(kept) * fractions[1])
    parts = {
        "train": kept[:n_train],
        "eval": kept[n_train : n_train + n_eval],
        "test": kept[n_train + n_eval :],
    }
    return parts, duplicates


class SplitByDate(beam.DoFn):
    """Runs ``split_rows`` on the coin's single group; emits each split as CSV text."""

    def __init__(self, fractions: tuple[float, float, float]):
        self._fractions = fractions

    def process(self, keyed: tuple[Any, Iterable[tuple[int, str, MarketRow]]]) -> Iterator[Any]:
        parts, duplicates = split_rows(keyed[1], self._fractions)
        counts: dict[str, Any] = {"duplicates": len(duplicates)}
        for reject in duplicates:
            yield beam.pvalue.TaggedOutput("rejects", reject)
        for name, rows in parts.items():
            counts[f"split:{name}:rows"] = len(rows)
            if rows:
                counts[f"split:{name}:first_date"] = rows[0].date.isoformat()
                counts[f"split:{name}:last_date"] = rows[-1].date.isoformat()
                text = "\n".join(_csv_line(r.to_csv_fields()) for r in rows)
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
        out_dir: Where the outputs go (``train-*.csv``, ``rejects-*.csv``, …).
    """
    parsed = (
        p
        | "File" >> beam.Create([input_path])
        | "PlanRanges" >> beam.FlatMap(plan_ranges, _RANGE_BYTES)
        | "Spread" >> beam.Reshuffle()
        | "ParseRange"
        >> beam.ParDo(ParseRange(input_path, header, config.coin)).with_outputs(
            "rejects", "counts", main="rows"
        )
    )
    parse_counts = parsed.counts | "SumParseCounts" >> beam.CombineGlobally(_merge_counts)
    style = parse_counts | "DateStyle" >> beam.Map(_style_or_none, config.date_format)
    validated = parsed.rows | "Validate" >> beam.ParDo(
        ValidateRow(header), style=beam.pvalue.AsSingleton(style)
    ).with_outputs("rejects", "counts", main="rows")
    fractions = (config.split.train, config.split.eval, config.split.test)
    splits = (
        validated.rows
        | "OneGroup" >> beam.Map(lambda r: (None, r))
        | "GroupCoin" >> beam.GroupByKey()
        | "SplitByDate"
        >> beam.ParDo(SplitByDate(fractions)).with_outputs(
            "rejects", "split_counts", *SPLITS, main="unused"
        )
    )
    csv_header = ",".join(COLUMNS)
    for name in SPLITS:
        _ = splits[name] | f"Write{name.title()}" >> beam.io.WriteToText(
            f"{out_dir}/{name}", file_name_suffix=".csv", header=csv_header, num_shards=1
        )
    _ = (
        (parsed.rejects, validated.rejects, splits.rejects)
        | "AllRejects" >> beam.Flatten()
        | "RejectToCsv" >> beam.Map(_csv_line)
        | "WriteRejects"
        >> beam.io.WriteToText(
            f"{out_dir}/rejects", file_name_suffix=".csv", header=REJECTS_HEADER, num_shards=1
        )
    )
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


def read_header(input_path: str) -> Header:
    """Reads and checks the header of the raw CSV.

    Raises:
        SourceError: The file is missing or empty.
        SchemaError: A required column is missing.
    """
    if not FileSystems.exists(input_path):
        raise SourceError(
            f"transform input not found: {input_path}",
            "pass the crypto-markets.csv written by the ingest step "
            "(--input DIR/crypto-markets.csv)",
        )
    with FileSystems.open(input_path) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        for line in text:
            if line.strip():
                return schema.parse_header(next(csv.reader([line])))
    raise SourceError(f"{input_path} is empty", "run the ingest step on a non-empty file first")


def _stats(
    counts: dict[str, Any], input_path: str, config: TransformConfig, style: str, runner: str
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
        "coin": config.coin,
        "date_format": {"requested": config.date_format, "used_for_slashed_dates": style},
        "rows_read": counts.get("rows_read", 0),
        "rows_valid": rows_kept + duplicates,
        "rows_kept": rows_kept,
        "rows_rejected": rows_rejected,
        "rejected_by_reason": rejected,
        "duplicates": duplicates,
        "other_coins": counts.get("other_coins", 0),
        "blank_lines": counts.get("blank_lines", 0),
        "coins_in_file": len(coins),
        "top_coins": dict(coins.most_common(10)),
        "date_evidence": _evidence(counts),
        "split_fractions": dataclasses.asdict(config.split),
        "splits": splits,
        "rejects_file": "rejects-00000-of-00001.csv",
        "runner": runner,
    }


def _first_rejects(rejects_path: str, limit: int = 3) -> list[str]:
    with FileSystems.open(rejects_path) as f:
        rows = list(csv.reader(io.TextIOWrapper(f, encoding="utf-8")))[1 : limit + 1]
    return [f"line {line}: {reason}: {detail}" for line, reason, detail, _ in rows]


def _check(
    stats: dict[str, Any], counts: dict[str, Any], config: TransformConfig, work: str
) -> None:
    """Raises the clear error for a run whose output cannot be used."""
    schema.resolve_date_style(config.date_format, _evidence(counts))
    if stats["rows_kept"] == 0:
        seen = stats["top_coins"]
        if counts.get(_COIN + config.coin, 0) == 0:
            listing = ", ".join(f"{c} ({n:,})" for c, n in seen.items()) or "none"
            raise CoinNotFoundError(
                f"coin {config.coin!r} is not in the file; coins with the most rows: {listing}",
                "pass --coin with one of those slugs (lower case, as in the slug column)",
            )
        reasons = ", ".join(f"{k} {v:,}" for k, v in stats["rejected_by_reason"].items())
        examples = "\n    ".join(_first_rejects(f"{work}/{stats['rejects_file']}"))
        raise CoinNotFoundError(
            f"all {counts[_COIN + config.coin]:,} rows of coin {config.coin!r} were rejected "
            f"({reasons}); for example:\n    {examples}",
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
        SourceError, SchemaError: The input is missing, empty or lacks columns.
        DateFormatError: ``auto`` cannot tell the file's date style.
        CoinNotFoundError: The coin has no rows in the file, or none that is valid.
    """
    config = config or TransformConfig()
    input_path = os.fspath(input_path)
    output_dir = os.fspath(output_dir)
    header = read_header(input_path)
    local = "://" not in output_dir
    if local:
        final = Path(output_dir).resolve()
        final.parent.mkdir(parents=True, exist_ok=True)
        work = str(final.parent / f".{final.name}.staging-{uuid.uuid4().hex[:8]}")
    else:
        work = output_dir.rstrip("/")
    options = PipelineOptions(list(config.beam_args))
    runner = options.view_as(StandardOptions).runner or "DirectRunner"
    started = time.perf_counter()
    try:
        with beam.Pipeline(options=options) as p:
            build_pipeline(p, input_path, header, config, work)
        counts_path = f"{work}/{_COUNTS_NAME}.json"
        with FileSystems.open(counts_path) as f:
            counts = json.loads(f.read())
        FileSystems.delete([counts_path])
        style = _style_or_none(counts, config.date_format) or "undecided"
        stats = _stats(counts, input_path, config, style, runner)
        stats["seconds"] = round(time.perf_counter() - started, 3)
        _check(stats, counts, config, work)
        with FileSystems.create(f"{work}/{STATS_NAME}") as f:
            f.write(json.dumps(stats, indent=2).encode() + b"\n")
        if local:
            if final.exists():
                shutil.rmtree(final)
            os.replace(work, final)
    finally:
        if local and Path(work).exists():
            shutil.rmtree(work)
    return stats
