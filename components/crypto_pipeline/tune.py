"""Step 3, tune: search the hyperparameters, locally with Optuna or on a cluster with Katib.

The search space is ``hyperparameters.SEARCH_SPACE``, defined once. Locally, Optuna's TPE
sampler proposes settings, each trial trains on the train split exactly as the train step
does (``model.fit``), reporting the network's eval loss after every epoch, and the median
pruner stops trials whose curve falls behind the others'; a progress bar shows the
trials. On a cluster, ``katib.katib_experiment`` renders the same space as a Katib
``Experiment`` whose trials run ``crypto-pipeline trial`` (``trial`` here) in the training
image and print the same metric for Katib's stdout collector.

The objective, ``eval_loss``, is what training reports: the eval split's loss (the mean
squared error of the standardized daily return; every day weighs alike, where an error in
dollars would weigh the expensive recent days most) of the weights training keeps. The
network starts as the least-squares line and an epoch replaces the line only when it beats
it clearly, day by day on the eval days (``model.clearly_better``); otherwise the trial
keeps the line and scores the line's eval loss. So the search looks for settings whose
network clearly beats least squares, and a finished trial's ``eval_loss`` is exactly what
the train step reports for its settings with the same epochs, patience and seed.

Outputs:

- ``best_params.json``: the best finished trial's settings (the train step's input);
- ``trials.json``: every trial, as ``trials_table`` describes its columns;
- ``search.json``: the objective, the least-squares line's eval loss, the best trial, and
  the hyperparameter importances or why there are none;
- ``optimization_history.png``: each finished trial's ``eval_loss``, the best so far, the
  least-squares line's eval loss, and the pruned trials marked apart (they have no
  ``eval_loss``);
- ``param_importances.png``: how much each hyperparameter mattered for ``eval_loss``
  (Optuna's PED-ANOVA on the finished trials), only where the search finished enough
  trials for that to mean something (``IMPORTANCE_MIN_TOP``).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crypto_pipeline.config import TuneConfig
from crypto_pipeline.hyperparameters import (
    BEST_PARAMS_NAME,
    OBJECTIVE_METRIC,
    PRUNER_MIN_TRIALS,
    PRUNER_WARMUP_EPOCHS,
    SEARCH_SPACE,
    Params,
    read_params,
)
from crypto_pipeline.model import Standardizer, fit
from crypto_pipeline.plots import HISTORY_PLOT, IMPORTANCE_PLOT, plot_search
from crypto_pipeline.splits import load_splits

SAMPLER_STARTUP_TRIALS = 5
"""Trials the TPE sampler draws at random before it models the finished ones."""
TRIALS_NAME = "trials.json"
SEARCH_NAME = "search.json"
NETWORK_LOSS = "network_eval_loss"
"""A trial's lowest eval loss of the trained network, whether or not it was kept."""

IMPORTANCE_QUANTILE = 0.1
"""PED-ANOVA's target quantile (Optuna's default): what separates the best tenth."""
IMPORTANCE_MIN_TOP = 5
"""Finished trials the best tenth must hold, as Optuna's documentation of PED-ANOVA asks."""

TRIAL_COLUMNS: dict[str, str] = {
    "number": "the trial's number, in the order Optuna ran them",
    "state": "COMPLETE (trained until early stopping), PRUNED (stopped early by the median "
    "pruner: its eval-loss curve fell behind the other trials'), or FAIL",
    OBJECTIVE_METRIC: "the objective, for COMPLETE trials only: the eval loss of the weights "
    "the trial kept, as the train step reports it; the least-squares line's own eval loss "
    "when no epoch beat the line clearly (best_epoch 0). Empty for pruned and failed trials",
    "best_epoch": "the epoch whose weights were kept; 0: the least-squares start (COMPLETE only)",
    "epochs": "epochs the trial ran (a pruned trial: when it was stopped)",
    NETWORK_LOSS: "the trained network's lowest eval loss, kept or not (a pruned trial: "
    "before it was stopped); below the line's in most trials, but it counts only when "
    "clearly better",
    "gain_z": "how many standard errors the network's best epoch beat the line by, day by "
    "day on eval; it replaces the line above 3 (COMPLETE only)",
    "seconds": "the trial's wall-clock time",
    "params": "the settings tried",
}
"""The columns of ``trials.json``, for readers of the table (``trials_table``)."""


