"""Fault drills for `crypto-pipeline run`: concurrent runs, a failing or killed step, and
output folders that cannot be written. Each runs the real command in a real process."""

from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path

import psutil
import pytest
from run_drills import QUICK, command, marked, run, running_tune, summary_of, wait_until

from conftest import needs_root, tmpfs

pytestmark = pytest.mark.pipeline_run


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
    steps = wait_until(lambda: marked(run_dir.name), process, out, timeout_s=60)
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
