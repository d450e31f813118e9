"""What a source holds now, so that a cache keyed on it never serves stale data.

A local file (or the bundled sample) is fingerprinted by its sha256; a remote object by
what its store reports of its version (ETag, generation, checksum, modification time,
size), asked within a time limit. ``run`` and ``submit`` pass the fingerprint to the
ingest step, whose cache key it is part of.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import fsspec

from crypto_pipeline.buckets import bucket_fs, is_bucket, store_call
from crypto_pipeline.errors import SourceError
from crypto_pipeline.sample_data import SAMPLE_PATH
from crypto_pipeline.sources import (
    DEFAULT_MAX_MB,
    HTTP_TIMEOUT_S,
    READ_BYTES,
    SAMPLE_SOURCE,
    fsspec_options,
    local_source,
    regular_file,
    too_large,
)
from crypto_pipeline.urls import with_credentials

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


def source_fingerprint(
    source_uri: str, max_mb: int = DEFAULT_MAX_MB, max_seconds: float = HTTP_TIMEOUT_S
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
    if (path := local_source(uri)) is not None:
        if not path.exists():
            return unknown
        if regular_file(path, source_uri).stat().st_size > max_mb << 20:
            raise too_large(source_uri, max_mb)
        return f"sha256:{sha256_of(path)}"
    try:
        info = _remote_info(uri, min(HTTP_TIMEOUT_S, max_seconds))
    except Exception:  # ingest reports why the source cannot be read
        return unknown
    fields = {k: str(info[k]) for k in _VERSION_FIELDS if info.get(k) not in (None, "")}
    if set(fields) <= {"size"}:
        return unknown
    return ";".join(f"{k}={v}" for k, v in sorted(fields.items()))


def _remote_info(uri: str, max_seconds: float) -> dict[str, Any]:
    """What the store of URI reports about it (fsspec's ``info``), within ``max_seconds``."""
    if is_bucket(uri):
        deadline = time.monotonic() + max_seconds
        fs, path = bucket_fs(uri, deadline)
        return store_call(fs, deadline, fs._info, path)
    fs, path = fsspec.core.url_to_fs(uri, **fsspec_options(uri, max_seconds))
    return fs.info(path)


def sha256_of(path: Path) -> str:
    """The hex sha256 of the bytes of the file PATH."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(READ_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()