@dataclass(frozen=True)
class TuneResult:
    """The best params found, every trial, the plots' file names, and the importances.

    Attributes:
        best_params: The best finished trial's settings.
        best_value: Its ``eval_loss``.
        trials: Every trial, with the columns of ``TRIAL_COLUMNS``.
        plots: The plots' file names.
        least_squares_eval_loss: The least-squares line's eval loss: the ``eval_loss`` of
            every finished trial that kept the line.
        importances: How much each hyperparameter mattered for ``eval_loss`` (summing to
            1); empty when the search is too small for them (``importance_note`` says why).
        importance_note: How the importances were computed, or why they were not.
    """

    best_params: Params
    best_value: float
    trials: list[dict[str, Any]]
    plots: list[str]
    least_squares_eval_loss: float | None = None
    importances: dict[str, float] = field(default_factory=dict)
    importance_note: str = ""


def read_result(folder: str | os.PathLike[str]) -> TuneResult:
    """The result a finished search left in FOLDER (a tune step's output, or ``tune``'s).

    Raises:
        ConfigError: FOLDER holds no finished search.
    """
    from crypto_pipeline.errors import ConfigError, read_step_output

    folder = Path(folder)
    trials = read_step_output(folder, TRIALS_NAME, "tune", ConfigError)
    losses = [t[OBJECTIVE_METRIC] for t in trials if t["state"] == "COMPLETE"]
    search = {}
    if (folder / SEARCH_NAME).is_file():
        search = json.loads((folder / SEARCH_NAME).read_text())
    return TuneResult(
        read_params(folder / BEST_PARAMS_NAME),
        min(losses),
        trials,
        [name for name in (HISTORY_PLOT, IMPORTANCE_PLOT) if (folder / name).is_file()],
        search.get("eval_loss_least_squares"),
        search.get("importances") or {},
        search.get("importance_note", ""),
    )


def trials_table(trials: list[dict[str, Any]]):
    """The trials as a pandas DataFrame, one column per setting, ``state`` in lower case.

    ``TRIAL_COLUMNS`` says what each column means; the settings follow as columns of
    their own.
    """
    import pandas as pd

    rows = []
    for t in trials:
        row = {k: v for k, v in t.items() if k not in ("params", "error")}
        row["state"] = t["state"].lower()
        rows.append({**row, **t["params"]})
    table = pd.DataFrame(rows).set_index("number")
    return table.astype({"best_epoch": "Int64", "epochs": "Int64"})  # whole, or <NA>


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
            low, high = h.bounds
            values[h.name] = trial.suggest_int(h.name, int(low), int(high), log=h.log)
        elif h.kind == "float":
            low, high = h.bounds
            values[h.name] = trial.suggest_float(h.name, low, high, log=h.log)
        else:
            values[h.name] = trial.suggest_categorical(h.name, list(h.choices))
    return Params(**values)


