"""What the drills of `crypto-pipeline run` share: a quick run in a real process, its
summary, the processes working for it, and every core kept busy."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psutil

from crypto_pipeline.run_lock import MARK

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


def wait_until(found, process: subprocess.Popen, log: Path, timeout_s: float = 120):
    """What ``found()`` returns once it is truthy; fails, showing LOG, when the run ends
    first or after TIMEOUT_S (a ceiling for a hang, far above a loaded machine's wait)."""
    deadline = time.monotonic() + timeout_s
    while not (result := found()):
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    return result


def wait_for_line(process: subprocess.Popen, text: str, log: Path, timeout_s: float = 120):
    wait_until(lambda: text in log.read_text(), process, log, timeout_s)


def running_tune(root: Path, log: Path, **popen) -> subprocess.Popen:
    """A quick run started in the background, its output in LOG, once its tune step runs."""
    with log.open("w") as out:
        process = subprocess.Popen(
            command(root, *QUICK), stdout=out, stderr=subprocess.STDOUT, text=True, **popen
        )
    wait_for_line(process, "tune      running", log)
    return process


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
