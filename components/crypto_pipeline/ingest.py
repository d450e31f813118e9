"""Step 1, ingest: copy the raw CSV from its source into the run's artifact folder.

The source is a URI that fsspec can open: a local path, ``file://``, ``http(s)://``,
``gs://`` (gcsfs) or ``s3://`` (s3fs); ``.gz``, ``.bz2`` and ``.xz`` files are
decompressed on the way, archives (zip, tar, 7z) are refused with the command that
unpacks them. Credentials for buckets come from the environment (workload
identity on a cluster, the cloud SDK's login on a workstation), never from the project.

What ingest checks, so that later steps can trust the file: it is text (no binary
bytes, UTF-8, not compressed or archived: ``check_text``, which the transform shares),
it has a header with the required columns, and at least one data row.
Rows are not validated here; the transform does that, row by row, with reasons.

What is read is bounded, so that a source with no end fails instead of filling the
disk or running forever: at most ``max_mb`` megabytes (counted after decompression, so a
small gzip body cannot become a huge file) and ``max_seconds`` in all, each raised by a
flag of ``ingest`` (``--max-source-mb``, ``--max-source-seconds``). The time limit holds
for buckets too: their client's credential lookup and every range read are given only
the time left (gcsfs and s3fs retry a store that does not answer for minutes), and their
own log records of a failure are held back, so it is reported once, as an error and a fix.
Only regular files are read from a local path (a FIFO, a device or a socket is refused
before it is opened), and an HTTP body that ends before its announced ``Content-Length``
is an error. Credentials in a source URL (``user:pass@``, a token in the query) are masked
in every message and in ``ingest.json``; a URL given with them masked is read with those
in ``$CRYPTO_PIPELINE_SOURCE_URI`` (``SOURCE_ENV``: how ``run`` hands them to its step).

Writes are atomic: the copy and ``ingest.json`` go to temporary files in the output
folder and replace the previous pair only when both are written and every check passed,
so a failure (a bad source, a full disk) never leaves half a file behind, nor a copy
without its manifest.
"""

from __future__ import annotations

import codecs
import contextlib
import datetime as dt
import hashlib
import http
import io
import itertools
import json
import logging
import os
import re
import shlex
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import fsspec
import fsspec.asyn

from crypto_pipeline.config import IngestConfig
from crypto_pipeline.errors import (
    PipelineError,
    SchemaError,
    SourceError,
    read_step_output,
    storage_error,
)
from crypto_pipeline.sample_data import SAMPLE_PATH
from crypto_pipeline.schema import COLUMNS, HEADER_LINES, Header, header_from_lines

RAW_FILE_NAME = "crypto-markets.csv"
MANIFEST_NAME = "ingest.json"
_CHUNK = 1 << 20
_HTTP_TIMEOUT_S = 30
DEFAULT_MAX_MB = IngestConfig.max_mb
"""The most megabytes ingest copies (``IngestConfig``); ``--max-source-mb`` raises it."""
DEFAULT_MAX_SECONDS = IngestConfig.max_seconds
"""The longest ingest reads a source (``IngestConfig``); ``--max-source-seconds`` raises it."""
MAX_MB_FLAG = "--max-source-mb"
MAX_SECONDS_FLAG = "--max-source-seconds"

_URL = re.compile(
    r"(?<=://)(?P<authority>[^/?#\s'\"<>]*)(?P<path>[^?#\s'\"<>]*)(?P<rest>[^\s'\"<>]*)"
)
"""What follows a URL's ``scheme://``: its authority, its path, then its query and fragment."""
_USERINFO = re.compile(r"^.*@")  # to the last @: a password may hold one
# a value already masked stays as it is, with the text that follows the URL
_PATH_VALUE = re.compile(r"(;[^=/;]*=)(?!\*\*\*)[^/;]*")  # a matrix value ends at / or ;
_QUERY_VALUE = re.compile(r"([?&;#][^=?&;#]*=)(?!\*\*\*)[^&;#]*")  # it may hold / and ?


def mask_credentials(text: str) -> str:
    """TEXT with the credentials any URL in it may carry masked; the rest of TEXT as it is.

    In each ``scheme://…`` of TEXT the ``user:pass@`` becomes ``***@``, and the value of
    every parameter becomes ``***``: in the query (``?a=``, ``&b=``), in the fragment
    and in the path (``;jsessionid=``). Any of them may be a secret, whatever its name.
    """
    return _URL.sub(_masked_url, text)


