"""Step 1, ingest: copy the raw CSV from its source into the run's artifact folder.

The source is a URI that fsspec can open: a local path, ``file://``, ``http(s)://``,
``gs://`` (gcsfs) or ``s3://`` (s3fs); ``.gz``, ``.bz2`` and ``.xz`` files are
decompressed on the way. Credentials for buckets come from the environment (workload
identity on a cluster, the cloud SDK's login on a workstation), never from the project.

What ingest checks, so that later steps can trust the file: it is text (no binary
bytes, UTF-8), it has a header with the required columns, and at least one data row.
Rows are not validated here; the transform does that, row by row, with reasons.

Writes are atomic: the copy goes to a temporary file in the output folder and is renamed
into place only after every check passed, so a failure never leaves half a file behind.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import hashlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import fsspec

from crypto_pipeline.errors import SchemaError, SourceError
from crypto_pipeline.sample_data import SAMPLE_PATH
from crypto_pipeline.schema import COLUMNS, parse_header

RAW_FILE_NAME = "crypto-markets.csv"
MANIFEST_NAME = "ingest.json"
_CHUNK = 1 << 20
_HTTP_TIMEOUT_S = 30


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
    extra_columns: list[str]
    synthetic: bool
    ingested_at: str

    def describe(self) -> str:
        """One paragraph for a person: what was copied, and whether it is real data."""
        text = (
            f"ingested {self.rows:,} rows ({self.bytes:,} bytes, sha256 {self.sha256[:12]}…)\n"
            f"  from {self.source_uri}\n  to   {self.path}"
        )
        if self.extra_columns:
            text += f"\n  extra columns accepted and ignored: {', '.join(self.extra_columns)}"
        if self.synthetic:
            text += (
                "\n  note: this is the bundled SYNTHETIC sample, not real market data; "
                "pass --source for real data"
            )
        return text


def _has_scheme(uri: str) -> bool:
    return "://" in uri


def _fix_for(uri: str) -> str:
    scheme = uri.split("://", 1)[0].lower() if _has_scheme(uri) else "file"
    if scheme in ("http", "https"):
        return (
            "check the URL in a browser; when offline, pass a local path instead "
            "(--source path/to/crypto-markets.csv), or leave --source out to use the "
            "bundled sample"
        )
    if scheme in ("gs", "s3"):
        return (
            "check the URI and that this machine has credentials for it from the "
            "environment (workload identity on a cluster; 'gcloud auth application-default "
            "login' or an AWS profile on a workstation)"
        )
    return "check the path, or leave --source out to use the bundled sample"


SAMPLE_SOURCE = "sample"
"""The source URI that means the bundled synthetic sample."""


def _open_source(uri: str):
    """Opens the source for binary reading, with errors that say how to fix them."""
    if uri == SAMPLE_SOURCE:
        uri = str(SAMPLE_PATH)
    if not _has_scheme(uri) or uri.startswith("file://"):
        path = Path(uri.removeprefix("file://")).expanduser()
        if not path.exists():
            raise SourceError(f"source file not found: {path}", _fix_for(uri))
        if path.is_dir():
            raise SourceError(f"source is a folder, not a file: {path}", _fix_for(uri))
        uri = str(path)
    options: dict[str, Any] = {}
    if uri.lower().startswith(("http://", "https://")):
        import aiohttp

        options["client_kwargs"] = {
            "timeout": aiohttp.ClientTimeout(
                sock_connect=_HTTP_TIMEOUT_S, sock_read=_HTTP_TIMEOUT_S
            )
        }
    try:
        return fsspec.open(uri, mode="rb", compression="infer", **options).open()
    except ImportError as exc:
        raise SourceError(
            f"no filesystem library for {uri}: {exc}",
            "install the project's environment (make setup), which includes gcsfs and s3fs",
        ) from exc
    except FileNotFoundError as exc:
        cause = exc.__cause__ or exc.__context__
        if cause is not None:  # fsspec's http reports a failed connection as not found
            raise SourceError(
                f"could not reach {uri}: {type(cause).__name__}: {cause}", _fix_for(uri)
            ) from exc
        raise SourceError(f"source not found: {uri}", _fix_for(uri)) from exc
    except (ValueError, PermissionError) as exc:  # unknown protocol, access denied
        raise SourceError(f"cannot open {uri}: {exc}", _fix_for(uri)) from exc
    except Exception as exc:  # connection errors have many types across fsspec backends
        raise SourceError(
            f"could not reach {uri}: {type(exc).__name__}: {exc}", _fix_for(uri)
        ) from exc


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _copy_checked(source, target, uri: str) -> tuple[str, int]:
    """Copies bytes, hashing them and refusing binary or non-UTF-8 content."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    size = 0
    while True:
        try:
            chunk = source.read(_CHUNK)
        except Exception as exc:
            raise SourceError(
                f"reading {uri} failed after {size:,} bytes: {type(exc).__name__}: {exc}",
                _fix_for(uri),
            ) from exc
        if not chunk:
            break
        nul = chunk.find(b"\x00")
        if nul >= 0:
            raise SourceError(
                f"{uri} is not a CSV text file (it holds binary bytes near byte {size + nul:,})",
                "pass the crypto-markets.csv file itself (compressed .gz/.bz2/.xz files "
                "are fine; zip archives must be unpacked first)",
            )
        try:
            decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            raise SourceError(
                f"{uri} is not UTF-8 text (bad byte near byte {size + exc.start:,})",
                "save the file as UTF-8 CSV (spreadsheets: 'CSV UTF-8')",
            ) from exc
        digest.update(chunk)
        target.write(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _read_header_and_count(path: Path, uri: str) -> tuple[list[str], int]:
    with path.open("r", encoding="utf-8-sig", newline="") as f:
        first = ""
        for line in f:
            if line.strip():
                first = line
                break
        if not first:
            raise SourceError(f"{uri} is empty", "pass a CSV file with a header row and data rows")
        rows = sum(1 for line in f if line.strip())
    header = next(csv.reader([first]))
    try:
        parse_header(header)
    except SchemaError as exc:
        raise SchemaError(f"{uri}: {exc.problem}", exc.fix) from None
    if rows == 0:
        raise SourceError(
            f"{uri} has a header but no data rows",
            "pass a file with at least one data row under the header " + ",".join(COLUMNS),
        )
    return [h.strip().lstrip("\ufeff") for h in header], rows


def _write_atomic(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    try:
        with open(tmp, "wb") as f:  # f.name is the temporary path
            write(f)
        os.chmod(tmp, 0o644)  # mkstemp makes files private; artifacts are for reading
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ingest(source_uri: str, output_dir: str | os.PathLike[str]) -> IngestResult:
    """Copies the source into ``output_dir`` as ``crypto-markets.csv`` with ``ingest.json``.

    Args:
        source_uri: A local path or a ``file://``, ``http(s)://``, ``gs://`` or ``s3://``
            URI of a CSV in the ``crypto-markets.csv`` schema; ``sample`` for the bundled
            synthetic sample.
        output_dir: Local folder for the copy; created if missing.

    Returns:
        What was copied, with its checksum and row count.

    Raises:
        SourceError: The source is missing, unreachable, empty, header-only, binary or
            not UTF-8.
        SchemaError: The header lacks a required column.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / RAW_FILE_NAME
    header: list[str] = []
    rows = 0
    checksum = ""
    size = 0

    def copy(f) -> None:
        nonlocal header, rows, checksum, size
        with _open_source(source_uri) as src:
            checksum, size = _copy_checked(src, f, source_uri)
        f.flush()
        header, rows = _read_header_and_count(Path(f.name), source_uri)

    _write_atomic(target, copy)
    result = IngestResult(
        source_uri=source_uri,
        path=str(target),
        sha256=checksum,
        bytes=size,
        rows=rows,
        columns=header,
        extra_columns=list(parse_header(header).extra),
        synthetic=checksum == _sha256(SAMPLE_PATH),
        ingested_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    manifest = json.dumps(asdict(result), indent=2).encode() + b"\n"
    _write_atomic(out / MANIFEST_NAME, lambda f: f.write(manifest))
    return result


_VERSION_FIELDS = (
    "ETag",
    "etag",
    "md5Hash",
    "Content-MD5",
    "crc32c",
    "generation",
    "VersionId",
    "LastModified",
    "Last-Modified",
    "mtime",
    "updated",
    "size",
)
"""What fsspec's ``info`` reports about a remote object's version, across backends."""


def source_fingerprint(source_uri: str) -> str:
    """What the source holds now, so that a cache keyed on it never serves stale data.

    A local file (or the sample) is fingerprinted by its sha256; a remote object by what its
    store reports of its version (ETag, generation, checksum, modification time, size). When
    the source cannot be read, or a remote store reports nothing but the size, the
    fingerprint is unique to this call: the data is ingested again rather than trusted.

    Args:
        source_uri: As for ``ingest``.

    Returns:
        ``sha256:<hex>``, ``ETag=…;size=…`` and the like, or ``unknown:<ns>``.
    """
    uri = str(SAMPLE_PATH) if source_uri == SAMPLE_SOURCE else source_uri
    unknown = f"unknown:{time.time_ns()}"
    if not _has_scheme(uri) or uri.startswith("file://"):
        path = Path(uri.removeprefix("file://")).expanduser()
        return f"sha256:{_sha256(path)}" if path.is_file() else unknown
    try:
        fs, path = fsspec.core.url_to_fs(uri)
        info = fs.info(path)
    except Exception:  # ingest reports why the source cannot be read
        return unknown
    fields = {k: str(info[k]) for k in _VERSION_FIELDS if info.get(k) not in (None, "")}
    if set(fields) <= {"size"}:
        return unknown
    return ";".join(f"{k}={v}" for k, v in sorted(fields.items()))
