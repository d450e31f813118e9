"""Local runs of the pipeline with kfp.local: each step in a subprocess or in its image.

The run itself is here; beside it, ``local_progress`` (one line per step, the log, a failed
step's error), ``local_docker`` (the Docker runner), ``local_cache`` (no stale cache entry
served) and ``local_summary`` (``summary.json`` and its table). What leans on kfp.local's
internals is in ``workarounds.kfp_local``.
"""

import contextlib
import datetime
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crypto_pipeline.config import DEFAULT_REGISTRY, DEFAULT_TAG, PipelineConfig
from crypto_pipeline.errors import Interrupted, PipelineError
from crypto_pipeline.files import swap_link
from crypto_pipeline.fingerprint import source_fingerprint
from crypto_pipeline.local_cache import drop_stale_cache, record_artifacts
from crypto_pipeline.local_docker import docker_runner
from crypto_pipeline.local_progress import LOG_NAME, StepProgress, step_failed, steps_logged
from crypto_pipeline.local_summary import check_deployed, summarize
from crypto_pipeline.pipeline import (
    PIPELINE_NAME,
    STEPS,
    build_pipeline,
    pipeline_arguments,
    step_image,
)
from crypto_pipeline.run_lock import RUN_LABEL, run_lock, stop_steps
from crypto_pipeline.urls import source_parameter
from crypto_pipeline.workarounds.kfp_local import (
    cache_bypassed,
    expected_warnings_ignored,
    run_folder_named,
)


@dataclass(frozen=True)
class LocalRun:
    """A finished local run: where its outputs are and how each step went."""

    run_dir: Path
    outputs: dict[str, Any]
    durations_s: dict[str, float]
    cache_hits: list[str]
    log_path: Path


def _run_name() -> str:
    """A run folder name in kfp.local's style (pipeline name and time, microseconds)."""
    return f"{PIPELINE_NAME}-{datetime.datetime.now():%Y-%m-%d-%H-%M-%S-%f}"


def _new_run_folder(root: Path) -> Path:
    """A new folder for a run in ROOT, named before the run starts: no other run shares it."""
    while True:
        run_dir = root / _run_name()
        with contextlib.suppress(FileExistsError):
            run_dir.mkdir()
            return run_dir


def _init_kfp_local(
    root: Path,
    run_dir: Path,
    runner: str,
    images: list[str],
    environment: dict[str, str] | None,
    enable_caching: bool,
) -> None:
    """Sets kfp.local up for the run in RUN_DIR: its runner, the pipeline root ROOT, caching."""
    from kfp import local

    if runner == "docker":
        chosen = docker_runner(root, images, {RUN_LABEL: run_dir.name}, environment)
        run_dir.chmod(run_dir.stat().st_mode | 0o2070)  # the steps' user writes its tasks here
    else:
        chosen = local.SubprocessRunner(use_venv=False)
    local.init(runner=chosen, pipeline_root=str(root), enable_caching=enable_caching)


def _pipeline_run(
    pipeline, arguments: dict[str, Any], run_dir: Path, runner: str, progress: StepProgress
) -> dict[str, Any]:
    """Calls PIPELINE with ARGUMENTS under kfp.local, and returns its outputs.

    Raises:
        Interrupted: SIGINT or SIGTERM arrived; the running steps were stopped.
        PipelineError: A step failed (``local_progress.step_failed``).
    """
    log_path = run_dir / LOG_NAME
    try:
        return dict(pipeline(**arguments).outputs)
    except KeyboardInterrupt as exc:
        stop_steps(run_dir.name, runner)
        raise Interrupted(
            f"the run was interrupted ({exc or 'SIGINT'}) and its running steps were "
            f"stopped; {run_dir} is incomplete",
            "run the same command again: the steps that finished come from the cache",
        ) from None
    except RuntimeError as exc:  # kfp.local: a task failed, or the run could not start
        failed = progress.failed()
        if failed:
            raise step_failed(run_dir, failed[0], log_path) from None
        raise PipelineError(
            f"kfp.local stopped the run before any step failed: {exc}",
            f"read its output in {log_path}",
        ) from None


