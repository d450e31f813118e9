import json

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from conftest import QUICK_TRAIN, days, row
from crypto_pipeline.config import TrainConfig, TuneConfig
from crypto_pipeline.errors import ConfigError, DataError
from crypto_pipeline.features import price_matrix
from crypto_pipeline.hyperparameters import SEARCH_SPACE, Params, read_params
from crypto_pipeline.model import FitResult, Standardizer, fit
from crypto_pipeline.plots import history_figure, kept_text, loss_figure, plot_search
from crypto_pipeline.splits import MIN_ROWS, load_splits, split_path
from crypto_pipeline.train import load_model, train
from crypto_pipeline.transform import transform
from crypto_pipeline.tune import (
    TRIAL_COLUMNS,
    _row,
    param_importances,
    read_result,
    trials_table,
    tune,
)


def test_tiny_tune_records_every_trial_and_the_best(sample_data, tmp_path):
    result = tune(
        sample_data,
        tmp_path,
        TuneConfig(trials=3, epochs=3, patience=2, seed=1),
        progress_bar=False,
    )
    trials = json.loads((tmp_path / "trials.json").read_text())
    assert trials == result.trials
    assert [t["number"] for t in trials] == [0, 1, 2]
    assert all(t["state"] in {"COMPLETE", "PRUNED"} for t in trials)
    assert all(list(t) == list(TRIAL_COLUMNS) for t in trials)
    assert all(set(t["params"]) == {h.name for h in SEARCH_SPACE} for t in trials)
    best = json.loads((tmp_path / "best_params.json").read_text())
    assert Params.from_dict(best) == result.best_params
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    assert result.best_value == min(t["eval_loss"] for t in complete)
    search = json.loads((tmp_path / "search.json").read_text())
    assert search["best_value"] == result.best_value
    assert search["eval_loss_least_squares"] == result.least_squares_eval_loss
    # A trial keeps the line or an epoch that beats it: never worse than the line.
    assert all(t["eval_loss"] <= result.least_squares_eval_loss for t in complete)
    assert result.plots[0] == "optimization_history.png"
    assert (tmp_path / "optimization_history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert read_result(tmp_path) == result


def test_a_finished_trial_scores_what_training_reports(sample_data, tmp_path):
    """The tuned objective is training's: same settings, epochs, patience, seed, same number."""
    # On the sample: two trials keep the line, one an epoch (the best), one is pruned.
    config = TuneConfig(trials=4, epochs=8, patience=3, seed=4)
    result = tune(sample_data, tmp_path / "tune", config, progress_bar=False)
    splits = load_splits(sample_data)
    scaler = Standardizer.fit(*splits.xy("train"))
    for t in result.trials:
        if t["state"] != "COMPLETE" or Params(**t["params"]) == result.best_params:
            continue  # the best one: the train step below
        fitted = fit(
            Params(**t["params"]),
            scaler,
            splits.xy("train"),
            splits.xy("eval"),
            config.epochs,
            config.patience,
            config.seed,
        )
        assert t["eval_loss"] == fitted.best_eval_loss, t
        assert t["best_epoch"] == fitted.best_epoch, t
        assert t["network_eval_loss"] == fitted.network_eval_loss, t
        assert t["epochs"] == len(fitted.history["val_loss"]), t
        if t["best_epoch"] == 0:  # kept the line: scores the line's eval loss
            assert t["eval_loss"] == result.least_squares_eval_loss
    # The train step with the best settings reports the best trial's value.
    metrics = train(
        sample_data,
        result.best_params,
        tmp_path / "train",
        TrainConfig(epochs=config.epochs, patience=config.patience, seed=config.seed),
    )
    best = next(t for t in result.trials if Params(**t["params"]) == result.best_params)
    assert metrics["eval_loss"] == result.best_value
    assert metrics["best_epoch"] == best["best_epoch"]
    assert metrics["network_eval_loss"] == best["network_eval_loss"]
    assert metrics["epochs_run"] == best["epochs"]
    assert metrics["eval_loss_least_squares"] == result.least_squares_eval_loss


def _study(losses, pruned=()):
    """A study told these objective values; trials numbered in ``pruned`` are pruned.

    Each trial reports a curve of three eval losses, the lowest 0.01 above its value.
    """
    import optuna

    from crypto_pipeline.tune import suggest

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for number, loss in enumerate(losses):
        trial = study.ask()
        suggest(trial)
        for step, value in enumerate((loss + 0.03, loss + 0.02, loss + 0.01)):
            trial.report(value, step)
        if number in pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, loss)
    return study


