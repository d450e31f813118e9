import numpy as np
import pytest

from crypto_pipeline.errors import ConfigError, TrainingError
from crypto_pipeline.hyperparameters import SEARCH_SPACE, Params
from crypto_pipeline.model import (
    SIGNIFICANCE_Z,
    Standardizer,
    build_core,
    build_serving,
    clearly_better,
    fit,
    gain_z,
    hac_lags,
    hac_stderr,
    least_squares,
)


def test_default_params_lie_in_the_search_space():
    assert Params().to_dict().keys() == {h.name for h in SEARCH_SPACE}


def test_layer_sizes_shrink_by_the_scale():
    assert Params(num_layers=3, first_layer_size=64, layer_size_scale=0.5).layer_sizes() == [
        64,
        32,
        16,
    ]
    assert Params(num_layers=4, first_layer_size=8, layer_size_scale=0.25).layer_sizes() == [
        8,
        2,
        2,
        2,
    ]


@pytest.mark.parametrize(
    ("values", "problem", "fix"),
    [
        ({"num_layers": 2}, "missing first_layer_size", "exactly"),
        ({**Params().to_dict(), "dropout": 0.1}, "unknown dropout", "exactly"),
        ({**Params().to_dict(), "num_layers": 9}, "num_layers=9", "integer from 1 to 4"),
        ({**Params().to_dict(), "num_layers": 2.5}, "num_layers=2.5", "integer"),
        ({**Params().to_dict(), "learning_rate": "fast"}, "learning_rate", "number from"),
        ({**Params().to_dict(), "learning_rate": float("nan")}, "learning_rate", "number from"),
        ({**Params().to_dict(), "batch_size": 33}, "batch_size=33", "one of 16, 32, 64, 128"),
        ({**Params().to_dict(), "batch_size": 32.0}, "batch_size=32.0", "one of"),
        ({**Params().to_dict(), "num_layers": True}, "num_layers=True", "integer"),
    ],
)
def test_bad_params_name_the_problem_and_the_range(values, problem, fix):
    with pytest.raises(ConfigError) as err:
        Params.from_dict(values)
    assert problem in err.value.problem
    assert fix in err.value.fix


def test_core_is_built_from_params():
    params = Params(num_layers=3, first_layer_size=40, layer_size_scale=0.5, learning_rate=0.01)
    core = build_core(params)
    dense = {layer.name: layer.units for layer in core.layers if type(layer).__name__ == "Dense"}
    assert dense == {"hidden_1": 40, "hidden_2": 20, "hidden_3": 10, "deep": 1, "linear": 1}
    assert float(core.optimizer.learning_rate) == pytest.approx(0.01)


def test_serving_model_wraps_the_core_exactly():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 0.02, size=(50, 2))
    y = rng.normal(0, 0.03, size=50)
    scaler = Standardizer.fit(x, y)
    core = build_core(Params())
    serving = build_serving(core, scaler)
    prices = np.array([[100.0, 110.0, 95.0], [2.0, 2.5, 1.9]], dtype=np.float32)
    o, h, lo = prices[:, 0], prices[:, 1], prices[:, 2]
    feats = scaler.features(np.column_stack([h / o - 1, lo / o - 1]))
    ret = core.predict(feats, verbose=0).ravel() * scaler.target_std + scaler.target_mean
    expected = o * (1 + ret)
    got = serving.predict(prices, verbose=0).ravel()
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_a_diverging_loss_stops_with_a_clear_error():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 2))
    y = rng.normal(size=40)
    scaler = Standardizer.fit(x, y)
    x_bad = x.copy()
    x_bad[3, 0] = np.nan  # one poisoned value makes every later loss NaN
    with pytest.raises(TrainingError) as err:
        fit(Params(), scaler, (x_bad, y), (x, y), epochs=5, patience=2, seed=0)
    assert "NaN" in err.value.problem and "learning_rate" in err.value.fix


def test_the_untrained_network_is_least_squares():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 2))
    y = x @ [0.7, -0.2] + 0.1 + rng.normal(0, 0.3, size=200)
    start = least_squares(x, y)
    core = build_core(Params(num_layers=3), linear_start=start)
    design = np.column_stack([x, np.ones(len(x))])
    expected = design @ np.linalg.lstsq(design, y, rcond=None)[0]
    np.testing.assert_allclose(core.predict(x, verbose=0).ravel(), expected, atol=1e-5)


def test_when_no_epoch_beats_the_start_the_line_is_kept():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 2))
    y = x @ [0.5, -0.3] + 0.2  # exactly a line: no epoch can do better than the start
    scaler = Standardizer.fit(x[:200], y[:200])
    result = fit(Params(), scaler, (x[:200], y[:200]), (x[200:], y[200:]), 10, 3, 0)
    assert result.best_epoch == 0 and len(result.history["val_loss"]) >= 1
    assert result.best_eval_loss == result.start_eval_loss < 1e-8
    # The network's own best is still reported, beside what was kept.
    assert result.network_eval_loss == min(result.history["val_loss"])
    assert result.network_epoch == 1 + int(np.argmin(result.history["val_loss"]))
    assert not result.gain_z > SIGNIFICANCE_Z
    feats = scaler.features(x[200:])
    np.testing.assert_allclose(
        result.core.predict(feats, verbose=0).ravel(), scaler.target(y[200:]), atol=1e-4
    )


def test_an_epoch_that_beats_the_start_is_kept():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(600, 2))
    y = np.abs(x[:, 0]) + 0.1 * x[:, 1]  # a V shape: the line misses it, the network won't
    scaler = Standardizer.fit(x[:400], y[:400])
    result = fit(Params(), scaler, (x[:400], y[:400]), (x[400:], y[400:]), 30, 5, 0)
    assert result.best_epoch >= 1
    assert result.best_eval_loss < 0.5 * result.start_eval_loss
    assert result.network_epoch == result.best_epoch
    assert result.network_eval_loss == result.best_eval_loss
    assert result.gain_z > SIGNIFICANCE_Z


