"""Step 2, transform: an Apache Beam pipeline from the raw CSV to train/eval/test splits.

The same pipeline runs locally on Beam's DirectRunner (the default) and on a cluster
runner when Beam pipeline options say so (``--runner=DataflowRunner --project=…
--region=… --temp_location=gs://…``, or ``--runner=FlinkRunner`` /
``--runner=SparkRunner`` with their ``--flink_master`` / ``--spark_master_url``).

This module is the driver: it checks the input's header, runs the graph
(``beam_graph``, whose passes over the file's byte ranges are ``range_passes``), joins
the rejects, and writes ``stats.json`` (``transform_stats``). A local output folder is
written beside itself and swapped in when the run succeeded (``files.staged_folder``):
a failure leaves nothing of the run in it. A ``file://`` URI is a
local path; bucket URIs (for cluster runners) are written in place.

Nothing is lost without being counted: ``rows_read = rows_kept + rows_rejected +
duplicates + other_coins``. Rejected rows and dropped duplicates are written, with their
line number, reason and raw text, to the ``rejects`` output. A byte-order mark at the
start of a data line (a file joined from files) is no character of the row: it is removed,
and counted (``byte_order_marks_removed``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from crypto_pipeline.beam_graph import COUNTS_NAME, build_pipeline, join_rejects
from crypto_pipeline.config import TransformConfig, cluster_uri
from crypto_pipeline.errors import (
    ConfigError,
    PipelineError,
    SourceError,
    read_step_output,
    storage_error,
)
from crypto_pipeline.files import is_remote, local_path, staged_folder
from crypto_pipeline.range_passes import ERROR_FIX_KEY, ERROR_KEY, style_or_none
from crypto_pipeline.raw_file import RAW_FILE_NAME, header_text_lines
from crypto_pipeline.schema import Header, header_from_lines
from crypto_pipeline.transform_stats import check_usable, make_stats

STATS_NAME = "stats.json"
_RANGE_BYTES = 8 << 20
"""About how many bytes of the input each range holds (``range_passes.plan_ranges``)."""
_READ_BYTES = 1 << 20
"""Bytes read at a time from the input's start, for its header."""


def _on_this_machine(uri: str) -> str:
    """URI as Beam's file systems take it: a local path for a ``file://`` URI."""
    return uri if is_remote(uri) else local_path(uri)


def read_header(input_path: str) -> Header:
    """Reads and checks the header of the raw CSV (a path, ``file://`` or bucket URI).

    Raises:
        SourceError: The file is missing, a folder, empty, compressed, an archive or
            not UTF-8 text.
        SchemaError: A required column is missing.
    """
    input_path = _on_this_machine(input_path)
    if not is_remote(input_path) and os.path.isdir(input_path):
        inside = Path(input_path, RAW_FILE_NAME)
        raise SourceError(
            f"transform input is a folder, not a file: {input_path}",
            f"pass the CSV file itself (--input {inside})",
        )
    if not FileSystems.exists(input_path):
        raise SourceError(
            f"transform input not found: {input_path}",
            f"pass the {RAW_FILE_NAME} written by the ingest step (--input DIR/{RAW_FILE_NAME})",
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
    return header_from_lines(first)


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
    if not (is_remote(raw_uri) and is_remote(data_uri)):
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

    Local output folders (a path, or a ``file://`` URI) are written atomically: the
    pipeline writes to a hidden staging folder beside ``output_dir`` that replaces it
    only when the run succeeded. Bucket URIs (for cluster runners) are written in place.

    Args:
        input_path: The raw CSV from the ingest step: a path, a ``file://`` URI, or a
            bucket URI for a cluster runner.
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
    input_path = _on_this_machine(os.fspath(input_path))
    output_dir = _on_this_machine(os.fspath(output_dir))
    header = read_header(input_path)
    try:
        if is_remote(output_dir):
            return _run(input_path, header, config, output_dir.rstrip("/"))
        with staged_folder(Path(output_dir).resolve()) as work:
            return _run(input_path, header, config, str(work))
    except PipelineError:
        raise
    except Exception as exc:
        error = storage_error(exc, output_dir)
        if error is None:
            raise
        raise error from exc


def _run(input_path: str, header: Header, config: TransformConfig, work: str) -> dict[str, Any]:
    """Runs the Beam graph into the folder WORK, then joins the rejects and writes the stats.

    Returns:
        The contents of ``stats.json``.

    Raises:
        PipelineError: As ``transform``, for a run whose output cannot be used.
    """
    options = PipelineOptions(list(config.beam_args))
    runner = options.view_as(StandardOptions).runner or "DirectRunner"
    started = time.perf_counter()
    with beam.Pipeline(options=options) as p:
        build_pipeline(p, input_path, header, config, work, _RANGE_BYTES)
    counts = _read_counts(work)
    join_rejects(work)
    style = style_or_none(counts, config.date_format) or "undecided"
    stats = make_stats(counts, input_path, header, config, style, runner)
    stats["seconds"] = round(time.perf_counter() - started, 3)
    check_usable(stats, counts, header, config, work)
    with FileSystems.create(f"{work}/{STATS_NAME}") as f:
        f.write(json.dumps(stats, indent=2).encode() + b"\n")
    return stats


def _read_counts(work: str) -> dict[str, Any]:
    """The counts that the graph left in WORK, removed from there.

    Raises:
        SourceError: A range of the input is not UTF-8 text (pass 1 counts the error).
    """
    counts_path = f"{work}/{COUNTS_NAME}.json"
    with FileSystems.open(counts_path) as f:
        counts = json.loads(f.read())
    FileSystems.delete([counts_path])
    if ERROR_KEY in counts:
        raise SourceError(counts[ERROR_KEY], counts[ERROR_FIX_KEY])
    return counts
