"""Where ingest reads from: opening a source, within its limits, with errors that say the fix.

A source is a URI that fsspec can open: a local path, ``file://``, ``http(s)://``,
``gs://`` (gcsfs, through ``buckets``) or ``s3://`` (s3fs); ``.gz``, ``.bz2`` and ``.xz``
files are decompressed on the way, a zip archive is refused with the command that
unpacks it. Only regular files are read from a local path: a FIFO, a device or a socket
is refused before it is opened (``regular_file``).

The limits: ingest reads at most ``DEFAULT_MAX_MB`` megabytes and for at most
``DEFAULT_MAX_SECONDS`` (each raised by a flag, ``MAX_MB_FLAG`` and ``MAX_SECONDS_FLAG``);
HTTP reads are given ``HTTP_TIMEOUT_S`` each. The errors for a source past a limit, cut
short or failing (``too_large``, ``too_slow``, ``cut_short``, ``read_error``) say what
happened and how to get the file another way.
"""

from __future__ import annotations

import http
import re
import stat
import time
from pathlib import Path
from typing import Any

import fsspec

from crypto_pipeline.buckets import is_bucket, open_bucket
from crypto_pipeline.config import IngestConfig
from crypto_pipeline.errors import SourceError
from crypto_pipeline.files import is_remote, local_path
from crypto_pipeline.raw_file import file_name, packed_error
from crypto_pipeline.sample_data import SAMPLE_PATH

READ_BYTES = 1 << 20
"""Bytes read from a source at a time; the most that reading its header reads."""
HTTP_TIMEOUT_S = 30
DEFAULT_MAX_MB = IngestConfig.max_mb
"""The most megabytes ingest copies (``IngestConfig``); ``--max-source-mb`` raises it."""
DEFAULT_MAX_SECONDS = IngestConfig.max_seconds
"""The longest ingest reads a source (``IngestConfig``); ``--max-source-seconds`` raises it."""
MAX_MB_FLAG = "--max-source-mb"
MAX_SECONDS_FLAG = "--max-source-seconds"
SAMPLE_SOURCE = "sample"
"""The source URI that means the bundled synthetic sample."""
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


def fix_for(uri: str) -> str:
    """How to fix a source that cannot be read, for its kind of URI."""
    scheme = uri.split("://", 1)[0].lower() if is_remote(uri) else "file"
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
        raise SourceError(f"source file not found: {path}", fix_for(uri)) from None
    except OSError as exc:
        raise SourceError(f"cannot open {path}: {exc.strerror}", fix_for(uri)) from None
    if stat.S_ISDIR(mode):
        raise SourceError(f"source is a folder, not a file: {path}", fix_for(uri))
    for test, what in _NOT_FILES:
        if test(mode):
            raise SourceError(
                f"source {path} is {what}, not a regular file: ingest would wait on it without end",
                "save the data to a file first (e.g. cat SOURCE > crypto-markets.csv) and "
                "pass that file's path",
            )
    return path


def fsspec_options(uri: str, max_seconds: float) -> dict[str, Any]:
    """The options that fsspec opens URI with: for HTTP, a time limit per read and in all."""
    if not uri.lower().startswith(("http://", "https://")):
        return {}
    import aiohttp

    per_read = min(HTTP_TIMEOUT_S, max_seconds)
    timeout = aiohttp.ClientTimeout(total=max_seconds, sock_connect=per_read, sock_read=per_read)
    return {"client_kwargs": {"timeout": timeout}}


def local_source(uri: str) -> Path | None:
    """The path of a source on this machine (a plain path, ``file://``, ``local://``)."""
    return None if is_remote(uri) else Path(local_path(uri)).expanduser()


