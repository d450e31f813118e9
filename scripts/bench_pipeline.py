"""Benchmark: a cold `crypto-pipeline run` of a baseline commit beside the working tree's.

The baseline (``--baseline REF``, a commit, tag or branch) is checked out in a throwaway
``git worktree`` and run with ``PYTHONPATH=<worktree>/components``; the working tree runs
with its own ``components``. Both use this environment's Python and libraries and the
bundled sample, each run in a fresh pipeline root (no cache). The two alternate, round
by round (``--rounds``), so that a machine's load falls on both alike. It prints each
step's seconds in every round, their medians, the ratio new/old per step, and what each
side found (best params, test RMSE beside least squares'), then removes the worktree.

Only the ratios of one run mean something: a shared machine's load changes between runs.

    .venv/bin/python scripts/bench_pipeline.py --baseline d68ab85
    .venv/bin/python scripts/bench_pipeline.py --baseline main --rounds 3 -- --trials 6
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEPS = ("ingest", "transform", "tune", "train", "deploy")


class BenchError(Exception):
    """A run or the worktree failed: the message says what and what to do."""


def add_worktree(ref: str, folder: Path) -> Path:
    """Checks REF out into FOLDER as a detached worktree; returns FOLDER."""
    done = subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(folder), ref],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise BenchError(
            f"cannot check out {ref!r} in a worktree: {done.stderr.strip()}\n"
            "  fix: pass a commit, tag or branch of this repository (git log --oneline)"
        )
    return folder


def remove_worktree(folder: Path) -> None:
    """Removes the throwaway worktree (and git's record of it)."""
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(folder)],
        capture_output=True,
    )


def run_cold(tree: Path, pipeline_root: Path, extra: list[str], timeout: float) -> dict:
    """One cold run of TREE's code; returns its summary.json, with the wall-clock seconds."""
    env = {**os.environ, "PYTHONPATH": str(tree / "components")}
    command = [sys.executable, "-m", "crypto_pipeline.cli", "run"]
    command += ["--pipeline-root", str(pipeline_root), "--no-cache", *extra]
    started = time.perf_counter()
    try:
        done = subprocess.run(
            command, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise BenchError(
            f"the run of {tree} took more than {timeout:.0f} s\n"
            "  fix: raise --timeout on a loaded machine"
        ) from None
    if done.returncode:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-8:])
        raise BenchError(f"the run of {tree} failed:\n{tail}\n  fix: run it alone to see why")
    summary = json.loads((pipeline_root / "latest" / "summary.json").read_text())
    summary["wall_s"] = round(time.perf_counter() - started, 3)
    return summary


def durations(summary: dict) -> dict[str, float]:
    """Each step's seconds, their sum (``steps``) and the command's wall-clock time."""
    steps = {step: float(summary["durations_s"].get(step, 0.0)) for step in STEPS}
    return {**steps, "steps": sum(steps.values()), "wall": summary["wall_s"]}


def outcome(summary: dict) -> str:
    """What a run found: its best params and test RMSE beside least squares'."""
    metrics = summary["metrics"]
    params = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in summary["best_params"].items()
    )
    return (
        f"test RMSE {metrics['test_rmse']:.2f} (least squares "
        f"{metrics['baselines']['least_squares']['rmse']:.2f}, midpoint "
        f"{metrics['baselines']['midpoint']['rmse']:.2f}); best {params}"
    )


def table(old: list[dict[str, float]], new: list[dict[str, float]]) -> str:
    """Each row: a step, its seconds per round and median, old then new, and new/old."""
    rounds = len(old)
    head = ["step", *(f"old {i + 1}" for i in range(rounds)), "old med"]
    head += [*(f"new {i + 1}" for i in range(rounds)), "new med", "new/old"]
    lines = ["  ".join(f"{h:>9}" for h in head)]
    for key in (*STEPS, "steps", "wall"):
        before = [d[key] for d in old]
        after = [d[key] for d in new]
        mid_old, mid_new = statistics.median(before), statistics.median(after)
        ratio = f"{mid_new / mid_old:.2f}" if mid_old else "-"
        cells = [key, *(f"{v:.1f}" for v in before), f"{mid_old:.1f}"]
        cells += [*(f"{v:.1f}" for v in after), f"{mid_new:.1f}", ratio]
        lines.append("  ".join(f"{c:>9}" for c in cells))
    return "\n".join(lines)


def bench(ref: str, rounds: int, extra: list[str], timeout: float) -> None:
    """Runs both sides, alternating, and prints the table and what each found."""
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        work = Path(tmp)
        baseline = add_worktree(ref, work / "baseline")
        try:
            sides = {"old": baseline, "new": ROOT}
            results: dict[str, list[dict]] = {"old": [], "new": []}
            for i in range(rounds):
                order = ("old", "new") if i % 2 == 0 else ("new", "old")
                for side in order:
                    summary = run_cold(sides[side], work / f"{side}-{i}", extra, timeout)
                    results[side].append(summary)
                    seconds = durations(summary)
                    print(f"round {i + 1} {side}: steps {seconds['steps']:.1f} s", flush=True)
        finally:
            remove_worktree(baseline)
    print(f"\nseconds per step, old = {ref}, new = the working tree, {rounds} rounds each")
    print(table(*([durations(s) for s in results[side]] for side in ("old", "new"))))
    for side in ("old", "new"):
        print(f"{side}: {outcome(results[side][-1])}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="HEAD", help="git ref to compare with")
    parser.add_argument("--rounds", type=int, default=2, help="cold runs of each side")
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="most seconds one run may take"
    )
    parser.add_argument("extra", nargs="*", help="after --: more `crypto-pipeline run` flags")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    try:
        bench(args.baseline, args.rounds, args.extra, args.timeout)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
