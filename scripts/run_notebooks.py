"""Executes the numbered notebooks headless with papermill; keeps the executed copies.

    .venv/bin/python scripts/run_notebooks.py                 # every notebook, its defaults
    .venv/bin/python scripts/run_notebooks.py --quick         # notebook 06 with a short search
    .venv/bin/python scripts/run_notebooks.py --only 02 -p require_docker=True
    .venv/bin/python scripts/run_notebooks.py --output-dir DIR   # the copies elsewhere

Each notebook gets only the parameters its `parameters` cell declares. The executed
copies go to notebooks/executed/ (not committed), or to --output-dir (a run beside
another, such as `make test-containers` beside `make test`, keeps its own); the time of
each notebook and the total are printed, against the goals: the whole series cold within
4 minutes, notebook 06 within 2.5 minutes (with the notebooks' own defaults, as a learner
runs them). Exits non-zero when a cell fails, naming the notebook and its executed copy.
"""

from __future__ import annotations

import argparse
import ast
import sys
import time
from pathlib import Path

import papermill

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
EXECUTED = NOTEBOOKS / "executed"
QUICK = {"trials": 3, "tune_epochs": 10, "train_epochs": 30}
"""Settings for a quick run of notebook 06 (its defaults are the full tutorial's)."""
GOALS_S = {"series": 240, "06-crypto-pipeline.ipynb": 150}
"""Time goals with the defaults: the whole series, and notebook 06."""


def parameter(text: str) -> tuple[str, object]:
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value  # a plain string


def shown(path: Path) -> str:
    """PATH as the messages show it: from the repository's root when it is inside."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="notebook 06 with a short search")
    parser.add_argument(
        "--only", action="append", default=[], help="notebooks whose name starts so"
    )
    parser.add_argument("-p", dest="parameters", action="append", default=[], type=parameter)
    parser.add_argument(
        "--output-dir", type=Path, default=EXECUTED, help="default: notebooks/executed/"
    )
    args = parser.parse_args()

    overrides = (QUICK if args.quick else {}) | dict(args.parameters)
    notebooks = sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))
    if args.only:
        notebooks = [nb for nb in notebooks if nb.name.startswith(tuple(args.only))]
    if not notebooks:
        print(f"no notebook matches {args.only}", file=sys.stderr)
        return 2
    declared = {nb: set(papermill.inspect_notebook(str(nb))) for nb in notebooks}
    unknown = set(dict(args.parameters)).difference(*declared.values())
    if unknown:
        print(f"no selected notebook has the parameter(s) {sorted(unknown)}", file=sys.stderr)
        return 2
    executed = args.output_dir.resolve()
    executed.mkdir(parents=True, exist_ok=True)
    timings = []
    for notebook in notebooks:
        given = {k: v for k, v in overrides.items() if k in declared[notebook]}
        output = executed / notebook.name
        print(f"{notebook.name} {given or ''}", flush=True)
        started = time.perf_counter()
        try:
            papermill.execute_notebook(
                str(notebook),
                str(output),
                parameters=given,
                kernel_name="python3",
                cwd=str(NOTEBOOKS),
                progress_bar=False,
            )
        except papermill.PapermillExecutionError as exc:
            print(
                f"error: {notebook.name} failed in cell {exc.exec_count}: {exc.ename}: "
                f"{exc.evalue}\n  fix: read the failing cell in {shown(output)}",
                file=sys.stderr,
            )
            return 1
        timings.append((notebook.name, time.perf_counter() - started))
        print(f"  done in {timings[-1][1]:.1f} s -> {shown(output)}", flush=True)
    total = sum(seconds for _, seconds in timings)
    print(f"{len(timings)} notebook(s) executed in {total:.1f} s")
    if not overrides and len(timings) == len(sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))):
        for name, seconds in [("series", total), *timings]:
            if name in GOALS_S:
                verdict = "within" if seconds <= GOALS_S[name] else "OVER"
                print(f"goal: {name} {seconds:.0f} s, {verdict} the {GOALS_S[name]} s goal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
