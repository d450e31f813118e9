"""Where a path lives, and writes that readers see whole or not at all.

``is_remote`` is the one rule for local versus remote: a URI with a scheme other than
``file://`` and ``local://`` (``gs://``, ``s3://``, ``http://``, ``memory://``) is remote; a
plain path and a ``file://`` or ``local://`` URI (fsspec's two names for this machine's
disk; a scheme in any case) are local, and ``local_path`` turns the latter into a path.

``staged_files`` and ``staged_folder`` write beside the target, then swap it in with one
rename: a reader, or a run killed halfway, sees the old content or the new one, never
half of either.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

LOCAL_SCHEMES = ("file", "local")
"""The schemes of this machine's disk (``file:///a``, and fsspec's ``local:///a``)."""


def is_remote(uri: str | os.PathLike[str]) -> bool:
    """Whether URI names a bucket or server (a scheme other than ``LOCAL_SCHEMES``)."""
    scheme, sep, _ = os.fspath(uri).partition("://")
    return bool(sep) and scheme.lower() not in LOCAL_SCHEMES


def local_path(uri: str | os.PathLike[str]) -> str:
    """The path of a local URI: ``file:///a/b`` -> ``/a/b``; a plain path as it is."""
    text = os.fspath(uri)
    scheme, sep, path = text.partition("://")
    return path if sep and scheme.lower() in LOCAL_SCHEMES else text


@contextlib.contextmanager
def staged_files(*paths: str | os.PathLike[str], mode: int = 0o644) -> Iterator[list[Path]]:
    """Temporary files beside PATHS that replace them when the block succeeds.

    Nothing is replaced until the block has written every file, and a failure removes
    the temporary files: each path keeps what it held before.

    Args:
        paths: The files to write (their folders must exist).
        mode: The files' mode (temporary files are made private; outputs are for reading).

    Yields:
        One temporary path per target, in order.
    """
    targets = [Path(p) for p in paths]
    temps: list[Path] = []
    try:
        for path in targets:
            fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
            os.close(fd)
            temps.append(Path(name))
        yield temps
        for tmp, path in zip(temps, targets, strict=True):
            os.chmod(tmp, mode)
            os.replace(tmp, path)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)


def staging_beside(target: str | os.PathLike[str]) -> Path:
    """A fresh name beside TARGET for writing it in: ``.<name>.staging-<random>``."""
    path = Path(target)
    return path.with_name(f".{path.name}.staging-{uuid.uuid4().hex[:8]}")


def swap_in(staging: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Moves the finished folder STAGING to TARGET, replacing what TARGET held.

    An empty or missing TARGET is replaced in one rename; a full one is first moved
    aside (one rename), then removed once the new folder is in place.
    """
    target = Path(target)
    old = None
    if target.exists() and any(target.iterdir()):
        old = staging_beside(target)
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def swap_link(link: str | os.PathLike[str], target: str) -> None:
    """Points the symbolic link LINK at TARGET (a name in LINK's folder) in one rename.

    Readers follow the old target or the new one, never none.
    """
    moving = staging_beside(link)
    moving.symlink_to(target)
    os.replace(moving, link)


@contextlib.contextmanager
def staged_folder(target: str | os.PathLike[str]) -> Iterator[Path]:
    """A fresh path beside TARGET to write a folder at, swapped in when the block succeeds.

    The parent is made here, the folder itself by whoever writes it, as the user it runs
    as: Beam's workers on a portable runner may be another user than this process,
    writing through a shared mount, and could not write into a folder made here. A
    failure removes whatever was written there and leaves TARGET as it was.
    """
    staging = staging_beside(target)
    staging.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield staging
        swap_in(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
