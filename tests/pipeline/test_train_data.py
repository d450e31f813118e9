"""Splits changed after the transform: tune and train refuse them with the fix, train nothing."""

import shutil

import pandas as pd
import pytest

from conftest import QUICK_TRAIN, days, row, write_csv
from crypto_pipeline.config import TuneConfig
from crypto_pipeline.errors import DataError, SourceError
from crypto_pipeline.hyperparameters import Params
from crypto_pipeline.splits import load_splits, split_path
from crypto_pipeline.train import train
from crypto_pipeline.transform import transform
from crypto_pipeline.tune import tune


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    """A transform output of 60 valid days."""
    folder = tmp_path_factory.mktemp("train-data")
    transform(write_csv(folder / "crypto-markets.csv", [row(d) for d in days(60)]), folder / "data")
    return folder / "data"


def edited(transformed, folder, split, changes):
    """A copy of the transform output whose SPLIT has CHANGES ({column: cell}) on line 5."""
    data = folder / "data"
    shutil.copytree(transformed, data)
    path = split_path(data, split)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    for column, cell in changes.items():
        frame.loc[3, column] = cell
    frame.to_csv(path, index=False)
    return data


BROKEN = {
    "missing": ({"high": ""}, "missing_price (high is missing)"),
    "a-word": ({"low": "n/a"}, "non_numeric (low='n/a' is not a number)"),
    "infinite": ({"close": "inf"}, "non_finite (close=inf is not finite)"),
    "zero-open": ({"open": "0"}, "non_positive_price (open=0 is not positive)"),
    "negative": ({"close": "-1"}, "non_positive_price (close=-1 is not positive)"),
    "past-float32": ({"high": "1e39"}, "price_out_of_range (high=1e39 is outside"),
    "high-below-low": ({"high": "1", "low": "2"}, "high_below_low (high=1.0 < low=2.0)"),
}


@pytest.mark.parametrize("split", ["train", "eval", "test"])
@pytest.mark.parametrize(("changes", "reason"), BROKEN.values(), ids=BROKEN.keys())
def test_a_split_changed_after_transform_is_refused_with_its_line(
    transformed, tmp_path, split, changes, reason
):
    data = edited(transformed, tmp_path, split, changes)
    with pytest.raises(DataError) as err:
        load_splits(data)
    problem = err.value.problem
    assert problem.startswith(f"the {split} split in {data} holds 1 row(s) whose prices break")
    assert f"the first, line 5: {reason}" in problem
    assert "run the transform step again" in err.value.fix


def test_train_and_tune_refuse_it_and_write_nothing(transformed, tmp_path):
    data = edited(transformed, tmp_path, "train", {"close": "inf"})
    with pytest.raises(DataError, match="the train split in .* holds 1 row"):
        train(data, Params(), tmp_path / "trained", QUICK_TRAIN)
    with pytest.raises(DataError, match="the train split in .* holds 1 row"):
        tune(data, tmp_path / "tuned", TuneConfig(trials=1, epochs=2), progress_bar=False)
    assert not (tmp_path / "trained").exists() and not (tmp_path / "tuned").exists()


def test_a_split_without_a_price_column_names_it(transformed, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(transformed, data)
    path = split_path(data, "eval")
    pd.read_csv(path).drop(columns=["low"]).to_csv(path, index=False)
    with pytest.raises(SourceError, match=r"the eval split in .* has no low column"):
        load_splits(data)


def test_valid_splits_are_read_as_numbers(transformed):
    splits = load_splits(transformed)
    for frame in (splits.train, splits.eval, splits.test):
        assert all(frame[c].dtype.kind == "f" for c in ("open", "high", "low", "close"))
