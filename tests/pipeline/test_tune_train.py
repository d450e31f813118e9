import json

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from conftest import QUICK_TRAIN, days, row
from crypto_pipeline.config import TuneConfig
from crypto_pipeline.errors import ConfigError, DataError
from crypto_pipeline.features import price_matrix
from crypto_pipeline.hyperparameters import SEARCH_SPACE, Params
from crypto_pipeline.splits import split_path
from crypto_pipeline.train import MIN_ROWS, load_model, load_splits, read_params, train
from crypto_pipeline.transform import transform
from crypto_pipeline.tune import plot_search, tune


def test_tiny_tune_records_every_trial_and_the_best(sample_data, tmp_path):
    result = tune(
        sample_data,
        tmp_path,
        TuneConfig(trials=3, epochs=3, patience=2, seed=1),
        progress_bar=False,
    )
    trials = json.loads((tmp_path / "trials.json").read_text())
    assert [t["number"] for t in trials] == [0, 1, 2]
    assert all(t["state"] in {"COMPLETE", "PRUNED"} for t in trials)
    assert all(set(t["params"]) == {h.name for h in SEARCH_SPACE} for t in trials)
    best = json.loads((tmp_path / "best_params.json").read_text())
    assert Params.from_dict(best) == result.best_params
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    assert result.best_value == min(t["eval_loss"] for t in complete)
    assert result.plots[0] == "optimization_history.png"
    assert (tmp_path / "optimization_history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _study(losses):
    import optuna

    from crypto_pipeline.tune import suggest

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for loss in losses:
        trial = study.ask()
        suggest(trial)
        study.tell(trial, loss)
    return study


def test_the_search_plots_show_history_and_importance(tmp_path):
    assert plot_search(_study([0.5, 0.4, 0.45, 0.3, 0.35, 0.6]), tmp_path) == [
        "optimization_history.png",
        "param_importances.png",
    ]
    for name in ("optimization_history.png", "param_importances.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_when_every_trial_kept_the_line_no_setting_mattered(tmp_path):
    # Equal losses: every trial kept the least-squares start; importance has nothing to say.
    assert plot_search(_study([0.12] * 5), tmp_path) == ["optimization_history.png"]
    assert not (tmp_path / "param_importances.png").exists()


def test_one_trial_draws_the_history_only(sample_data, tmp_path):
    import matplotlib

    style = dict(matplotlib.rcParams)
    result = tune(sample_data, tmp_path, TuneConfig(trials=1, epochs=2, seed=1), False)
    assert result.plots == ["optimization_history.png"]
    assert not (tmp_path / "param_importances.png").exists()
    assert dict(matplotlib.rcParams) == style  # Optuna's style stays in its plots


def test_metrics_hold_the_model_and_three_baselines(trained, sample_data):
    out, metrics = trained
    assert json.loads((out / "metrics.json").read_text()) == metrics
    test = pd.read_csv(split_path(sample_data, "test"))
    assert metrics["test_rows"] == len(test)
    assert (metrics["test_first_date"], metrics["test_last_date"]) == (
        test["date"].iloc[0],
        test["date"].iloc[-1],
    )
    for key in ("test_rmse", "test_mae", "test_mape"):
        assert np.isfinite(metrics[key]) and metrics[key] > 0
    assert set(metrics["baselines"]) == {"open", "midpoint", "least_squares"}
    open_rmse = np.sqrt(np.mean((test["open"] - test["close"]) ** 2))
    assert metrics["baselines"]["open"]["rmse"] == pytest.approx(open_rmse)
    mid = (test["high"] + test["low"]) / 2
    assert metrics["baselines"]["midpoint"]["mae"] == pytest.approx(
        np.mean(np.abs(mid - test["close"]))
    )
    for name in ("open", "midpoint", "least_squares"):
        assert set(metrics["baselines"][name]) == {"rmse", "mae", "mape"}


def test_plots_and_metadata_are_written(trained):
    out, metrics = trained
    for name in ("loss.png", "test_predictions.png", "residuals.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = json.loads((out / "model" / "metadata.json").read_text())
    assert meta["params"] == Params().to_dict() and meta["seed"] == QUICK_TRAIN.seed
    assert set(meta["data_sha256"]) == {
        "train-00000-of-00001.csv",
        "eval-00000-of-00001.csv",
        "test-00000-of-00001.csv",
    }
    assert meta["libraries"]["tensorflow-cpu"] == "2.21.0"
    assert meta["inputs"] == ["open", "high", "low"]


def test_reloaded_savedmodel_predicts_what_training_predicted(trained, sample_data):
    out, metrics = trained
    test = pd.read_csv(split_path(sample_data, "test"))
    model = load_model(out / "model")
    served = model.serve(price_matrix(test)).numpy().ravel()
    rmse = np.sqrt(np.mean((served - test["close"].to_numpy()) ** 2))
    assert rmse == pytest.approx(metrics["test_rmse"], rel=1e-5)
    signature = model.signatures["serving_default"]
    one_day = signature(prices=tf.constant([[100.0, 104.0, 97.0]]))["output_0"]
    assert one_day.shape == (1, 1) and 97.0 <= float(one_day[0, 0]) <= 104.0 * 1.05


@pytest.mark.parametrize(
    "bad",
    [
        [[100.0, 104.0]],  # two inputs, not three
        [[100.0, 104.0, 97.0, 1.0]],  # four
        [100.0, 104.0, 97.0],  # no batch dimension
        [[[100.0, 104.0, 97.0]]],  # one dimension too many
    ],
    ids=["two", "four", "flat", "nested"],
)
def test_served_model_refuses_the_wrong_number_of_inputs(trained, bad):
    model = load_model(trained[0] / "model")
    signature = model.signatures["serving_default"]
    with pytest.raises((ValueError, TypeError, tf.errors.InvalidArgumentError)):
        signature(prices=tf.constant(bad, tf.float32))
    with pytest.raises((ValueError, TypeError, tf.errors.InvalidArgumentError)):
        model.serve(np.array(bad, np.float32))


@pytest.mark.parametrize(
    "bad",
    [tf.constant([[100, 104, 97]], tf.int64), tf.constant([["100", "104", "97"]])],
    ids=["int", "str"],
)
def test_serving_signature_refuses_the_wrong_type(trained, bad):
    signature = load_model(trained[0] / "model").signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a float tensor"):
        signature(prices=bad)


def test_the_same_seed_gives_the_same_metrics(sample_data, trained, tmp_path):
    again = train(sample_data, Params(), tmp_path, QUICK_TRAIN)
    first = trained[1]
    for key in ("test_rmse", "test_mae", "test_mape", "eval_rmse"):
        assert again[key] == pytest.approx(first[key], rel=1e-9), key


def test_too_few_rows_names_the_minimum(csv_file, tmp_path):
    transform(csv_file([row(d) for d in days(20)]), tmp_path / "data")
    with pytest.raises(DataError) as err:
        train(tmp_path / "data", Params(), tmp_path / "out", QUICK_TRAIN)
    assert f"at least {MIN_ROWS['train']}" in err.value.problem
    assert "--split" in err.value.fix


def test_an_empty_split_is_refused(csv_file, tmp_path):
    transform(csv_file([row(d) for d in days(60)]), tmp_path / "data")
    (split_path(tmp_path / "data", "eval")).write_text(
        (split_path(tmp_path / "data", "eval")).read_text().splitlines()[0] + "\n"
    )
    with pytest.raises(DataError, match="eval split .* has 0 rows"):
        tune(tmp_path / "data", tmp_path / "out", TuneConfig(trials=1, epochs=1))
    assert not (tmp_path / "out" / "best_params.json").exists()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "not found"),
        ("{not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"num_layers": 2}', "missing"),
        (json.dumps({**Params().to_dict(), "first_layer_size": 4096}), "out of range"),
    ],
)
def test_bad_params_files(tmp_path, content, problem):
    path = tmp_path / "best_params.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=problem):
        read_params(path)


def test_splits_load_from_any_fsspec_uri(sample_data):
    """A Katib trial on a cluster reads the transform output straight from a bucket."""
    import fsspec

    fs = fsspec.filesystem("memory")
    for path in sample_data.iterdir():
        fs.pipe(f"/bucket/transform/{path.name}", path.read_bytes())
    assert split_path("memory://bucket/transform", "eval").startswith("memory://")
    remote, local = load_splits("memory://bucket/transform"), load_splits(sample_data)
    for name in ("train", "eval", "test"):
        pd.testing.assert_frame_equal(getattr(remote, name), getattr(local, name))
    assert remote.sha256 == local.sha256


def test_the_exported_model_follows_the_umask(tmp_path):
    """TensorFlow makes 0755 folders; a step run as another user shares them by umask 002."""
    import os

    from crypto_pipeline.train import _follow_umask

    (tmp_path / "model" / "variables").mkdir(parents=True, mode=0o755)
    (tmp_path / "model").chmod(0o2755)
    previous = os.umask(0o002)
    try:
        _follow_umask(tmp_path / "model")
    finally:
        os.umask(previous)
    assert (tmp_path / "model").stat().st_mode & 0o7777 == 0o2775
    assert (tmp_path / "model" / "variables").stat().st_mode & 0o777 == 0o775
