"""Step 1, ingest: copy the raw CSV from its source into the run's artifact folder.

The source is a local path, ``file://``, ``http(s)://``, ``gs://`` or ``s3://`` URI
(``sources`` opens it; ``buckets`` reads gs:// and s3:// objects); ``sample`` is the
bundled synthetic sample. Credentials for buckets come from the environment (workload
identity on a cluster, the cloud SDK's login on a workstation), never from the project;
credentials in a source URL are masked in every message and in ``ingest.json`` (``urls``).

What ingest checks, so that later steps can trust the file: it is text (no binary
bytes, UTF-8, not compressed or archived: ``raw_file.check_text``, which the transform
shares), it has a header with the required columns, and at least one data row.
Rows are not validated here; the transform does that, row by row, with reasons.

What is read is bounded, so that a source with no end fails instead of filling the
disk or running forever: at most ``max_mb`` megabytes (counted after decompression, so a
small gzip body cannot become a huge file) and ``max_seconds`` in all, each raised by a
flag of ``ingest`` (``--max-source-mb``, ``--max-source-seconds``). The time limit holds
for buckets too. An HTTP body that ends before its announced ``Content-Length`` is an
error.

Writes are atomic: the copy and ``ingest.json`` go to temporary files in the output
folder and replace the previous pair only when both are written and every check passed
(``files.staged_files``), so a failure (a bad source, a full disk) never leaves half a
file behind, nor a copy without its manifest.
"""

from __future__ import annotations

import codecs
import datetime as dt
import hashlib
import itertools
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from crypto_pipeline.errors import SchemaError, SourceError, read_step_output, storage_error
from crypto_pipeline.files import local_path, staged_files
from crypto_pipeline.fingerprint import sha256_of
from crypto_pipeline.raw_file import (
    RAW_FILE_NAME,
    check_text,
    header_text_lines,
    no_data_rows,
)
from crypto_pipeline.sample_data import SAMPLE_PATH
from crypto_pipeline.schema import HEADER_LINES, Header, header_from_lines
from crypto_pipeline.sources import (
    DEFAULT_MAX_MB,
    DEFAULT_MAX_SECONDS,
    READ_BYTES,
    cut_short,
    open_source,
    read_error,
    too_large,
    too_slow,
)
from crypto_pipeline.urls import credentials_masked, mask_credentials, with_credentials

MANIFEST_NAME = "ingest.json"


@dataclass(frozen=True)
class IngestResult:
    """What ingest copied, as recorded in ``ingest.json``.

    Attributes:
        source_uri: Where the data came from.
        path: The local copy.
        sha256: Hex digest of the copy's bytes.
        bytes: Size of the copy.
        rows: Data rows (non-blank lines after the header).
        columns: The header's column names.
        format: What the header was recognised as, a key of ``schema.FORMATS``
            (``crypto-markets``, ``yahoo-finance``, ``coinmarketcap``, ``single-asset``).
        format_description: The format in words.
        columns_used: Each column that is read, with the schema column it fills.
        unused_columns: Columns recognised but not used (Yahoo's ``Adj Close``).
        extra_columns: Header names outside the schema (accepted, ignored).
        synthetic: True when the source is the bundled synthetic sample.
        ingested_at: UTC time of the copy, ISO 8601.
    """

    source_uri: str
    path: str
    sha256: str
    bytes: int
    rows: int
    columns: list[str]
    format: str
    format_description: str
    columns_used: dict[str, str]
    unused_columns: list[str]
    extra_columns: list[str]
    synthetic: bool
    ingested_at: str

    @property
    def single_asset(self) -> bool:
        """True when the file has no coin column: the transform's ``--coin`` names it."""
        return "slug" not in self.columns_used.values()

    def describe(self) -> str:
        """One paragraph for a person: what was copied, and whether it is real data."""
        text = (
            f"ingested {self.rows:,} rows ({self.bytes:,} bytes, sha256 {self.sha256[:12]}…)\n"
            f"  from {self.source_uri}\n  to   {self.path}"
        )
        text += f"\n  format: {self.format_description}"
        if self.single_asset:
            text += "; the file does not name its coin: --coin names it"
        if self.unused_columns:
            text += f"\n  recognised and not used: {', '.join(self.unused_columns)}"
        if self.extra_columns:
            text += f"\n  extra columns accepted and ignored: {', '.join(self.extra_columns)}"
        if self.synthetic:
            text += (
                "\n  note: this is the bundled SYNTHETIC sample, not real market data; "
                "pass --source for real data"
            )
        return text


