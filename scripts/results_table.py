"""Runs the pipeline with its default settings on data files and prints the results table.

Each source goes through ``crypto-pipeline run --coin COIN`` in a fresh pipeline root,
exactly as a learner runs it, and gives one Markdown row: the recognised format, the test
period, the model's test RMSE beside the three baselines on the same days, the ratios the
quality goal is stated in, and what the network kept (an epoch, or the least-squares
start). A source the pipeline refuses gives a row with its error. The README's results
table under "Train" is this script's output.

usage: .venv/bin/python scripts/results_table.py [--coin bitcoin] SOURCE...
       (SOURCE: a file, a folder of CSV files, or ``sample`` for the bundled sample)
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEADER = (
    "| data | format | test days | model RMSE | midpoint | least squares | open "
    "| model / midpoint | model / least squares | network kept |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)
CLI = Path(sys.executable).with_name("crypto-pipeline")


def sources(arguments: list[str]) -> list[str]:
    """The sources to run: files as given, the CSV files of a folder by name."""
    found = []
    for argument in arguments:
        path = Path(argument)
        found += sorted(map(str, path.glob("*.csv"))) if path.is_dir() else [argument]
    return found


def one_row(source: str, coin: str) -> tuple[str, float]:
    """Runs the pipeline on one source; returns its table row and the run's seconds."""
    name = "bundled synthetic sample" if source == "sample" else Path(source).name
    with tempfile.TemporaryDirectory(prefix="results-") as root:
        started = time.perf_counter()
        run = subprocess.run(
            [str(CLI), "run", "--source", source, "--coin", coin, "--pipeline-root", root],
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - started
        if run.returncode != 0:
            error = next((x for x in run.stderr.splitlines() if x.startswith("error:")), "")
            error = re.sub(re.escape(root) + r"\S*", "(the run's folder)", error)
            return f"| {name} | refused: {error.removeprefix('error: ')} |", seconds
        summary = json.loads(Path(root, "latest", "summary.json").read_text())
        raw = json.loads(Path(summary["artifacts"]["raw"], "ingest.json").read_text())
        metrics = json.loads(Path(summary["artifacts"]["model"], "metrics.json").read_text())
    base = summary["metrics"]["baselines"]
    rmse = metrics["test_rmse"]
    period = summary["test_period"]
    kept = f"epoch {metrics['best_epoch']}" if metrics["best_epoch"] else "least squares"
    cells = [
        name,
        raw["format"],
        f"{metrics['test_rows']} ({period['first_date']} to {period['last_date']})",
        f"{rmse:,.2f}",
        f"{base['midpoint']['rmse']:,.2f}",
        f"{base['least_squares']['rmse']:,.2f}",
        f"{base['open']['rmse']:,.2f}",
        f"{rmse / base['midpoint']['rmse']:.3f}",
        f"{rmse / base['least_squares']['rmse']:.3f}",
        kept,
    ]
    return "| " + " | ".join(cells) + " |", seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--coin", default="bitcoin", help="the coin to keep (default: bitcoin)")
    parser.add_argument("source", nargs="+", help="a CSV file, a folder of them, or sample")
    args = parser.parse_args()
    rows, total = [], 0.0
    for source in sources(args.source):
        row, seconds = one_row(source, args.coin)
        total += seconds
        print(f"{seconds:6.1f} s  {row}", file=sys.stderr, flush=True)
        rows.append(row)
    print(HEADER)
    print("\n".join(rows))
    print(f"\n{len(rows)} sources in {total:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