def test_pruned_trials_have_no_objective_and_are_marked_apart():
    study = _study([0.09, 0.08, 0.07, 0.09, 0.085], pruned={2, 4})
    rows = [_row(t, {}) for t in study.trials]
    assert [r["state"] for r in rows] == ["COMPLETE", "COMPLETE", "PRUNED", "COMPLETE", "PRUNED"]
    for r in rows:
        if r["state"] == "PRUNED":
            # Optuna would give it its last reported eval loss; the table gives it none.
            assert study.trials[r["number"]].value is not None
            assert r["eval_loss"] is None and r["best_epoch"] is None
        else:
            assert r["eval_loss"] == study.trials[r["number"]].value
    assert [r["network_eval_loss"] for r in rows] == pytest.approx([0.1, 0.09, 0.08, 0.1, 0.095])
    main, strip = history_figure(rows, 0.09).axes
    finished = next(line for line in main.lines if line.get_label().startswith("finished"))
    assert list(finished.get_xdata()) == [0, 1, 3]
    assert list(finished.get_ydata()) == [0.09, 0.08, 0.09]
    crosses = next(line for line in strip.lines if line.get_label().startswith("pruned"))
    assert list(crosses.get_xdata()) == [2, 4]
    star = next(line for line in main.lines if line.get_marker() == "*")
    assert (list(star.get_xdata()), list(star.get_ydata())) == ([1], [0.08])
    line = next(line for line in main.lines if line.get_label().startswith("least squares"))
    assert list(line.get_ydata()) == [0.09, 0.09]
    assert trials_table(rows).loc[2, "state"] == "pruned"
    assert pd.isna(trials_table(rows).loc[2, "eval_loss"])


