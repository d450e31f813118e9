"""The run lock: what a run starts ends when the run ends, by the kernel's lock, not a clock."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from crypto_pipeline.run_lock import LOCK_NAME, MARK, run_lock

# A stand-in for `crypto-pipeline run`: holds the lock of its folder, starts a "step" that
# inherits the run's mark, prints the step's pid and waits.
HOLDER = """
import subprocess, sys, time
from pathlib import Path
from crypto_pipeline.run_lock import run_lock
with run_lock(Path(sys.argv[1]), "subprocess"):
    step = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print(step.pid, flush=True)
    time.sleep(600)
"""


def start_run(run_dir: Path) -> tuple[subprocess.Popen, psutil.Process]:
    run_dir.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True
    )
    step = psutil.Process(int(holder.stdout.readline()))
    return holder, step


def ended_within(process: psutil.Process, seconds: float) -> bool:
    try:
        process.wait(timeout=seconds)
    except psutil.TimeoutExpired:
        process.kill()
        return False
    return True


def test_a_step_ends_within_seconds_of_its_run_being_killed(tmp_path):
    holder, step = start_run(tmp_path / "run")
    holder.kill()
    holder.wait()
    assert ended_within(step, 5), "the step outlived its killed run by more than 5 s"
    deadline = time.monotonic() + 10
    while (tmp_path / "run" / LOCK_NAME).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (tmp_path / "run" / LOCK_NAME).exists(), "the waiter should remove the lock"
    log = (tmp_path / "run" / "kfp-local.log").read_text()
    assert "1 of its processes or containers still running" in log


def test_a_paused_run_keeps_its_steps_however_long_the_pause(tmp_path):
    holder, step = start_run(tmp_path / "run")
    holder.send_signal(signal.SIGSTOP)  # Ctrl-Z, a closed lid, a suspended VM
    time.sleep(8)
    assert step.is_running() and step.status() != psutil.STATUS_ZOMBIE
    holder.send_signal(signal.SIGCONT)
    time.sleep(1)
    assert step.is_running() and holder.poll() is None
    holder.kill()
    holder.wait()
    assert ended_within(step, 5)


def test_processes_of_other_runs_and_unmarked_ones_are_left_alone(tmp_path):
    sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
    env = {key: value for key, value in os.environ.items() if key != MARK}
    others = [
        subprocess.Popen(sleeper, env=env),
        subprocess.Popen(sleeper, env={**env, MARK: "crypto-pipeline-another-run"}),
    ]
    try:
        holder, step = start_run(tmp_path / "run")
        holder.kill()
        holder.wait()
        assert ended_within(step, 5)
        time.sleep(1)
        assert [other.poll() for other in others] == [None, None]
    finally:
        for other in others:
            other.kill()
            other.wait()


def test_the_mark_is_set_only_while_the_run_runs(tmp_path, monkeypatch):
    monkeypatch.delenv(MARK, raising=False)
    with run_lock(tmp_path, "subprocess"):
        assert os.environ[MARK] == tmp_path.name
        child = subprocess.run(
            [sys.executable, "-c", f"import os; print(os.environ[{MARK!r}])"],
            capture_output=True,
            text=True,
        )
        assert child.stdout.strip() == tmp_path.name
    assert MARK not in os.environ
    deadline = time.monotonic() + 10
    while (tmp_path / LOCK_NAME).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (tmp_path / LOCK_NAME).exists()
