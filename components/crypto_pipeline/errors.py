"""Errors that tell the user what went wrong and how to fix it."""

from __future__ import annotations

import errno
import os


class PipelineError(Exception):
    """A problem the user can fix, with the fix spelled out.

    Args:
        problem: What went wrong, naming the input at fault.
        fix: What to do about it.
    """

    def __init__(self, problem: str, fix: str):
        super().__init__(f"{problem}\n  fix: {fix}")
        self.problem = problem
        self.fix = fix


class SourceError(PipelineError):
    """The source could not be read (missing, unreachable, empty or not a CSV)."""


class SchemaError(PipelineError):
    """The file's header does not carry the columns the pipeline needs."""


class DateFormatError(PipelineError):
    """The file's dates cannot be read unambiguously in the requested style."""


class CoinNotFoundError(PipelineError):
    """The requested coin has no usable rows in the file."""


class ConfigError(PipelineError):
    """A setting is out of range or malformed."""


class DataError(PipelineError):
    """The data cannot be used as it is (too few rows, an empty split)."""


class TrainingError(PipelineError):
    """Training went wrong (the loss diverged); no model was exported."""


class Interrupted(PipelineError):
    """The command was stopped by SIGINT or SIGTERM; what it started was stopped too."""


class StorageError(PipelineError):
    """A folder cannot be written: read-only, no permission, or the disk is full."""


_STORAGE_FIXES = {
    errno.ENOSPC: (
        "the disk is full",
        "free some space (remove old run folders under the pipeline root) or choose a "
        "folder on a disk with room",
    ),
    errno.EDQUOT: ("the disk quota is used up", "free some space or choose another folder"),
    errno.EROFS: (
        "it is on a read-only file system",
        "choose a writable folder (--output-dir, --pipeline-root)",
    ),
    errno.EACCES: (
        "permission denied",
        "choose a folder you can write (--output-dir, --pipeline-root), or fix its permissions",
    ),
    errno.EPERM: (
        "operation not permitted",
        "choose a folder you can write (--output-dir, --pipeline-root), or fix its permissions",
    ),
}


def storage_error(
    exc: BaseException, folder: str | os.PathLike[str] | None = None
) -> StorageError | None:
    """The StorageError for a write the disk refused (full, read-only, no permission).

    Libraries pass an ``OSError`` on inside other exceptions (Beam: as the context of a
    ``RuntimeError``, or among a ``BeamIOError``'s details), so the whole chain is searched.

    Args:
        exc: What the write raised.
        folder: The folder the user chose, named instead of the temporary file that failed.

    Returns:
        ``cannot write to FOLDER: <why>`` with its fix, or None for any other cause.
    """
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _STORAGE_FIXES:
            what, fix = _STORAGE_FIXES[e.errno]
            where = folder if folder is not None else e.filename
            to = f" to {os.fsdecode(where)}" if where else ""
            return StorageError(f"cannot write{to}: {what}", fix)
        todo += [e.__cause__, e.__context__]
        details = getattr(e, "exception_details", None)
        if isinstance(details, dict):
            todo += [d for d in details.values() if isinstance(d, BaseException)]
    return None


def read_step_output(
    folder: str | os.PathLike[str], name: str, step: str, error: type[PipelineError]
):
    """The JSON file NAME that a finished STEP wrote in FOLDER, parsed.

    Raises:
        ERROR: FOLDER holds no NAME, with the fix: pass the step's output folder.
    """
    import json
    from pathlib import Path

    path = Path(folder) / name
    if not path.is_file():
        raise error(
            f"{folder} holds no {name}: no {step} finished there",
            f"pass the {step} step's output folder (a run's summary.json names it)",
        )
    return json.loads(path.read_text())


def storage_fix(text: str) -> str:
    """The fix for an ``[Errno N]`` message of a failed write, or "" for other errors."""
    for code, (_, fix) in _STORAGE_FIXES.items():
        if f"[Errno {code}]" in text:
            return fix
    return ""
