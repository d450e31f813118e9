"""Step 3, tune: search the hyperparameters, locally with Optuna or on a cluster with Katib.

The search space is ``model.SEARCH_SPACE``, defined once. Locally, Optuna's TPE sampler
proposes settings, each trial trains on the train split and reports its eval loss after
every epoch, and the median pruner stops trials that fall behind the others; a progress
bar shows the trials. On a cluster, ``katib_experiment`` renders the same space as a Katib
``Experiment`` (``kubeflow.org/v1beta1``) whose trials run ``crypto-pipeline trial`` in
the training image and print the same metric for Katib's stdout collector.

The objective is the eval split's loss: the mean squared error of the standardized daily
return, the quantity training minimizes. It weighs every day alike, where an error in
dollars would weigh the expensive recent days most.

Outputs: ``best_params.json`` (the input of the train step), ``trials.json`` (every
trial: number, state, params, eval loss, best epoch, seconds) and two plots of the search,
the views Katib's UI gives of an Experiment: ``optimization_history.png`` (each trial's
eval loss and the best so far) and ``param_importances.png`` (how much each
hyperparameter moved the trained network's eval loss, by Optuna's PED-ANOVA; it needs two
finished trials whose losses differ).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crypto_pipeline.config import (
    DATA_PVC,
    DEFAULT_NAMESPACE,
    DEFAULT_TRAINING_IMAGE,
    TuneConfig,
)
from crypto_pipeline.hyperparameters import SEARCH_SPACE, Params
from crypto_pipeline.model import Standardizer, fit
from crypto_pipeline.train import load_splits, read_params

OBJECTIVE_METRIC = "eval_loss"
BEST_PARAMS_NAME = "best_params.json"
TRIALS_NAME = "trials.json"
NETWORK_LOSS = "network_eval_loss"
"""A trial's best eval loss of the trained network, whether or not it beat the line."""
HISTORY_PLOT = "optimization_history.png"
IMPORTANCE_PLOT = "param_importances.png"


@dataclass(frozen=True)
class TuneResult:
    """The best params found, every trial, and the plots' file names."""

    best_params: Params
    best_value: float
    trials: list[dict[str, Any]]
    plots: list[str]


def read_result(folder: str | os.PathLike[str]) -> TuneResult:
    """The result a finished search left in FOLDER (a tune step's output, or ``tune``'s).

    Raises:
        ConfigError: FOLDER holds no finished search.
    """
    from crypto_pipeline.errors import ConfigError, read_step_output

    folder = Path(folder)
    trials = read_step_output(folder, TRIALS_NAME, "tune", ConfigError)
    losses = [t[OBJECTIVE_METRIC] for t in trials if t["state"] == "COMPLETE"]
    return TuneResult(
        read_params(folder / BEST_PARAMS_NAME),
        min(losses),
        trials,
        [name for name in (HISTORY_PLOT, IMPORTANCE_PLOT) if (folder / name).is_file()],
    )


def _search_data(data_dir: str | os.PathLike[str]):
    """What every trial trains on: the train split's statistics, train and eval arrays."""
    splits = load_splits(data_dir)
    train_xy = splits.xy("train")
    return Standardizer.fit(*train_xy), train_xy, splits.xy("eval")


def suggest(trial) -> Params:
    """Samples one point of ``SEARCH_SPACE`` with an Optuna trial."""
    values: dict[str, Any] = {}
    for h in SEARCH_SPACE:
        if h.kind == "int":
            values[h.name] = trial.suggest_int(h.name, int(h.low), int(h.high), log=h.log)
        elif h.kind == "float":
            values[h.name] = trial.suggest_float(h.name, h.low, h.high, log=h.log)
        else:
            values[h.name] = trial.suggest_categorical(h.name, list(h.choices))
    return Params(**values)