def _masked_url(found: re.Match[str]) -> str:
    """One URL, after its ``scheme://``, with its user and parameter values masked."""
    authority = _USERINFO.sub("***@", found["authority"])
    path = _PATH_VALUE.sub(r"\1***", found["path"])
    return authority + path + _QUERY_VALUE.sub(r"\1***", found["rest"])


@contextlib.contextmanager
def _credentials_masked(uri: str) -> Iterator[None]:
    """Re-raises a PipelineError with the credentials in its problem and fix masked.

    URI itself is masked first (so the text around it stays as it is), then any other URL.
    """

    def mask(text: str) -> str:
        return mask_credentials(text.replace(uri, mask_credentials(uri)))

    try:
        yield
    except PipelineError as exc:
        problem, fix = mask(exc.problem), mask(exc.fix)
        if (problem, fix) == (exc.problem, exc.fix):
            raise
        raise type(exc)(problem, fix) from None  # the chain would carry the credentials


SOURCE_ENV = "CRYPTO_PIPELINE_SOURCE_URI"
"""The environment variable that holds a source URL with its credentials.

A pipeline's parameters are no place for a secret: kfp.local writes them into its log and
onto the steps' command lines. ``run`` passes the source with its credentials masked, and
the URL itself in this variable of the steps' environment (``source_parameter``); ingest
reads it back (``with_credentials``).
"""
_MASKED = re.compile(r"://\*\*\*@|[?&;#][^=?&;#/\s]*=\*\*\*(?=[/?&;#\s]|$)")
"""A URL as ``mask_credentials`` leaves it: a masked user or parameter value."""


def source_parameter(source_uri: str) -> tuple[str, dict[str, str]]:
    """The source as a pipeline parameter may show it, and the environment its step needs.

    Returns:
        ``(source_uri, {})`` for a source without credentials; otherwise the source with
        its credentials masked (``mask_credentials``) and ``{SOURCE_ENV: <the URL>}``.

    Raises:
        SourceError: SOURCE_URI is given masked, without the URL (``with_credentials``).
    """
    full = with_credentials(source_uri)
    shown = mask_credentials(full)
    return (shown, {}) if shown == full else (shown, {SOURCE_ENV: full})


def with_credentials(source_uri: str) -> str:
    """The URL that SOURCE_URI stands for, its credentials restored from the environment.

    That is SOURCE_URI itself, or ``$CRYPTO_PIPELINE_SOURCE_URI`` when SOURCE_URI is that
    URL with its credentials masked (``source_parameter``).

    Raises:
        SourceError: SOURCE_URI has masked credentials (``***``), and the variable does not
            hold the URL they were masked in.
    """
    if not _MASKED.search(source_uri):
        return source_uri
    full = os.environ.get(SOURCE_ENV, "")
    if full and mask_credentials(full) == source_uri:
        return full
    raise SourceError(
        f"{mask_credentials(source_uri)} has its credentials masked (***), and the "
        f"environment variable {SOURCE_ENV} does not hold the URL with them",
        f"set {SOURCE_ENV} to the URL with its credentials and pass it masked like this "
        "(crypto-pipeline run does so for its steps), or pass the URL itself",
    )


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


_PACKED = (
    (re.compile(rb"PK(\x03\x04|\x05\x06)"), "a zip archive", "unzip {}"),
    (re.compile(rb"7z\xbc\xaf\x27\x1c"), "a 7-Zip archive", "7z x {}"),
    (re.compile(rb".{257}ustar", re.DOTALL), "a tar archive", "tar -xf {}"),
    (re.compile(rb"\x1f\x8b"), "gzip-compressed", "gunzip -c {} > crypto-markets.csv"),
    (re.compile(rb"BZh[1-9]1AY&SY"), "bzip2-compressed", "bunzip2 -c {} > crypto-markets.csv"),
    (re.compile(rb"\xfd7zXZ\x00"), "xz-compressed", "unxz -c {} > crypto-markets.csv"),
    (re.compile(rb"\x28\xb5\x2f\xfd"), "zstd-compressed", "unzstd -c {} > crypto-markets.csv"),
)
"""First bytes of archives and compressed files: what the file is, how to unpack it."""


def _local_name(uri: str) -> str:
    return PurePosixPath(urlsplit(uri).path).name if _has_scheme(uri) else uri


