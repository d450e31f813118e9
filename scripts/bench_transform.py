"""Benchmark: the Beam transform against plain pandas on a 1,000,000-row file.

Makes a file in the crypto-markets.csv schema (many coins, ISO dates, like the upstream
file), then times, in one run and on the same file:

- the project's Beam transform (DirectRunner), end to end: read, parse and validate,
  keep one coin, drop duplicates, sort, split, write splits, rejects and stats;
- a plain pandas read-validate-filter-write of the same file doing the same work.

Prints rows/s for both and the ratio of their wall times. Then it makes a file of one
coin whose dates repeat (300 MB: every date about 2,800 times), runs the transform on it
in a child process and prints the child's peak memory against the goal: 1 GB or less,
whatever the shape of the input. Usage:

    .venv/bin/python scripts/bench_transform.py [--rows 1000000] [--repeat 3] [--memory-mb 300]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from crypto_pipeline.config import TransformConfig
from crypto_pipeline.rows import PRICE_MAX, PRICE_MIN
from crypto_pipeline.schema import COLUMNS
from crypto_pipeline.transform import transform


def make_file(path: Path, rows: int, days: int = 1000, seed: int = 7) -> None:
    """Writes ``rows`` rows: ``rows // days`` coins of ``days`` days each, bitcoin first."""
    rng = np.random.default_rng(seed)
    coins = rows // days
    start = dt.date(2015, 1, 1)
    dates = np.array([(start + dt.timedelta(days=i)).isoformat() for i in range(days)])
    returns = rng.normal(0.001, 0.04, size=(coins, days))
    close = 10.0 * np.exp(np.cumsum(returns, axis=1))
    open_ = np.concatenate([np.full((coins, 1), 10.0), close[:, :-1]], axis=1)
    high = np.maximum(open_, close) * (1 + rng.exponential(0.01, size=(coins, days)))
    low = np.minimum(open_, close) * (1 - rng.exponential(0.01, size=(coins, days)) / 2)
    slugs = np.array(["bitcoin"] + [f"coin-{i:04d}" for i in range(1, coins)])
    frame = pd.DataFrame(
        {
            "slug": np.repeat(slugs, days),
            "symbol": np.repeat([s[:3].upper() for s in slugs], days),
            "name": np.repeat([s.title() for s in slugs], days),
            "date": np.tile(dates, coins),
            "ranknow": np.repeat(np.arange(1, coins + 1), days),
            "open": open_.ravel().round(6),
            "high": high.ravel().round(6),
            "low": low.ravel().round(6),
            "close": close.ravel().round(6),
            "volume": (close.ravel() * 1e5).round(),
            "market": (close.ravel() * 1e7).round(),
            "close_ratio": ((close - low) / (high - low)).ravel().round(4),
            "spread": (high - low).ravel().round(6),
        },
        columns=list(COLUMNS),
    )
    frame.to_csv(path, index=False)


def make_one_coin_file(path: Path, size_bytes: int, days: int = 1000, seed: int = 7) -> int:
    """Writes about ``size_bytes`` of one coin whose ``days`` dates repeat, in turn, to the end.

    Every row is valid; all but the first row of each date are duplicates.

    Returns:
        The number of data rows written.
    """
    rng = np.random.default_rng(seed)
    start = dt.date(2015, 1, 1)
    dates = np.array([(start + dt.timedelta(days=i)).isoformat() for i in range(days)])
    chunk = 10_000
    rows = 0
    with path.open("w", newline="") as f:
        f.write(",".join(COLUMNS) + "\n")
        while f.tell() < size_bytes:
            close = 10.0 * np.exp(rng.normal(0, 0.5, chunk))
            open_ = close * np.exp(rng.normal(0, 0.02, chunk))
            high = np.maximum(open_, close) * (1 + rng.exponential(0.01, chunk))
            low = np.minimum(open_, close) * (1 - rng.exponential(0.01, chunk) / 2)
            frame = pd.DataFrame(
                {
                    "slug": "bitcoin",
                    "symbol": "BTC",
                    "name": "Bitcoin",
                    "date": dates[(rows + np.arange(chunk)) % days],
                    "ranknow": 1,
                    "open": open_.round(6),
                    "high": high.round(6),
                    "low": low.round(6),
                    "close": close.round(6),
                    "volume": (close * 1e5).round(),
                    "market": (close * 1e7).round(),
                    "close_ratio": ((close - low) / (high - low)).round(4),
                    "spread": (high - low).round(6),
                },
                columns=list(COLUMNS),
            )
            frame.to_csv(f, index=False, header=False)
            rows += chunk
    return rows


MEMORY_GOAL_BYTES = 1 << 30
"""Peak memory of the transform for 300 MB of input, of any shape."""

