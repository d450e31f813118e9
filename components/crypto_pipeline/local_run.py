"""Local runs of the pipeline with kfp.local: each step in a subprocess or in its image."""

import contextlib
import datetime
import io
import json
import os
import re
import shutil
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from crypto_pipeline.config import DEFAULT_REGISTRY, DEFAULT_TAG, PipelineConfig
from crypto_pipeline.deploy import version_complete
from crypto_pipeline.errors import Interrupted, PipelineError, storage_fix
from crypto_pipeline.ingest import source_fingerprint, source_parameter
from crypto_pipeline.pipeline import (
    PIPELINE_NAME,
    STEPS,
    build_pipeline,
    pipeline_arguments,
    step_image,
)
from crypto_pipeline.report import comparison_lines
from crypto_pipeline.run_lock import RUN_LABEL, run_lock, stop_steps

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_EXECUTING = re.compile(r"Executing task '([\w-]+)'")
_FINISHED = re.compile(r"Task '([\w-]+)' finished with status (\w+)")


@dataclass
class _Progress(io.TextIOBase):
    """Sends kfp.local's output to a log file and shows one line per step on the terminal."""

    log: io.TextIOBase
    terminal: io.TextIOBase
    started: dict[str, float] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    statuses: dict[str, str] = field(default_factory=dict)
    _line: str = ""

    def write(self, text: str) -> int:
        self._line += text
        *lines, self._line = self._line.split("\n")
        for line in lines:
            plain = _ANSI.sub("", line)
            self.log.write(plain + "\n")  # a file: kfp.local's colour codes left out
            if m := _EXECUTING.search(plain):
                step = m.group(1).removesuffix("-step")
                self.started[step] = time.perf_counter()
                print(f"  {step:<9} running …", file=self.terminal, flush=True)
            elif m := _FINISHED.search(plain):
                step = m.group(1).removesuffix("-step")
                self.durations[step] = time.perf_counter() - self.started.get(step, 0)
                self.statuses[step] = m.group(2)
                print(
                    f"  {step:<9} {m.group(2).lower()} in {self.durations[step]:.1f} s",
                    file=self.terminal,
                    flush=True,
                )
        return len(text)

    def flush(self) -> None:
        self.log.flush()


@contextlib.contextmanager
def steps_logged(log_path: str | os.PathLike[str]) -> Iterator[_Progress]:
    """kfp.local's output, for what runs inside, goes to LOG_PATH; one line per step shows.

    kfp.local prints each step's whole executor log (tens of lines of JSON per step);
    it is kept in the file, and the screen says which step runs, and how it ended.

        with local_run.steps_logged("runs/flip-coin.log"):
            flip = coin_flip.flip_coin(seed=7)
    """
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        progress = _Progress(log, sys.stdout)
        try:
            with contextlib.redirect_stdout(progress):
                yield progress
        finally:
            progress.write("\n")  # whatever was left without a line end


@dataclass(frozen=True)
class LocalRun:
    """A finished local run: where its outputs are and how each step went."""

    run_dir: Path
    outputs: dict[str, Any]
    durations_s: dict[str, float]
    cache_hits: list[str]
    log_path: Path


