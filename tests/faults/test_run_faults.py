"""Fault drills for `crypto-pipeline run`: killed runs, concurrent runs, stale caches, and
output folders that cannot be written. Each runs the real command in a real process."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import needs_root, tmpfs
from crypto_pipeline.run_lock import MARK
from crypto_pipeline.sample_data import SAMPLE_PATH

pytestmark = pytest.mark.pipeline_run

QUICK = ("--trials", "2", "--epochs", "4")


def command(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "crypto_pipeline.cli", "run", "--pipeline-root", str(root), *args]


def run(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(command(root, *QUICK, *args), capture_output=True, text=True)


def summary_of(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr
    (path,) = re.findall(r"^summary\s+(\S+/summary\.json)", result.stdout, re.M)
    return json.loads(Path(path).read_text())


def steps_of(run_dir: Path) -> list[psutil.Process]:
    """Processes still working for ``run_dir`` (their command line names the folder)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if run_dir.name in cmdline:
            found.append(process)
    return found


def marked(run_name: str) -> list[psutil.Process]:
    """The processes working for the run RUN_NAME: its steps (``run_lock.MARK``)."""
    found = []
    for process in psutil.process_iter(["environ"]):
        if (process.info["environ"] or {}).get(MARK) == run_name:
            found.append(process)
    return found


def wait_for_line(process: subprocess.Popen, text: str, log: Path, timeout_s: float = 120):
    deadline = time.monotonic() + timeout_s
    while text not in log.read_text():
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)


def running_tune(root: Path, log: Path, **popen) -> subprocess.Popen:
    """A quick run started in the background, its output in LOG, once its tune step runs."""
    with log.open("w") as out:
        process = subprocess.Popen(
            command(root, *QUICK), stdout=out, stderr=subprocess.STDOUT, text=True, **popen
        )
    wait_for_line(process, "tune      running", log)
    return process


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> dict:
    """The summary of an undisturbed run, which a disturbed one must end up equal to."""
    return summary_of(run(tmp_path_factory.mktemp("fresh")))


@contextlib.contextmanager
def cpu_load():
    """Every core busy, as on a loaded CI machine."""
    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 2)
    ]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


@pytest.mark.parametrize("how", ["kill -9", "SIGTERM"])
def test_a_run_killed_during_tune_leaves_no_step_behind_and_resumes(tmp_path, how, fresh):
    root = tmp_path / "runs"
    log = tmp_path / "out.txt"
    process = running_tune(root, log)
    time.sleep(1)
    (run_dir,) = [p for p in root.glob("crypto-pipeline-*") if p.is_dir()]
    assert steps_of(run_dir), "the tune step should be running"
    with cpu_load():
        process.send_signal(signal.SIGKILL if how == "kill -9" else signal.SIGTERM)
        process.wait(timeout=60)
        deadline = time.monotonic() + 5
        while steps_of(run_dir) and time.monotonic() < deadline:
            time.sleep(0.25)
        assert steps_of(run_dir) == [], "a step outlived the run by more than 5 s"
    if how == "SIGTERM":
        assert process.returncode == 130
        assert "error: the run was interrupted (SIGTERM)" in log.read_text()
        assert "fix: run the same command again" in log.read_text()

    resumed = summary_of(run(root))
    assert resumed["cache_hits"] == ["ingest", "transform"]
    assert resumed["metrics"] == fresh["metrics"]
    assert resumed["best_params"] == fresh["best_params"]


def test_a_run_paused_for_30_s_goes_on_and_ends_as_a_fresh_run(tmp_path, fresh):
    """Ctrl-Z and `fg` (the whole job stops), a closed laptop lid, a suspended VM."""
    root = tmp_path / "runs"
    log = tmp_path / "out.txt"
    # Its own process group, as a shell's job is.
    process = running_tune(root, log, start_new_session=True)
    time.sleep(1)
    os.killpg(process.pid, signal.SIGSTOP)
    time.sleep(30)
    os.killpg(process.pid, signal.SIGCONT)
    assert process.wait(timeout=600) == 0, log.read_text()
    (path,) = re.findall(r"^summary\s+(\S+/summary\.json)", log.read_text(), re.M)
    resumed = json.loads(Path(path).read_text())
    assert resumed["metrics"] == fresh["metrics"]
    assert resumed["best_params"] == fresh["best_params"]