def open_source(uri: str, max_seconds: float = DEFAULT_MAX_SECONDS, started: float | None = None):
    """Opens the source for binary reading, with errors that say how to fix them.

    ``started`` is when reading the source began (``time.monotonic``; default: now): a
    bucket must be open before ``max_seconds`` from then.
    """
    started = time.monotonic() if started is None else started
    if uri == SAMPLE_SOURCE:
        uri = str(SAMPLE_PATH)
    if (local := local_source(uri)) is not None:
        uri = str(regular_file(local, uri))
    elif "::" not in uri:  # a chained URL names several protocols; fsspec checks those
        try:
            fsspec.get_filesystem_class(uri.split("://", 1)[0].lower())
        except ValueError as exc:
            raise _unsupported(uri, "no such protocol") from exc
        except ImportError as exc:
            raise _unsupported(uri, f"this environment has no library for them ({exc})") from exc
    if fsspec.utils.infer_compression(file_name(uri)) == "zip":
        raise packed_error(uri, "a zip archive", "unzip {}")
    try:
        if is_bucket(uri):
            return open_bucket(uri, started + max_seconds)
        return fsspec.open(
            uri, mode="rb", compression="infer", **fsspec_options(uri, max_seconds)
        ).open()
    except ImportError as exc:
        raise _unsupported(uri, f"this environment has no library for them ({exc})") from exc
    except FileNotFoundError as exc:
        http_error = _http_error(uri, exc)
        if http_error is not None:
            raise http_error from exc
        cause = exc.__cause__ or exc.__context__
        if cause is not None:  # fsspec's http reports a failed connection as not found
            raise SourceError(
                f"could not reach {uri}: {type(cause).__name__}: {cause}", fix_for(uri)
            ) from exc
        raise SourceError(f"source not found: {uri}", fix_for(uri)) from exc
    except (ValueError, PermissionError) as exc:  # a malformed URI, access denied
        raise SourceError(f"cannot open {uri}: {exc}", fix_for(uri)) from exc
    except Exception as exc:  # connection errors have many types across fsspec backends
        http_error = _http_error(uri, exc)
        if http_error is not None:
            raise http_error from exc
        if _timed_out(exc, started, max_seconds):
            raise too_slow(uri, 0, max_seconds) from exc
        raise SourceError(
            f"could not reach {uri}: {type(exc).__name__}: {exc}", fix_for(uri)
        ) from exc


def too_large(uri: str, max_mb: int) -> SourceError:
    """The error for a source larger than ``max_mb`` (``MAX_MB_FLAG``)."""
    return SourceError(
        f"{uri} holds more than {max_mb:,} MB (the {MAX_MB_FLAG} limit, counted after "
        "decompression); ingest stopped there and kept nothing",
        f"when the file really is that large, raise the limit ({MAX_MB_FLAG} "
        f"{max_mb * 4}) or, with submit, --param ingest.max_mb={max_mb * 4}; a source that "
        "never ends (a live stream) cannot be ingested: "
        "save a finite file and pass its path",
    )


def too_slow(uri: str, size: int, max_seconds: float) -> SourceError:
    """The error for a source not read in ``max_seconds`` (``MAX_SECONDS_FLAG``)."""
    return SourceError(
        f"reading {uri} took more than {max_seconds:g} s (the {MAX_SECONDS_FLAG} limit; "
        f"{size:,} bytes read); ingest stopped there and kept nothing",
        f"on a slow link raise the limit ({MAX_SECONDS_FLAG} {max_seconds * 4:g}) or, with "
        f"submit, --param ingest.max_seconds={max_seconds * 4:g}; or download the file and "
        "pass its local path (--source path/to/crypto-markets.csv)",
    )


def cut_short(uri: str, detail: str) -> SourceError:
    """The error for an HTTP body that ended before its announced length."""
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


def read_error(uri: str, size: int, exc: Exception, started: float, max_seconds: float):
    """The error for a read that raised: the time limit, a cut connection or another cause."""
    names = {type(e).__name__ for e in (exc, exc.__cause__, exc.__context__) if e is not None}
    if names & {"ClientPayloadError", "ContentLengthError"}:
        found = re.search(r"received \d+ of \d+ bytes", str(exc))
        return cut_short(uri, found.group(0) if found else type(exc).__name__)
    if _timed_out(exc, started, max_seconds):
        return too_slow(uri, size, max_seconds)
    return SourceError(
        f"reading {uri} failed after {size:,} bytes: {type(exc).__name__}: {exc}",
        fix_for(uri),
    )
