"""The bundled synthetic sample: the offline default source of every run.

The sample is SYNTHETIC. It has the exact schema of the original ``crypto-markets.csv``
and the statistical shape of real daily crypto prices, but none of its numbers are real:
each coin's ``name`` says "(synthetic)" so that a table or plot made from it says so too.
For real data pass ``--source`` (see the README).

How the prices are made, per coin and day:

- daily log returns follow a GARCH(1,1) process with Student-t innovations (5 degrees
  of freedom, capped at 7 standard deviations): heavy tails and volatility
  clustering, as in real crypto returns;
- the market trades around the clock, so each day opens at the previous close;
- high and low lie above max(open, close) and below min(open, close) by random
  excursions that scale with the day's volatility, so low <= open, close <= high;
- market cap is close x a slowly growing supply; volume is a turnover share of the
  market cap that rises on days with large moves.

The file is generated deterministically (fixed seed, rounded output) and committed; a
test regenerates it and fails if it differs. Regenerate with ``crypto-pipeline sample``.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from crypto_pipeline.schema import COLUMNS

SAMPLE_PATH = Path(
    str(resources.files("crypto_pipeline") / "data" / "crypto-markets-synthetic.csv")
)
"""The bundled sample, shipped inside the package so that it works offline."""

SAMPLE_SEED = 2019
SAMPLE_END = dt.date(2018, 3, 25)


@dataclass(frozen=True)
class _Coin:
    slug: str
    symbol: str
    name: str
    start: dt.date
    start_price: float
    start_supply: float
    supply_growth: float  # relative growth per day
    drift: float  # mean daily log return
    volatility: float  # long-run daily volatility of log returns
    turnover: float  # mean daily volume / market cap


_COINS: tuple[_Coin, ...] = (
    _Coin(
        "bitcoin",
        "BTC",
        "Bitcoin",
        dt.date(2013, 4, 28),
        135.30,
        11.09e6,
        1.6e-4,
        0.0023,
        0.035,
        0.02,
    ),
    _Coin(
        "ethereum",
        "ETH",
        "Ethereum",
        dt.date(2015, 8, 7),
        2.83,
        72.0e6,
        1.2e-4,
        0.0040,
        0.060,
        0.03,
    ),
    _Coin("ripple", "XRP", "XRP", dt.date(2013, 8, 4), 0.0056, 7.8e9, 3.0e-4, 0.0022, 0.055, 0.01),
    _Coin(
        "litecoin",
        "LTC",
        "Litecoin",
        dt.date(2013, 4, 28),
        4.30,
        17.0e6,
        2.5e-4,
        0.0013,
        0.050,
        0.04,
    ),
    _Coin(
        "dogecoin",
        "DOGE",
        "Dogecoin",
        dt.date(2013, 12, 15),
        0.000205,
        4.0e9,
        6.0e-4,
        0.0016,
        0.065,
        0.02,
    ),
)

_GARCH_ALPHA = 0.07
_GARCH_BETA = 0.90
_T_DOF = 5.0
_SHOCK_CAP = 7.0
_SHADOW = 0.28
_NO_SHADOW = 0.1


def _significant(x: np.ndarray, digits: int = 6) -> np.ndarray:
    """Rounds each value to ``digits`` significant digits (at least 2 decimals)."""
    decimals = np.maximum(2, digits - 1 - np.floor(np.log10(x))).astype(int)
    return np.array([round(v, d) for v, d in zip(x.tolist(), decimals.tolist(), strict=True)])


def _simulate(coin: _Coin, rng: np.random.Generator) -> dict[str, np.ndarray]:
    days = (SAMPLE_END - coin.start).days + 1
    unit_t = rng.standard_t(_T_DOF, size=days) / math.sqrt(_T_DOF / (_T_DOF - 2))
    # A cap keeps single days plausible (real bitcoin's worst day in 2013-2018 was
    # about 7 standard deviations) while the tails stay heavy.
    unit_t = np.clip(unit_t, -_SHOCK_CAP, _SHOCK_CAP)
    omega = coin.volatility**2 * (1 - _GARCH_ALPHA - _GARCH_BETA)
    sigma = np.empty(days)
    returns = np.empty(days)
    var = coin.volatility**2
    shock = 0.0
    for t in range(days):
        var = omega + _GARCH_ALPHA * shock**2 + _GARCH_BETA * var
        sigma[t] = math.sqrt(var)
        shock = sigma[t] * unit_t[t]
        returns[t] = coin.drift + shock

    close = coin.start_price * np.exp(np.cumsum(returns))
    open_ = np.concatenate(([coin.start_price], close[:-1]))
    open_, close = _significant(open_), _significant(close)
    # Shadows (high above the body, low below it) are calibrated on real bitcoin days:
    # on average about 0.4 x the body |close - open|, and about 1 day in 10 closes at
    # its high or low.
    up = rng.exponential(_SHADOW * sigma) * (rng.random(days) > _NO_SHADOW)
    down = rng.exponential(_SHADOW * sigma) * (rng.random(days) > _NO_SHADOW)
    high = np.maximum(_significant(np.maximum(open_, close) * np.exp(up)), np.maximum(open_, close))
    low = np.minimum(
        _significant(np.minimum(open_, close) * np.exp(-down)), np.minimum(open_, close)
    )

    supply = coin.start_supply * np.exp(coin.supply_growth * np.arange(days))
    market = np.round(close * supply)
    calm = np.abs(returns - coin.drift) / coin.volatility
    turnover = coin.turnover * np.exp(0.35 * rng.standard_normal(days) + 0.3 * calm - 0.3)
    volume = np.round(market * turnover)
    spread = high - low
    close_ratio = np.where(spread > 0, (close - low) / np.where(spread > 0, spread, 1), 0.5)
    dates = [coin.start + dt.timedelta(days=i) for i in range(days)]
    return {
        "date": np.array([d.isoformat() for d in dates]),
        "open": open_,
        "high": high,
        "low": low,
        "close": close,
        "volume": volume,
        "market": market,
        "close_ratio": np.round(close_ratio, 4),
        "spread": np.round(spread, 8),
    }


def _fmt(value: float) -> str:
    """Shortest text that reads back as the same float; integers without ``.0``."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def generate_sample(seed: int = SAMPLE_SEED) -> str:
    """Makes the synthetic sample's CSV text.

    Args:
        seed: Seed of the random generator; the same seed gives the same bytes.

    Returns:
        The CSV text, header included, rows grouped by coin and sorted by date (as in
        the original file).
    """
    rng = np.random.default_rng(seed)
    simulated = [(coin, _simulate(coin, rng)) for coin in _COINS]
    final_caps = {coin.slug: sim["market"][-1] for coin, sim in simulated}
    by_cap = sorted(final_caps, key=final_caps.__getitem__, reverse=True)
    rank = {slug: i + 1 for i, slug in enumerate(by_cap)}
    lines = [",".join(COLUMNS)]
    for coin, sim in simulated:
        name = f"{coin.name} (synthetic)"
        for i, date in enumerate(sim["date"]):
            numbers = [_fmt(sim[c][i]) for c in COLUMNS[5:]]
            lines.append(
                ",".join([coin.slug, coin.symbol, name, date, str(rank[coin.slug]), *numbers])
            )
    return "\n".join(lines) + "\n"


def write_sample(path: Path = SAMPLE_PATH, seed: int = SAMPLE_SEED) -> Path:
    """Writes the synthetic sample to ``path`` (by default the bundled file).

    Returns:
        The path written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(generate_sample(seed), encoding="utf-8", newline="\n")
    return path