def docker_runner(
    root: Path,
    images: list[str],
    labels: dict[str, str] | None = None,
    environment: dict[str, str] | None = None,
):
    """kfp.local's DockerRunner, set up so that each step runs in its image like a pod.

    The step runs as the image's own (non-root) user, with ``root`` mounted at the same
    path. The images' ``crypto-pipeline`` entrypoint is replaced by a shell that runs KFP's
    command (Kubernetes' ``command`` replaces an entrypoint the same way), with umask 002
    so that the folders a step writes stay writable for the host's group: ``root`` is made
    group-writable and setgid, and the container gets the host user's group.

    Args:
        root: The folder of the run's artifacts, mounted into every step.
        images: The step images; each must be here or pullable (as a cluster pulls it).
        labels: Labels for the step containers (``RUN_LABEL``: the run they belong to).
        environment: Variables for the step containers (the source URL with its
            credentials, ``ingest.SOURCE_ENV``): Docker's API sets them, and they are on
            no command line.

    Raises:
        PipelineError: No Docker engine answers, the ``docker`` package is missing, or an
            image is neither here nor pullable.
    """
    from kfp import local

    try:
        import docker

        client = docker.from_env()
        client.ping()
    except ImportError:
        raise PipelineError(
            "the docker Python package is missing", "run `make setup` (it is in the lock)"
        ) from None
    except Exception as exc:  # docker raises several types for a missing engine
        raise PipelineError(
            f"no Docker engine answers ({type(exc).__name__})",
            "start Docker (or `sudo dockerd &`), build the images with "
            "`scripts/build_images.sh`, then run again",
        ) from None
    for image in images:
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            try:
                client.images.pull(image)
            except docker.errors.APIError as exc:
                raise PipelineError(
                    f"the step image {image} is not here and cannot be pulled "
                    f"({exc.explanation or exc})",
                    "build the images with `make images` (REGISTRY=… TAG=… for others), "
                    "or pass the --registry and --tag they were pushed under",
                ) from None
    root.chmod(root.stat().st_mode | 0o2070)
    # The image's user joins the host user's group (gid 0 for root, as OpenShift runs
    # every container): it may write into ``root``, and the host may remove what it wrote.
    return local.DockerRunner(
        entrypoint=["/bin/sh", "-c", 'umask 002 && exec "$@"', "step"],
        group_add=[str(os.getgid())],
        labels=labels or {},
        environment=environment or {},
    )


ARTIFACTS_NAME = "artifacts.json"
"""In each run folder: the files (and sizes) of every step that finished in that run."""


@dataclass(frozen=True)
class StepFailure:
    """What a failed step said: its ``error:``/``fix:`` when it raised a PipelineError."""

    step: str
    problem: str
    fix: str


_RAISED = re.compile(r"^(?P<type>[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)): (?P<text>.*)$")


def step_failure(log_text: str, step: str) -> StepFailure:
    """The error a failed step raised, read from kfp.local's log of the run.

    The step's output is the block between ``Executing task '<step>-step'`` and its
    ``finished with status``; the error is the last exception of its traceback, and the
    fix the ``fix:`` line a PipelineError adds.
    """
    lines = [_ANSI.sub("", line).strip() for line in log_text.splitlines()]
    begin = max(
        (i for i, line in enumerate(lines) if f"Executing task '{step}-step'" in line), default=0
    )
    block = lines[begin:]
    raised = [i for i, line in enumerate(block) if _RAISED.match(line)]
    if not raised:
        return StepFailure(step, f"the {step} step failed", "")
    first = _RAISED.match(block[raised[-1]])
    problem = [first["text"]]
    fix = ""
    for line in block[raised[-1] + 1 :]:
        if line.startswith("fix: "):
            fix = line.removeprefix("fix: ")
            break
        if not line or " - " in line and line[:2].isdigit():  # end of the output
            break
        problem.append(line)
    kind = first["type"].rsplit(".", 1)[-1]
    text = "\n  ".join(problem)
    if not first["type"].startswith("crypto_pipeline."):
        text = f"{kind}: {text}"
        fix = storage_fix(text)
    return StepFailure(step, text, fix)


def _run_name() -> str:
    """A run folder name in kfp.local's style (pipeline name and time, microseconds)."""
    return f"{PIPELINE_NAME}-{datetime.datetime.now():%Y-%m-%d-%H-%M-%S-%f}"


def _record_artifacts(run_dir: Path, steps: list[str]) -> None:
    """Writes ``artifacts.json``: every file the finished steps wrote, with its size."""
    files = {
        str(path.relative_to(run_dir)): path.stat().st_size
        for step in steps
        for path in sorted((run_dir / f"{step}-step").rglob("*"))
        if path.is_file()
    }
    tmp = run_dir / f".{ARTIFACTS_NAME}.partial"
    try:
        tmp.write_text(json.dumps(files, indent=1, sort_keys=True) + "\n")
        tmp.replace(run_dir / ARTIFACTS_NAME)
    except OSError:  # a full disk: without the list, kfp.local's own check applies
        tmp.unlink(missing_ok=True)


def _artifact_uris(value: Any) -> list[str]:
    """The artifact URIs in one output of a kfp.local cache entry."""
    if isinstance(value, dict) and value.get("__kfp_artifact__"):
        return [value.get("uri", "")]
    if isinstance(value, dict) and value.get("__kfp_artifact_list__"):
        return [a.get("uri", "") for a in value.get("artifacts", [])]
    return []


