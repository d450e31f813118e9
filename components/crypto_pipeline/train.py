"""Step 4, train: the final model with the best hyperparameters, judged against baselines.

Training stops early on the eval split; the test split, the most recent days, is used
once, for the metrics. A model is only worth serving if it beats simple rules on the
same test rows, so ``metrics.json`` puts three baselines beside it:

- ``open``: the close equals the open (tomorrow looks like today);
- ``midpoint``: the close is halfway between high and low;
- ``least_squares``: ordinary least squares on the same features, fit on the train split.

Outputs in the output folder: ``metrics.json``, ``history.json``, three plots
(``loss.png``, ``test_predictions.png``, ``residuals.png``) and ``model/``, a TensorFlow
SavedModel (``model.export``) whose serving signature takes raw ``[open, high, low]``
prices (float32, shape ``(n, 3)``) and returns the predicted close, with
``model/metadata.json`` (parameters, data checksums, library versions, seed).

The network starts as the least-squares line and an epoch replaces it only when it beats
it clearly on the eval days (``model.fit``). ``metrics.json`` says what was kept:
``best_epoch`` (0: the least-squares start) and ``eval_loss``, the eval loss of the weights
kept: the same number, by the same rule, that each of the tune step's trials reports as
its objective (with the tune step's epochs, patience and seed, training reproduces a
finished trial's ``eval_loss`` and ``best_epoch`` exactly). Beside them, the network's own
best (``network_best_epoch``, ``network_eval_loss``), kept or not, and ``gain_z``: how many
standard errors it beat the line by, day by day on eval (it is kept above
``model.SIGNIFICANCE_Z``). ``loss.png`` shows the same story.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from crypto_pipeline import features
from crypto_pipeline.config import TrainConfig
from crypto_pipeline.errors import ConfigError, DataError, read_step_output
from crypto_pipeline.files import staged_folder
from crypto_pipeline.hyperparameters import Params
from crypto_pipeline.model import FitResult, Standardizer, build_serving, fit, least_squares
from crypto_pipeline.plots import plot_training
from crypto_pipeline.splits import Splits, load_splits

METRICS_NAME = "metrics.json"
MODEL_DIR_NAME = "model"


def read_metrics(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``metrics.json`` a finished training left in FOLDER (a train step's model).

    Raises:
        ConfigError: FOLDER holds no metrics.json.
    """
    return read_step_output(folder, METRICS_NAME, "train", ConfigError)