def test_importances_are_computed_on_the_tuned_objective(tmp_path):
    """Only the learning rate moves the objective; the network's own loss follows another."""
    import optuna

    from crypto_pipeline.tune import suggest

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(60):
        trial = study.ask()
        params = suggest(trial)
        trial.set_user_attr("network_eval_loss", 0.05 + 0.01 * params.num_layers)
        study.tell(trial, 0.08 + 0.001 * np.log10(params.learning_rate))
    importances, note = param_importances(study)
    assert set(importances) == {h.name for h in SEARCH_SPACE}
    assert sum(importances.values()) == pytest.approx(1.0)
    assert max(importances, key=importances.get) == "learning_rate"
    assert "PED-ANOVA" in note and "eval_loss of the 60 finished trials" in note
    assert plot_search([_row(t, {}) for t in study.trials], tmp_path, 0.09, importances) == [
        "optimization_history.png",
        "param_importances.png",
    ]
    for name in ("optimization_history.png", "param_importances.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_small_search_gets_no_importances_and_says_why():
    importances, note = param_importances(_study([0.5, 0.4, 0.45, 0.3, 0.35, 0.6] * 2))
    assert importances == {}
    assert "41 finished trials" in note and "finished 12" in note


def test_when_most_trials_kept_the_line_no_setting_mattered():
    # 50 finished trials, 47 kept the line: the best tenth (5) ties with the rest.
    importances, note = param_importances(_study([0.12] * 47 + [0.1, 0.11, 0.115]))
    assert importances == {}
    assert "no better than the worst" in note


def test_one_trial_draws_the_history_only(sample_data, tmp_path):
    import matplotlib

    style = dict(matplotlib.rcParams)
    result = tune(sample_data, tmp_path, TuneConfig(trials=1, epochs=2, seed=1), False)
    assert result.plots == ["optimization_history.png"]
    assert not (tmp_path / "param_importances.png").exists()
    assert result.importances == {} and "finished 1" in result.importance_note
    assert dict(matplotlib.rcParams) == style


def _kept(figure):
    """Where the loss plot's star (what was kept) sits, its label, and the title."""
    (ax,) = figure.axes
    star = next(line for line in ax.lines if line.get_marker() == "*")
    return (star.get_xdata()[0], star.get_ydata()[0]), star.get_label(), ax.get_title()


def test_the_loss_plot_shows_what_training_kept(trained):
    out, metrics = trained
    history = json.loads((out / "history.json").read_text())
    result = FitResult(
        None,
        history,
        metrics["best_epoch"],
        metrics["eval_loss"],
        metrics["eval_loss_least_squares"],
        metrics["network_best_epoch"],
        metrics["gain_z"],
    )
    where, label, title = _kept(loss_figure(result))
    if metrics["best_epoch"]:
        assert where == (metrics["best_epoch"], metrics["eval_loss"])
        assert history["val_loss"][metrics["best_epoch"] - 1] == metrics["eval_loss"]
        assert label == f"kept: epoch {metrics['best_epoch']}"
        assert title.startswith(f"Kept epoch {metrics['best_epoch']}:")
    else:
        assert where == (0, metrics["eval_loss_least_squares"]) == (0, metrics["eval_loss"])
        assert label == "kept: least squares" and title.startswith("Kept least squares")


def test_a_network_below_the_line_that_was_not_kept_says_so():
    """Every epoch under the line, yet the line kept: the gain was within chance."""
    history = {"loss": [0.2, 0.18, 0.17, 0.16], "val_loss": [0.085, 0.083, 0.081, 0.082]}
    result = FitResult(None, history, 0, 0.09, 0.09, 3, 2.6)
    where, label, title = _kept(loss_figure(result))
    assert where == (0, 0.09) and label == "kept: least squares"
    assert title.replace("\n", " ") == kept_text(result)
    assert kept_text(result).startswith("Kept least squares (eval loss 0.09): the network's best")
    assert "only 2.6 standard errors" in kept_text(result)
    (ax,) = loss_figure(result).axes
    ring = next(line for line in ax.lines if line.get_label().startswith("network's best"))
    assert (ring.get_xdata()[0], ring.get_ydata()[0]) == (3, 0.081)
    kept = FitResult(None, history, 3, 0.081, 0.09, 3, 3.4)
    assert _kept(loss_figure(kept))[:2] == ((3, 0.081), "kept: epoch 3")
    assert kept_text(kept).startswith("Kept epoch 3: eval loss 0.081 against least squares'")


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


def test_prices_that_never_move_are_refused_before_training(csv_file, tmp_path):
    """Every day the same prices: a baseline is exact, and no ratio to it exists."""
    transform(csv_file([row(d) for d in days(60)]), tmp_path / "data")
    with pytest.raises(DataError) as err:
        train(tmp_path / "data", Params(), tmp_path / "out", QUICK_TRAIN)
    assert "is predicted exactly by the least_squares baseline (its RMSE is 0)" in (
        err.value.problem
    )
    assert "real market days" in err.value.fix
    assert not (tmp_path / "out").exists()


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


@pytest.mark.slow  # fresh interpreters importing TensorFlow
def test_tune_and_train_do_not_import_each_other():
    """Each step loads what it needs: the splits, params and plots have homes of their own."""
    import subprocess
    import sys

    for module, other in (("tune", "train"), ("train", "tune")):
        code = (
            f"import sys, crypto_pipeline.{module}\n"
            f"print('crypto_pipeline.{other}' in sys.modules, 'optuna' in sys.modules)"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert done.stdout.split()[0] == "False", module
        if module == "train":  # the search's library is the tuner's alone
            assert done.stdout.split()[1] == "False"
