"""Prints the step images' tag: the package version and a digest of what the images hold.

    python3 scripts/image_tag.py            # e.g. <version>-3f2a9c41d07e
    python3 scripts/image_tag.py --version  # the bare version, crypto_pipeline.__version__

The digest covers every file the step images are built from (their Dockerfiles and the
files beside them, the package, pyproject.toml, README.md and the Linux locks), so a
change to any of them gives a new tag. A new tag is a new image name: a cluster's nodes
pull it instead of keeping an old image under a reused tag, and Kubeflow Pipelines' cache,
which keys on the image name, runs the changed steps again. Standard library only: it runs
before any virtual environment exists (scripts/build_images.sh, scripts/cluster_e2e.sh).
"""

from __future__ import annotations

import argparse
import hashlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIPPED = {"__pycache__", ".ipynb_checkpoints"}
"""Folders no image holds (.dockerignore); nor ``*.egg-info``, which ``pip install -e``
writes beside the package: the same commit has the same tag in every checkout."""


def image_inputs(root: Path = ROOT) -> list[Path]:
    """The files the step images are built from, sorted."""
    files = [root / "pyproject.toml", root / "README.md"]
    files += sorted((root / "locks").glob("linux-*/full.txt"))
    for path in sorted((root / "components").rglob("*")):
        parts = path.relative_to(root).parts
        skipped = set(parts) & SKIPPED or any(p.endswith(".egg-info") for p in parts)
        if path.is_file() and not skipped and not path.name.endswith(".pyc"):
            files.append(path)
    return files


def package_version(root: Path = ROOT) -> str:
    """``crypto_pipeline.__version__``, the version's one home, read without importing it."""
    # A regular expression, not an import: any python3 runs this, before any environment.
    home = root / "components" / "crypto_pipeline" / "__init__.py"
    match = re.search(r'^__version__ = "([^"]+)"', home.read_text(), re.M)
    if not match:
        raise SystemExit(
            f'error: {home} has no __version__ = "…" line\n'
            'fix: put the version back there: __version__ = "X.Y.Z" (pyproject.toml reads it)'
        )
    return match[1]


def image_tag(root: Path = ROOT) -> str:
    """``<version>-<12 hex digits>``: crypto_pipeline.__version__ and the inputs' digest."""
    version = package_version(root)
    digest = hashlib.sha256()
    for path in image_inputs(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return f"{version}-{digest.hexdigest()[:12]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--list", action="store_true", help="print the files it covers")
    parser.add_argument(
        "--version", action="store_true", help="print the bare version (the reused tag) only"
    )
    args = parser.parse_args()
    if args.version:
        print(package_version())
        return
    if args.list:
        print("\n".join(p.relative_to(ROOT).as_posix() for p in image_inputs()))
    print(image_tag())


if __name__ == "__main__":
    main()