def _packed_error(uri: str, what: str, command: str) -> SourceError:
    unpack = command.format(shlex.quote(_local_name(uri)))
    if "archive" in what:
        return SourceError(
            f"{uri} is {what}, not a CSV file",
            f"unpack it first ({unpack}) and pass the crypto-markets.csv inside",
        )
    return SourceError(
        f"{uri} is {what}, not a CSV text file",
        f"unpack it first ({unpack}) and pass the CSV; ingest also unpacks a file on the "
        "way when its name ends in .gz, .bz2 or .xz",
    )


def check_text(
    data: bytes, offset: int, uri: str, decoder: codecs.IncrementalDecoder | None = None
) -> str:
    """Decodes one chunk of a source file, refusing what is not UTF-8 CSV text.

    Ingest checks every chunk it copies; the transform checks its input's first bytes
    and then every byte range, with the same messages.

    Args:
        data: The chunk.
        offset: Where the chunk starts in the file. At 0, archives and compressed files
            are recognized by their first bytes.
        uri: The file, as errors name it.
        decoder: An incremental UTF-8 decoder, for chunks that may end inside a
            character; without one, the chunk must end at a line end.

    Returns:
        The chunk's text.

    Raises:
        SourceError: An archive, a compressed file, binary bytes or bytes that are not
            UTF-8, with the byte offset.
    """
    if offset == 0:
        for signature, what, command in _PACKED:
            if signature.match(data):
                raise _packed_error(uri, what, command)
    nul = data.find(b"\x00")
    if nul >= 0:
        raise SourceError(
            f"{uri} is not a CSV text file (it holds binary bytes near byte {offset + nul:,})",
            "pass the crypto-markets.csv file itself (a CSV text file)",
        )
    try:
        return decoder.decode(data) if decoder else data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"{uri} is not UTF-8 text (bad byte near byte {offset + exc.start:,})",
            "save the file as UTF-8 CSV (spreadsheets: 'CSV UTF-8')",
        ) from exc


def no_data_rows(uri: str) -> SourceError:
    """The error for a file that has a header and nothing under it."""
    return SourceError(
        f"{uri} has a header but no data rows",
        "pass a file with at least one data row under the header " + ",".join(COLUMNS),
    )


def _has_scheme(uri: str) -> bool:
    return "://" in uri


SUPPORTED_SOURCES = "a local path or a file://, http://, https://, gs:// or s3:// URI"
"""The sources that the project's environment reads (fsspec with gcsfs and s3fs)."""

_COPY_COMMANDS = {"sftp": "scp HOST:PATH .", "ssh": "scp HOST:PATH .", "scp": "scp HOST:PATH ."}


def _unsupported(uri: str, reason: str) -> SourceError:
    scheme = uri.split("://", 1)[0]
    copy = _COPY_COMMANDS.get(scheme.lower())
    return SourceError(
        f"ingest cannot read {scheme}:// sources: {reason}",
        "copy the file to this machine first"
        + (f" (e.g. {copy})" if copy else "")
        + f" and pass its path; --source takes {SUPPORTED_SOURCES}",
    )


def _http_fix(status: int) -> str:
    if status in (401, 403, 407):
        return (
            "the server refuses to give the file: check the URL and whether it needs a login; "
            "download it yourself and pass its local path (--source path/to/crypto-markets.csv)"
        )
    if status >= 500:
        return (
            "the server failed: try again later, or pass a local path "
            "(--source path/to/crypto-markets.csv)"
        )
    return (
        "check the URL (the server has no file at that address); when the file is elsewhere, "
        "pass a local path (--source path/to/crypto-markets.csv), or leave --source out to "
        "use the bundled sample"
    )


def _http_error(uri: str, exc: BaseException) -> SourceError | None:
    """The error naming the HTTP status that the server answered, when one is in ``exc``."""
    for e in (exc, exc.__cause__, exc.__context__):
        status = getattr(e, "status", None)
        if isinstance(status, int) and status >= 400:
            try:
                phrase = http.HTTPStatus(status).phrase
            except ValueError:
                phrase = str(getattr(e, "message", "")) or "error"
            return SourceError(
                f"the server answered {status} {phrase} for {uri}", _http_fix(status)
            )
    return None


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


_NOT_FILES = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)
"""What a path can be other than a regular file or a folder: a stream with no known end."""


