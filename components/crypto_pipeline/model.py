"""The model: a wide-and-deep Keras regressor on scale-free features, and its serving wrapper.

The network sees scale-free features (see ``features``): it learns the day's return from
the day's excursions. It has a linear part and a deep part side by side (``build_core``),
and it starts as the least-squares line: with same-day inputs the relation is nearly
linear, so the deep part is there to learn what the line misses, and it is kept only when
it beats the line clearly on the eval days (``fit``). Two Keras models share its layers:

- ``core`` maps standardized features to the standardized return; it is what trains;
- ``serving`` wraps ``core`` with everything around it, so that the exported model takes
  raw ``[open, high, low]`` prices and returns the predicted close price: the feature
  lines of ``features``, the standardization learnt on the train split, and the mapping
  back to a price. Nothing is computed outside the exported model at serving time.

Its shape comes from ``hyperparameters.Params``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
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


def least_squares(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float] | None:
    """Ordinary least squares of ``y`` on ``x`` with an intercept: weights and bias.

    Returns:
        ``(weights of shape (n_features, 1), bias)``, or ``None`` when the data hold
        values that are not finite (training then reports the diverging loss).
    """
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return None
    design = np.column_stack([x, np.ones(len(x))])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return coef[:-1].reshape(-1, 1), float(coef[-1])


def build_core(
    params: Params,
    n_features: int = len(features.FEATURES),
    linear_start: tuple[np.ndarray, float] | None = None,
):
    """The wide-and-deep network from standardized features to the standardized return.

    Two parts see the same inputs and their outputs add up: a linear part (the "wide"
    part of TensorFlow's old ``DNNLinearCombinedRegressor``) and the deep part, hidden
    layers shaped by ``params``. The deep part's output layer starts at zero, so with
    ``linear_start`` (the least-squares fit on the train split) the untrained network
    *is* least squares, and training learns only what the line misses.

    Args:
        params: Layers, sizes and learning rate.
        n_features: Width of the input.
        linear_start: Weights and bias for the linear part (``least_squares``); without
            them it starts at Keras' default initialization.

    Returns:
        A compiled ``keras.Model`` (mean squared error, Adam).
    """
    inputs = keras.Input(shape=(n_features,), name="features")
    x = inputs
    for i, units in enumerate(params.layer_sizes()):
        x = keras.layers.Dense(units, activation="relu", name=f"hidden_{i + 1}")(x)
    deep = keras.layers.Dense(1, kernel_initializer="zeros", name="deep")(x)
    wide = keras.layers.Dense(1, name="linear")(inputs)
    output = keras.layers.Add(name="standardized_return")([wide, deep])
    core = keras.Model(inputs, output, name="core")
    if linear_start is not None:
        weights, bias = linear_start
        core.get_layer("linear").set_weights(
            [weights.astype("float32"), np.array([bias], "float32")]
        )
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
    """A trained core and how training went.

    Attributes:
        core: The trained network.
        history: Train and eval loss of each epoch (``loss``, ``val_loss``).
        best_epoch: The epoch whose weights were kept; 0 for the least-squares start.
        best_eval_loss: Its eval loss: the objective the tuner minimizes, and what
            training reports as ``eval_loss``.
        start_eval_loss: The eval loss of the least-squares start.
        network_epoch: The trained network's best epoch (lowest eval loss), kept or not.
        gain_z: How many standard errors the network's best epoch beat the line by, day
            by day on eval (``gain_z``); it replaced the line only above
            ``SIGNIFICANCE_Z``.
    """

    core: Any
    history: dict[str, list[float]]
    best_epoch: int
    best_eval_loss: float
    start_eval_loss: float
    network_epoch: int = 0
    gain_z: float = 0.0

    @property
    def network_eval_loss(self) -> float:
        """The eval loss of the network's best epoch, whether or not it was kept."""
        return float(self.history["val_loss"][self.network_epoch - 1])


def fit(
    params: Params,
    scaler: Standardizer,
    train: tuple[np.ndarray, np.ndarray],
    evaluation: tuple[np.ndarray, np.ndarray],
    epochs: int,
    patience: int,
    seed: int,
    on_epoch: Callable[[int, float], None] | None = None,
) -> FitResult:
    """Trains a core from the least-squares start, stopping early on the eval split's loss.

    The start itself (epoch 0, least squares on the train split) competes with the
    trained network: early stopping keeps the epoch with the lowest eval loss, and that
    epoch replaces the start only when it is ``clearly_better`` on the eval days;
    otherwise the core stays the least-squares line.

    Args:
        params: The hyperparameters.
        scaler: Statistics of the train split.
        train: Features and target of the train split (unstandardized).
        evaluation: Features and target of the eval split (unstandardized).
        epochs: Most epochs to run.
        patience: Epochs without improvement on eval before stopping.
        seed: Random seed: the start's weights and each epoch's order of the rows.
        on_epoch: Called after every epoch with its number (from 1) and eval loss (the
            tuner's pruning hook, the ``trial`` command's printout); it may raise to stop.

    Returns:
        The core with the weights of its best eval epoch (0: the start), and the loss
        history (epoch 1 onwards).

    Raises:
        TrainingError: The loss became NaN or infinite.
    """
    set_seed(seed)
    x_train, y_train = scaler.features(train[0]), scaler.target(train[1])
    x_eval, y_eval = scaler.features(evaluation[0]), scaler.target(evaluation[1])
    start = least_squares(x_train.astype(np.float64), y_train.astype(np.float64))
    core = build_core(params, x_train.shape[1], start)
    loop = _TrainingLoop(core, (x_train, y_train), (x_eval, y_eval), params)
    start_loss, line = loop.evaluate()
    start_weights = core.get_weights()
    history, best_weights = loop.run(epochs, patience, seed, on_epoch)
    best = int(np.argmin(history["val_loss"]))
    core.set_weights(best_weights)
    _, trained = loop.evaluate()
    z = gain_z(trained, line, y_eval)
    if not z > SIGNIFICANCE_Z:  # the line stays
        core.set_weights(start_weights)
        return FitResult(core, history, 0, start_loss, start_loss, best + 1, z)
    return FitResult(
        core, history, best + 1, float(history["val_loss"][best]), start_loss, best + 1, z
    )


class _TrainingLoop:
    """Mini-batch Adam on the mean squared error, one compiled call per epoch.

    Keras' ``Model.fit`` spends most of a small network's time around the steps: a
    ``tf.data`` iterator for the train rows and another for the eval rows every epoch,
    callbacks, and a traced function per mode. Here an epoch is one call of one traced
    function (every batch runs inside the graph, in the order a seeded NumPy generator
    shuffles), and the eval loss another: two traces per network.
    """

    def __init__(self, core, train, evaluation, params: Params):
        self.core = core
        self.x, self.y = (tf.constant(a.reshape(len(a), -1)) for a in train)
        self.x_eval, self.y_eval = (tf.constant(a.reshape(len(a), -1)) for a in evaluation)
        self.params = params
        self.batch_size = params.batch_size
        self.optimizer = core.optimizer
        self.optimizer.build(core.trainable_variables)  # no variables made while tracing
        self._epoch = tf.function(self._train_epoch)
        self._eval = tf.function(self._predict_eval)

    def _train_epoch(self, order):
        """One pass over the train rows in ``order``; the mean loss of its batches."""
        rows = tf.shape(order)[0]
        total = tf.constant(0.0)
        for first in tf.range(0, rows, self.batch_size):
            batch = order[first : first + self.batch_size]
            x, y = tf.gather(self.x, batch), tf.gather(self.y, batch)
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(self.core(x, training=True) - y))
            variables = self.core.trainable_variables
            self.optimizer.apply(tape.gradient(loss, variables), variables)
            total += loss * tf.cast(tf.shape(batch)[0], tf.float32)
        return total / tf.cast(rows, tf.float32)

    def _predict_eval(self):
        predicted = self.core(self.x_eval, training=False)
        return tf.reduce_mean(tf.square(predicted - self.y_eval)), predicted

    def evaluate(self) -> tuple[float, np.ndarray]:
        """The eval loss of the core's weights now, and its eval predictions."""
        loss, predicted = self._eval()
        return float(loss), predicted.numpy().ravel()

    def run(self, epochs: int, patience: int, seed: int, on_epoch=None):
        """Trains until ``patience`` epochs bring no lower eval loss, or ``epochs`` ran.

        Returns:
            The history (``loss``, ``val_loss`` per epoch) and the best epoch's weights.

        Raises:
            TrainingError: A loss became NaN or infinite.
        """
        shuffle = np.random.default_rng(seed)
        history: dict[str, list[float]] = {"loss": [], "val_loss": []}
        best_weights, wait = None, 0
        for epoch in range(1, epochs + 1):
            order = tf.constant(shuffle.permutation(len(self.x)).astype(np.int32))
            history["loss"].append(float(self._epoch(order)))
            history["val_loss"].append(self.evaluate()[0])
            if not all(math.isfinite(history[k][-1]) for k in history):
                raise TrainingError(
                    f"the training loss stopped being a number (NaN or infinite) at epoch "
                    f"{epoch} with {self.params}; no model was exported",
                    "lower learning_rate (e.g. divide it by 10) or check the data for extreme rows",
                )
            if best_weights is None or history["val_loss"][-1] < min(history["val_loss"][:-1]):
                best_weights, wait = self.core.get_weights(), 0
            else:
                wait += 1
            if on_epoch is not None:
                on_epoch(epoch, history["val_loss"][-1])
            if wait >= patience:
                break
        return history, best_weights


