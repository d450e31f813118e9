"""The model: a Keras DNN regressor, its hyperparameters and their search space.

The network sees scale-free features (see ``features``): it learns the day's return from
the day's excursions. Two Keras models share its layers:

- ``core`` maps standardized features to the standardized return; it is what trains;
- ``serving`` wraps ``core`` with everything around it, so that the exported model takes
  raw ``[open, high, low]`` prices and returns the predicted close price: the feature
  lines of ``features``, the standardization learnt on the train split, and the mapping
  back to a price. Nothing is computed outside the exported model at serving time.

The hyperparameters follow the original tutorial's tuning config (number of layers, size
of the first layer, how much each next layer shrinks, learning rate) plus the batch
size. ``SEARCH_SPACE`` is their single definition: the local tuner samples it, the Katib
Experiment is rendered from it, and a params file is checked against it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import numpy as np

from crypto_pipeline import features
from crypto_pipeline.errors import ConfigError, TrainingError


@dataclass(frozen=True)
class Hyperparameter:
    """One dimension of the search space.

    Attributes:
        name: The parameter's name in params files, trials and Katib.
        kind: ``int``, ``float`` or ``categorical``.
        low: Smallest value (int and float).
        high: Largest value (int and float).
        log: Sample on a log scale.
        choices: The values of a categorical parameter.
        help: What the parameter does.
    """

    name: str
    kind: Literal["int", "float", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    help: str = ""

    @property
    def flag(self) -> str:
        """The command-line flag without dashes in front, e.g. ``num-layers``."""
        return self.name.replace("_", "-")

    def check(self, value: Any) -> Any:
        """Returns the value if it lies in this dimension, else raises ConfigError."""
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if self.kind == "categorical":
            if number and value in self.choices:
                return value
            allowed = "one of " + ", ".join(map(str, self.choices))
        elif self.kind == "int":
            if number and isinstance(value, int) and self.low <= value <= self.high:
                return value
            allowed = f"an integer from {self.low:g} to {self.high:g}"
        else:
            if number and math.isfinite(value) and self.low <= value <= self.high:
                return float(value)
            allowed = f"a number from {self.low:g} to {self.high:g}"
        raise ConfigError(
            f"hyperparameter {self.name}={value!r} is out of range",
            f"{self.name} must be {allowed}",
        )


SEARCH_SPACE: tuple[Hyperparameter, ...] = (
    Hyperparameter("num_layers", "int", 1, 4, help="hidden layers"),
    Hyperparameter("first_layer_size", "int", 8, 128, log=True, help="units of layer 1"),
    Hyperparameter(
        "layer_size_scale", "float", 0.25, 1.0, help="each next layer's size / the previous"
    ),
    Hyperparameter("learning_rate", "float", 1e-4, 3e-2, log=True, help="Adam's step size"),
    Hyperparameter("batch_size", "categorical", choices=(16, 32, 64, 128), help="rows a step"),
)
"""The hyperparameters and their ranges: defined here once."""


@dataclass(frozen=True)
class Params:
    """One point of ``SEARCH_SPACE``; the contents of ``best_params.json``."""

    num_layers: int = 2
    first_layer_size: int = 32
    layer_size_scale: float = 0.5
    learning_rate: float = 3e-3
    batch_size: int = 32

    def __post_init__(self):
        space = {h.name: h for h in SEARCH_SPACE}
        for f in fields(self):
            space[f.name].check(getattr(self, f.name))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Params:
        """Reads params, refusing missing, unknown or out-of-range values.

        Raises:
            ConfigError: The names the problem and the allowed range.
        """
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in values]
        unknown = sorted(set(values) - set(names))
        if missing or unknown:
            problem = []
            if missing:
                problem.append("missing " + ", ".join(missing))
            if unknown:
                problem.append("unknown " + ", ".join(unknown))
            raise ConfigError(
                f"params: {'; '.join(problem)}",
                "a params file holds exactly: "
                + ", ".join(names)
                + " (the tune step writes one: best_params.json)",
            )
        return cls(**{n: values[n] for n in names})

    def to_dict(self) -> dict[str, Any]:
        """The params as a plain dict (JSON-ready)."""
        return asdict(self)

    def layer_sizes(self) -> list[int]:
        """Units of each hidden layer: the first size, shrinking by the scale."""
        return [
            max(2, round(self.first_layer_size * self.layer_size_scale**i))
            for i in range(self.num_layers)
        ]


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
    import keras
    import tensorflow as tf

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
    import keras

    inputs = keras.Input(shape=(n_features,), name="features")
    x = inputs
    for i, units in enumerate(params.layer_sizes()):
        x = keras.layers.Dense(units, activation="relu", name=f"hidden_{i + 1}")(x)
    output = keras.layers.Dense(1, name="standardized_return")(x)
    core = keras.Model(inputs, output, name="core")
    core.compile(optimizer=keras.optimizers.Adam(params.learning_rate), loss="mse")
    return core


def build_serving(core, scaler: Standardizer):
    """Wraps ``core`` into the model that takes raw prices and returns the close.

    Args:
        core: The trained DNN.
        scaler: The train split's statistics.

    Returns:
        A ``keras.Model`` from ``prices`` (float32, shape ``(n, 3)``: open, high, low) to
        the predicted close (shape ``(n, 1)``).
    """
    import keras

    prices = keras.Input(shape=(len(features.INPUTS),), dtype="float32", name="prices")
    open_, high, low = prices[:, 0:1], prices[:, 1:2], prices[:, 2:3]
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
    import keras

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


def quiet_tensorflow() -> None:
    """Keeps TensorFlow's C++ start-up chatter out of the learner's terminal."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