def regular_file(path: Path, uri: str) -> Path:
    """PATH, checked without opening it to be a regular file that exists.

    Raises:
        SourceError: PATH is missing, a folder, a FIFO, a device or a socket.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise SourceError(f"source file not found: {path}", _fix_for(uri)) from None
    except OSError as exc:
        raise SourceError(f"cannot open {path}: {exc.strerror}", _fix_for(uri)) from None
    if stat.S_ISDIR(mode):
        raise SourceError(f"source is a folder, not a file: {path}", _fix_for(uri))
    for test, what in _NOT_FILES:
        if test(mode):
            raise SourceError(
                f"source {path} is {what}, not a regular file: ingest would wait on it without end",
                "save the data to a file first (e.g. cat SOURCE > crypto-markets.csv) and "
                "pass that file's path",
            )
    return path


def _options(uri: str, max_seconds: float) -> dict[str, Any]:
    """The options that fsspec opens URI with: for HTTP, a time limit per read and in all."""
    if not uri.lower().startswith(("http://", "https://")):
        return {}
    import aiohttp

    per_read = min(_HTTP_TIMEOUT_S, max_seconds)
    timeout = aiohttp.ClientTimeout(total=max_seconds, sock_connect=per_read, sock_read=per_read)
    return {"client_kwargs": {"timeout": timeout}}


_BUCKET_SCHEMES = ("gs", "gcs", "s3", "s3a")
_STORE_LOGGERS = ("gcsfs", "s3fs")
_RANGE = 8 << 20
"""Bytes asked of a bucket at a time."""


def _is_bucket(uri: str) -> bool:
    return _has_scheme(uri) and uri.split("://", 1)[0].lower() in _BUCKET_SCHEMES


@contextlib.contextmanager
def _store_logs_held() -> Iterator[None]:
    """The bucket clients' own log records go nowhere while the block runs.

    gcsfs logs a traceback each time it gives up on a request; ingest reports the failure
    itself, once, as an error and a fix. The debug output that a client's own variable
    turns on (``GCSFS_DEBUG``, ``S3FS_LOGGING_LEVEL``) still shows: it has its own handler.
    """
    loggers = [logging.getLogger(name) for name in _STORE_LOGGERS]
    propagating = [logger.propagate for logger in loggers]
    held = logging.NullHandler()
    for logger in loggers:
        logger.addHandler(held)
        logger.propagate = False
    try:
        yield
    finally:
        for logger, propagate in zip(loggers, propagating, strict=True):
            logger.removeHandler(held)
            logger.propagate = propagate


def _in_time(deadline: float, call: Callable[..., Any], *args: Any) -> Any:
    """CALL(*ARGS), or TimeoutError when it has not returned by DEADLINE (``time.monotonic``).

    The call runs in a daemon thread, left behind at the deadline: a bucket client looks up
    its credentials (for seconds, on a machine that has no cloud metadata server) with no
    limit of its own.
    """
    outcome: list[tuple[bool, Any]] = []

    def work() -> None:
        try:
            outcome.append((True, call(*args)))
        except Exception as exc:
            outcome.append((False, exc))

    worker = threading.Thread(target=work, name="source-open", daemon=True)
    worker.start()
    worker.join(max(0.0, deadline - time.monotonic()))
    if not outcome:
        raise TimeoutError("the store did not answer in time")
    returned, value = outcome[0]
    if not returned:
        raise value
    return value


def _store_call(fs, deadline: float, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """An async method of a bucket filesystem, run on its loop and cancelled at DEADLINE."""
    left = deadline - time.monotonic()
    if left <= 0:  # fsspec takes a timeout of 0 for none
        raise TimeoutError("the store did not answer in time")
    with _store_logs_held():
        return fsspec.asyn.sync(fs.loop, method, *args, timeout=left, **kwargs)


def _bucket_fs(uri: str, deadline: float):
    """The filesystem of a bucket URI and the object's path in it, made by DEADLINE."""
    with _store_logs_held():
        return _in_time(deadline, fsspec.core.url_to_fs, uri)


class _BucketObject(io.RawIOBase):
    """An object in a bucket, read range by range, each within what is left of a deadline.

    fsspec's own file objects wait on a store without limit, and gcsfs and s3fs retry a
    store that does not answer for minutes; here every request is a call on the store's
    event loop that is cancelled at the deadline (``_store_call``).
    """

    def __init__(self, fs, path: str, deadline: float):
        super().__init__()
        self._fs, self._path, self._deadline = fs, path, deadline
        self._size = int(_store_call(fs, deadline, fs._info, path)["size"])
        self._at = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        end = min(self._at + len(buffer), self._size)
        if end <= self._at:
            return 0
        data = _store_call(
            self._fs, self._deadline, self._fs._cat_file, self._path, start=self._at, end=end
        )
        buffer[: len(data)] = data
        self._at += len(data)
        return len(data)


