"""The Kubeflow Pipelines (v2) pipeline: five lightweight components over the package.

Each component is an adapter: it reads its inputs, calls one package function, writes its
outputs (KFP artifacts: Dataset, Model, Metrics, HTML) and records what it did in their
metadata. The same pipeline

- runs locally with ``kfp.local`` (subprocesses, no cluster, caching on), see ``run_local``;
- compiles to the IR YAML that Kubeflow Pipelines or Vertex AI Pipelines run, with each
  component in its own image (``registry/<image>:<tag>``, set at compile time), see
  ``compile_pipeline``; ``submit`` uploads and starts it with ``kfp.Client``.

Images: ingest -> ``ingest``, transform -> ``transform``, tune and train -> ``train``
(they share TensorFlow), deploy -> ``serve``. They hold the package and kfp, and no
credentials.
"""

import contextlib
import io
import json
import os
import re
import shlex
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

from crypto_pipeline.config import DEFAULT_REGISTRY, DEFAULT_TAG, PipelineConfig
from crypto_pipeline.errors import PipelineError
from crypto_pipeline.report import comparison_lines

PIPELINE_NAME = "crypto-pipeline"
STEP_IMAGES = {
    "ingest": "ingest",
    "transform": "transform",
    "tune": "train",
    "train": "train",
    "deploy": "serve",
}
"""The image (under the registry) that each step runs in."""
STEPS = tuple(STEP_IMAGES)


# ---- components: thin adapters over the package --------------------------------------
# KFP ships each function's source to its container, so imports live inside them.


def ingest_step(source_uri: str, raw: Output[Dataset]):
    """Step 1: copy the source CSV into the run's artifacts."""
    import time

    from crypto_pipeline.ingest import ingest

    started = time.perf_counter()
    result = ingest(source_uri, raw.path)
    print(result.describe())
    raw.metadata.update(
        {
            "source_uri": source_uri,
            "sha256": result.sha256,
            "bytes": result.bytes,
            "rows": result.rows,
            "synthetic": result.synthetic,
            "seconds": round(time.perf_counter() - started, 3),
        }
    )


def transform_step(
    raw: Input[Dataset],
    coin: str,
    date_format: str,
    split: str,
    beam_args: str,
    data: Output[Dataset],
    stats: Output[Metrics],
):
    """Step 2: validate, filter and split with Apache Beam."""
    import json
    import os
    import shlex
    import time

    from crypto_pipeline.config import Split, TransformConfig
    from crypto_pipeline.ingest import RAW_FILE_NAME
    from crypto_pipeline.transform import transform

    started = time.perf_counter()
    config = TransformConfig(
        coin=coin,
        date_format=date_format,
        split=Split.parse(split),
        beam_args=tuple(shlex.split(beam_args)),
    )
    result = transform(os.path.join(raw.path, RAW_FILE_NAME), data.path, config)
    for key in ("rows_read", "rows_valid", "rows_rejected", "duplicates", "other_coins"):
        stats.log_metric(key, result[key])
    for name, part in result["splits"].items():
        stats.log_metric(f"{name}_rows", part["rows"])
    with open(stats.path, "w") as f:  # a file behind the artifact, as local caching expects
        json.dump(result, f, indent=2)
    data.metadata.update(
        {
            "coin": coin,
            "splits": result["splits"],
            "seconds": round(time.perf_counter() - started, 3),
        }
    )


def tune_step(
    data: Input[Dataset], trials: int, epochs: int, seed: int, best_params: Output[Artifact]
):
    """Step 3: search the hyperparameters with Optuna."""
    import time

    from crypto_pipeline.config import TuneConfig
    from crypto_pipeline.tune import tune

    started = time.perf_counter()
    result = tune(
        data.path,
        best_params.path,
        TuneConfig(trials=trials, epochs=epochs, seed=seed),
        progress_bar=False,
    )
    best_params.metadata.update(
        {
            "params": result.best_params.to_dict(),
            "best_eval_loss": result.best_value,
            "trials": len(result.trials),
            "seconds": round(time.perf_counter() - started, 3),
        }
    )