def test_two_runs_on_one_root_each_keep_their_own_folder(tmp_path):
    root = tmp_path / "runs"
    processes = {
        seed: subprocess.Popen(
            command(root, *QUICK, "--seed", seed),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in ("3", "4")
    }
    for seed, process in processes.items():
        stdout, stderr = process.communicate(timeout=600)
        summary = summary_of(subprocess.CompletedProcess([], process.returncode, stdout, stderr))
        run_dir = Path(summary["run_dir"])
        assert Path(summary["log"]).parent == run_dir
        assert Path(summary["model_dir"]).is_relative_to(run_dir)
        assert f'"seed": {seed}' in Path(summary["log"]).read_text()
        assert json.loads((run_dir / "summary.json").read_text())["run_dir"] == str(run_dir)
    assert len({p.name for p in root.glob("crypto-pipeline-*")}) == 2


def test_a_changed_source_at_the_same_path_runs_again(tmp_path):
    source = tmp_path / "prices.csv"
    shutil.copy(SAMPLE_PATH, source)
    first = summary_of(run(tmp_path / "runs", "--source", str(source)))
    lines = source.read_text().splitlines(keepends=True)
    source.write_text("".join(lines[:1001]))
    second = summary_of(run(tmp_path / "runs", "--source", str(source)))
    assert second["cache_hits"] == []
    assert second["rows"]["raw"] == 1000 != first["rows"]["raw"]
    assert summary_of(run(tmp_path / "runs", "--source", str(source)))["cache_hits"] == [
        "ingest",
        "transform",
        "tune",
        "train",
        "deploy",
    ]


def test_a_cached_step_whose_files_were_deleted_runs_again(tmp_path):
    root = tmp_path / "runs"
    first = summary_of(run(root))
    Path(first["model_dir"], "saved_model.pb").unlink()
    second = summary_of(run(root))
    assert second["cache_hits"] == ["ingest", "transform", "tune"]
    assert Path(second["model_dir"], "saved_model.pb").exists()
    assert second["metrics"] == first["metrics"]
    shutil.rmtree(Path(first["run_dir"]) / "transform-step" / "data")
    third = summary_of(run(root))
    assert third["cache_hits"] == ["ingest"]


def test_a_failing_step_shows_its_own_error_and_fix(tmp_path):
    result = run(tmp_path / "runs", "--source", str(tmp_path / "missing.csv"))
    assert result.returncode == 1
    assert "error: the ingest step failed: source file not found" in result.stderr
    assert "fix: check the path" in result.stderr
    assert "\x1b[" not in result.stdout + result.stderr
    (log,) = (tmp_path / "runs").glob("crypto-pipeline-*/kfp-local.log")
    assert f"log: {log}" in result.stderr
    assert not (log.parent / "ingest-step").exists()  # no half-written outputs
    kept = json.loads((log.parent / "step_error.json").read_text())  # the error, kept
    assert kept["step"] == "ingest" and kept["problem"].startswith("source file not found")
    assert kept["type"] == "SourceError" and kept["fix"].startswith("check the path")


def test_a_step_killed_midway_is_named_and_its_output_pointed_at(tmp_path):
    """The kernel's out-of-memory killer, or a user's `kill -9` of one step: no error left."""
    root = tmp_path / "runs"
    out = tmp_path / "out.txt"
    process = running_tune(root, out)
    (run_dir,) = [p for p in root.glob("crypto-pipeline-*") if p.is_dir()]
    deadline = time.monotonic() + 60
    while not (steps := marked(run_dir.name)):
        assert time.monotonic() < deadline, out.read_text()
        time.sleep(0.2)
    for step in steps:
        with contextlib.suppress(psutil.Error):
            step.kill()
    assert process.wait(timeout=120) == 1, out.read_text()
    output = out.read_text()
    assert "error: the tune step failed and left no error of its own" in output
    assert f"fix: read the step's output in {run_dir / 'kfp-local.log'}" in output
    assert "Traceback" not in output
    assert not (run_dir / "tune-step").exists()


@needs_root
def test_a_read_only_pipeline_root_gets_an_error_and_a_fix(tmp_path):
    with tmpfs(tmp_path / "ro", "ro,size=1m") as root:
        result = run(root)
        assert list(root.iterdir()) == []
    assert result.returncode == 1
    assert "error: cannot write to" in result.stderr and "read-only" in result.stderr
    assert "fix: choose a writable folder" in result.stderr
    assert "Traceback" not in result.stderr


@needs_root
def test_a_full_disk_gets_an_error_and_a_fix_and_no_half_written_step(tmp_path):
    with tmpfs(tmp_path / "full", "size=600k") as root:  # less than the sample's copy
        result = run(root)
        for run_dir in root.glob("crypto-pipeline-*"):
            manifest = json.loads((run_dir / "artifacts.json").read_text())
            written = {
                str(p.relative_to(run_dir))
                for p in run_dir.rglob("*")
                if p.is_file() and p.parent != run_dir
            }
            assert written == set(manifest), "files of an unfinished step were left behind"
    assert result.returncode == 1, result.stdout
    assert "No space left on device" in result.stderr or "disk is full" in result.stderr
    assert "fix: free some space" in result.stderr
    assert "Traceback" not in result.stderr
