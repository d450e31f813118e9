import errno
import io
import re

from crypto_pipeline.errors import (
    STEP_ERROR_NAME,
    CoinNotFoundError,
    read_step_error,
    step_errors,
    storage_error,
)
from crypto_pipeline.local_progress import StepProgress, step_failed


def failed_in(run_dir, step: str, raised: BaseException) -> None:
    """What a step's adapter does when RAISED escapes it: the error in its task folder."""
    output = run_dir / f"{step}-step" / "data"
    output.mkdir(parents=True)
    (output / "part.csv").write_text("half written")
    try:
        with step_errors(step, output):
            raise raised
    except type(raised):
        pass


def test_a_failed_steps_own_error_and_fix_are_read_from_its_task_folder(tmp_path):
    failed_in(
        tmp_path,
        "transform",
        CoinNotFoundError("no rows of 'dogecoin' in the file", "pass --coin bitcoin"),
    )
    error = step_failed(tmp_path, "transform", tmp_path / "kfp-local.log")
    assert error.problem == "the transform step failed: no rows of 'dogecoin' in the file"
    assert error.fix == f"pass --coin bitcoin\n  log: {tmp_path / 'kfp-local.log'}"
    assert not (tmp_path / "transform-step").exists()  # no half-written outputs
    assert read_step_error(tmp_path)["type"] == "CoinNotFoundError"  # kept in the run folder


def test_any_other_exception_is_named_and_a_full_disk_gets_a_fix(tmp_path):
    failed_in(tmp_path, "tune", OSError(errno.ENOSPC, "No space left on device", "/runs/x"))
    error = step_failed(tmp_path, "tune", tmp_path / "kfp-local.log")
    assert error.problem == "the tune step failed: cannot write to /runs/x: the disk is full"
    assert error.fix.startswith("free some space")
    failed_in(tmp_path, "train", KeyError("loss"))
    error = step_failed(tmp_path, "train", tmp_path / "kfp-local.log")
    assert error.problem == "the train step failed: KeyError: 'loss'"
    assert error.fix == f"read the step's output in {tmp_path / 'kfp-local.log'}"


def test_a_step_that_left_no_error_is_named_and_its_output_pointed_at(tmp_path):
    (tmp_path / "deploy-step").mkdir()  # killed before it could write one
    error = step_failed(tmp_path, "deploy", tmp_path / "kfp-local.log")
    assert error.problem.startswith("the deploy step failed and left no error of its own")
    assert error.fix == f"read the step's output in {tmp_path / 'kfp-local.log'}"
    assert not (tmp_path / STEP_ERROR_NAME).exists()
    assert not (tmp_path / "deploy-step").exists()


def test_failed_writes_become_errors_with_fixes():
    full = storage_error(OSError(errno.ENOSPC, "No space left on device", "/runs/a"))
    assert full.problem == "cannot write to /runs/a: the disk is full"
    read_only = storage_error(OSError(errno.EROFS, "Read-only file system", "/mnt"))
    assert "read-only" in read_only.problem and "--pipeline-root" in read_only.fix
    assert storage_error(OSError(errno.ENOENT, "No such file")) is None


def test_each_step_shows_one_line_as_it_starts_and_one_as_it_ends():
    terminal = io.StringIO()
    progress = StepProgress(terminal)
    progress.step_started("ingest-step")
    progress.step_ended("ingest-step", True)
    progress.step_started("transform-step")
    progress.step_ended("transform-step", False)
    lines = terminal.getvalue().splitlines()
    assert lines[0] == "  ingest    running …"
    assert re.fullmatch(r"  ingest    success in \d+\.\d s", lines[1])
    assert re.fullmatch(r"  transform failure in \d+\.\d s", lines[3])
    assert progress.finished() == ["ingest"] and progress.failed() == ["transform"]
    assert set(progress.durations) == {"ingest", "transform"}
