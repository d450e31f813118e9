"""Where local runs lean on kfp.local's internals (kfp 2.17.3), each in one function.

kfp.local offers ``local.init`` and calling a pipeline; it has no public way to name a
run's folder, to refresh its cache, to hear when a task starts and ends, to keep colour
codes out of its log or expected warnings off the screen, to say where a task wrote, or to
read its cache. Each function below does one of these through a detail of kfp.local that
may change in an upgrade and says which detail; those that change kfp.local's behaviour
replace a module's attribute only while their ``with`` block runs.
``tests/unit/test_workarounds_kfp_local.py`` checks each detail and names the function to
change when an upgrade breaks it.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

CACHE_FOLDER = ".kfp_cache"
"""Where kfp.local keeps its cache entries in the pipeline root: ``<key>.json`` each."""


@contextlib.contextmanager
def _replaced(owner: Any, name: str, value: Any) -> Iterator[None]:
    """OWNER's attribute NAME is VALUE while the block runs, and what it was after."""
    before = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, before)


def run_folder_named(run_name: str) -> contextlib.AbstractContextManager[None]:
    """A pipeline run started in the block writes its tasks into ``<pipeline root>/RUN_NAME``.

    Relies on: ``kfp.local.pipeline_orchestrator`` naming the run's folder with
    ``kfp.local.executor_input_utils.get_local_pipeline_resource_name(pipeline_name)``,
    looked up on that module at each run. Why: kfp.local picks the name itself (the
    pipeline's name and the time) and reports it nowhere, so a run could not know its own
    folder, and two runs starting in the same microsecond would share one.
    """
    from kfp.local import executor_input_utils

    return _replaced(executor_input_utils, "get_local_pipeline_resource_name", lambda _: run_name)


def cache_bypassed() -> contextlib.AbstractContextManager[None]:
    """While the block runs, kfp.local finds nothing in its cache, and still writes to it.

    Relies on: ``kfp.local.orchestrator.task_executor`` asking ``LocalCache.get(key)`` for a
    task's outputs (``None``: run it) and storing what a task wrote with ``LocalCache.put``
    whatever ``get`` answered. Why: ``enable_caching=False`` skips the cache both ways, so
    the run after a refreshed one would run every step again too.
    """
    from kfp.local import cache

    return _replaced(cache.LocalCache, "get", lambda self, key: None)


@contextlib.contextmanager
def tasks_watched(
    started: Callable[[str], None], ended: Callable[[str, bool], None]
) -> Iterator[None]:
    """STARTED(task) runs as kfp.local starts a task, ENDED(task, succeeded) as it ends.

    TASK is the task's folder name in the run's folder (``transform-step``). A task served
    from the cache does neither; a task retried does both once per attempt.

    Relies on: ``kfp.local.orchestrator.task_executor`` running every container task
    through ``kfp.local.task_dispatcher.run_single_task_implementation(component_name=…,
    …)``, looked up on that module at each call, which returns ``(outputs, Status)``; and
    the task's folder being ``get_local_task_resource_name(component_name)``. Why: kfp.local
    tells of a task's start and end only in its log's text, which is written for people.
    """
    from kfp.local import executor_input_utils, status, task_dispatcher

    run_task = task_dispatcher.run_single_task_implementation

    def watched(*args, **kwargs):
        task = executor_input_utils.get_local_task_resource_name(kwargs["component_name"])
        started(task)
        outputs, task_status = run_task(*args, **kwargs)
        ended(task, task_status == status.Status.SUCCESS)
        return outputs, task_status

    with _replaced(task_dispatcher, "run_single_task_implementation", watched):
        yield


@contextlib.contextmanager
def uncoloured_log() -> Iterator[None]:
    """kfp.local writes no colour codes into its log while the block runs.

    Relies on: ``kfp.local.logging_utils.Color`` holding the ANSI codes as class attributes
    that ``color_text`` reads at each call. Why: kfp.local colours task names and statuses
    whatever its output is; in a log file the codes are noise.
    """
    from kfp.local import logging_utils

    codes = [name for name, value in vars(logging_utils.Color).items() if isinstance(value, str)]
    with contextlib.ExitStack() as stack:
        for name in codes:
            if not name.startswith("__"):
                stack.enter_context(_replaced(logging_utils.Color, name, ""))
        yield


@contextlib.contextmanager
def expected_warnings_ignored() -> Iterator[None]:
    """kfp.local's two warnings that a local run of this project expects are left out.

    Relies on: the texts of kfp.local's warnings for a task setting made for a cluster
    (``orchestrator.task_executor``: "settings [...] have no effect in the current local
    runner", the steps' display names) and for an image without "python" in its name run
    by the SubprocessRunner (``SubprocessTaskHandler.validate_image``: "non-Python base
    image", the project's step images). Why: kfp.local has no switch for them; display
    names are for the KFP UI, and the SubprocessRunner runs the steps' code in this
    environment on purpose.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*have no effect in the current local runner")
        warnings.filterwarnings("ignore", message=".*non-Python base image")
        yield


def task_folder(run_dir: str | os.PathLike[str], step: str) -> Path:
    """The folder of STEP's task in the run folder RUN_DIR: ``<run_dir>/<step>-step``.

    Relies on: kfp.local putting a task's outputs in ``construct_local_task_root``
    (``<pipeline root>/<run folder>/<task>``), the task named after its component without
    ``comp-``, and each step's component being the function ``<step>_step``
    (``crypto_pipeline.steps``). Why: kfp.local returns a run's outputs, not where each task
    wrote; a failed task returns nothing, and its folder holds its error.
    """
    return Path(run_dir) / f"{step}-step"


def cache_entries(root: str | os.PathLike[str]) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Each readable entry of kfp.local's cache in the pipeline root ROOT, and its outputs.

    Relies on: kfp.local's cache being one JSON file per key in ``<pipeline root>/.kfp_cache``,
    each a mapping of output names to values. Why: kfp.local checks only that a cached
    artifact's top folder exists; the files inside are checked here, and entries with a
    file lost are removed (``crypto_pipeline.local_cache``).
    """
    for entry in sorted(Path(root, CACHE_FOLDER).glob("*.json")):
        try:
            outputs = json.loads(entry.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(outputs, dict):
            yield entry, outputs


def cached_artifacts(value: Any) -> list[dict[str, Any]]:
    """The artifacts in VALUE, one output of a cache entry: each with its ``uri`` and ``metadata``.

    Relies on: kfp.local storing an artifact as a mapping with ``"__kfp_artifact__": true``,
    its ``uri`` and ``metadata``, and a list of them as ``"__kfp_artifact_list__": true``
    with the mappings under ``artifacts``. Why: as for ``cache_entries``.
    """
    if isinstance(value, dict) and value.get("__kfp_artifact__"):
        found = [value]
    elif isinstance(value, dict) and value.get("__kfp_artifact_list__"):
        found = value.get("artifacts", [])
    else:
        return []
    return [
        {"uri": a.get("uri", ""), "metadata": a.get("metadata") or {}}
        for a in found
        if isinstance(a, dict)
    ]
