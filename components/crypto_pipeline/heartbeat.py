"""A local run's heartbeat: the steps of a run stop when the run that started them is gone.

``crypto-pipeline run`` touches ``<run folder>/.heartbeat`` every second while it runs and
removes it when it ends, however it ends. Every step calls ``stop_with_run`` first: when
its run folder has a heartbeat (a local run; on a cluster there is none and nothing
happens), a watcher thread ends the step once the heartbeat is older than ``STALE_S`` or
gone. So a run killed with ``kill -9`` leaves no step writing into an abandoned folder,
whether the step runs in a subprocess or in a container (the folder is mounted there).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

HEARTBEAT_NAME = ".heartbeat"
INTERVAL_S = 1.0
STALE_S = 5.0
"""Seconds without a beat after which a step takes its run for dead."""


class Heartbeat:
    """Beats in ``run_dir`` from a background thread while the ``with`` block runs."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / HEARTBEAT_NAME
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(INTERVAL_S):
            try:
                os.utime(self.path)
            except FileNotFoundError:
                return

    def __enter__(self) -> Heartbeat:
        self.path.touch()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops beating and removes the file: the run's steps end within a second."""
        self._stop.set()
        self.path.unlink(missing_ok=True)

    def __exit__(self, *exc) -> None:
        self.stop()


def _run_is_gone(path: Path) -> bool:
    try:
        return time.time() - path.stat().st_mtime > STALE_S
    except FileNotFoundError:
        return True


def stop_with_run(output_path: str) -> None:
    """Ends this step when its local run is gone; does nothing elsewhere.

    Args:
        output_path: The path of one of the step's outputs, ``<run folder>/<task>/<name>``.
    """
    path = Path(output_path).parents[1] / HEARTBEAT_NAME
    if not path.exists():
        return

    def watch() -> None:
        while not _run_is_gone(path):
            time.sleep(INTERVAL_S / 2)
        print(
            f"the run that started this step is gone ({path} stopped); stopping the step",
            file=sys.stderr,
            flush=True,
        )
        os._exit(143)

    threading.Thread(target=watch, name="stop-with-run", daemon=True).start()
