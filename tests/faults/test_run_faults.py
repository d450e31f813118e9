"""Fault drills for `crypto-pipeline run`: killed and paused runs end as a fresh run would.
Each runs the real command in a real process."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
from run_drills import cpu_load, run, running_tune, steps_of, summary_of

pytestmark = pytest.mark.pipeline_run


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> dict:
    """The summary of an undisturbed run, which a disturbed one must end up equal to."""
    return summary_of(run(tmp_path_factory.mktemp("fresh")))


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