def regression_metrics(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """RMSE and MAE in price units, and MAPE in percent."""
    error = np.asarray(predicted, np.float64).ravel() - np.asarray(actual, np.float64).ravel()
    return {
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mae": float(np.mean(np.abs(error))),
        "mape": float(np.mean(np.abs(error) / np.abs(actual)) * 100),
    }


def baseline_predictions(splits: Splits, data_dir: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The close predicted by each baseline on the test rows.

    Raises:
        DataError: The train split's features or target are not finite, which
            ``splits.load_splits``'s price rules leave no way to (kept for Splits made
            otherwise).
    """
    test = splits.test
    line = least_squares(*splits.xy("train"))
    if line is None:
        raise DataError(
            f"the train split in {data_dir} gives no least-squares line: its features "
            "(high / open - 1, low / open - 1) or its target are not finite",
            "read the splits with splits.load_splits, which holds them to the "
            "transform's price rules, or run the transform step again",
        )
    weights, bias = line
    ret = features.feature_matrix(test) @ weights.ravel() + bias
    return {
        "open": test["open"].to_numpy(np.float64),
        "midpoint": ((test["high"] + test["low"]) / 2).to_numpy(np.float64),
        "least_squares": features.close_from_return(test["open"].to_numpy(), ret),
    }


def _library_versions() -> dict[str, str]:
    names = ("tensorflow-cpu", "keras", "numpy", "pandas", "apache-beam", "optuna")
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _finite(value: float) -> float | None:
    """The value, or None where JSON has no number for it (an infinite z)."""
    return value if math.isfinite(value) else None


def _check_comparable(baselines: dict[str, dict[str, float]], data_dir: Any) -> None:
    """Refuses test days that a baseline predicts exactly: no model can be compared with it.

    Prices that never move (every day's open, high, low and close the same) do this.
    """
    exact = [name for name, metrics in baselines.items() if metrics["rmse"] == 0]
    if exact:
        raise DataError(
            f"the test split in {data_dir} is predicted exactly by the {exact[0]} baseline "
            "(its RMSE is 0): the prices do not move as a market's do, so there is nothing "
            "to learn and nothing to compare a model with",
            "use a source with real market days (this one's prices may be constant)",
        )


def _metrics(
    splits: Splits,
    result: FitResult,
    predicted: np.ndarray,
    eval_predicted: np.ndarray,
    baselines: dict[str, dict[str, float]],
) -> dict[str, Any]:
    """The test metrics beside the baselines', and what training kept (``metrics.json``)."""
    test = splits.test
    model_metrics = regression_metrics(predicted, test["close"].to_numpy(np.float64))
    return {
        **{f"test_{k}": v for k, v in model_metrics.items()},
        "test_rows": len(test),
        "test_first_date": str(test["date"].iloc[0]),
        "test_last_date": str(test["date"].iloc[-1]),
        "eval_rmse": regression_metrics(eval_predicted, splits.eval["close"].to_numpy())["rmse"],
        "baselines": baselines,
        "rmse_vs_midpoint": model_metrics["rmse"] / baselines["midpoint"]["rmse"],
        "rmse_vs_least_squares": model_metrics["rmse"] / baselines["least_squares"]["rmse"],
        "epochs_run": len(result.history["loss"]),
        "best_epoch": result.best_epoch,
        "eval_loss": result.best_eval_loss,
        "eval_loss_least_squares": result.start_eval_loss,
        "network_best_epoch": result.network_epoch,
        "network_eval_loss": result.network_eval_loss,
        "gain_z": _finite(result.gain_z),
    }


def train(
    data_dir: str | os.PathLike[str],
    params: Params,
    output_dir: str | os.PathLike[str],
    config: TrainConfig | None = None,
) -> dict[str, Any]:
    """Trains, evaluates against the baselines, plots and exports the model.

    Args:
        data_dir: A transform output folder.
        params: Hyperparameters (``best_params.json`` from the tune step).
        output_dir: Folder for the metrics, plots and ``model/``.
        config: Epochs, patience and seed.

    Returns:
        The contents of ``metrics.json``.

    Raises:
        SourceError, DataError: The splits are missing, too small or changed after the
            transform (``splits.load_splits``), or a baseline predicts the test split
            exactly (prices that never move).
        TrainingError: The loss diverged; nothing is exported.
    """
    config = config or TrainConfig()
    splits = load_splits(data_dir)
    actual = splits.test["close"].to_numpy(np.float64)
    baselines = {
        name: regression_metrics(values, actual)
        for name, values in baseline_predictions(splits, data_dir).items()
    }
    _check_comparable(baselines, data_dir)
    x_train, y_train = splits.xy("train")
    scaler = Standardizer.fit(x_train, y_train)
    result = fit(
        params,
        scaler,
        (x_train, y_train),
        splits.xy("eval"),
        config.epochs,
        config.patience,
        config.seed,
    )
    serving = build_serving(result.core, scaler)
    test = splits.test
    predicted = serving.predict(features.price_matrix(test), verbose=0).ravel()
    model_metrics = regression_metrics(predicted, actual)
    eval_predicted = serving.predict(features.price_matrix(splits.eval), verbose=0).ravel()
    metrics = _metrics(splits, result, predicted, eval_predicted, baselines)
    metrics.update(params=params.to_dict(), seed=config.seed)

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics["plots"] = plot_training(result, test, predicted, out)
    (out / "history.json").write_text(json.dumps(result.history, indent=2) + "\n")
    _export(
        serving,
        out / MODEL_DIR_NAME,
        {
            "params": params.to_dict(),
            "seed": config.seed,
            "inputs": list(features.INPUTS),
            "output": "close",
            "features": list(features.FEATURES),
            "standardizer": scaler.__dict__,
            "data_sha256": splits.sha256,
            "train_rows": len(splits.train),
            "test_metrics": model_metrics,
            "libraries": _library_versions(),
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
    )
    (out / METRICS_NAME).write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def _follow_umask(folder: Path) -> None:
    """Gives the folders under ``folder`` the mode the process's umask asks for.

    TensorFlow makes a SavedModel's folders 0755 whatever the umask, so a pipeline step
    that runs as another user (``--runner docker``, umask 002 and a shared group) would
    leave folders the host's user cannot clean up.
    """
    umask = os.umask(0)
    os.umask(umask)
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(path.stat().st_mode & 0o7000 | 0o777 & ~umask)  # keeps setgid


def _export(serving, model_dir: Path, meta: dict[str, Any]) -> None:
    """Exports the SavedModel beside its final place, then swaps it in."""
    # TensorFlow logs "Assets written to: <staging>" at INFO despite verbose=False, and
    # sets its logger to INFO itself inside Jupyter: quiet it for the export only.
    tf_logger = logging.getLogger("tensorflow")
    level = tf_logger.level
    tf_logger.setLevel(max(level, logging.WARNING))
    try:
        with staged_folder(model_dir) as staging:
            serving.export(str(staging), format="tf_saved_model", verbose=False)
            (staging / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
            _follow_umask(staging)
    finally:
        tf_logger.setLevel(level)


def load_model(model_dir: str | os.PathLike[str]):
    """Loads an exported model; call ``.serve(prices)`` on what it returns."""
    import tensorflow as tf

    return tf.saved_model.load(str(model_dir))