def _registered_version_gone(outputs: dict[str, Any]) -> bool:
    """Whether a cached deploy names a version of a local registry that no longer holds it."""
    for value in outputs.values():
        uri = value.get("metadata", {}).get("version_uri", "") if isinstance(value, dict) else ""
        local = uri and ("://" not in uri or uri.startswith("file://"))
        if local and not version_complete(uri):
            return True
    return False


def drop_stale_cache(root: Path) -> list[str]:
    """Removes the cache entries whose artifacts lost a file or changed size since written.

    kfp.local checks only that an artifact's top folder exists; a model whose files were
    deleted would be served from the cache. Each entry is checked against the
    ``artifacts.json`` of the run that wrote it (entries of runs without one are left to
    kfp.local's own check). A cached deploy whose registered version was deleted from a
    local registry is removed too, so the run registers the model again.

    Returns:
        The names of the entries removed.
    """
    manifests: dict[Path, dict[str, int] | None] = {}
    removed = []
    for entry in sorted((root / ".kfp_cache").glob("*.json")):
        try:
            outputs = json.loads(entry.read_text())
        except (OSError, ValueError):
            continue
        if _registered_version_gone(outputs):
            entry.unlink(missing_ok=True)
            removed.append(entry.name)
            continue
        for uri in (u for value in outputs.values() for u in _artifact_uris(value)):
            path = Path(uri)
            run_dir = path.parents[1]
            if not path.is_absolute() or run_dir.parent != root:
                continue
            if run_dir not in manifests:
                try:
                    manifests[run_dir] = json.loads((run_dir / ARTIFACTS_NAME).read_text())
                except (OSError, ValueError):
                    manifests[run_dir] = None
            manifest = manifests[run_dir]
            if manifest is None:
                continue
            name = str(path.relative_to(run_dir))
            expected = {k: v for k, v in manifest.items() if k == name or k.startswith(name + "/")}
            if not expected or any(
                not (run_dir / k).is_file() or (run_dir / k).stat().st_size != size
                for k, size in expected.items()
            ):
                entry.unlink(missing_ok=True)
                removed.append(entry.name)
                break
    return removed


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


