"""Pins the project's dependencies for every platform an attendee brings, from pyproject.toml.

For each platform, locks/<platform>/ holds:
  full.txt         every extra (the developer's and CI's set; the step images' constraints)
  learner.txt      the `learner` extra only, resolved within full.txt (make setup)
  environment.yml  conda's route to learner.txt (generated from it)

and the top-level environment.yml is conda's route on any of them: every platform's learner
pins, each marked with the platforms it is for (`conda env create -f environment.yml`).

Each lock is resolved by uv for that platform and Python 3.11 with wheels only, so a lock
that resolves proves that every pinned package has a wheel there. The packages in
SOURCE_BUILDS are the exceptions: they publish no usable wheel, each with its reason.

    python scripts/lock.py           # re-resolve every lock (make lock)
    python scripts/lock.py --check   # resolve again into a scratch folder; fail when stale
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from setup_env import EXCLUDED  # noqa: E402  (what the locks leave out, and why)

ROOT = Path(__file__).resolve().parents[1]
LOCKS = ROOT / "locks"
PYTHON = "3.11"
# uv's names for the platforms: glibc 2.28 or newer (Debian 10, Ubuntu 20.04 and later), macOS 12.
PLATFORMS = {
    "linux-x86_64": "x86_64-manylinux_2_28",
    "linux-aarch64": "aarch64-manylinux_2_28",
    "macos-arm64": "aarch64-apple-darwin",
}
# Packages built from their source distribution: on every platform, or on one.
SOURCE_BUILDS = {
    "kfp-server-api": "kfp's REST client publishes only an sdist (pure Python)",
    "google-apitools": "Beam pins 0.5.31, whose only wheel is Python 2's (pure Python)",
}
PLATFORM_SOURCE_BUILDS = {
    "linux-aarch64": {
        "psutil": "kserve 0.21 caps psutil below 6, and psutil has Linux ARM wheels from 6.0 "
        "only: pip compiles it (needs gcc and Python's headers: apt install gcc python3-dev)",
    },
}
# What pip's environment markers read on each platform, as a machine there reports it.
PLATFORM_MARKERS = {
    "linux-x86_64": "sys_platform == 'linux' and platform_machine == 'x86_64'",
    "linux-aarch64": "sys_platform == 'linux' and platform_machine == 'aarch64'",
    "macos-arm64": "sys_platform == 'darwin' and platform_machine == 'arm64'",
}
_PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+==[^\s;#]+)")


def source_builds(platform: str) -> dict[str, str]:
    """The packages allowed to build from source on PLATFORM, with their reasons."""
    return SOURCE_BUILDS | PLATFORM_SOURCE_BUILDS.get(platform, {})


def pins(lock_text: str) -> list[str]:
    """The ``name==version`` lines of a lock file, in its order."""
    return [m.group(1) for line in lock_text.splitlines() if (m := _PIN.match(line))]


def render_environment(platform: str, lock_text: str) -> str:
    """The environment.yml text for a platform's learner lock."""
    lines = [
        f"# Generated from locks/{platform}/learner.txt by `make lock` (scripts/lock.py).",
        "# Do not edit: change pyproject.toml and run `make lock`.",
        "# Usage, from the repository's root:",
        f"#   conda env create -f locks/{platform}/environment.yml",
        "#   conda activate kubeflow-for-poets",
    ]
    return conda_environment(lines, list(pins(lock_text)), "../..")


def marked_pins(learner_locks: dict[str, str]) -> list[str]:
    """Every platform's pins as one list: a pin all platforms share stays bare, any other
    carries the markers of the platforms it is for (LEARNER_LOCKS: platform -> lock text)."""
    platforms_of: dict[str, list[str]] = {}
    for platform, text in learner_locks.items():
        for pin in pins(text):
            platforms_of.setdefault(pin, []).append(platform)
    lines = []
    for pin in sorted(platforms_of, key=lambda p: (p.split("==")[0].lower(), p)):
        where = platforms_of[pin]
        if len(where) == len(learner_locks):
            lines.append(pin)
        else:
            lines.append(f"{pin}; " + " or ".join(f"({PLATFORM_MARKERS[p]})" for p in where))
    return lines


def render_top_environment(learner_locks: dict[str, str]) -> str:
    """The top-level environment.yml: the learner pins of every platform, marked by platform."""
    lines = [
        "# Generated from locks/<platform>/learner.txt by `make lock` (scripts/lock.py).",
        "# Do not edit: change pyproject.toml and run `make lock`.",
        "# Usage, from the repository's root, on Linux x86-64 or ARM or macOS arm64:",
        "#   conda env create -f environment.yml",
        "#   conda activate kubeflow-for-poets",
        "# pip installs your platform's pins (the markers pick them): the same set as",
        "# locks/<platform>/environment.yml and `make setup`, but for what pip adds as their",
        "# dependencies and `make setup` leaves out (rfc3987-syntax: scripts/setup_env.py).",
    ]
    return conda_environment(lines, [f'"{pin}"' for pin in marked_pins(learner_locks)], ".")


