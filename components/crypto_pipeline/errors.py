"""Errors that tell the user what went wrong and how to fix it."""

from __future__ import annotations

import contextlib
import errno
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import TracebackType


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


STEP_ERROR_NAME = "step_error.json"
"""The file a failed step leaves in its task's folder: its error, for ``run`` to print."""


def step_error_record(step: str, exc: BaseException) -> dict[str, str]:
    """What STEP raised, as ``run`` prints it: the problem and its fix.

    A PipelineError carries both; any other exception is named by its type, with the fix
    for a write the disk refused when it was one (``storage_error``), else no fix.
    """
    if not isinstance(exc, PipelineError):
        exc = storage_error(exc) or exc
    if isinstance(exc, PipelineError):
        return {"step": step, "type": type(exc).__name__, "problem": exc.problem, "fix": exc.fix}
    text = str(exc)
    return {
        "step": step,
        "type": type(exc).__name__,
        "problem": f"{type(exc).__name__}: {text}" if text else type(exc).__name__,
        "fix": "",
    }


class step_errors:  # noqa: N801 (a context manager, used as `with step_errors(...)`)
    """Writes what the block raises to ``STEP_ERROR_NAME`` in the step's task folder.

    Each step runs its work inside it; the task's folder is the one that holds the step's
    output OUTPUT_PATH, so ``run`` reads a failed step's error from a file instead of its
    log. A record left by an earlier failed attempt is removed when the block starts, and
    what the block raised goes on.

    Args:
        step: The step's name (``ingest`` … ``deploy``).
        output_path: The local path of one of the step's outputs.
    """

    def __init__(self, step: str, output_path: str | os.PathLike[str]):
        self.step = step
        self.path = os.path.join(os.path.dirname(os.fspath(output_path)), STEP_ERROR_NAME)

    def __enter__(self) -> step_errors:
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is not None:
            import json

            try:
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
                with open(self.path, "w") as f:
                    json.dump(step_error_record(self.step, exc), f, indent=1)
            except OSError:
                pass  # a folder that cannot be written: the log still holds the error


def read_step_error(folder: str | os.PathLike[str]) -> dict[str, str] | None:
    """The record a failed step left in its task's FOLDER, or ``None`` when it left none."""
    import json

    try:
        with open(os.path.join(os.fspath(folder), STEP_ERROR_NAME)) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None