def _open_bucket(uri: str, deadline: float):
    """A gs:// or s3:// object opened for reading by DEADLINE, decompressed as its name says."""
    fs, path = _bucket_fs(uri, deadline)
    reader = io.BufferedReader(_BucketObject(fs, path, deadline), buffer_size=_RANGE)
    return fsspec.compression.compr[fsspec.utils.infer_compression(path)](reader, mode="rb")


def _local_path(uri: str) -> Path | None:
    """The path of a source on this machine (a plain path, ``file://``, ``local://``)."""
    if not _has_scheme(uri):
        return Path(uri).expanduser()
    scheme, _, rest = uri.partition("://")
    return Path(rest).expanduser() if scheme.lower() in ("file", "local") else None


def _open_source(uri: str, max_seconds: float = DEFAULT_MAX_SECONDS, started: float | None = None):
    """Opens the source for binary reading, with errors that say how to fix them.

    ``started`` is when reading the source began (``time.monotonic``; default: now): a
    bucket must be open before ``max_seconds`` from then.
    """
    started = time.monotonic() if started is None else started
    if uri == SAMPLE_SOURCE:
        uri = str(SAMPLE_PATH)
    if (local := _local_path(uri)) is not None:
        uri = str(regular_file(local, uri))
    elif "::" not in uri:  # a chained URL names several protocols; fsspec checks those
        try:
            fsspec.get_filesystem_class(uri.split("://", 1)[0].lower())
        except ValueError as exc:
            raise _unsupported(uri, "no such protocol") from exc
        except ImportError as exc:
            raise _unsupported(uri, f"this environment has no library for them ({exc})") from exc
    if fsspec.utils.infer_compression(_local_name(uri)) == "zip":
        raise _packed_error(uri, "a zip archive", "unzip {}")
    try:
        if _is_bucket(uri):
            return _open_bucket(uri, started + max_seconds)
        return fsspec.open(uri, mode="rb", compression="infer", **_options(uri, max_seconds)).open()
    except ImportError as exc:
        raise _unsupported(uri, f"this environment has no library for them ({exc})") from exc
    except FileNotFoundError as exc:
        http_error = _http_error(uri, exc)
        if http_error is not None:
            raise http_error from exc
        cause = exc.__cause__ or exc.__context__
        if cause is not None:  # fsspec's http reports a failed connection as not found
            raise SourceError(
                f"could not reach {uri}: {type(cause).__name__}: {cause}", _fix_for(uri)
            ) from exc
        raise SourceError(f"source not found: {uri}", _fix_for(uri)) from exc
    except (ValueError, PermissionError) as exc:  # a malformed URI, access denied
        raise SourceError(f"cannot open {uri}: {exc}", _fix_for(uri)) from exc
    except Exception as exc:  # connection errors have many types across fsspec backends
        http_error = _http_error(uri, exc)
        if http_error is not None:
            raise http_error from exc
        if _timed_out(exc, started, max_seconds):
            raise _too_slow(uri, 0, max_seconds) from exc
        raise SourceError(
            f"could not reach {uri}: {type(exc).__name__}: {exc}", _fix_for(uri)
        ) from exc


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _too_large(uri: str, max_mb: int) -> SourceError:
    return SourceError(
        f"{uri} holds more than {max_mb:,} MB (the {MAX_MB_FLAG} limit, counted after "
        "decompression); ingest stopped there and kept nothing",
        f"when the file really is that large, raise the limit ({MAX_MB_FLAG} "
        f"{max_mb * 4}) or, with submit, --param max_source_mb={max_mb * 4}; a source that "
        "never ends (a live stream) cannot be ingested: "
        "save a finite file and pass its path",
    )


def _too_slow(uri: str, size: int, max_seconds: float) -> SourceError:
    return SourceError(
        f"reading {uri} took more than {max_seconds:g} s (the {MAX_SECONDS_FLAG} limit; "
        f"{size:,} bytes read); ingest stopped there and kept nothing",
        f"on a slow link raise the limit ({MAX_SECONDS_FLAG} {max_seconds * 4:g}) or, with "
        f"submit, --param max_source_seconds={max_seconds * 4:g}; or download the file and "
        "pass its local path (--source path/to/crypto-markets.csv)",
    )