# The child reports its own high-water mark (VmHWM): ru_maxrss of a child started by a
# large process carries that process's peak over (vfork, then exec), and this one is large.
_CHILD = """
import sys
from crypto_pipeline.transform import transform
transform(sys.argv[1], sys.argv[2])
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


def peak_memory(input_path: Path, output_dir: Path) -> tuple[int, float]:
    """Runs the transform in a child process.

    Returns:
        The child's peak resident memory in bytes, and its seconds.
    """
    started = time.perf_counter()
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(input_path), str(output_dir)],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    return int(child.stdout.split()[-1]) * 1024, time.perf_counter() - started


def pandas_transform(input_path: Path, output_dir: Path, coin: str = "bitcoin") -> int:
    """The same work as the Beam transform, in pandas: returns rows kept."""
    output_dir.mkdir(parents=True, exist_ok=True)
    df = pd.read_csv(input_path, keep_default_na=False, na_values=["", "NA"])
    df["line"] = np.arange(2, len(df) + 2)
    coin_rows = df[df["slug"] == coin].copy()
    date = pd.to_datetime(coin_rows["date"], format="%Y-%m-%d", errors="coerce")
    prices = coin_rows[["open", "high", "low", "close"]].apply(pd.to_numeric, errors="coerce")
    reason = pd.Series("", index=coin_rows.index)
    reason[date.isna()] = "bad_date"
    reason[(reason == "") & prices.isna().any(axis=1)] = "missing_price"
    reason[(reason == "") & ~np.isfinite(prices).all(axis=1)] = "non_finite"
    reason[(reason == "") & (prices <= 0).any(axis=1)] = "non_positive_price"
    out_of_range = ((prices < PRICE_MIN) | (prices > PRICE_MAX)).any(axis=1)
    reason[(reason == "") & out_of_range] = "price_out_of_range"
    reason[(reason == "") & (prices["high"] < prices["low"])] = "high_below_low"
    outside = (prices["open"] < prices["low"]) | (prices["open"] > prices["high"])
    reason[(reason == "") & outside] = "open_outside_low_high"
    outside = (prices["close"] < prices["low"]) | (prices["close"] > prices["high"])
    reason[(reason == "") & outside] = "close_outside_low_high"
    valid = coin_rows[reason == ""].assign(date=date[reason == ""].dt.strftime("%Y-%m-%d"))
    valid = valid.sort_values(["date", "line"])
    duplicated = valid["date"].duplicated()
    kept = valid[~duplicated]
    rejects = coin_rows[reason != ""].assign(reason=reason[reason != ""])
    n = len(kept)
    n_train, n_eval = int(n * 0.7), int(n * 0.15)
    parts = {
        "train": kept[:n_train],
        "eval": kept[n_train : n_train + n_eval],
        "test": kept[n_train + n_eval :],
    }
    for name, part in parts.items():
        part[list(COLUMNS)].to_csv(output_dir / f"{name}.csv", index=False)
    rejects.to_csv(output_dir / "rejects.csv", index=False)
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each (median)")
    parser.add_argument(
        "--memory-mb",
        type=int,
        default=300,
        help="size of the one-coin file with repeated dates for the memory check (0: skip)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "crypto-markets.csv"
        t0 = time.perf_counter()
        make_file(data, args.rows)
        size_mb = data.stat().st_size / 1e6
        print(f"made {args.rows:,} rows ({size_mb:.0f} MB) in {time.perf_counter() - t0:.1f} s")
        beam_s, pandas_s = [], []
        for i in range(args.repeat):
            t0 = time.perf_counter()
            stats = transform(data, Path(tmp) / f"beam-{i}", TransformConfig())
            beam_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            kept = pandas_transform(data, Path(tmp) / f"pandas-{i}")
            pandas_s.append(time.perf_counter() - t0)
            assert stats["rows_read"] == args.rows and stats["rows_kept"] == kept, (stats, kept)
        b, p = statistics.median(beam_s), statistics.median(pandas_s)
        print(
            f"beam   (DirectRunner): {b:6.2f} s  {args.rows / b:>10,.0f} rows/s  "
            f"runs: {', '.join(f'{s:.2f}' for s in beam_s)}"
        )
        print(
            f"pandas               : {p:6.2f} s  {args.rows / p:>10,.0f} rows/s  "
            f"runs: {', '.join(f'{s:.2f}' for s in pandas_s)}"
        )
        print(f"ratio beam/pandas    : {b / p:.2f}x (target: 3x or less)")
        if args.memory_mb:
            data.unlink()
            rows = make_one_coin_file(data, args.memory_mb * 10**6)
            size_mb = data.stat().st_size / 1e6
            peak, seconds = peak_memory(data, Path(tmp) / "memory")
            verdict = "ok" if peak <= MEMORY_GOAL_BYTES else "OVER THE GOAL"
            print(
                f"memory, one coin with repeated dates ({size_mb:.0f} MB, {rows:,} rows): "
                f"peak {peak / 2**20:,.0f} MiB in {seconds:.1f} s "
                f"(goal: {MEMORY_GOAL_BYTES / 2**30:.0f} GiB or less): {verdict}"
            )


if __name__ == "__main__":
    main()
