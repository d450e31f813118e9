"""The paths a command writes to: checked before it starts, and named when a write fails.

A command's output is a folder (``--output-dir``, ``--pipeline-root``) or a file
(``--output``, ``--katib-manifest``). ``check_output`` refuses, before any work, a path of
the wrong kind: a file where a folder is needed, a folder where a file is needed, or a
path below a file, naming the flag. ``path_error`` turns what the operating system says
about a path during the work (``IsADirectoryError``, ``NotADirectoryError``,
``FileExistsError``, ``FileNotFoundError`` and any other error that names a path) into an
error with its fix, for the command line to print instead of a traceback.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Literal

from crypto_pipeline.errors import ConfigError, PipelineError
from crypto_pipeline.files import is_remote, local_path

OutputKind = Literal["folder", "file"]


def file_in_the_way(path: str | os.PathLike[str]) -> Path | None:
    """The nearest existing path above PATH when it is not a folder (a file), else ``None``.

    Nothing can be made below a file: ``out.csv/run`` needs ``out.csv`` to be a folder.
    """
    for parent in Path(path).parents:
        if os.path.exists(parent):
            return None if os.path.isdir(parent) else parent
    return None


def check_output(path: str | os.PathLike[str], flag: str, kind: OutputKind) -> None:
    """Refuses an output path of the wrong kind before a command starts its work.

    Bucket URIs (``gs://``, ``s3://``) are not checked here: their step reports. A
    ``file://`` URI is checked as the path it names.

    Args:
        path: The path the user gave.
        flag: The flag that gave it, e.g. ``--output-dir``.
        kind: ``folder`` when the command writes into it, ``file`` when it writes it.

    Raises:
        ConfigError: PATH is a file where a folder is needed, a folder (or a FIFO, device
            or socket) where a file is needed, or lies below a file.
    """
    if is_remote(path):
        return
    text = local_path(path)
    blocker = file_in_the_way(text)
    if blocker is not None:
        raise ConfigError(
            f"{flag} {text} lies inside {blocker}, which is a file, not a folder",
            f"pass {flag} a path whose folders are folders, or move the file {blocker} away",
        )
    if kind == "folder" and os.path.exists(text) and not os.path.isdir(text):
        raise ConfigError(
            f"{flag} {text} is a file; {flag} takes a folder, which the command writes into",
            f"pass {flag} a folder (a missing one is created), or move the file {text} away",
        )
    if kind == "file" and os.path.isdir(text):
        raise ConfigError(
            f"{flag} {text} is a folder; {flag} takes the path of a file to write",
            f"pass {flag} the path of a file to write (a new name inside {text} will do)",
        )
    if kind == "file" and os.path.exists(text) and not os.path.isfile(text):
        raise ConfigError(  # a FIFO, a device or a socket: writing would wait or go astray
            f"{flag} {text} is not a regular file (a named pipe, device or socket)",
            f"pass {flag} the path of a regular file to write, or a new name",
        )


def check_outputs(args: object, outputs: tuple[tuple[str, str, OutputKind], ...]) -> None:
    """Runs ``check_output`` on each output a command's arguments name.

    Args:
        args: The parsed arguments.
        outputs: ``(attribute, flag, kind)`` of each output; an attribute that is unset
            (``None`` or empty) is skipped.
    """
    for attribute, flag, kind in outputs:
        value = getattr(args, attribute, None)
        if value:
            check_output(value, flag, kind)


def path_error(exc: OSError) -> PipelineError | None:
    """The error for a path of the wrong kind, a missing one, or another that cannot be used.

    Args:
        exc: What the operating system raised.

    Returns:
        The problem, naming the path, and its fix; ``None`` for an error that names no path.
    """
    # A move (os.replace) names its source and its target: what is in the way is the target.
    path = exc.filename if exc.filename2 is None else exc.filename2
    if path is None:
        return None
    name = os.fsdecode(path)
    if exc.errno == errno.EISDIR:
        return ConfigError(
            f"{name} is a folder, where a file is needed",
            f"move the folder {name} away, or pass a path where a file can be written",
        )
    if exc.errno == errno.ENOTDIR:
        blocker = file_in_the_way(name) or name
        return ConfigError(
            f"{name} cannot be used: {blocker} is a file, where a folder is needed",
            f"pass a path whose folders are folders, or move the file {blocker} away",
        )
    if exc.errno == errno.EEXIST:
        what = "a folder" if os.path.isdir(name) else "a file"
        return ConfigError(
            f"{name} already exists, as {what}, where a new folder was to be made",
            f"pass another path, or move {name} away",
        )
    if exc.errno == errno.ENOENT:
        return ConfigError(
            f"{name} does not exist", "check the path, or create the folder it should be in"
        )
    return ConfigError(
        f"cannot use {name}: {exc.strerror or type(exc).__name__}",
        "check the path and its permissions (ls -ld), or pass another one",
    )