def _pruning_callback(trial):
    """A Keras callback that reports eval loss to Optuna and stops pruned trials."""
    import keras
    import optuna

    class ReportAndPrune(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            trial.report(float(logs["val_loss"]), epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"eval loss behind the median at epoch {epoch + 1}")

    return ReportAndPrune()


def tune(
    data_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    config: TuneConfig | None = None,
    progress_bar: bool = True,
) -> TuneResult:
    """Runs the local search and writes ``best_params.json`` and ``trials.json``.

    Args:
        data_dir: A transform output folder.
        output_dir: Folder for the results.
        config: Trials, epochs, patience and seed.
        progress_bar: Show Optuna's progress bar.

    Returns:
        The best params and every trial.

    Raises:
        SourceError, DataError: The splits are missing or too small.
        TrainingError: Every trial failed.
    """
    import optuna

    config = config or TuneConfig()
    scaler, train_xy, eval_xy = _search_data(data_dir)
    details: dict[int, dict[str, Any]] = {}

    def objective(trial) -> float:
        started = time.perf_counter()
        params = suggest(trial)
        try:
            result = fit(
                params,
                scaler,
                train_xy,
                eval_xy,
                config.epochs,
                config.patience,
                config.seed,
                callbacks=[_pruning_callback(trial)],
            )
        finally:
            details[trial.number] = {"seconds": round(time.perf_counter() - started, 3)}
        details[trial.number]["best_epoch"] = result.best_epoch
        network_loss = min(result.history["val_loss"])  # before the line could win
        details[trial.number][NETWORK_LOSS] = network_loss
        trial.set_user_attr(NETWORK_LOSS, network_loss)
        return result.best_eval_loss

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=config.seed, n_startup_trials=5),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=5),
    )
    study.optimize(
        objective, n_trials=config.trials, show_progress_bar=progress_bar, catch=(Exception,)
    )
    trials = [
        {
            "number": t.number,
            "state": t.state.name,
            "params": t.params,
            OBJECTIVE_METRIC: t.value,
            **details.get(t.number, {}),
            **({"error": t.system_attrs["fail_reason"]} if "fail_reason" in t.system_attrs else {}),
        }
        for t in study.trials
    ]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        from crypto_pipeline.errors import TrainingError

        reasons = "; ".join(t.get("error", t["state"]) for t in trials)[:500]
        raise TrainingError(
            f"all {len(trials)} trials failed: {reasons}",
            "check the data with the transform step's stats.json, or raise --trials",
        )
    best = Params(**study.best_params)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / TRIALS_NAME).write_text(json.dumps(trials, indent=2) + "\n")
    (out / BEST_PARAMS_NAME).write_text(json.dumps(best.to_dict(), indent=2) + "\n")
    return TuneResult(best, float(study.best_value), trials, plot_search(study, out))