def _cut_short(uri: str, detail: str) -> SourceError:
    return SourceError(
        f"the connection to {uri} ended before the end the server announced ({detail}); "
        "ingest kept nothing",
        "try again; when the server keeps cutting the download, download the file with a "
        "tool that resumes (curl -C - -O URL) and pass its local path",
    )


def _timed_out(exc: BaseException, started: float, max_seconds: float) -> bool:
    """Whether EXC is a timeout that came when the ``max_seconds`` from ``started`` ran out."""
    late = time.monotonic() - started >= max_seconds - 1
    return late and any(isinstance(e, TimeoutError) for e in (exc, exc.__cause__, exc.__context__))


def _read_error(uri: str, size: int, exc: Exception, started: float, max_seconds: float):
    """The error for a read that raised: the time limit, a cut connection or another cause."""
    names = {type(e).__name__ for e in (exc, exc.__cause__, exc.__context__) if e is not None}
    if names & {"ClientPayloadError", "ContentLengthError"}:
        found = re.search(r"received \d+ of \d+ bytes", str(exc))
        return _cut_short(uri, found.group(0) if found else type(exc).__name__)
    if _timed_out(exc, started, max_seconds):
        return _too_slow(uri, size, max_seconds)
    return SourceError(
        f"reading {uri} failed after {size:,} bytes: {type(exc).__name__}: {exc}",
        _fix_for(uri),
    )


def _announced_length(source) -> int | None:
    """The ``Content-Length`` of an HTTP body read as it is sent, when it counts the bytes read."""
    headers = getattr(getattr(source, "r", None), "headers", None)
    if headers is None or headers.get("Content-Encoding", "identity") != "identity":
        return None
    length = str(headers.get("Content-Length", ""))
    return int(length) if length.isdigit() else None


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
            chunk = source.read(_CHUNK)
        except Exception as exc:
            raise _read_error(uri, size, exc, started, max_seconds) from exc
        if not chunk:
            break
        if size + len(chunk) > max_mb << 20:
            raise _too_large(uri, max_mb)
        if time.monotonic() - started > max_seconds:
            raise _too_slow(uri, size, max_seconds)
        check_text(chunk, size, uri, decoder)
        digest.update(chunk)
        target.write(chunk)
        size += len(chunk)
    announced = _announced_length(source)
    if announced is not None and size < announced:
        raise _cut_short(uri, f"received {size} of {announced} bytes")
    return digest.hexdigest(), size


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


def source_header(source_uri: str, max_seconds: float = DEFAULT_MAX_SECONDS) -> Header:
    """Reads the header of a source without copying it, to know its format up front.

    At most 1 MiB is read, within ``max_seconds``.

    Raises:
        SourceError, SchemaError: As ``ingest`` would for the same source.
    """
    started = time.monotonic()
    uri = with_credentials(source_uri)
    with _credentials_masked(uri), _open_source(uri, max_seconds, started) as src:
        return _header(header_text_lines(_chunks_in_time(src, uri, started, max_seconds), uri), uri)


def _chunks_in_time(src, uri: str, started: float, max_seconds: float) -> Iterator[bytes]:
    """The first MiB of SRC in chunks of 64 KiB, while ``max_seconds`` from ``started`` last."""
    size = 0
    while size < _CHUNK:
        try:
            chunk = src.read(1 << 16)
        except Exception as exc:
            raise _read_error(uri, size, exc, started, max_seconds) from exc
        if not chunk:
            return
        if time.monotonic() - started > max_seconds:
            raise _too_slow(uri, size, max_seconds)
        size += len(chunk)
        yield chunk


def header_text_lines(chunks: Iterable[bytes], uri: str) -> list[str]:
    """The first non-blank lines of a file read in chunks: at most ``HEADER_LINES``.

    Reading stops once they are found; the chunks read are checked to be UTF-8 text.

    Raises:
        SourceError: The bytes read are binary, compressed, an archive or not UTF-8.
    """
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    first: list[str] = []
    pending, offset = "", 0
    for chunk in chunks:
        *lines, pending = (pending + check_text(chunk, offset, uri, decoder)).split("\n")
        offset += len(chunk)
        first += [line for line in lines if line.strip()]
        if len(first) >= HEADER_LINES:
            return first[:HEADER_LINES]
    if pending.strip():
        first.append(pending)
    return first[:HEADER_LINES]