def conda_environment(comments: list[str], pin_lines: list[str], project: str) -> str:
    """An environment.yml: its comments, Python, then pip with PIN_LINES and the project."""
    lines = [
        *comments,
        "name: kubeflow-for-poets",
        "channels:",
        "  - conda-forge",
        "dependencies:",
        f"  - python={PYTHON}",
        "  - pip",
        "  - pip:",
        *(f"      - {pin}" for pin in pin_lines),
        f"      - -e {project}",
    ]
    return "\n".join(lines) + "\n"


def uv() -> str:
    """The uv of the project's environment (pinned in the dev extra), or the one on PATH."""
    here = Path(sys.executable).parent / "uv"
    found = str(here) if here.exists() else shutil.which("uv")
    if found is None:
        sys.exit("error: uv not found\nfix: make setup-dev (the dev extra installs uv)")
    return found


def compile_lock(platform: str, extra: str, output: Path, constraints: Path | None = None):
    """Resolves EXTRA for PLATFORM into OUTPUT (its pins are kept where they still fit)."""
    command = [
        uv(), "pip", "compile", "pyproject.toml", "--extra", extra,
        "--python-version", PYTHON, "--python-platform", PLATFORMS[platform],
        "--only-binary", ":all:", "--custom-compile-command", "make lock",
        "--quiet", "-o", str(output),
    ]  # fmt: skip
    for name in source_builds(platform):
        command += ["--no-binary", name]
    if constraints is not None:
        command += ["-c", str(constraints)]
    with tempfile.TemporaryDirectory() as tmp:
        excludes = Path(tmp) / "excludes.txt"
        excludes.write_text("".join(f"{name}\n" for name in EXCLUDED))
        done = subprocess.run(
            [*command, "--excludes", str(excludes)], cwd=ROOT, capture_output=True, text=True
        )
    if done.returncode == 0 and constraints is not None:
        # The annotations name the constraints file by the path passed: name the committed one.
        text = output.read_text().replace(f"-c {constraints}", f"-c locks/{platform}/full.txt")
        output.write_text(text)
    if done.returncode != 0:
        sys.exit(
            f"error: the {extra} set does not resolve for {platform} with wheels only:\n"
            f"{done.stderr.strip()}\n"
            "fix: pin a version that has a wheel there in pyproject.toml, or, for a pure "
            "Python package with no wheel at all, add it to SOURCE_BUILDS in scripts/lock.py"
        )


def write_locks(folder: Path) -> None:
    """Resolves every platform's locks into FOLDER (a copy of locks/ or locks/ itself), and
    the top-level environment.yml beside it."""
    learner_locks = {}
    for platform in PLATFORMS:
        out = folder / platform
        out.mkdir(parents=True, exist_ok=True)
        compile_lock(platform, "dev", out / "full.txt")
        compile_lock(platform, "learner", out / "learner.txt", constraints=out / "full.txt")
        learner = learner_locks[platform] = (out / "learner.txt").read_text()
        (out / "environment.yml").write_text(render_environment(platform, learner))
        print(
            f"{platform}: {len(pins((out / 'full.txt').read_text()))} pins in full.txt, "
            f"{len(pins(learner))} in learner.txt"
        )
    (folder.parent / "environment.yml").write_text(render_top_environment(learner_locks))


def stale_files(scratch: Path) -> list[str]:
    """The lock files that differ between locks/ and a fresh resolution in SCRATCH."""
    names = ["full.txt", "learner.txt", "environment.yml"]
    pairs = [
        (f"{platform}/{name}", f"locks/{platform}/{name}")
        for platform in PLATFORMS
        for name in names
    ]
    pairs.append(("../environment.yml", "environment.yml"))
    return [
        shown
        for name, shown in pairs
        if not (ROOT / shown).exists()
        or not filecmp.cmp(ROOT / shown, scratch / name, shallow=False)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="resolve into a scratch folder; fail when stale"
    )
    args = parser.parse_args()
    if not args.check:
        write_locks(LOCKS)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp) / "locks"
        shutil.copytree(LOCKS, scratch)  # the committed pins are uv's preferences
        write_locks(scratch)
        stale = stale_files(scratch)
    if stale:
        print(f"error: stale: {', '.join(stale)}\nfix: make lock", file=sys.stderr)
        return 1
    print("every platform's locks resolve with wheels, and match pyproject.toml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
