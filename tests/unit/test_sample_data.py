import io

import numpy as np
import pandas as pd
import pytest

from crypto_pipeline.sample_data import SAMPLE_PATH, generate_sample
from crypto_pipeline.schema import COLUMNS


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return pd.read_csv(SAMPLE_PATH)


def test_committed_sample_is_current():
    """The bundled file is generated; regenerating it must give the same bytes."""
    assert SAMPLE_PATH.read_text(encoding="utf-8") == generate_sample(), (
        "the bundled sample is stale: run `crypto-pipeline sample` and commit the result"
    )


def test_generation_is_deterministic_and_seeded():
    assert generate_sample(seed=1) == generate_sample(seed=1)
    assert generate_sample(seed=1) != generate_sample(seed=2)


def test_exact_schema_and_several_coins(sample):
    assert tuple(sample.columns) == COLUMNS
    assert sample["slug"].nunique() >= 4
    assert sample["name"].str.endswith("(synthetic)").all(), "every row is labelled synthetic"


def test_bitcoin_has_at_least_1500_consecutive_days(sample):
    btc = sample[sample["slug"] == "bitcoin"]
    dates = pd.to_datetime(btc["date"], format="%Y-%m-%d")
    assert len(btc) >= 1500
    assert dates.is_monotonic_increasing and dates.diff().dropna().dt.days.eq(1).all()


def test_prices_are_consistent(sample):
    assert (sample[["open", "high", "low", "close"]] > 0).all().all()
    assert (sample["low"] <= sample[["open", "close"]].min(axis=1)).all()
    assert (sample["high"] >= sample[["open", "close"]].max(axis=1)).all()
    assert np.allclose(sample["spread"], sample["high"] - sample["low"], atol=1e-6)


@pytest.mark.parametrize("slug", ["bitcoin", "ethereum", "litecoin"])
def test_returns_are_heavy_tailed_and_cluster(sample, slug):
    coin = sample[sample["slug"] == slug]
    returns = np.log(coin["close"]).diff().dropna()
    assert returns.kurt() > 1.0, "excess kurtosis: tails heavier than a normal's"
    # Volatility clustering: big moves follow big moves, while returns themselves
    # are close to uncorrelated.
    assert returns.abs().autocorr(1) > 0.05
    assert abs(returns.autocorr(1)) < returns.abs().autocorr(1)
    assert 0.01 < returns.std() < 0.15


def test_open_is_previous_close(sample):
    for _, coin in sample.groupby("slug"):
        assert np.allclose(coin["open"].to_numpy()[1:], coin["close"].to_numpy()[:-1])


def test_market_cap_and_volume_follow_price(sample):
    for _, coin in sample.groupby("slug"):
        supply = coin["market"] / coin["close"]
        # Market cap is close x a slowly growing supply.
        assert (supply.diff().dropna() > -1e-3 * supply.iloc[0]).all()
        assert supply.iloc[-1] / supply.iloc[0] < 3
        turnover = coin["volume"] / coin["market"]
        assert turnover.between(1e-4, 1).all()
        # Volume rises on days with large moves.
        moves = np.log(coin["close"]).diff().abs()
        assert moves.corr(np.log(turnover)) > 0.1


def test_sample_reads_back_through_csv_text():
    frame = pd.read_csv(io.StringIO(generate_sample()))
    assert len(frame) > 7000