@contextlib.contextmanager
def _staged(*paths: Path) -> Iterator[list[Path]]:
    """Temporary files beside ``paths`` that replace them when the block succeeds.

    Nothing is replaced until every file is written, and a failure removes the temporary
    files: the folder keeps what it held before.
    """
    temps: list[Path] = []
    try:
        for path in paths:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
            os.close(fd)
            temps.append(Path(tmp))
        yield temps
        for tmp, path in zip(temps, paths, strict=True):
            os.chmod(tmp, 0o644)  # mkstemp makes files private; artifacts are for reading
            os.replace(tmp, path)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)


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
        output_dir: Local folder for the copy; created if missing.
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
    out = Path(output_dir)
    target = out / RAW_FILE_NAME
    started = time.monotonic()
    uri = with_credentials(source_uri)
    try:
        with _credentials_masked(uri), _open_source(uri, max_seconds, started) as src:
            out.mkdir(parents=True, exist_ok=True)
            with _staged(target, out / MANIFEST_NAME) as (copy, manifest):
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
                    synthetic=checksum == _sha256(SAMPLE_PATH),
                    ingested_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                )
                manifest.write_bytes(json.dumps(asdict(result), indent=2).encode() + b"\n")
    except OSError as exc:
        error = storage_error(exc, out)
        if error is None:
            raise
        raise error from exc
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


def read_result(folder: str | os.PathLike[str]) -> IngestResult:
    """What an ingest step recorded in FOLDER (its ``ingest.json``).

    Raises:
        SourceError: FOLDER holds no ingest.json.
    """
    return IngestResult(**read_step_output(folder, MANIFEST_NAME, "ingest", SourceError))


def source_fingerprint(
    source_uri: str, max_mb: int = DEFAULT_MAX_MB, max_seconds: float = _HTTP_TIMEOUT_S
) -> str:
    """What the source holds now, so that a cache keyed on it never serves stale data.

    A local file (or the sample) is fingerprinted by its sha256; a remote object by what its
    store reports of its version (ETag, generation, checksum, modification time, size). When
    the source cannot be read, or a remote store reports nothing but the size, the
    fingerprint is unique to this call: the data is ingested again rather than trusted.
    A local file is hashed only within ingest's bounds: a regular file of at most
    ``max_mb``; a store is asked for at most ``max_seconds`` (30 at most).

    Args:
        source_uri: As for ``ingest``.
        max_mb: The most megabytes (MiB) that ingest copies (``--max-source-mb``).
        max_seconds: The longest ingest reads the source (``--max-source-seconds``).

    Returns:
        ``sha256:<hex>``, ``ETag=…;size=…`` and the like, or ``unknown:<ns>``.

    Raises:
        SourceError: A local source is a FIFO, a device or a socket (reading it would not
            end), or larger than ``max_mb``, as ingest would say; a missing file gives
            ``unknown`` (ingest then says it is missing).
    """
    unknown = f"unknown:{time.time_ns()}"
    try:
        uri = str(SAMPLE_PATH) if source_uri == SAMPLE_SOURCE else with_credentials(source_uri)
    except SourceError:  # ingest says what is missing
        return unknown
    if (path := _local_path(uri)) is not None:
        if not path.exists():
            return unknown
        if regular_file(path, source_uri).stat().st_size > max_mb << 20:
            raise _too_large(source_uri, max_mb)
        return f"sha256:{_sha256(path)}"
    try:
        info = _remote_info(uri, min(_HTTP_TIMEOUT_S, max_seconds))
    except Exception:  # ingest reports why the source cannot be read
        return unknown
    fields = {k: str(info[k]) for k in _VERSION_FIELDS if info.get(k) not in (None, "")}
    if set(fields) <= {"size"}:
        return unknown
    return ";".join(f"{k}={v}" for k, v in sorted(fields.items()))


def _remote_info(uri: str, max_seconds: float) -> dict[str, Any]:
    """What the store of URI reports about it (fsspec's ``info``), within ``max_seconds``."""
    if _is_bucket(uri):
        deadline = time.monotonic() + max_seconds
        fs, path = _bucket_fs(uri, deadline)
        return _store_call(fs, deadline, fs._info, path)
    fs, path = fsspec.core.url_to_fs(uri, **_options(uri, max_seconds))
    return fs.info(path)
