"""The transform's Apache Beam graph, from the raw CSV to train/eval/test splits and rejects.

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

What passes from one stage to the next grows with the number of dates and coins, never
with the number of rows: a runner holds that data between stages (the DirectRunner in
memory), so the passes read the file again (``range_passes``) rather than pass rows on,
and each writes its rejects as it goes. Only one row per date reaches the last stage,
where a sort by date is cheap. Pass 3 reads nothing when no date repeats.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from crypto_pipeline import dates
from crypto_pipeline.config import TransformConfig
from crypto_pipeline.range_passes import (
    READ_BYTES,
    CountRange,
    FindDuplicates,
    ValidateRange,
    csv_line,
    plan_ranges,
    style_or_none,
)
from crypto_pipeline.rows import MarketRow
from crypto_pipeline.schema import COLUMNS, Header
from crypto_pipeline.splits import SPLITS

REJECTS_HEADER = "line,reason,detail,raw"
REJECTS_FILE = "rejects-00000-of-00001.csv"
"""The rejected rows and dropped duplicates, with their line, reason and raw text."""
COUNTS_NAME = "_counts"
"""The file (``.json``) in which the graph leaves the run's counts, for the driver."""
_REJECTS_PARTS = ("_rejects_parse", "_rejects_rows", "_rejects_duplicates")
"""The rejects' parts, as passes 1, 2 and 3 write them (``WriteRejects``)."""


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
                text = "\n".join(csv_line(r.to_csv_fields()) for r in part)
                yield beam.pvalue.TaggedOutput(name, text)
        yield beam.pvalue.TaggedOutput("split_counts", counts)


def build_pipeline(
    p: beam.Pipeline,
    input_path: str,
    header: Header,
    config: TransformConfig,
    out_dir: str,
    range_bytes: int,
) -> None:
    """Adds the transform's steps to a Beam pipeline.

    Args:
        p: The pipeline to add to.
        input_path: The raw CSV (a local path, or a ``gs://`` URI on Dataflow).
        header: The file's parsed header.
        config: Coin, date format and split.
        out_dir: Where the outputs go (``train-*.csv``, …, and the rejects in parts for
            ``join_rejects``).
        range_bytes: About how many bytes of the file each range holds.
    """
    ranges = (
        p
        | "File" >> beam.Create([input_path])
        | "PlanRanges" >> beam.FlatMap(plan_ranges, header.lines, target_bytes=range_bytes)
        | "Spread" >> beam.Reshuffle()
    )
    counted = ranges | "CountRange" >> beam.ParDo(
        CountRange(input_path, header, config.coin)
    ).with_outputs("rejects", main="counts")
    parse_counts = counted.counts | "SumParseCounts" >> beam.CombineGlobally(_merge_counts)
    style = parse_counts | "DateStyle" >> beam.Map(style_or_none, config.date_format)
    last = dates.last_day()  # one latest date for every row, whichever worker reads it
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
            f"{out_dir}/{COUNTS_NAME}", file_name_suffix=".json", shard_name_template=""
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
                shutil.copyfileobj(f, out, READ_BYTES)
    FileSystems.delete(parts)
