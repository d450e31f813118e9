import numpy as np
import pytest

from crypto_pipeline.errors import ConfigError, TrainingError
from crypto_pipeline.hyperparameters import SEARCH_SPACE, Params
from crypto_pipeline.model import Standardizer, build_core, build_serving, fit


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
    dense = [layer for layer in core.layers if layer.__class__.__name__ == "Dense"]
    assert [layer.units for layer in dense] == [40, 20, 10, 1]
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