def _report_and_prune(trial, record: dict[str, Any]):
    """What ``model.fit`` calls after each epoch: report eval loss, stop pruned trials.

    It writes the epochs run into ``record`` (a pruned trial's row of the table).
    """
    import optuna

    def on_epoch(epoch: int, eval_loss: float) -> None:
        record["epochs"] = epoch
        trial.report(eval_loss, epoch - 1)  # Optuna's steps count from 0
        if trial.should_prune():
            raise optuna.TrialPruned(f"eval loss behind the median at epoch {epoch}")

    return on_epoch


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _row(t, details: dict[str, Any]) -> dict[str, Any]:
    """One trial's row of ``trials.json``: the columns of ``TRIAL_COLUMNS``, in order.

    A finished trial's ``eval_loss`` is its objective; a pruned trial has none (Optuna
    would give it the last eval loss its network reported, another quantity), only the
    network's lowest eval loss before it was stopped.
    """
    import optuna

    complete = t.state == optuna.trial.TrialState.COMPLETE
    curve = list(t.intermediate_values.values())
    row = {
        "number": t.number,
        "state": t.state.name,
        OBJECTIVE_METRIC: t.value if complete else None,
        "best_epoch": details.get("best_epoch") if complete else None,
        "epochs": details.get("epochs", len(curve)),
        NETWORK_LOSS: details.get(NETWORK_LOSS, min(curve) if curve else None),
        "gain_z": details.get("gain_z") if complete else None,
        "seconds": details.get("seconds"),
        "params": t.params,
    }
    if "fail_reason" in t.system_attrs:
        row["error"] = t.system_attrs["fail_reason"]
    return row


def tune(
    data_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    config: TuneConfig | None = None,
    progress_bar: bool = True,
) -> TuneResult:
    """Runs the local search and writes its outputs (see the module's docstring).

    Args:
        data_dir: A transform output folder.
        output_dir: Folder for the results.
        config: Trials, epochs, patience and seed.
        progress_bar: Show Optuna's progress bar.

    Returns:
        The best params, every trial, the plots and the importances.

    Raises:
        SourceError, DataError: The splits are missing, too small or changed after the
            transform (``splits.load_splits``).
        TrainingError: Every trial failed.
    """
    config = config or TuneConfig()
    scaler, train_xy, eval_xy = _search_data(data_dir)
    details: dict[int, dict[str, Any]] = {}
    least_squares: list[float] = []  # the line's eval loss: the same in every trial

    def objective(trial) -> float:
        started = time.perf_counter()
        params = suggest(trial)
        record = details[trial.number] = {}
        try:
            result = fit(
                params,
                scaler,
                train_xy,
                eval_xy,
                config.epochs,
                config.patience,
                config.seed,
                _report_and_prune(trial, record),
            )
        finally:
            record["seconds"] = round(time.perf_counter() - started, 3)
        record["best_epoch"] = result.best_epoch
        record[NETWORK_LOSS] = result.network_eval_loss
        record["gain_z"] = _finite(result.gain_z)
        least_squares.append(result.start_eval_loss)
        return result.best_eval_loss  # what the train step reports as eval_loss

    study = _create_study(config.seed)
    study.optimize(
        objective, n_trials=config.trials, show_progress_bar=progress_bar, catch=(Exception,)
    )
    trials = [_row(t, details.get(t.number, {})) for t in study.trials]
    _require_a_finished_trial(trials)
    best = Params(**study.best_params)
    importances, note = param_importances(study)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    search = {
        "objective": OBJECTIVE_METRIC,
        "direction": "minimize",
        "eval_loss_least_squares": least_squares[0],
        "best_trial": study.best_trial.number,
        "best_value": float(study.best_value),
        "states": {s: sum(t["state"] == s for t in trials) for s in _states(trials)},
        "importances": importances,
        "importance_note": note,
        "columns": TRIAL_COLUMNS,
    }
    (out / TRIALS_NAME).write_text(json.dumps(trials, indent=2) + "\n")
    (out / SEARCH_NAME).write_text(json.dumps(search, indent=2) + "\n")
    (out / BEST_PARAMS_NAME).write_text(json.dumps(best.to_dict(), indent=2) + "\n")
    plots = plot_search(trials, out, least_squares[0], importances)
    return TuneResult(
        best, float(study.best_value), trials, plots, least_squares[0], importances, note
    )


