"""The model's hyperparameters and their search space, defined once.

They follow the original tutorial's tuning config (number of layers, size of the first
layer, how much each next layer shrinks, learning rate) plus the batch size.
``SEARCH_SPACE`` is their single definition: the local tuner samples it, the Katib
Experiment is rendered from it, the ``trial`` command's flags come from it, and a params
file is checked against it. The search's objective and its pruning rule are defined here
too, for the local tuner and the Katib Experiment alike, and so is the params file that
the tune step writes and the train step reads (``read_params``). This module needs no
TensorFlow, so it loads fast.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from crypto_pipeline.errors import ConfigError


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

    @property
    def bounds(self) -> tuple[float, float]:
        """``(low, high)`` of an int or float dimension."""
        if self.low is None or self.high is None:
            raise TypeError(f"hyperparameter {self.name} ({self.kind}) needs a low and a high")
        return self.low, self.high

    def check(self, value: Any) -> Any:
        """Returns the value if it lies in this dimension, else raises ConfigError."""
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if self.kind == "categorical":
            if any(value == c and type(value) is type(c) for c in self.choices):
                return value
            allowed = "one of " + ", ".join(map(str, self.choices))
        elif self.kind == "int":
            low, high = self.bounds
            if number and isinstance(value, int) and low <= value <= high:
                return value
            allowed = f"an integer from {low:g} to {high:g}"
        else:
            low, high = self.bounds
            if number and math.isfinite(value) and low <= value <= high:
                return float(value)
            allowed = f"a number from {low:g} to {high:g}"
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

OBJECTIVE_METRIC = "eval_loss"
"""What the search minimizes: the eval loss of the weights a trial keeps (``model.fit``)."""
PRUNER_MIN_TRIALS = 3
"""Trials that finish before the median rule stops any (Optuna's ``n_startup_trials`` of
``MedianPruner``, Katib's ``min_trials_required`` of ``medianstop``)."""
PRUNER_WARMUP_EPOCHS = 5
"""Epochs every trial runs before the median rule may stop it (Optuna's
``n_warmup_steps``, Katib's ``start_step``)."""
BEST_PARAMS_NAME = "best_params.json"
"""The params file the tune step writes and the train step reads."""


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


def read_params(path: str | os.PathLike[str]) -> Params:
    """Reads a params file (``best_params.json``) and checks it against the search space.

    Raises:
        ConfigError: The file is missing, not JSON, or its values are missing or out of
            range.
    """
    try:
        values = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"params file not found: {path}",
            "pass the best_params.json written by the tune step (crypto-pipeline tune)",
        ) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"params file {path} is not JSON: {exc}", "fix the file") from None
    if not isinstance(values, dict):
        raise ConfigError(f"params file {path} is not a JSON object", "fix the file")
    return Params.from_dict(values)
