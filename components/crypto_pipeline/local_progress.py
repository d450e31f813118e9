"""What a local run's steps are doing: one line per step on the terminal, the rest in a log.

kfp.local prints each step's whole executor log (tens of lines of JSON per step); it goes to
the run's ``kfp-local.log``, and the terminal says which step runs and how it ended. The
lines come from kfp.local's own start and end of each task
(``workarounds.kfp_local.tasks_watched``), not from its log's text. A step that fails
leaves its error in its task folder (``crypto_pipeline.errors.step_errors``);
``step_failed`` turns it into the run's error.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from crypto_pipeline.errors import STEP_ERROR_NAME, PipelineError, read_step_error
from crypto_pipeline.workarounds.kfp_local import task_folder, tasks_watched, uncoloured_log

LOG_NAME = "kfp-local.log"
"""In each run folder: kfp.local's whole output for the run."""
SUCCESS, FAILURE = "SUCCESS", "FAILURE"
"""How a step that ran ended (the names kfp.local's log gives them too)."""


@dataclass
class StepProgress:
    """The steps of one run as they start and end, each told on TERMINAL in one line."""

    terminal: TextIO
    started: dict[str, float] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    statuses: dict[str, str] = field(default_factory=dict)

    def step_started(self, task: str) -> None:
        """TASK (``transform-step``) started: ``transform running …``."""
        step = task.removesuffix("-step")
        self.started[step] = time.perf_counter()
        print(f"  {step:<9} running …", file=self.terminal, flush=True)

    def step_ended(self, task: str, succeeded: bool) -> None:
        """TASK ended: ``transform success in 3.2 s`` (or ``failure``)."""
        step = task.removesuffix("-step")
        self.durations[step] = time.perf_counter() - self.started.get(step, time.perf_counter())
        self.statuses[step] = SUCCESS if succeeded else FAILURE
        print(
            f"  {step:<9} {self.statuses[step].lower()} in {self.durations[step]:.1f} s",
            file=self.terminal,
            flush=True,
        )

    def finished(self) -> list[str]:
        """The steps that ran and succeeded, in the order they ended."""
        return [step for step, status in self.statuses.items() if status == SUCCESS]

    def failed(self) -> list[str]:
        """The steps that ran and failed, in the order they ended."""
        return [step for step, status in self.statuses.items() if status != SUCCESS]


@contextlib.contextmanager
def steps_logged(log_path: str | os.PathLike[str]) -> Iterator[StepProgress]:
    """kfp.local's output, for what runs inside, goes to LOG_PATH; one line per step shows.

    The log holds no colour codes. The terminal is this process's standard output when the
    block starts.

        with local_progress.steps_logged(run_dir / LOG_NAME) as progress:
            pipeline(**arguments)
        progress.durations  # {"ingest": 0.7, "transform": 8.4, …}: the steps that ran
    """
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    progress = StepProgress(sys.stdout)
    with (
        open(log_path, "w") as log,
        contextlib.redirect_stdout(log),
        uncoloured_log(),
        tasks_watched(progress.step_started, progress.step_ended),
    ):
        yield progress


def step_failed(run_dir: Path, step: str, log_path: Path) -> PipelineError:
    """The run's error for STEP, which failed in RUN_DIR: its own problem and fix, if it left them.

    The step's task folder goes (half-written outputs are no use to anyone); the error it
    left there is kept as ``<run_dir>/step_error.json``. A step that left none (killed, out
    of memory) is named, with its output in LOG_PATH to read.
    """
    folder = task_folder(run_dir, step)
    record = read_step_error(folder)
    if record is not None:
        with contextlib.suppress(OSError):  # a rename: it works on a full disk too
            os.replace(folder / STEP_ERROR_NAME, run_dir / STEP_ERROR_NAME)
    shutil.rmtree(folder, ignore_errors=True)
    if record is None:
        return PipelineError(
            f"the {step} step failed and left no error of its own (it may have been killed, "
            "or run out of memory)",
            f"read the step's output in {log_path}",
        )
    problem, fix = record.get("problem") or "no reason given", record.get("fix", "")
    return PipelineError(
        f"the {step} step failed: {problem}",
        (f"{fix}\n  log: " if fix else "read the step's output in ") + str(log_path),
    )
