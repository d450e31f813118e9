"""Objects in gs:// and s3:// buckets, read range by range within a deadline.

fsspec's own file objects wait on a store without limit, gcsfs and s3fs retry a store
that does not answer for minutes, and a bucket client looks up its credentials (for
seconds, on a machine without a cloud metadata server) with no limit of its own. Here
the client is made in a thread given only the time left (``bucket_fs``), every request
is a call on the store's event loop cancelled at the deadline (``store_call``), and the
clients' own log records of a failure are held back: the caller reports it once, as an
error and a fix.
"""

from __future__ import annotations

import contextlib
import io
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import fsspec
import fsspec.asyn

from crypto_pipeline.files import is_remote

_BUCKET_SCHEMES = ("gs", "gcs", "s3", "s3a")
_STORE_LOGGERS = ("gcsfs", "s3fs")
_RANGE = 8 << 20
"""Bytes asked of a bucket at a time."""


def is_bucket(uri: str) -> bool:
    """Whether URI names an object in a bucket (``gs://``, ``gcs://``, ``s3://``, ``s3a://``)."""
    return is_remote(uri) and uri.split("://", 1)[0].lower() in _BUCKET_SCHEMES


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


def store_call(fs, deadline: float, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """An async method of a bucket filesystem, run on its loop and cancelled at DEADLINE."""
    left = deadline - time.monotonic()
    if left <= 0:  # fsspec takes a timeout of 0 for none
        raise TimeoutError("the store did not answer in time")
    with _store_logs_held():
        return fsspec.asyn.sync(fs.loop, method, *args, timeout=left, **kwargs)


def bucket_fs(uri: str, deadline: float):
    """The filesystem of a bucket URI and the object's path in it, made by DEADLINE."""
    with _store_logs_held():
        return _in_time(deadline, fsspec.core.url_to_fs, uri)


class _BucketObject(io.RawIOBase):
    """An object in a bucket, read range by range, each within what is left of a deadline.

    fsspec's own file objects wait on a store without limit, and gcsfs and s3fs retry a
    store that does not answer for minutes; here every request is a call on the store's
    event loop that is cancelled at the deadline (``store_call``).
    """

    def __init__(self, fs, path: str, deadline: float):
        super().__init__()
        self._fs, self._path, self._deadline = fs, path, deadline
        self._size = int(store_call(fs, deadline, fs._info, path)["size"])
        self._at = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        end = min(self._at + len(buffer), self._size)
        if end <= self._at:
            return 0
        data = store_call(
            self._fs, self._deadline, self._fs._cat_file, self._path, start=self._at, end=end
        )
        buffer[: len(data)] = data
        self._at += len(data)
        return len(data)


def open_bucket(uri: str, deadline: float):
    """A gs:// or s3:// object opened for reading by DEADLINE, decompressed as its name says."""
    fs, path = bucket_fs(uri, deadline)
    reader = io.BufferedReader(_BucketObject(fs, path, deadline), buffer_size=_RANGE)
    return fsspec.compression.compr[fsspec.utils.infer_compression(path)](reader, mode="rb")