@contextlib.contextmanager
def cache_refreshed() -> Iterator[None]:
    """While the block runs, kfp.local finds nothing in its cache, and still writes to it.

    Every step runs, and its outputs replace its cache entry: the run after this one takes
    them from the cache. (``enable_caching=False`` makes kfp.local skip its cache both
    ways, so the run after that one would run every step again.)
    """
    from kfp.local import cache

    with mock.patch.object(cache.LocalCache, "get", lambda self, key: None):
        yield


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
    unless a file of their outputs was deleted or changed since (``drop_stale_cache``).
    Every run gets its own folder, named before it starts, so runs sharing a pipeline root
    never mix. kfp.local's detailed output goes to ``<run folder>/kfp-local.log``; the
    terminal gets one line per step. The steps end with the run: on SIGINT or SIGTERM they
    are stopped, and if the run is killed outright they are stopped as soon as it is gone,
    never while it is only paused (``crypto_pipeline.run_lock``).

    Args:
        arguments: Pipeline parameters (see ``build_pipeline``).
        pipeline_root: Folder for the run folders and the cache.
        enable_caching: Reuse the outputs of unchanged steps.
        runner: ``subprocess`` (this environment) or ``docker`` (``registry/<image>:tag``,
            see ``docker_runner``; the images must exist locally or be pullable).
        registry: Registry and path of the step images.
        tag: Tag of the step images.
        refresh_cache: Run every step, even an unchanged one, and keep what it wrote in
            the cache for the next run (``cache_refreshed``). With caching off, kfp.local
            neither reads its cache nor writes it.
        environment: Variables the steps get in their environment, kept out of the
            parameters, which kfp.local writes into its log and onto the steps' command
            lines: the source URL with its credentials (``ingest.source_parameter``).

    Returns:
        The run.

    Raises:
        PipelineError: A step failed: its own ``error:`` and ``fix:``, and where the log is.
        Interrupted: SIGINT or SIGTERM arrived; the running steps were stopped.
    """
    from kfp import local
    from kfp.local import executor_input_utils

    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    enable_caching = enable_caching or refresh_cache
    if enable_caching:
        drop_stale_cache(root)
    while True:
        run_name = _run_name()
        with contextlib.suppress(FileExistsError):
            (root / run_name).mkdir()
            break
    run_dir = root / run_name
    images = sorted({step_image(step, registry, tag) for step in STEPS})
    local.init(
        runner=docker_runner(root, images, {RUN_LABEL: run_name}, environment)
        if runner == "docker"
        else local.SubprocessRunner(use_venv=False),
        pipeline_root=str(root),
        enable_caching=enable_caching,
    )
    if runner == "docker":  # the steps' user writes its task folders here (docker_runner)
        run_dir.chmod(run_dir.stat().st_mode | 0o2070)
    log_path = run_dir / "kfp-local.log"
    pipeline = build_pipeline(
        registry, tag, cache_deploy=arguments.get("deploy_target") != "cluster"
    )
    with (
        warnings.catch_warnings(),
        # kfp.local names the run folder with this function; the run uses the name it chose.
        mock.patch.object(
            executor_input_utils, "get_local_pipeline_resource_name", lambda name: run_name
        ),
        cache_refreshed() if refresh_cache else contextlib.nullcontext(),
        _environment_set({} if runner == "docker" else environment or {}),
        _signals_as_interrupt(),
        run_lock(run_dir, runner),
        steps_logged(log_path) as progress,
    ):
        # Expected here, so not worth a learner's attention: display names are for the
        # KFP UI, and the component images are what the cluster runs, while kfp.local's
        # SubprocessRunner runs the same code in this environment.
        warnings.filterwarnings("ignore", message=".*have no effect in the current local runner")
        warnings.filterwarnings("ignore", message=".*non-Python base image")
        try:
            task = pipeline(**arguments)
        except KeyboardInterrupt as exc:
            stop_steps(run_name, runner)
            raise Interrupted(
                f"the run was interrupted ({exc or 'SIGINT'}) and its running steps were "
                f"stopped; {run_dir} is incomplete",
                "run the same command again: the steps that finished come from the cache",
            ) from None
        except RuntimeError:  # kfp.local: a task failed; its output in the log says why
            progress.write("\n")
            progress.flush()
            failed = [s for s, status in progress.statuses.items() if status != "SUCCESS"]
            failure = step_failure(log_path.read_text(), failed[0] if failed else "")
            # Half-written outputs are no use to anyone: the failed step's folder goes.
            shutil.rmtree(run_dir / f"{failure.step}-step", ignore_errors=True)
            raise PipelineError(
                f"the {failure.step} step failed: {failure.problem}",
                (f"{failure.fix}\n  log: " if failure.fix else "read the step's output in ")
                + str(log_path),
            ) from None
        finally:
            done = [s for s, status in progress.statuses.items() if status == "SUCCESS"]
            _record_artifacts(run_dir, done)
    cache_hits = [step for step in STEPS if step not in progress.durations]
    durations = {step: round(progress.durations.get(step, 0.0), 3) for step in STEPS}
    return LocalRun(run_dir, dict(task.outputs), durations, cache_hits, log_path)


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
    in its environment, never as a parameter (``ingest.source_parameter``).

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
    arguments["registry_uri"] = config.deploy.registry_uri or str(root / "models")
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
    moving = root / f".latest-{run.run_dir.name}"
    moving.unlink(missing_ok=True)
    moving.symlink_to(run.run_dir.name)
    moving.replace(latest)  # atomic: readers see the old run or the new one, never none
    return {**summary, "latest": str(latest)}


def check_deployed(summary: dict[str, Any], root: Path) -> None:
    """Checks that the model version the summary reports as deployed still exists.

    A deploy step served from the cache reports the version an earlier run registered;
    kfp.local's cache knows the step's artifacts, not the registry, so that version may
    have been deleted since. Its cache entry is then dropped, so that the next run
    deploys again.

    Raises:
        PipelineError: The version is gone from a local registry: which one, and that
            running again registers the model anew.
    """
    deployment = summary["deployment"]
    uri = deployment["version_uri"]
    if not deployment["version"] or ("://" in uri and not uri.startswith("file://")):
        return  # no registry, or a bucket: nothing here to look at
    if version_complete(uri):
        return
    artifact = summary["artifacts"]["deployment"]
    for entry in (root / ".kfp_cache").glob("*.json"):
        with contextlib.suppress(OSError, ValueError):
            outputs = json.loads(entry.read_text())
            if artifact in (u for value in outputs.values() for u in _artifact_uris(value)):
                entry.unlink()
    cached = "deploy" in summary["cache_hits"]
    raise PipelineError(
        f"the model the run reports as deployed, version {deployment['version']} at {uri}, "
        "no longer exists"
        + (" (the deploy step came from the cache of an earlier run)" if cached else ""),
        "run the same command again: the deploy step runs again and registers the model "
        f"{summary['model_dir']} anew (the other steps come from the cache)",
    )


def summarize(run: LocalRun, total_s: float) -> dict[str, Any]:
    """The run's ``summary.json``, read back from its artifacts.

    Args:
        run: A finished local run.
        total_s: Wall time of the whole run.
    """
    outputs = run.outputs
    stats = json.loads(Path(outputs["data"].path, "stats.json").read_text())
    metrics = json.loads(Path(outputs["model"].path, "metrics.json").read_text())
    deployment = json.loads(Path(outputs["deployment"].path, "deployment.json").read_text())
    model_path = Path(outputs["model"].path)
    return {
        "source_uri": outputs["raw"].metadata.get("source_uri"),
        "synthetic": outputs["raw"].metadata.get("synthetic"),
        "coin": stats["coin"],
        "rows": {
            "raw": stats["rows_read"],
            "valid": stats["rows_valid"],
            "rejected": stats["rows_rejected"],
            "duplicates": stats["duplicates"],
            **{name: split["rows"] for name, split in stats["splits"].items()},
        },
        "test_period": {
            "first_date": metrics["test_first_date"],
            "last_date": metrics["test_last_date"],
        },
        "best_params": metrics["params"],
        "metrics": {
            key: metrics[key] for key in ("test_rmse", "test_mae", "test_mape", "baselines")
        },
        "model_dir": str(model_path / "model"),
        "plots": [str(model_path / name) for name in metrics["plots"]],
        "deployment": {
            key: deployment[key]
            for key in ("version", "version_uri", "storage_uri", "manifest_path", "smoke_response")
        },
        "durations_s": {**run.durations_s, "total": round(total_s, 3)},
        "cache_hits": run.cache_hits,
        "run_dir": str(run.run_dir),
        "log": str(run.log_path),
        "artifacts": {name: artifact.path for name, artifact in outputs.items()},
    }


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as a table for the terminal or a notebook."""
    rows, metrics = summary["rows"], summary["metrics"]
    lines = [
        f"data       {summary['source_uri']}"
        + ("  (SYNTHETIC sample, not real market data)" if summary["synthetic"] else ""),
        f"rows       read {rows['raw']:,}; kept {rows['train'] + rows['eval'] + rows['test']:,} "
        f"of {summary['coin']} (train {rows['train']:,}, eval {rows['eval']:,}, "
        f"test {rows['test']:,}); rejected {rows['rejected']:,}; duplicates {rows['duplicates']:,}",
        "best       "
        + ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in summary["best_params"].items()
        ),
        f"test       {summary['test_period']['first_date']} .. "
        f"{summary['test_period']['last_date']}",
        *comparison_lines(metrics, indent=" " * 11),
    ]
    deployment = summary["deployment"]
    lines += [
        f"model      {summary['model_dir']}",
        f"plots      {', '.join(Path(p).name for p in summary['plots'])} "
        f"in {Path(summary['plots'][0]).parent}",
        "deployed   "
        + (
            f"version {deployment['version']} at {deployment['version_uri']}"
            if deployment["version"]
            else f"{deployment['version_uri']} as it is (no registry)"
        )
        + f"; smoke answer {deployment['smoke_response']['predictions']}",
        f"manifest   {deployment['manifest_path']}",
        "durations  " + ", ".join(f"{k} {v:.1f} s" for k, v in summary["durations_s"].items()),
        "cache      " + (", ".join(summary["cache_hits"]) or "no step") + " served from cache",
    ]
    return "\n".join(lines)