@contextlib.contextmanager
def _signals_as_interrupt():
    """Turns SIGINT and SIGTERM into KeyboardInterrupt while the block runs (main thread).

    SIGINT too, because a process started in the background by a shell ignores it.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _environment_set(variables: dict[str, str]) -> Iterator[None]:
    """VARIABLES in this process's environment while the block runs, which its steps inherit.

    kfp.local's SubprocessRunner starts each step with this process's environment.
    """
    before = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_local(
    arguments: dict[str, Any],
    pipeline_root: str | os.PathLike[str],
    enable_caching: bool = True,
    runner: str = "subprocess",
    registry: str = DEFAULT_REGISTRY,
    tag: str = DEFAULT_TAG,
    refresh_cache: bool = False,
    environment: dict[str, str] | None = None,
) -> LocalRun:
    """Runs the pipeline with kfp.local: each step in this environment, or in its image.

    Steps whose inputs have not changed since an earlier run are served from the cache,
    unless a file of their outputs was deleted or changed since
    (``local_cache.drop_stale_cache``).
    Every run gets its own folder, named before it starts, so runs sharing a pipeline root
    never mix. kfp.local's detailed output goes to ``<run folder>/kfp-local.log``; the
    terminal gets one line per step. The steps end with the run: on SIGINT or SIGTERM they
    are stopped, and if the run is killed outright they are stopped as soon as it is gone,
    never while it is only paused (``crypto_pipeline.run_lock``). A failed step's own
    error is kept in ``<run folder>/step_error.json`` (``local_progress.step_failed``).

    Args:
        arguments: Pipeline parameters (see ``build_pipeline``).
        pipeline_root: Folder for the run folders and the cache.
        enable_caching: Reuse the outputs of unchanged steps.
        runner: ``subprocess`` (this environment) or ``docker`` (``registry/<image>:tag``,
            see ``local_docker.docker_runner``; the images must be here or pullable).
        registry: Registry and path of the step images.
        tag: Tag of the step images.
        refresh_cache: Run every step, even an unchanged one, and keep what it wrote in
            the cache for the next run (``workarounds.kfp_local.cache_bypassed``). With
            caching off, kfp.local neither reads its cache nor writes it.
        environment: Variables the steps get in their environment, kept out of the
            parameters, which kfp.local writes into its log and onto the steps' command
            lines: the source URL with its credentials (``urls.source_parameter``).

    Returns:
        The run.

    Raises:
        PipelineError: A step failed: its own ``error:`` and ``fix:``, and where the log is.
        Interrupted: SIGINT or SIGTERM arrived; the running steps were stopped.
    """
    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    enable_caching = enable_caching or refresh_cache
    if enable_caching:
        drop_stale_cache(root)
    run_dir = _new_run_folder(root)
    images = sorted({step_image(step, registry, tag) for step in STEPS})
    _init_kfp_local(root, run_dir, runner, images, environment, enable_caching)
    log_path = run_dir / LOG_NAME
    deploy_target = arguments.get("deploy", {}).get("target")
    pipeline = build_pipeline(registry, tag, cache_deploy=deploy_target != "cluster")
    with (
        expected_warnings_ignored(),
        run_folder_named(run_dir.name),
        cache_bypassed() if refresh_cache else contextlib.nullcontext(),
        _environment_set({} if runner == "docker" else environment or {}),
        _signals_as_interrupt(),
        run_lock(run_dir, runner),
        steps_logged(log_path) as progress,
    ):
        try:
            outputs = _pipeline_run(pipeline, arguments, run_dir, runner, progress)
        finally:
            record_artifacts(run_dir, progress.finished())
    cache_hits = [step for step in STEPS if step not in progress.durations]
    durations = {step: round(progress.durations.get(step, 0.0), 3) for step in STEPS}
    return LocalRun(run_dir, outputs, durations, cache_hits, log_path)


def run_root(config: PipelineConfig) -> Path:
    """The folder of ``config``'s runs: the pipeline root, or its ``docker/`` for Docker runs.

    kfp.local's cache key holds the image and the command but not the runner, so Docker
    runs keep their own cache: a step that ran in a subprocess is never taken for one
    that ran in its image.
    """
    root = Path(config.pipeline_root).resolve()
    return root / "docker" if config.runner == "docker" else root


def run_config(
    config: PipelineConfig, enable_caching: bool = True, refresh_cache: bool = False
) -> dict[str, Any]:
    """Runs the whole pipeline locally as ``config`` says; what `crypto-pipeline run` does.

    Writes ``summary.json`` into the run folder and points ``<run root>/latest`` at it
    (``run_root``). Unless ``config.deploy.registry_uri`` says otherwise, models are
    registered in ``<run root>/models``. A source URL's credentials reach the ingest step
    in its environment, never as a parameter (``urls.source_parameter``).

    Args:
        config: The source, the pipeline root, the runner and every step's settings.
        enable_caching: Reuse the outputs of unchanged steps.
        refresh_cache: Run every step, and cache what each wrote for the next run.

    Returns:
        The summary (see ``summarize``), with ``latest`` added.

    Raises:
        PipelineError: A step failed: its own error and fix, and where the log is.
    """
    root = run_root(config)
    arguments = pipeline_arguments(config)
    arguments["deploy"]["registry_uri"] = config.deploy.registry_uri or str(root / "models")
    arguments["source_fingerprint"] = source_fingerprint(
        config.source_uri, config.ingest.max_mb, config.ingest.max_seconds
    )
    arguments["source_uri"], environment = source_parameter(config.source_uri)
    started = time.perf_counter()
    run = run_local(
        arguments,
        root,
        enable_caching=enable_caching,
        runner=config.runner,
        registry=config.registry,
        tag=config.tag,
        refresh_cache=refresh_cache,
        environment=environment,
    )
    summary = summarize(run, time.perf_counter() - started)
    check_deployed(summary, root)
    summary["runner"] = config.runner
    (run.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    latest = root / "latest"
    swap_link(latest, run.run_dir.name)
    return {**summary, "latest": str(latest)}