def train_step(
    data: Input[Dataset],
    best_params: Input[Artifact],
    epochs: int,
    seed: int,
    model: Output[Model],
    metrics: Output[Metrics],
    report: Output[HTML],
):
    """Step 4: train with the best params; metrics beside the baselines; plots."""
    import base64
    import json
    import os
    import time
    from pathlib import Path

    from crypto_pipeline.config import TrainConfig
    from crypto_pipeline.report import comparison_html
    from crypto_pipeline.train import read_params, train
    from crypto_pipeline.tune import BEST_PARAMS_NAME

    started = time.perf_counter()
    params = read_params(os.path.join(best_params.path, BEST_PARAMS_NAME))
    result = train(data.path, params, model.path, TrainConfig(epochs=epochs, seed=seed))
    for key in ("test_rmse", "test_mae", "test_mape"):
        metrics.log_metric(key, result[key])
    for name, values in result["baselines"].items():
        metrics.log_metric(f"baseline_{name}_rmse", values["rmse"])
    with open(metrics.path, "w") as f:  # a file behind the artifact, as local caching expects
        json.dump(result, f, indent=2)
    images = "".join(
        '<p><img src="data:image/png;base64,'
        + base64.b64encode(Path(model.path, p).read_bytes()).decode()
        + '"></p>'
        for p in result["plots"]
    )
    with open(report.path, "w") as f:
        f.write(
            f"<h2>Test period {result['test_first_date']} to {result['test_last_date']}</h2>"
            + comparison_html(result)
            + images
        )
    model.metadata.update(
        {
            "saved_model": "model",
            "params": params.to_dict(),
            "seconds": round(time.perf_counter() - started, 3),
        }
    )


def deploy_step(
    model: Input[Model],
    registry_uri: str,
    storage_uri: str,
    namespace: str,
    target: str,
    deployment: Output[Artifact],
) -> int:
    """Step 5: register the version, answer a smoke request, write (and apply) KServe's manifest."""
    import os
    import time

    from crypto_pipeline.deploy import deploy

    started = time.perf_counter()
    result = deploy(
        os.path.join(model.path, "model"),
        registry_uri,
        deployment.path,
        storage_uri=storage_uri,
        namespace=namespace,
        target=target,
    )
    print(
        f"registered version {result.version} at {result.version_uri}; smoke answer: "
        f"{result.smoke_response}"
    )
    deployment.metadata.update(
        {
            "version": result.version,
            "version_uri": result.version_uri,
            "storage_uri": result.storage_uri,
            "smoke_response": result.smoke_response,
            "applied": result.applied,
            "seconds": round(time.perf_counter() - started, 3),
        }
    )
    return result.version


def build_pipeline(registry: str = DEFAULT_REGISTRY, tag: str = DEFAULT_TAG) -> Callable:
    """The pipeline, its components set to run in ``registry/<image>:tag``.

    Args:
        registry: Container registry and path of the component images.
        tag: Image tag.

    Returns:
        The ``@dsl.pipeline`` function (call it under ``kfp.local``, or compile it).
    """

    def component(func, step):
        return dsl.component(
            func, base_image=f"{registry}/{STEP_IMAGES[step]}:{tag}", install_kfp_package=False
        )

    ingest_op = component(ingest_step, "ingest")
    transform_op = component(transform_step, "transform")
    tune_op = component(tune_step, "tune")
    train_op = component(train_step, "train")
    deploy_op = component(deploy_step, "deploy")

    class Outputs(NamedTuple):
        raw: Dataset
        data: Dataset
        best_params: Artifact
        model: Model
        deployment: Artifact

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Kubeflow for Poets: ingest, transform (Beam), tune, train and deploy "
        "a Keras model that predicts the daily close of a crypto coin.",
    )
    def crypto_pipeline(
        source_uri: str = "sample",
        coin: str = "bitcoin",
        date_format: str = "auto",
        split: str = "0.7,0.15,0.15",
        beam_args: str = "",
        trials: int = 12,
        tune_epochs: int = 40,
        train_epochs: int = 150,
        seed: int = 42,
        registry_uri: str = "runs/models",
        storage_uri: str = "",
        namespace: str = "kubeflow",
        deploy_target: str = "local",
    ) -> Outputs:
        ingest_task = ingest_op(source_uri=source_uri).set_display_name("1 ingest")
        transform_task = transform_op(
            raw=ingest_task.outputs["raw"],
            coin=coin,
            date_format=date_format,
            split=split,
            beam_args=beam_args,
        ).set_display_name("2 transform (Beam)")
        tune_task = tune_op(
            data=transform_task.outputs["data"], trials=trials, epochs=tune_epochs, seed=seed
        ).set_display_name("3 tune")
        train_task = train_op(
            data=transform_task.outputs["data"],
            best_params=tune_task.outputs["best_params"],
            epochs=train_epochs,
            seed=seed,
        ).set_display_name("4 train")
        deploy_task = deploy_op(
            model=train_task.outputs["model"],
            registry_uri=registry_uri,
            storage_uri=storage_uri,
            namespace=namespace,
            target=deploy_target,
        ).set_display_name("5 deploy")
        return Outputs(
            raw=ingest_task.outputs["raw"],
            data=transform_task.outputs["data"],
            best_params=tune_task.outputs["best_params"],
            model=train_task.outputs["model"],
            deployment=deploy_task.outputs["deployment"],
        )

    return crypto_pipeline


