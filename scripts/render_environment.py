"""Writes environment.yml (conda) from requirements.lock, so both install the same set.

Run by `make lock`; a test fails when environment.yml is not what this script writes.

    python scripts/render_environment.py [--check]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
ENVIRONMENT = ROOT / "environment.yml"
PYTHON = "3.11"
_PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+==[^\s;#]+)")


def pins(lock_text: str) -> list[str]:
    """The ``name==version`` lines of a lock file, in its order."""
    return [m.group(1) for line in lock_text.splitlines() if (m := _PIN.match(line))]


def render(lock_text: str) -> str:
    """The environment.yml text for a lock file's pins."""
    lines = [
        "# Generated from requirements.lock by `make lock` (scripts/render_environment.py).",
        "# Do not edit: change pyproject.toml and run `make lock`.",
        "# Usage: conda env create -f environment.yml && conda activate kubeflow-for-poets",
        "name: kubeflow-for-poets",
        "channels:",
        "  - conda-forge",
        "dependencies:",
        f"  - python={PYTHON}",
        "  - pip",
        "  - pip:",
        *(f"      - {pin}" for pin in pins(lock_text)),
        "      - -e .",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if environment.yml is stale")
    args = parser.parse_args()
    text = render(LOCK.read_text())
    if args.check:
        if ENVIRONMENT.read_text() != text:
            print("environment.yml is stale: run `make lock`", file=sys.stderr)
            return 1
        return 0
    ENVIRONMENT.write_text(text)
    print(f"wrote {ENVIRONMENT.relative_to(ROOT)} ({len(pins(LOCK.read_text()))} pins)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