def plot_search(study, out: Path) -> list[str]:
    """Draws the search as Katib's UI shows an Experiment; returns the files' names.

    The importance plot shows how the settings moved the trained network's eval loss
    (``network_eval_loss``, recorded by ``tune``), whether or not the network beat the
    line. It needs two finished trials with different settings and different losses;
    without them, only the history is drawn.
    """
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.ticker
    import optuna
    from optuna.visualization import matplotlib as optuna_plots

    from crypto_pipeline.train import save_figure

    names = []
    # Optuna's plots switch matplotlib's style: keep that to these figures.
    with matplotlib.rc_context(), warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = optuna_plots.plot_optimization_history(study, target_name=OBJECTIVE_METRIC)
        ax.set_title("Optimization history: each trial's eval loss, and the best so far")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.figure.set_size_inches(8, 4.5)
        names.append(save_figure(ax.figure, out / HISTORY_PLOT))
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        # What the settings did to the network itself, even in trials whose network the
        # line beat (then every trial's objective is the line's, and says nothing).
        if all(NETWORK_LOSS in t.user_attrs for t in complete):
            target, name = (lambda t: t.user_attrs[NETWORK_LOSS]), NETWORK_LOSS
        else:
            target, name = None, OBJECTIVE_METRIC
        losses = {target(t) if target else t.value for t in complete}
        if len({json.dumps(t.params, sort_keys=True) for t in complete}) >= 2 and len(losses) >= 2:
            ax = optuna_plots.plot_param_importances(
                study,
                evaluator=optuna.importance.PedAnovaImportanceEvaluator(),
                target=target,
                target_name=name,
            )
            what = "the trained network's eval loss" if target else "the eval loss"
            ax.set_title(f"Importance for {what} (PED-ANOVA)", loc="left")
            ax.figure.set_size_inches(8, 4.5)
            names.append(save_figure(ax.figure, out / IMPORTANCE_PLOT))
    return names


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def katib_experiment(
    config: TuneConfig | None = None,
    data_dir: str = "/data/transform",
    image: str = DEFAULT_TRAINING_IMAGE,
    name: str = "crypto-tune",
    namespace: str = DEFAULT_NAMESPACE,
    parallel_trials: int = 2,
    data_pvc: str = DATA_PVC,
) -> dict[str, Any]:
    """Renders ``SEARCH_SPACE`` as a Katib Experiment for a cluster.

    Each trial is a Kubernetes Job running ``crypto-pipeline trial`` in the training
    image; it prints ``eval_loss=<value>``, which Katib's stdout collector reads. Katib's
    TPE and median-stop algorithms mirror the local Optuna sampler and pruner.

    Args:
        config: Trials, epochs, patience and seed.
        data_dir: Where the trial containers find the transform output: a bucket URI
            (``gs://…``, ``s3://…``; the pod's service account must read it), or a
            path at which the PersistentVolumeClaim ``data_pvc`` is mounted read-only.
        image: The training image (``scripts/`` builds it; no credentials inside).
        name: The Experiment's name.
        namespace: Its namespace (a Kubeflow profile namespace).
        parallel_trials: Trials that run at once.
        data_pvc: The claim holding the transform output when ``data_dir`` is a path
            (``scripts/cluster.sh upload-data`` fills it).

    Returns:
        The Experiment as a dict, ready for ``yaml.safe_dump`` or the Kubernetes API.
    """
    config = config or TuneConfig()
    parameters = []
    for h in SEARCH_SPACE:
        if h.kind == "categorical":
            space: dict[str, Any] = {"list": [str(c) for c in h.choices]}
            kind = "categorical"
        else:
            space = {"min": f"{h.low:g}", "max": f"{h.high:g}"}
            kind = "int" if h.kind == "int" else "double"
            space["distribution"] = "logUniform" if h.log else "uniform"
        parameters.append({"name": h.name, "parameterType": kind, "feasibleSpace": space})
    command = [
        "crypto-pipeline",
        "trial",
        "--data-dir",
        data_dir,
        "--epochs",
        str(config.epochs),
        "--patience",
        str(config.patience),
        "--seed",
        str(config.seed),
    ]
    command += [f"--{h.flag}=${{trialParameters.{_camel(h.name)}}}" for h in SEARCH_SPACE]
    training: dict[str, Any] = {"name": "training", "image": image}
    pod_volumes: dict[str, Any] = {}
    if "://" not in data_dir:  # a path: the trial's pod mounts the data there
        training["volumeMounts"] = [{"name": "data", "mountPath": data_dir, "readOnly": True}]
        pod_volumes["volumes"] = [
            {"name": "data", "persistentVolumeClaim": {"claimName": data_pvc, "readOnly": True}}
        ]
    return {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "objective": {
                "type": "minimize",
                "objectiveMetricName": OBJECTIVE_METRIC,
                # The trial prints the loss of the weights it keeps last; an epoch's lower
                # loss that did not clearly beat least squares must not count.
                "metricStrategies": [{"name": OBJECTIVE_METRIC, "value": "latest"}],
            },
            "algorithm": {
                "algorithmName": "tpe",
                "algorithmSettings": [{"name": "random_state", "value": str(config.seed)}],
            },
            "earlyStopping": {
                "algorithmName": "medianstop",
                "algorithmSettings": [
                    {"name": "min_trials_required", "value": "3"},
                    {"name": "start_step", "value": "5"},
                ],
            },
            "maxTrialCount": config.trials,
            "parallelTrialCount": parallel_trials,
            "maxFailedTrialCount": max(1, config.trials // 4),
            "metricsCollectorSpec": {"collector": {"kind": "StdOut"}},
            "parameters": parameters,
            "trialTemplate": {
                "primaryContainerName": "training",
                "trialParameters": [
                    {"name": _camel(h.name), "description": h.help, "reference": h.name}
                    for h in SEARCH_SPACE
                ],
                "trialSpec": {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "spec": {
                        "template": {
                            "metadata": {"annotations": {"sidecar.istio.io/inject": "false"}},
                            "spec": {
                                "restartPolicy": "Never",
                                "containers": [{**training, "command": command}],
                                **pod_volumes,
                            },
                        }
                    },
                },
            },
        },
    }


def trial(data_dir: str | os.PathLike[str], params: Params, config: TuneConfig) -> float:
    """Trains one Katib trial, printing ``eval_loss=<value>`` after every epoch.

    Katib's stdout collector reads those lines: the curve its median-stop rule compares,
    and, as the objective, the latest value (the Experiment's metric strategy), which the
    ``trial`` command prints last: the eval loss of the weights kept, the least-squares
    start's when no epoch beat it clearly, as the local tuner counts it.

    Returns:
        The eval loss of the weights kept.
    """
    import keras

    class PrintEvalLoss(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            print(f"epoch {epoch + 1}: {OBJECTIVE_METRIC}={logs['val_loss']:.8g}", flush=True)

    scaler, train_xy, eval_xy = _search_data(data_dir)
    result = fit(
        params,
        scaler,
        train_xy,
        eval_xy,
        config.epochs,
        config.patience,
        config.seed,
        callbacks=[PrintEvalLoss()],
    )
    return result.best_eval_loss