SIGNIFICANCE_Z = 3.0
"""How many standard errors the network must beat the line by, day by day on eval.

A gain of 3 standard errors arises by chance in 0.13% of fits (one-sided); a search of
12 trials and the final fit then pass a chance gain less than 2% of the time. The
standard error is the autocorrelation-robust one of ``gain_z``: with the plain one, a
run of good days on one price series would count as many independent wins."""


def gain_z(predicted: np.ndarray, line: np.ndarray, actual: np.ndarray) -> float:
    """How many standard errors the network's eval errors beat the line's by.

    The day-by-day gain is the line's squared error minus the network's; this is its
    mean over the eval days divided by the standard error of that mean (a paired test).
    The eval days are consecutive days of one price series, and a volatile week makes
    several large gains in a row, so that standard error is Newey-West's (``hac_stderr``)
    rather than std / sqrt(n), which would count such a week as independent wins.
    Positive: the network did better on average; 0 with fewer than two days.
    """
    actual = np.asarray(actual, np.float64).ravel()
    gain = (np.asarray(line, np.float64) - actual) ** 2 - (
        np.asarray(predicted, np.float64) - actual
    ) ** 2
    if len(gain) < 2:
        return 0.0
    spread = hac_stderr(gain)
    if spread > 0:
        return float(gain.mean() / spread)
    return math.copysign(math.inf, gain.mean()) if gain.mean() else 0.0