def _create_study(seed: int):
    """An Optuna study: TPE proposes, the median rule prunes (Katib's Experiment alike)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=SAMPLER_STARTUP_TRIALS),
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=PRUNER_MIN_TRIALS, n_warmup_steps=PRUNER_WARMUP_EPOCHS
        ),
    )


def _require_a_finished_trial(trials: list[dict[str, Any]]) -> None:
    """Raises TrainingError, with every trial's reason, when no trial finished."""
    if any(t["state"] == "COMPLETE" for t in trials):
        return
    from crypto_pipeline.errors import TrainingError

    reasons = "; ".join(t.get("error", t["state"]) for t in trials)[:500]
    raise TrainingError(
        f"all {len(trials)} trials failed: {reasons}",
        "check the data with the transform step's stats.json, or raise --trials",
    )


def _states(trials: list[dict[str, Any]]) -> list[str]:
    return sorted({t["state"] for t in trials}, key=["COMPLETE", "PRUNED", "FAIL"].index)


def param_importances(study) -> tuple[dict[str, float], str]:
    """How much each hyperparameter mattered for the tuned objective, or why not known.

    Optuna's PED-ANOVA on the finished trials' ``eval_loss`` (pruned trials have none):
    which settings set the best tenth of them apart from all of them. It means something
    only with ``IMPORTANCE_MIN_TOP`` trials in that tenth (Optuna's advice), and only
    when that tenth scored better than the rest: when most trials kept least squares, the
    best tenth may tie with them.

    Returns:
        The importances (summing to 1; empty when not computed) and a sentence saying how
        they were computed, or why they were not.
    """
    import warnings

    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    top = math.ceil(IMPORTANCE_QUANTILE * len(complete))
    if top < IMPORTANCE_MIN_TOP:
        needed = next(
            n for n in range(1, 10_000) if math.ceil(IMPORTANCE_QUANTILE * n) >= IMPORTANCE_MIN_TOP
        )
        return {}, (
            f"no importances: PED-ANOVA compares the best tenth of the finished trials with "
            f"all of them and needs {IMPORTANCE_MIN_TOP} trials in that tenth, so "
            f"{needed} finished trials; this search finished {len(complete)} (raise the "
            f"trials to get them)"
        )
    values = sorted(t.value for t in complete)
    if not values[top - 1] < values[-1]:
        return {}, (
            f"no importances: the best tenth of the {len(complete)} finished trials scored "
            f"no better than the worst ({OBJECTIVE_METRIC} {values[-1]:.4g}: the least-squares "
            f"line's, kept by every trial whose network did not clearly beat it), so no "
            f"setting can be told to matter"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        importances = optuna.importance.get_param_importances(
            study,
            evaluator=optuna.importance.PedAnovaImportanceEvaluator(
                target_quantile=IMPORTANCE_QUANTILE
            ),
        )
    return {k: float(v) for k, v in importances.items()}, (
        f"PED-ANOVA (Optuna) on the {OBJECTIVE_METRIC} of the {len(complete)} finished "
        f"trials: how much each setting sets the best tenth ({top} trials) apart"
    )


def trial(data_dir: str | os.PathLike[str], params: Params, config: TuneConfig) -> float:
    """Trains one Katib trial, printing ``eval_loss=<value>`` after every epoch.

    Katib's stdout collector reads those lines: the curve its median-stop rule compares,
    and, as the objective, the latest value (the Experiment's metric strategy), which the
    ``trial`` command prints last: the eval loss of the weights kept, the least-squares
    start's when no epoch beat it clearly, as the local tuner counts it.

    Returns:
        The eval loss of the weights kept.
    """

    def print_eval_loss(epoch: int, eval_loss: float) -> None:
        print(f"epoch {epoch}: {OBJECTIVE_METRIC}={eval_loss:.8g}", flush=True)

    scaler, train_xy, eval_xy = _search_data(data_dir)
    result = fit(
        params,
        scaler,
        train_xy,
        eval_xy,
        config.epochs,
        config.patience,
        config.seed,
        print_eval_loss,
    )
    return result.best_eval_loss
