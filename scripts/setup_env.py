"""Creates .venv from this platform's lock, and prints what that cost.

    python3.11 scripts/setup_env.py learner   # make setup: the pipeline, notebooks, lab
    python3.11 scripts/setup_env.py full      # make setup-dev: and the tests, linters, scanners

The lock is locks/<platform>/<set>.txt (scripts/lock.py writes them). At the end it prints
the time it took, what came over the network and what from pip's cache or a local wheel
folder, and the size of .venv, and marks the venv ready for make (.venv/.learner, and
.venv/.full for the full set). Two set-ups of one venv at once (two makes side by side)
take turns: the second waits, then finds the venv ready. Standard library only: it runs
before any venv exists.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = "README.md, section 'Set-up on your machine'"
_SIZE = re.compile(r"\(([\d.]+) (kB|MB|GB)\)")
_UNITS = {"kB": 1e3, "MB": 1e6, "GB": 1e9}


def fail(message: str, fix: str) -> None:
    print(f"error: {message}\nfix: {fix}", file=sys.stderr)
    raise SystemExit(1)


def platform_name(system: str, machine: str) -> str:
    """The locks/ folder for an operating system and CPU, or a failure that says what to do."""
    machine = machine.lower()
    if system == "Linux" and machine in ("x86_64", "amd64"):
        return "linux-x86_64"
    if system == "Linux" and machine in ("aarch64", "arm64"):
        return "linux-aarch64"
    if system == "Darwin" and machine == "arm64":
        return "macos-arm64"
    if system == "Darwin":
        fail(
            f"this Python runs as {machine} on macOS: TensorFlow 2.21 has no wheel for Intel "
            "Macs, and an Intel Python on Apple silicon runs under Rosetta",
            "on Apple silicon, install an arm64 Python 3.11 (python.org's installer or "
            "`brew install python@3.11`) and pass PYTHON=/path/to/it; on an Intel Mac, use "
            f"the workshop image ({DOCS})",
        )
    if system == "Windows":
        fail("Windows itself is not supported", f"use WSL2 and Ubuntu ({DOCS})")
    fail(
        f"no lock for {system} on {machine}",
        f"use Linux x86-64 or ARM, macOS on Apple silicon, WSL2, or the workshop image ({DOCS})",
    )
    raise AssertionError  # unreachable: fail() exits


def folder_bytes(path: Path) -> int:
    """The bytes of every file under PATH, links not followed."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # a file removed while counting
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


def sources(pip_output: str) -> dict[str, list[float]]:
    """Where pip took each file from, and its bytes: network, cache or a local folder."""
    seen: dict[str, list[float]] = {"network": [], "cache": [], "local": []}
    for line in pip_output.splitlines():
        line = line.strip()
        size = _SIZE.search(line)
        if line.startswith("Downloading ") and size:
            seen["network"].append(float(size.group(1)) * _UNITS[size.group(2)])
        elif line.startswith("Using cached ") and size:
            seen["cache"].append(float(size.group(1)) * _UNITS[size.group(2)])
        elif line.startswith("Processing ") and ".whl" in line:
            # Processing /a/wheel/folder/name.whl (from -r LOCK (line N))
            wheel = Path(line.removeprefix("Processing ").split(" (from ")[0])
            seen["local"].append(wheel.stat().st_size if wheel.is_file() else 0)
    return seen


def pip(venv: Path, *args: str) -> str:
    """Runs the venv's pip; its output, or a failure with pip's last lines."""
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        fail(
            f"pip {' '.join(args)} failed:\n{tail}",
            "a network error: run it again (pip keeps what it fetched); a build error on "
            f"Linux ARM: apt install gcc python3-dev ({DOCS})",
        )
    return done.stdout


def megabytes(values: list[float]) -> str:
    return f"{sum(values) / 1e6:,.0f} MB in {len(values)} files"


# Packages every lock leaves out (scripts/lock.py), each with its reason: installed as it is
# (--no-deps), a lock brings none of them, and a set-up removes one an older set-up left.
EXCLUDED = {
    "rfc3987-syntax": "jupyter-events asks for jsonschema[format-nongpl], whose IRI check "
    "builds a parser at import: 2 s in every process that imports kfp (kfp, then kubernetes, "
    "then kubernetes-validate, then jsonschema), so in each step of every local run; no "
    "schema here or in Jupyter uses the iri formats, and jsonschema skips them without it",
}
# Each set and the sets it includes: the files make reads to know a venv is ready.
STAMPS = {"learner": (".learner",), "full": (".full", ".learner")}


def is_ready(venv: Path, name: str) -> bool:
    """Whether the set's stamp is newer than what it was made from, as make decides."""
    stamp = venv / STAMPS[name][0]
    inputs = [ROOT / "pyproject.toml", *ROOT.glob(f"locks/*/{name}.txt")]
    return stamp.exists() and all(stamp.stat().st_mtime >= p.stat().st_mtime for p in inputs)


@contextlib.contextmanager
def one_at_a_time(venv: Path) -> Iterator[bool]:
    """Holds the venv's lock: a second set-up of the same venv waits for the first.

    Yields whether it had to wait (then the other set-up may have done the work).
    """
    import fcntl  # POSIX only: imported here, so that Windows gets platform_name's answer

    venv.mkdir(parents=True, exist_ok=True)
    # Read-only: a lock file another user made (sudo make …) locks all the same.
    descriptor = os.open(venv / ".setup.lock", os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            waited = False
        except BlockingIOError:
            print(
                f"waiting: another set-up of {venv} is under way (another make beside this)",
                flush=True,
            )
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            waited = True
        yield waited
    finally:
        os.close(descriptor)


def install(venv: Path, name: str) -> None:
    platform_dir = platform_name(platform.system(), platform.machine())
    lock = ROOT / "locks" / platform_dir / f"{name}.txt"
    started = time.monotonic()
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pinned = len(re.findall(r"^[A-Za-z0-9_.\-]+==", lock.read_text(), re.MULTILINE))
    print(f"installing {pinned} pinned packages from {lock.relative_to(ROOT)} into {venv}")
    # The lock as it is: every package it needs is pinned there, and nothing else comes in.
    seen = sources(pip(venv, "install", "--no-deps", "-r", str(lock)))
    pip(venv, "install", "--no-deps", "--quiet", "-e", str(ROOT))
    pip(venv, "uninstall", "--yes", "--quiet", *EXCLUDED)  # not installed: a warning only
    seconds = time.monotonic() - started
    size = folder_bytes(venv)
    print(
        f"set-up ({name}, {platform_dir}) took {seconds:.0f} s: downloaded "
        f"{megabytes(seen['network'])}; from pip's cache {megabytes(seen['cache'])}; "
        f"from local wheel folders {megabytes(seen['local'])}; "
        f"{venv} is {size / 1e9:.2f} GB ({size / 2**30:.2f} GiB)"
    )
    for stamp in STAMPS[name]:
        (venv / stamp).touch()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("set", choices=["learner", "full"])
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv")
    args = parser.parse_args()
    if sys.version_info[:2] != (3, 11):
        fail(
            f"needs Python 3.11, and {sys.executable} is {platform.python_version()}",
            "install Python 3.11 and pass it: make setup PYTHON=/path/to/python3.11",
        )
    platform_name(platform.system(), platform.machine())  # a clear failure before any work
    with one_at_a_time(args.venv) as waited:
        if waited and is_ready(args.venv, args.set):
            print(f"{args.venv} is ready ({args.set}, newer than its lock): nothing to install")
        else:
            install(args.venv, args.set)
    return 0


if __name__ == "__main__":
    sys.exit(main())
