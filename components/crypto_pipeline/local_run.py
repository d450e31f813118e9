"""Local runs of the pipeline with kfp.local: each step in a subprocess or in its image."""

import contextlib
import io
import json
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crypto_pipeline.config import DEFAULT_REGISTRY, DEFAULT_TAG, PipelineConfig
from crypto_pipeline.errors import PipelineError
from crypto_pipeline.pipeline import (
    PIPELINE_NAME,
    STEPS,
    build_pipeline,
    pipeline_arguments,
    step_image,
)
from crypto_pipeline.report import comparison_lines

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
        self.log.write(text)
        self._line += text
        *lines, self._line = self._line.split("\n")
        for line in lines:
            plain = _ANSI.sub("", line)
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


@dataclass(frozen=True)
class LocalRun:
    """A finished local run: where its outputs are and how each step went."""

    run_dir: Path
    outputs: dict[str, Any]
    durations_s: dict[str, float]
    cache_hits: list[str]
    log_path: Path


def docker_runner(root: Path, images: list[str]):
    """kfp.local's DockerRunner, set up so that each step runs in its image like a pod.

    The step runs as the image's own (non-root) user, with ``root`` mounted at the same
    path. The images' ``crypto-pipeline`` entrypoint is replaced by a shell that runs KFP's
    command (Kubernetes' ``command`` replaces an entrypoint the same way), with umask 002
    so that the folders a step writes stay writable for the host's group: ``root`` is made
    group-writable and setgid, and the container gets the host user's group.

    Args:
        root: The folder of the run's artifacts, mounted into every step.
        images: The step images; each must be here or pullable (as a cluster pulls it).

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
    )


def run_local(
    arguments: dict[str, Any],
    pipeline_root: str | os.PathLike[str],
    enable_caching: bool = True,
    runner: str = "subprocess",
    registry: str = DEFAULT_REGISTRY,
    tag: str = DEFAULT_TAG,
) -> LocalRun:
    """Runs the pipeline with kfp.local: each step in this environment, or in its image.

    Steps whose inputs have not changed since an earlier run are served from the cache.
    kfp.local's detailed output goes to ``<run folder>/kfp-local.log``; the terminal gets
    one line per step.

    Args:
        arguments: Pipeline parameters (see ``build_pipeline``).
        pipeline_root: Folder for the run folders and the cache.
        enable_caching: Reuse the outputs of unchanged steps.
        runner: ``subprocess`` (this environment) or ``docker`` (``registry/<image>:tag``,
            see ``docker_runner``; the images must exist locally or be pullable).
        registry: Registry and path of the step images.
        tag: Tag of the step images.

    Returns:
        The run.
    """
    from kfp import local

    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in root.glob(f"{PIPELINE_NAME}-*")}
    images = sorted({step_image(step, registry, tag) for step in STEPS})
    local.init(
        runner=docker_runner(root, images)
        if runner == "docker"
        else local.SubprocessRunner(use_venv=False),
        pipeline_root=str(root),
        enable_caching=enable_caching,
    )
    stamp = time.strftime("%Y-%m-%d-%H-%M-%S")
    log_path = root / f".{PIPELINE_NAME}-{stamp}.log"
    terminal = sys.stdout
    pipeline = build_pipeline(registry, tag)
    with open(log_path, "w") as log, warnings.catch_warnings():
        # Expected here, so not worth a learner's attention: display names are for the
        # KFP UI, and the component images are what the cluster runs, while kfp.local's
        # SubprocessRunner runs the same code in this environment.
        warnings.filterwarnings("ignore", message=".*have no effect in the current local runner")
        warnings.filterwarnings("ignore", message=".*non-Python base image")
        progress = _Progress(log, terminal)
        with contextlib.redirect_stdout(progress):
            task = pipeline(**arguments)
    created = sorted({p.name for p in root.glob(f"{PIPELINE_NAME}-*")} - before)
    # Every step came from the cache: kfp.local made no folder, this run gets one anyway.
    run_dir = root / (created[-1] if created else f"{PIPELINE_NAME}-{stamp}-cached")
    run_dir.mkdir(exist_ok=True)
    final_log = run_dir / "kfp-local.log"
    log_path.replace(final_log)
    cache_hits = [step for step in STEPS if step not in progress.durations]
    durations = {step: round(progress.durations.get(step, 0.0), 3) for step in STEPS}
    return LocalRun(run_dir, dict(task.outputs), durations, cache_hits, final_log)


def run_root(config: PipelineConfig) -> Path:
    """The folder of ``config``'s runs: the pipeline root, or its ``docker/`` for Docker runs.

    kfp.local's cache key holds the image and the command but not the runner, so Docker
    runs keep their own cache: a step that ran in a subprocess is never taken for one
    that ran in its image.
    """
    root = Path(config.pipeline_root).resolve()
    return root / "docker" if config.runner == "docker" else root


def run_config(config: PipelineConfig, enable_caching: bool = True) -> dict[str, Any]:
    """Runs the whole pipeline locally as ``config`` says; what `crypto-pipeline run` does.

    Writes ``summary.json`` into the run folder and points ``<run root>/latest`` at it
    (``run_root``). Unless ``config.deploy.registry_uri`` says otherwise, models are
    registered in ``<run root>/models``.

    Args:
        config: The source, the pipeline root, the runner and every step's settings.
        enable_caching: Reuse the outputs of unchanged steps.

    Returns:
        The summary (see ``summarize``), with ``latest`` added.

    Raises:
        PipelineError: A step failed; the fix says where its log is.
    """
    root = run_root(config)
    arguments = pipeline_arguments(config)
    arguments["registry_uri"] = config.deploy.registry_uri or str(root / "models")
    started = time.perf_counter()
    try:
        run = run_local(
            arguments,
            root,
            enable_caching=enable_caching,
            runner=config.runner,
            registry=config.registry,
            tag=config.tag,
        )
    except RuntimeError as exc:  # kfp.local: a task failed; its log says why
        raise PipelineError(
            str(exc).strip().splitlines()[0],
            f"read the failing step's output in the newest {root}/.*.log or "
            "run that step alone (crypto-pipeline <step> --help)",
        ) from None
    summary = summarize(run, time.perf_counter() - started)
    summary["runner"] = config.runner
    (run.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    latest = root / "latest"
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(run.run_dir.name)
    return {**summary, "latest": str(latest)}


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
