"""Errors that tell the user what went wrong and how to fix it."""

from __future__ import annotations


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