def ingest(
    source_uri: str,
    output_dir: str | os.PathLike[str],
    max_mb: int = DEFAULT_MAX_MB,
    max_seconds: float = DEFAULT_MAX_SECONDS,
) -> IngestResult:
    """Copies the source into ``output_dir`` as ``crypto-markets.csv`` with ``ingest.json``.

    Args:
        source_uri: A local path or a ``file://``, ``http(s)://``, ``gs://`` or ``s3://``
            URI of a CSV in the ``crypto-markets.csv`` schema; ``sample`` for the bundled
            synthetic sample. Credentials in it are masked in errors and in the result;
            given masked, they are read from ``$CRYPTO_PIPELINE_SOURCE_URI``
            (``with_credentials``).
        output_dir: Local folder for the copy (a path or a ``file://`` URI); created if
            missing.
        max_mb: The most megabytes (MiB) copied, after decompression.
        max_seconds: The longest the copy may take, in seconds.

    Returns:
        What was copied, with its checksum and row count.

    Raises:
        SourceError: The source is missing, not a regular file (a FIFO, a device),
            unreachable (or answers an HTTP error), of an unsupported scheme, an archive,
            empty, header-only, binary or not UTF-8, over ``max_mb``, slower than
            ``max_seconds``, or cut before its announced length.
        SchemaError: The header lacks a required column.
        StorageError: The output folder is read-only or its disk is full; it keeps what
            it held before.
    """
    out = Path(local_path(output_dir))
    target = out / RAW_FILE_NAME
    started = time.monotonic()
    uri = with_credentials(source_uri)
    try:
        with credentials_masked(uri), open_source(uri, max_seconds, started) as src:
            out.mkdir(parents=True, exist_ok=True)
            with staged_files(target, out / MANIFEST_NAME) as (copy, manifest):
                with copy.open("wb") as f:
                    checksum, size = _copy_checked(src, f, uri, max_mb, max_seconds, started)
                header, rows = _read_header_and_count(copy, uri)
                result = IngestResult(
                    source_uri=mask_credentials(uri),
                    path=str(target),
                    sha256=checksum,
                    bytes=size,
                    rows=rows,
                    columns=list(header.names),
                    format=header.format,
                    format_description=header.describe_format(),
                    columns_used=header.column_map(),
                    unused_columns=list(header.unused),
                    extra_columns=list(header.extra),
                    synthetic=checksum == sha256_of(SAMPLE_PATH),
                    ingested_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                )
                manifest.write_bytes(json.dumps(asdict(result), indent=2).encode() + b"\n")
    except OSError as exc:
        error = storage_error(exc, out)
        if error is None:
            raise
        raise error from exc
    return result


def source_header(source_uri: str, max_seconds: float = DEFAULT_MAX_SECONDS) -> Header:
    """Reads the header of a source without copying it, to know its format up front.

    At most 1 MiB is read, within ``max_seconds``.

    Raises:
        SourceError, SchemaError: As ``ingest`` would for the same source.
    """
    started = time.monotonic()
    uri = with_credentials(source_uri)
    with credentials_masked(uri), open_source(uri, max_seconds, started) as src:
        return _header(header_text_lines(_chunks_in_time(src, uri, started, max_seconds), uri), uri)


def _copy_checked(
    source,
    target,
    uri: str,
    max_mb: int = DEFAULT_MAX_MB,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    started: float | None = None,
) -> tuple[str, int]:
    """Copies bytes, hashing them and refusing binary or non-UTF-8 content.

    ``started`` is when opening the source began (``time.monotonic``; default: now).

    Raises:
        SourceError: The content is not CSV text, is larger than ``max_mb``, takes longer
            than ``max_seconds``, or ends before its announced length.
    """
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    size = 0
    started = time.monotonic() if started is None else started
    while True:
        try:
            chunk = source.read(READ_BYTES)
        except Exception as exc:
            raise read_error(uri, size, exc, started, max_seconds) from exc
        if not chunk:
            break
        if size + len(chunk) > max_mb << 20:
            raise too_large(uri, max_mb)
        if time.monotonic() - started > max_seconds:
            raise too_slow(uri, size, max_seconds)
        check_text(chunk, size, uri, decoder)
        digest.update(chunk)
        target.write(chunk)
        size += len(chunk)
    announced = _announced_length(source)
    if announced is not None and size < announced:
        raise cut_short(uri, f"received {size} of {announced} bytes")
    return digest.hexdigest(), size


def _announced_length(source) -> int | None:
    """The ``Content-Length`` of an HTTP body read as it is sent, when it counts the bytes read."""
    headers = getattr(getattr(source, "r", None), "headers", None)
    if headers is None or headers.get("Content-Encoding", "identity") != "identity":
        return None
    length = str(headers.get("Content-Length", ""))
    return int(length) if length.isdigit() else None


def _header(first_lines: list[str], uri: str) -> Header:
    """The header of a source from its first non-blank lines (``schema.HEADER_LINES``)."""
    if not first_lines:
        raise SourceError(f"{uri} is empty", "pass a CSV file with a header row and data rows")
    try:
        return header_from_lines(first_lines)
    except SchemaError as exc:
        raise SchemaError(f"{uri}: {exc.problem}", exc.fix) from None


def _read_header_and_count(path: Path, uri: str) -> tuple[Header, int]:
    with path.open("r", encoding="utf-8-sig", newline="") as f:
        lines = (line for line in f if line.strip())
        first = list(itertools.islice(lines, HEADER_LINES))
        header = _header(first, uri)
        rows = len(first) - header.lines + sum(1 for _ in lines)
    if rows == 0:
        raise no_data_rows(uri)
    return header, rows


def _chunks_in_time(src, uri: str, started: float, max_seconds: float) -> Iterator[bytes]:
    """The first MiB of SRC in chunks of 64 KiB, while ``max_seconds`` from ``started`` last."""
    size = 0
    while size < READ_BYTES:
        try:
            chunk = src.read(1 << 16)
        except Exception as exc:
            raise read_error(uri, size, exc, started, max_seconds) from exc
        if not chunk:
            return
        if time.monotonic() - started > max_seconds:
            raise too_slow(uri, size, max_seconds)
        size += len(chunk)
        yield chunk


def read_result(folder: str | os.PathLike[str]) -> IngestResult:
    """What an ingest step recorded in FOLDER (its ``ingest.json``).

    Raises:
        SourceError: FOLDER holds no ingest.json.
    """
    return IngestResult(**read_step_output(folder, MANIFEST_NAME, "ingest", SourceError))
