"""Keeping kfp.local's cache honest: no step is served from it with files lost since.

kfp.local checks only that a cached artifact's top folder exists. Each run therefore lists
every file its finished steps wrote, with its size, in its folder's ``artifacts.json``
(``record_artifacts``); before the next run, cache entries whose files are gone or changed
are removed (``drop_stale_cache``), and so is a cached deploy whose registered version was
deleted from a local registry. Those steps then run again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from crypto_pipeline.files import is_remote, staged_files
from crypto_pipeline.registry import version_complete
from crypto_pipeline.workarounds.kfp_local import cache_entries, cached_artifacts, task_folder

ARTIFACTS_NAME = "artifacts.json"
"""In each run folder: the files (and sizes) of every step that finished in that run."""


def record_artifacts(run_dir: Path, steps: list[str]) -> None:
    """Writes ``artifacts.json``: every file the finished STEPS wrote, with its size.

    The file is replaced whole or not at all; on a full disk there is none, and kfp.local's
    own check applies to the run's cache entries.
    """
    files = {
        str(path.relative_to(run_dir)): path.stat().st_size
        for step in steps
        for path in sorted(task_folder(run_dir, step).rglob("*"))
        if path.is_file()
    }
    try:
        with staged_files(run_dir / ARTIFACTS_NAME) as (tmp,):
            tmp.write_text(json.dumps(files, indent=1, sort_keys=True) + "\n")
    except OSError:
        pass


def _artifacts(outputs: dict[str, Any]) -> list[dict[str, Any]]:
    """The artifacts of one cache entry's outputs, each with its ``uri`` and ``metadata``."""
    return [artifact for value in outputs.values() for artifact in cached_artifacts(value)]


def _registered_version_gone(outputs: dict[str, Any]) -> bool:
    """Whether a cached deploy names a version of a local registry that no longer holds it."""
    for artifact in _artifacts(outputs):
        uri = artifact["metadata"].get("version_uri", "")
        if uri and not is_remote(uri) and not version_complete(uri):
            return True
    return False


def _manifest(run_dir: Path, manifests: dict[Path, dict[str, int] | None]) -> dict[str, int] | None:
    """RUN_DIR's ``artifacts.json`` (read once into MANIFESTS), or None without one."""
    if run_dir not in manifests:
        try:
            manifests[run_dir] = json.loads((run_dir / ARTIFACTS_NAME).read_text())
        except (OSError, ValueError):
            manifests[run_dir] = None
    return manifests[run_dir]


def _files_changed(path: Path, run_dir: Path, manifest: dict[str, int]) -> bool:
    """Whether the artifact at PATH lost a file, or one changed size, since its run listed it."""
    name = str(path.relative_to(run_dir))
    expected = {k: v for k, v in manifest.items() if k == name or k.startswith(name + "/")}
    return not expected or any(
        not (run_dir / k).is_file() or (run_dir / k).stat().st_size != size
        for k, size in expected.items()
    )


def _stale(
    outputs: dict[str, Any], root: Path, manifests: dict[Path, dict[str, int] | None]
) -> bool:
    """Whether an artifact of a run under ROOT with an ``artifacts.json`` lost or changed a file."""
    for artifact in _artifacts(outputs):
        path = Path(artifact["uri"])
        if not path.is_absolute() or len(path.parents) < 2 or path.parents[1].parent != root:
            continue  # not a task's output in a run folder of ROOT: kfp.local's check applies
        run_dir = path.parents[1]
        manifest = _manifest(run_dir, manifests)
        if manifest is not None and _files_changed(path, run_dir, manifest):
            return True
    return False


def drop_stale_cache(root: Path) -> list[str]:
    """Removes the cache entries whose artifacts lost a file or changed size since written.

    Each entry is checked against the ``artifacts.json`` of the run that wrote it (entries
    of runs without one are left to kfp.local's own check). A cached deploy whose
    registered version was deleted from a local registry is removed too, so the run
    registers the model again.

    Returns:
        The names of the entries removed.
    """
    manifests: dict[Path, dict[str, int] | None] = {}
    removed = []
    for entry, outputs in cache_entries(root):
        if _registered_version_gone(outputs) or _stale(outputs, root, manifests):
            entry.unlink(missing_ok=True)
            removed.append(entry.name)
    return removed


def drop_cached(root: Path, artifact_uri: str) -> list[str]:
    """Removes the cache entries that hold the artifact at ARTIFACT_URI: its step runs again.

    Returns:
        The names of the entries removed.
    """
    removed = []
    for entry, outputs in cache_entries(root):
        if any(artifact["uri"] == artifact_uri for artifact in _artifacts(outputs)):
            entry.unlink(missing_ok=True)
            removed.append(entry.name)
    return removed
