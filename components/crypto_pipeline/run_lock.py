"""A local run's lock: the steps of a run end with the run, however the run ends.

While ``crypto-pipeline run`` (``local_run.run_local``) runs, it holds an exclusive
``flock`` on ``<run folder>/.run.lock``, and every process it starts carries the run's
mark: ``CRYPTO_PIPELINE_RUN=<run folder's name>`` in its environment (a step subprocess and
whatever it starts inherit it; a Docker step's container has the run's name as a label).

Beside the run, a small waiter (``python -m crypto_pipeline.run_lock``, in a session of its
own) asks the kernel for the same lock. The kernel hands it over the moment the run ends,
whether it returned, was interrupted or was killed with ``kill -9``, and never while the
run is only paused (Ctrl-Z, a closed laptop lid, a suspended VM). The waiter then ends
whatever still carries the run's mark, and exits. Nothing here reads a clock, and nothing
runs inside a step's interpreter, which can be busy for seconds (importing TensorFlow)
without answering. On a cluster there is no such lock: Kubernetes owns the pods.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

LOCK_NAME = ".run.lock"
MARK = "CRYPTO_PIPELINE_RUN"
"""The environment variable that marks a process as working for a run (its folder's name)."""
RUN_LABEL = "crypto-pipeline.run"
"""The label of a Docker run's containers: the name of its run folder."""
GRACE_S = 2.0
"""Seconds a step has to end after SIGTERM before it is killed."""


def _marked(run_name: str) -> list:
    """The processes of this user that carry ``run_name``'s mark, this one excepted."""
    import psutil

    found = []
    for process in psutil.process_iter(["environ"]):
        if process.pid != os.getpid() and (process.info["environ"] or {}).get(MARK) == run_name:
            found.append(process)
    return found


def stop_steps(run_name: str, runner: str = "subprocess") -> int:
    """Ends every process and container still working for the run ``run_name``.

    SIGTERM first, SIGKILL after ``GRACE_S``; looks again until nothing marked is left, so a
    step that was starting a child at that moment does not leave it behind.

    Args:
        run_name: The run folder's name.
        runner: ``docker`` also removes the containers labelled with the run's name.

    Returns:
        How many processes and containers were stopped.
    """
    import psutil

    stopped = 0
    if runner == "docker":
        stopped += _remove_containers(run_name)
    deadline = time.monotonic() + 4 * GRACE_S
    while (processes := _marked(run_name)) and time.monotonic() < deadline:
        for process in processes:
            with contextlib.suppress(psutil.Error):
                process.terminate()
        _, alive = psutil.wait_procs(processes, timeout=GRACE_S)
        for process in alive:
            with contextlib.suppress(psutil.Error):
                process.kill()
        stopped += len(processes)
    return stopped


def _remove_containers(run_name: str) -> int:
    try:
        import docker

        client = docker.from_env()
        containers = client.containers.list(  # created but not started yet: those too
            all=True, filters={"label": f"{RUN_LABEL}={run_name}"}
        )
    except Exception:  # no engine, or none reachable: then no container of this run runs
        return 0
    for container in containers:
        with contextlib.suppress(Exception):  # already gone (kfp.local removes its containers)
            container.remove(force=True)
    return len(containers)


@contextlib.contextmanager
def run_lock(run_dir: Path, runner: str) -> Iterator[None]:
    """Holds the run's lock and marks what the run starts, while the block runs.

    Starts the waiter that stops the run's steps once the lock is released (see the module).

    Args:
        run_dir: The run's folder (new, so no one else holds its lock).
        runner: ``subprocess`` or ``docker``: what the waiter has to stop.
    """
    path = Path(run_dir) / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new folder: no one else holds it
    env = {key: value for key, value in os.environ.items() if key != MARK}
    subprocess.Popen(
        [sys.executable, "-m", "crypto_pipeline.run_lock", str(path), runner],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C and Ctrl-Z in the terminal reach the run, not it
        env=env,
    )
    before = os.environ.get(MARK)
    os.environ[MARK] = Path(run_dir).name
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(MARK, None)
        else:
            os.environ[MARK] = before
        os.close(fd)  # the waiter takes the lock, finds nothing left and removes the file


def wait_and_stop(lock_path: Path, runner: str) -> int:
    """Waits until the run holding ``lock_path`` ends, then stops what it left running.

    What it stopped, if anything, is added to the run's ``kfp-local.log``.
    """
    lock_path = Path(lock_path)
    import psutil  # noqa: F401  imported now, not in the seconds after the run ends

    if runner == "docker":
        import docker  # noqa: F401
    with open(lock_path) as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)  # blocks, without a clock, until the run ends
        stopped = stop_steps(lock_path.parent.name, runner)
        lock_path.unlink(missing_ok=True)
    if stopped:
        with contextlib.suppress(OSError), open(lock_path.parent / "kfp-local.log", "a") as log:
            print(
                f"the run ended with {stopped} of its processes or containers still running;"
                " they were stopped",
                file=log,
            )
    return stopped


if __name__ == "__main__":  # the waiter that run_lock starts
    wait_and_stop(Path(sys.argv[1]), sys.argv[2])