def hac_lags(days: int) -> int:
    """The lags ``hac_stderr`` weighs for a series of ``days``: floor(4 (n / 100)^(2/9)).

    Newey and West's (1994) rule of thumb for the Bartlett kernel: 3 lags for 28 to 99
    days, 4 for 100 to 272, 5 for 273 to 620; at most ``days - 1``.
    """
    return max(0, min(days - 1, math.floor(4 * (days / 100) ** (2 / 9))))


def hac_stderr(series: np.ndarray) -> float:
    """The standard error of a time series' mean, robust to autocorrelation (Newey-West).

    The variance of the mean adds to the series' variance its autocovariances up to
    ``hac_lags`` days, weighted down linearly with the lag (Bartlett's kernel, which
    keeps the sum non-negative). Positively autocorrelated days give a larger standard
    error than std / sqrt(n); independent days about the same.
    """
    x = np.asarray(series, np.float64).ravel()
    n = len(x)
    deviation = x - x.mean()
    variance = float(deviation @ deviation) / n
    lags = hac_lags(n)
    for lag in range(1, lags + 1):
        weight = 1 - lag / (lags + 1)
        variance += 2 * weight * float(deviation[lag:] @ deviation[:-lag]) / n
    return math.sqrt(max(variance, 0.0) / n)


def clearly_better(predicted: np.ndarray, line: np.ndarray, actual: np.ndarray) -> bool:
    """Whether the network's eval errors beat the line's by more than chance would.

    The eval loss of any network differs a little from the line's by chance alone, and
    picking the best of many epochs and trials makes such a difference look real. So
    the network must lower the squared error day by day, on average, by more than
    ``SIGNIFICANCE_Z`` standard errors of that average (``gain_z``, a paired test over
    the eval days, its standard error robust to runs of similar days).
    """
    return gain_z(predicted, line, actual) > SIGNIFICANCE_Z