def test_a_gain_within_chance_does_not_count():
    rng = np.random.default_rng(6)
    actual = rng.normal(size=400)
    line = actual + rng.normal(0, 1.0, size=400)
    # Errors like the line's, a hair smaller on average: what chance gives.
    noisy = actual + rng.normal(0, 0.99, size=400)
    assert not clearly_better(noisy, line, actual)
    # Errors clearly smaller, day after day.
    assert clearly_better(actual + 0.5 * (line - actual), line, actual)
    assert not clearly_better(line, line, actual)  # no gain at all


def test_the_gain_is_counted_in_standard_errors():
    rng = np.random.default_rng(7)
    actual = rng.normal(size=300)
    line = actual + rng.normal(0, 1.0, size=300)
    better = actual + 0.5 * (line - actual)
    z = gain_z(better, line, actual)
    gain = (line - actual) ** 2 - (better - actual) ** 2
    assert z == pytest.approx(gain.mean() / hac_stderr(gain))
    # Independent days: about the plain standard error of the mean.
    assert z == pytest.approx(gain.mean() / (gain.std(ddof=1) / np.sqrt(len(gain))), rel=0.15)
    assert z > SIGNIFICANCE_Z and clearly_better(better, line, actual)
    assert gain_z(line, better, actual) == pytest.approx(-z)  # worse: negative
    assert gain_z(better[:1], line[:1], actual[:1]) == 0.0  # one day says nothing
    assert gain_z(line, line, actual) == 0.0


def test_runs_of_good_days_count_less_than_scattered_ones():
    # The same daily gains twice: once in runs of similar days, as a volatile week on one
    # price series gives, once shuffled. The mean and the plain standard error are the
    # same; only the autocorrelation differs, and it must lower the z.
    rng = np.random.default_rng(8)
    days = 300
    runs = np.empty(days)
    runs[0] = rng.normal()
    for day in range(1, days):  # AR(1), lag-1 autocorrelation about 0.7
        runs[day] = 0.7 * runs[day - 1] + rng.normal()
    gain = 0.4 + runs - runs.mean()
    shuffled = rng.permutation(gain)
    actual = np.zeros(days)
    line = np.sqrt(gain + 10.0)  # squared error 10 + gain
    network = np.full(days, np.sqrt(10.0))  # squared error 10
    scattered_line = np.sqrt(shuffled + 10.0)
    z_runs = gain_z(network, line, actual)
    z_scattered = gain_z(network, scattered_line, actual)
    plain = gain.mean() / (gain.std(ddof=1) / np.sqrt(days))
    assert z_scattered == pytest.approx(plain, rel=0.2)
    assert z_runs < 0.7 * z_scattered
    assert z_scattered > SIGNIFICANCE_Z > z_runs


def test_the_robust_standard_error_follows_newey_west():
    assert [hac_lags(n) for n in (2, 3, 50, 90, 100, 268, 1000)] == [1, 1, 3, 3, 4, 4, 6]
    x = np.array([1.0, 3.0, 2.0, 5.0, 4.0])
    d = x - x.mean()
    lags = hac_lags(len(x))  # 2: weights 2/3 and 1/3
    variance = d @ d / 5 + 2 * (2 / 3) * (d[1:] @ d[:-1]) / 5 + 2 * (1 / 3) * (d[2:] @ d[:-2]) / 5
    assert lags == 2
    assert hac_stderr(x) == pytest.approx(np.sqrt(variance / 5))
    # Strictly alternating days cancel out: the standard error does not go negative.
    assert hac_stderr(np.tile([1.0, -1.0], 50)) >= 0


def _v_shape(seed: int, rows: int = 300):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 2))
    return x, np.abs(x[:, 0]) + 0.1 * x[:, 1] + rng.normal(0, 0.1, size=rows)


def test_each_epoch_is_reported_and_early_stopping_keeps_the_best():
    x, y = _v_shape(8)
    scaler = Standardizer.fit(x[:200], y[:200])
    reported = []
    result = fit(
        Params(learning_rate=0.03),
        scaler,
        (x[:200], y[:200]),
        (x[200:], y[200:]),
        60,
        3,
        0,
        on_epoch=lambda epoch, loss: reported.append((epoch, loss)),
    )
    losses = result.history["val_loss"]
    assert reported == list(enumerate(losses, start=1))
    best = result.network_epoch
    assert losses[best - 1] == min(losses) < min(losses[best:] or [np.inf])
    if len(losses) < 60:  # stopped early: exactly `patience` epochs after the best
        assert len(losses) == best + 3


def test_a_raise_in_on_epoch_stops_training():
    x, y = _v_shape(9)
    scaler = Standardizer.fit(x, y)

    def stop_at_two(epoch, loss):
        if epoch == 2:
            raise RuntimeError("pruned")

    with pytest.raises(RuntimeError, match="pruned"):
        fit(Params(), scaler, (x, y), (x, y), 10, 5, 0, on_epoch=stop_at_two)


def test_the_same_seed_trains_the_same_network_and_another_seed_does_not():
    x, y = _v_shape(10)
    scaler = Standardizer.fit(x[:200], y[:200])
    runs = [
        fit(Params(batch_size=16), scaler, (x[:200], y[:200]), (x[200:], y[200:]), 4, 4, seed)
        for seed in (1, 1, 2)
    ]
    assert runs[0].history == runs[1].history
    assert runs[0].history != runs[2].history
