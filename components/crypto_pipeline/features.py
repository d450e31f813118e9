"""Features and target: one definition for training, evaluation and serving.

Why ratios and not prices. The 2019 pipeline fed raw open, high and low prices to a
network and predicted the raw close, with a random train/test split. A random split leaks
the future into training; with an honest split by date, the test period's prices lie far
outside the training range (bitcoin went from about $100 to about $20,000 between 2013
and 2018), and a network fed raw prices cannot extrapolate to prices it never saw.

So every price is divided by the day's open. The inputs are the day's excursions,
``high / open - 1`` and ``low / open - 1``; the target is the day's return,
``close / open - 1``; a predicted return maps back to a price as
``open * (1 + return)``. These numbers look alike in 2013 and in 2018, so a model trained
on the past applies to the future.

The functions use only arithmetic operators, so they work unchanged on NumPy arrays,
pandas Series and TensorFlow tensors: the exported model computes exactly these lines.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

import numpy as np
import pandas as pd

T = TypeVar("T", bound="Quantity")


class Quantity(Protocol):
    """What the lines below compute on: floats, NumPy arrays, pandas Series, TF tensors."""

    def __truediv__(self: T, other: T, /) -> T: ...
    def __mul__(self: T, other: T, /) -> T: ...
    def __sub__(self: T, other: int, /) -> T: ...
    def __radd__(self: T, other: int, /) -> T: ...


INPUTS: tuple[str, ...] = ("open", "high", "low")
"""Raw inputs, in this order, of the served model."""

FEATURES: tuple[str, ...] = ("high_excursion", "low_excursion")
"""Model features: ``high / open - 1`` and ``low / open - 1``."""


def excursions(open_: T, high: T, low: T) -> tuple[T, T]:
    """The features of one or many days: how far high and low went from the open."""
    return high / open_ - 1, low / open_ - 1


def day_return(open_: T, close: T) -> T:
    """The target: the day's return, ``close / open - 1``."""
    return close / open_ - 1


def close_from_return(open_: T, ret: T) -> T:
    """The inverse of ``day_return``: the close price for a predicted return."""
    return open_ * (1 + ret)


def feature_matrix(frame: pd.DataFrame) -> np.ndarray:
    """The ``(n, 2)`` float64 feature matrix of a split's rows."""
    high, low = excursions(frame["open"], frame["high"], frame["low"])
    return np.column_stack([high.to_numpy(), low.to_numpy()]).astype(np.float64)


def target_vector(frame: pd.DataFrame) -> np.ndarray:
    """The ``(n,)`` float64 target of a split's rows."""
    return day_return(frame["open"], frame["close"]).to_numpy(dtype=np.float64)


def price_matrix(frame: pd.DataFrame) -> np.ndarray:
    """The ``(n, 3)`` float32 raw inputs (open, high, low) that the served model takes."""
    return frame[list(INPUTS)].to_numpy(dtype=np.float32)