COMPILED_HEADER = (
    "# Generated by `crypto-pipeline compile` from crypto_pipeline/pipeline.py: do not edit.\n"
    "# Kubeflow Pipelines v2 IR. Upload it in the KFP UI or with `crypto-pipeline submit`.\n"
)


def compile_pipeline(
    path: str | os.PathLike[str], registry: str = DEFAULT_REGISTRY, tag: str = DEFAULT_TAG
) -> Path:
    """Writes the pipeline's IR YAML, with a generated-file header.

    Returns:
        The path written.
    """
    from kfp import compiler

    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.yaml")  # the compiler insists on .yaml
    compiler.Compiler().compile(build_pipeline(registry, tag), str(tmp))
    path.write_text(COMPILED_HEADER + tmp.read_text())
    tmp.unlink()
    return path


def compiled_tasks(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The tasks of a compiled pipeline (IR YAML), as Kubeflow Pipelines will see them.

    Returns:
        One row per task, each after the tasks it waits for and every group before its
        members: ``task``, ``inside`` (the condition group holding it), ``runs if`` (its
        trigger condition), ``after`` (the tasks it waits for) and ``image``.
    """
    import yaml

    spec = yaml.safe_load(Path(path).read_text())
    executors = spec.get("deploymentSpec", {}).get("executors", {})
    rows: list[dict[str, str]] = []

    def in_order(tasks: dict[str, Any]) -> list[str]:
        """Each task after the tasks it waits for (the IR lists them by name)."""
        pending, done = dict(sorted(tasks.items())), []
        while pending:
            ready = (n for n, t in pending.items() if set(t.get("dependentTasks", [])) <= {*done})
            done.append(next(ready, next(iter(pending))))
            del pending[done[-1]]
        return done

    def walk(dag: dict[str, Any], inside: str) -> None:
        tasks = dag.get("tasks", {})
        for name in in_order(tasks):
            task = tasks[name]
            component = spec["components"][task["componentRef"]["name"]]
            executor = executors.get(component.get("executorLabel", ""), {})
            condition = task.get("triggerPolicy", {}).get("condition", "")
            rows.append(
                {
                    "task": name,
                    "inside": inside,
                    "runs if": _PARAMETER.sub(r"\1", condition),
                    "after": ", ".join(task.get("dependentTasks", [])),
                    "image": executor.get("container", {}).get("image", ""),
                }
            )
            if "dag" in component:
                walk(component["dag"], name)

    walk(spec["root"]["dag"], "")
    return rows


_PARAMETER = re.compile(r"inputs\.parameter_values\['pipelinechannel--([\w-]+)'\]")


def submit(
    package_path: str | os.PathLike[str],
    host: str,
    experiment: str = "crypto",
    arguments: dict[str, Any] | None = None,
    run_name: str | None = None,
):
    """Uploads a compiled pipeline to Kubeflow Pipelines and starts a run.

    Credentials for the KFP host come from the environment (kfp.Client reads them, e.g.
    a token or an in-cluster service account).

    Returns:
        The run's ``RunPipelineResult`` (``.run_id``).
    """
    import kfp

    client = kfp.Client(host=host)
    return client.create_run_from_pipeline_package(
        os.fspath(package_path),
        arguments=arguments or {},
        experiment_name=experiment,
        run_name=run_name or f"{PIPELINE_NAME}-{time.strftime('%Y%m%d-%H%M%S')}",
    )


# ---- local runs ------------------------------------------------------------------------

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


def run_local(
    arguments: dict[str, Any], pipeline_root: str | os.PathLike[str], enable_caching: bool = True
) -> LocalRun:
    """Runs the pipeline with kfp.local's SubprocessRunner in this environment.

    Steps whose inputs have not changed since an earlier run are served from the cache.
    kfp.local's detailed output goes to ``<run folder>/kfp-local.log``; the terminal gets
    one line per step.

    Args:
        arguments: Pipeline parameters (see ``build_pipeline``).
        pipeline_root: Folder for the run folders and the cache.
        enable_caching: Reuse the outputs of unchanged steps.

    Returns:
        The run.
    """
    from kfp import local

    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in root.glob(f"{PIPELINE_NAME}-*")}
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(root),
        enable_caching=enable_caching,
    )
    stamp = time.strftime("%Y-%m-%d-%H-%M-%S")
    log_path = root / f".{PIPELINE_NAME}-{stamp}.log"
    terminal = sys.stdout
    with open(log_path, "w") as log, warnings.catch_warnings():
        # Expected here, so not worth a learner's attention: display names are for the
        # KFP UI, and the component images are what the cluster runs, while kfp.local
        # runs the same code in this environment.
        warnings.filterwarnings("ignore", message=".*have no effect in the current local runner")
        warnings.filterwarnings("ignore", message=".*non-Python base image")
        progress = _Progress(log, terminal)
        with contextlib.redirect_stdout(progress):
            task = build_pipeline()(**arguments)
    created = sorted({p.name for p in root.glob(f"{PIPELINE_NAME}-*")} - before)
    # Every step came from the cache: kfp.local made no folder, this run gets one anyway.
    run_dir = root / (created[-1] if created else f"{PIPELINE_NAME}-{stamp}-cached")
    run_dir.mkdir(exist_ok=True)
    final_log = run_dir / "kfp-local.log"
    log_path.replace(final_log)
    cache_hits = [step for step in STEPS if step not in progress.durations]
    durations = {step: round(progress.durations.get(step, 0.0), 3) for step in STEPS}
    return LocalRun(run_dir, dict(task.outputs), durations, cache_hits, final_log)


def run_config(config: PipelineConfig, enable_caching: bool = True) -> dict[str, Any]:
    """Runs the whole pipeline locally as ``config`` says; what `crypto-pipeline run` does.

    Writes ``summary.json`` into the run folder and points ``<pipeline_root>/latest`` at it.

    Args:
        config: The source, the pipeline root and every step's settings.
        enable_caching: Reuse the outputs of unchanged steps.

    Returns:
        The summary (see ``summarize``), with ``latest`` added.

    Raises:
        PipelineError: A step failed; the fix says where its log is.
    """
    root = Path(config.pipeline_root).resolve()
    arguments = {
        "source_uri": config.source_uri,
        "coin": config.transform.coin,
        "date_format": config.transform.date_format,
        "split": str(config.transform.split),
        "beam_args": shlex.join(config.transform.beam_args),
        "trials": config.tune.trials,
        "tune_epochs": config.tune.epochs,
        "train_epochs": config.train.epochs,
        "seed": config.tune.seed,
        "registry_uri": str(root / "models"),
        "deploy_target": "local",
    }
    started = time.perf_counter()
    try:
        run = run_local(arguments, root, enable_caching=enable_caching)
    except RuntimeError as exc:  # kfp.local: a task failed; its log says why
        raise PipelineError(
            str(exc).strip().splitlines()[0],
            f"read the failing step's output in the newest {root}/.*.log or "
            "run that step alone (crypto-pipeline <step> --help)",
        ) from None
    summary = summarize(run, time.perf_counter() - started)
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
        f"deployed   version {deployment['version']} at {deployment['version_uri']}; "
        f"smoke answer {deployment['smoke_response']['predictions']}",
        f"manifest   {deployment['manifest_path']}",
        "durations  " + ", ".join(f"{k} {v:.1f} s" for k, v in summary["durations_s"].items()),
        "cache      " + (", ".join(summary["cache_hits"]) or "no step") + " served from cache",
    ]
    return "\n".join(lines)
