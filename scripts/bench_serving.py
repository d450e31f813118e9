"""Benchmark: latency of the local KServe model server, on loopback only.

Starts `crypto-pipeline serve` on 127.0.0.1, waits until the model is ready, then:

- sends single-instance requests from 8 concurrent clients (2,000 in all by default) and
  prints p50, p90, p99 and max latency, throughput and the error count;
- sends one 1,000-instance request several times and prints its median latency.

Every request has a timeout and the run has a time limit; the server is stopped at the end.

    .venv/bin/python scripts/bench_serving.py --model runs/latest/train/model
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

from crypto_pipeline.errors import ConfigError
from crypto_pipeline.serve import require_saved_model, running_server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a SavedModel folder (default: the latest run's model)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--time-limit", type=float, default=120.0, help="seconds for the load")
    args = parser.parse_args()
    if args.model is None:
        summary = Path("runs/latest/summary.json")
        if summary.exists():
            args.model = json.loads(summary.read_text())["model_dir"]
    try:
        require_saved_model(args.model or "runs/latest/train/model")
    except ConfigError as exc:
        print(f"error: {exc.problem}\n  fix: {exc.fix}", file=sys.stderr)
        return 1

    with running_server(args.model) as base:
        url = f"{base}/v1/models/crypto:predict"
        rng = np.random.default_rng(0)
        bodies = []
        for _ in range(max(args.requests, 1000)):  # the big request takes the first 1,000
            low = float(rng.uniform(50, 60000))
            high = low * float(1 + rng.uniform(0, 0.1))
            bodies.append({"instances": [[float(rng.uniform(low, high)), high, low]]})
        deadline = time.monotonic() + args.time_limit
        local = threading.local()  # one connection (session) per client thread

        def one(i: int) -> tuple[float, bool]:
            if time.monotonic() > deadline:
                return 0.0, False
            session = getattr(local, "session", None) or requests.Session()
            local.session = session
            start = time.perf_counter()
            try:
                ok = session.post(url, json=bodies[i], timeout=5).status_code == 200
            except requests.RequestException:
                ok = False
            return (time.perf_counter() - start) * 1000, ok

        for i in range(20):  # warm up
            one(i)
        start = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            results = list(pool.map(one, range(args.requests)))
        wall = time.perf_counter() - start
        latencies = np.array([ms for ms, ok in results if ok])
        errors = sum(1 for _, ok in results if not ok)
        p50, p90, p99 = np.percentile(latencies, [50, 90, 99])
        print(
            f"single-instance requests: {len(results):,} from {args.clients} clients in "
            f"{wall:.1f} s ({len(results) / wall:,.0f} req/s), errors: {errors}"
        )
        print(
            f"  latency ms: p50 {p50:.1f}  p90 {p90:.1f}  p99 {p99:.1f}  "
            f"max {latencies.max():.1f}  (targets: p50 <= 15, p99 <= 60)"
        )

        big = {"instances": [b["instances"][0] for b in bodies[:1000]]}
        times = []
        for _ in range(10):
            t0 = time.perf_counter()
            response = requests.post(url, json=big, timeout=10)
            times.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200 and len(response.json()["predictions"]) == 1000
        print(
            f"1,000-instance request: median {statistics.median(times):.1f} ms, "
            f"max {max(times):.1f} ms over 10 (target: <= 200)"
        )
        return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
