"""The model: a Keras DNN regressor on scale-free features, and its serving wrapper.

The network sees scale-free features (see ``features``): it learns the day's return from
the day's excursions. Two Keras models share its layers:

- ``core`` maps standardized features to the standardized return; it is what trains;
- ``serving`` wraps ``core`` with everything around it, so that the exported model takes
  raw ``[open, high, low]`` prices and returns the predicted close price: the feature
  lines of ``features``, the standardization learnt on the train split, and the mapping
  back to a price. Nothing is computed outside the exported model at serving time.

Its shape comes from ``hyperparameters.Params``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from crypto_pipeline import features
from crypto_pipeline.errors import TrainingError
from crypto_pipeline.hyperparameters import Params


@dataclass(frozen=True)
class Standardizer:
    """Means and standard deviations learnt on the train split."""

    feature_mean: tuple[float, ...]
    feature_std: tuple[float, ...]
    target_mean: float
    target_std: float

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray) -> Standardizer:
        """Learns the statistics of train features ``x`` and target ``y``."""
        std = np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
        return cls(
            tuple(x.mean(axis=0).tolist()),
            tuple(std.tolist()),
            float(y.mean()),
            float(y.std() or 1.0),
        )

    def features(self, x: np.ndarray) -> np.ndarray:
        """Standardized features."""
        return ((x - np.asarray(self.feature_mean)) / np.asarray(self.feature_std)).astype(
            np.float32
        )

    def target(self, y: np.ndarray) -> np.ndarray:
        """Standardized target."""
        return ((y - self.target_mean) / self.target_std).astype(np.float32)


def set_seed(seed: int) -> None:
    """Makes Keras and TensorFlow reproducible: same seed, same weights, same metrics."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def build_core(params: Params, n_features: int = len(features.FEATURES)):
    """The DNN from standardized features to the standardized return.

    Args:
        params: Layers, sizes and learning rate.
        n_features: Width of the input.

    Returns:
        A compiled ``keras.Model`` (mean squared error, Adam).
    """
    inputs = keras.Input(shape=(n_features,), name="features")
    x = inputs
    for i, units in enumerate(params.layer_sizes()):
        x = keras.layers.Dense(units, activation="relu", name=f"hidden_{i + 1}")(x)
    output = keras.layers.Dense(1, name="standardized_return")(x)
    core = keras.Model(inputs, output, name="core")
    core.compile(optimizer=keras.optimizers.Adam(params.learning_rate), loss="mse")
    return core


class CheckedPrices(keras.layers.Layer):
    """Fails at run time unless the batch has exactly one column per input.

    A serving signature checks the dtype of what it is given but not its shape, and
    column slicing would quietly make do with two columns: this refuses instead.
    """

    def call(self, prices):
        return tf.ensure_shape(prices, [None, len(features.INPUTS)])


def build_serving(core, scaler: Standardizer):
    """Wraps ``core`` into the model that takes raw prices and returns the close.

    Args:
        core: The trained DNN.
        scaler: The train split's statistics.

    Returns:
        A ``keras.Model`` from ``prices`` (float32, shape ``(n, 3)``: open, high, low) to
        the predicted close (shape ``(n, 1)``).
    """
    prices = keras.Input(shape=(len(features.INPUTS),), dtype="float32", name="prices")
    checked = CheckedPrices(name="checked_prices")(prices)
    open_, high, low = checked[:, 0:1], checked[:, 1:2], checked[:, 2:3]
    high_excursion, low_excursion = features.excursions(open_, high, low)
    x = keras.ops.concatenate([high_excursion, low_excursion], axis=1)
    x = (x - np.asarray(scaler.feature_mean, "float32")) / np.asarray(scaler.feature_std, "float32")
    ret = core(x) * scaler.target_std + scaler.target_mean
    close = features.close_from_return(open_, ret)
    return keras.Model(prices, close, name="crypto_close")


@dataclass
class FitResult:
    """A trained core and how training went."""

    core: Any
    history: dict[str, list[float]]
    best_epoch: int
    best_eval_loss: float


def fit(
    params: Params,
    scaler: Standardizer,
    train: tuple[np.ndarray, np.ndarray],
    evaluation: tuple[np.ndarray, np.ndarray],
    epochs: int,
    patience: int,
    seed: int,
    callbacks: Sequence[Any] = (),
) -> FitResult:
    """Trains a core on train, stopping early on the eval split's loss.

    Args:
        params: The hyperparameters.
        scaler: Statistics of the train split.
        train: Features and target of the train split (unstandardized).
        evaluation: Features and target of the eval split (unstandardized).
        epochs: Most epochs to run.
        patience: Epochs without improvement on eval before stopping.
        seed: Random seed.
        callbacks: More Keras callbacks (the tuner's pruning hook).

    Returns:
        The core with the weights of its best eval epoch, and the loss history.

    Raises:
        TrainingError: The loss became NaN or infinite.
    """
    set_seed(seed)
    core = build_core(params)
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=patience, restore_best_weights=True
    )
    history = core.fit(
        scaler.features(train[0]),
        scaler.target(train[1]),
        validation_data=(scaler.features(evaluation[0]), scaler.target(evaluation[1])),
        epochs=epochs,
        batch_size=params.batch_size,
        shuffle=True,
        verbose=0,
        callbacks=[keras.callbacks.TerminateOnNaN(), stop, *callbacks],
    ).history
    losses = history.get("loss", []) + history.get("val_loss", [])
    if not losses or not all(math.isfinite(v) for v in losses):
        where = len(history.get("loss", []))
        raise TrainingError(
            f"the training loss stopped being a number (NaN or infinite) at epoch {where} "
            f"with {params}; no model was exported",
            "lower learning_rate (e.g. divide it by 10) or check the data for extreme rows",
        )
    best = int(np.argmin(history["val_loss"]))
    return FitResult(core, history, best + 1, float(history["val_loss"][best]))
