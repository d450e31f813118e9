import numpy as np
import pandas as pd
import pytest

from crypto_pipeline import features


@pytest.fixture
def days():
    rng = np.random.default_rng(0)
    open_ = 10 ** rng.uniform(-4, 5, size=1000)
    close = open_ * np.exp(rng.normal(0, 0.05, size=1000))
    high = np.maximum(open_, close) * (1 + rng.exponential(0.01, size=1000))
    low = np.minimum(open_, close) * (1 - rng.exponential(0.005, size=1000))
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close})


def test_close_round_trips_through_the_return(days):
    ret = features.day_return(days["open"], days["close"])
    back = features.close_from_return(days["open"], ret)
    np.testing.assert_allclose(back, days["close"], rtol=4e-16 * 4, atol=0)


def test_features_are_scale_free(days):
    scaled = days * 1000.0
    np.testing.assert_allclose(features.feature_matrix(scaled), features.feature_matrix(days))
    np.testing.assert_allclose(features.target_vector(scaled), features.target_vector(days))


def test_feature_matrix_columns(days):
    x = features.feature_matrix(days)
    assert x.shape == (1000, 2) and x.dtype == np.float64
    assert (x[:, 0] >= 0).all() and (x[:, 1] <= 0).all()
    np.testing.assert_allclose(x[:, 0], days["high"] / days["open"] - 1)
    assert features.price_matrix(days).shape == (1000, 3)


def test_the_same_lines_work_on_tensors(days):
    import tensorflow as tf

    tensors = [tf.constant(days[c].to_numpy()) for c in ("open", "high", "low")]
    high, low = features.excursions(*tensors)
    np.testing.assert_allclose(np.column_stack([high, low]), features.feature_matrix(days))
