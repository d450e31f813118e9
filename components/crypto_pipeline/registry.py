"""The model registry: numbered versions of the model, in a folder or a bucket.

A registry holds ``<registry>/<name>/<n>/``, one folder per version. A version is a
numbered folder holding ``saved_model.pb`` (``version_complete``, which every reader of
the registry asks: ``registered_versions``, ``latest_version``): a number claimed whose
copy has not finished, or never will (a killed deploy), is no version.

``register_and_test`` copies a SavedModel into a hidden staging folder beside the
versions, smoke-tests the copy (``crypto_pipeline.smoke``) and only then takes the next
number and publishes the copy under it; ``unregister`` takes a version back.

- On a local disk (a folder or ``file://``) the number is claimed by creating its folder,
  and the staged copy is renamed onto that empty folder in one step: a reader sees the
  version whole or not at all. Every deploy holds ``REGISTRY_LOCK`` shared while it
  stages; the one that gets it exclusively removes what killed deploys left
  (``.staging-*`` folders, empty claimed numbers). The staging folder cannot be named
  after its target (``files.staging_beside``): its number is claimed only once the copy
  answered, and its ``.staging-`` prefix is what that cleanup recognizes.
- In a bucket (``gs://``, ``s3://``, ``memory://``) the number is an object under
  ``.claims/`` written only if absent, and ``saved_model.pb`` is copied last; staging
  folders and incomplete versions older than ``STALE_BUCKET_STAGING_S`` are removed by
  the next deploy (a bucket has no lock that dies with its holder).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec

from crypto_pipeline.errors import ConfigError
from crypto_pipeline.files import is_remote, local_path
from crypto_pipeline.serving.model import MODEL_NAME, require_saved_model
from crypto_pipeline.smoke import smoke_test

STAGING_PREFIX = ".staging-"
"""Hidden folders beside the versions where a deploy copies and smoke-tests a model."""
REGISTRY_LOCK = ".deploy.lock"
"""Held shared by every deploy while it stages into a local registry: the first deploy
that gets it exclusively knows that no other deploy is staging, and cleans up."""
CLAIMS = ".claims"
"""In a bucket registry: one object per version number taken, written only if absent."""
STALE_BUCKET_STAGING_S = 24 * 3600
"""A bucket's staging folders and incomplete versions whose every known time (the one a
deploy wrote in the name or claim, the objects' modification times) is older than this
are leftovers of killed deploys: a bucket has no lock that dies with its holder."""
COMPLETE_MARKER = "saved_model.pb"
"""The file that makes a version folder a version. It is what loads the model, so a
folder without it serves nothing, and versions registered before it was the marker count
as they are. Locally the staged copy is renamed onto the version in one step; in a bucket
it is the last object copied, and the first one ``unregister`` removes."""


def _version_numbers(names) -> list[int]:
    """The names that are version numbers, as numbers (hidden folders and claims are not)."""
    return [int(n) for n in names if re.fullmatch(r"\d+", n)]


def _registry_not_a_folder(registry_uri: str, path: Path) -> ConfigError:
    return ConfigError(
        f"the registry {registry_uri} cannot hold models: {path} is a file, not a folder",
        "pass a folder (it is created if missing) or a gs:// or s3:// URI as --registry, "
        "or move the file away",
    )


def _model_root(registry_uri: str, name: str) -> Path:
    """``<registry>/<name>/`` on this machine's disk, created if missing."""
    root = Path(local_path(registry_uri))
    for path in (root, *root.parents):
        if path.exists() and not path.is_dir():
            raise _registry_not_a_folder(registry_uri, path)
    model_root = root / name
    if model_root.exists() and not model_root.is_dir():
        raise _registry_not_a_folder(registry_uri, model_root)
    model_root.mkdir(parents=True, exist_ok=True)
    return model_root


def version_complete(version_uri: str | os.PathLike[str]) -> bool:
    """Whether a version's folder holds a whole model: every reader of the registry asks.

    A folder without ``COMPLETE_MARKER`` is a number claimed by a deploy that has not
    published yet (locally, the moment between creating the folder and renaming the
    staged copy onto it; in a bucket, the copy of its objects) or that was killed: no
    version. Works for a folder, ``file://``, ``gs://``, ``s3://`` and ``memory://``.
    """
    version_uri = str(version_uri)
    if is_remote(version_uri):
        fs, path = fsspec.core.url_to_fs(version_uri)
        marker = f"{path.rstrip('/')}/{COMPLETE_MARKER}"
        fs.invalidate_cache(marker)  # a listing cached earlier may predate the copy
        return fs.isfile(marker)
    return (Path(local_path(version_uri)) / COMPLETE_MARKER).is_file()


def registered_versions(registry_uri: str, name: str = MODEL_NAME) -> list[int]:
    """The registry's complete versions, oldest first; none where nothing was registered."""
    if is_remote(registry_uri):
        fs, root = fsspec.core.url_to_fs(registry_uri)
        names = _bucket_names(fs, f"{root.rstrip('/')}/{name}")
    else:
        folder = Path(local_path(registry_uri)) / name
        names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
    base = f"{registry_uri.rstrip('/')}/{name}"
    return sorted(n for n in _version_numbers(names) if version_complete(f"{base}/{n}"))


def latest_version(registry_uri: str, name: str = MODEL_NAME) -> int | None:
    """The newest complete version, or ``None`` when the registry holds none."""
    return max(registered_versions(registry_uri, name), default=None)


@contextlib.contextmanager
def _deploy_lock(model_root: Path) -> Iterator[None]:
    """Shares the registry's lock while the block stages; first removes leftovers.

    Every deploy holds ``REGISTRY_LOCK`` shared while its staging folder exists. Whoever
    gets it exclusively knows no other deploy is staging, so every ``.staging-*`` there is
    a leftover of a killed deploy: the kernel released that deploy's lock when it died.
    So is an empty version folder: a deploy claims its number while holding the lock.
    """
    with open(model_root / REGISTRY_LOCK, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another deploy is staging: its folder is not a leftover
            pass
        else:
            for leftover in model_root.glob(f"{STAGING_PREFIX}*"):
                shutil.rmtree(leftover, ignore_errors=True)
            _remove_empty_claims(model_root)
        fcntl.flock(lock, fcntl.LOCK_SH)
        yield


def _remove_empty_claims(model_root: Path) -> None:
    """Removes the empty version folders of deploys killed before their rename.

    Only an empty folder goes: one with files but no ``COMPLETE_MARKER`` was put there by
    hand (a copy under way, perhaps); readers skip it and it is left as it is.
    """
    for number in _version_numbers(p.name for p in model_root.iterdir()):
        folder = model_root / str(number)
        if not version_complete(folder):
            with contextlib.suppress(OSError):  # not empty, or not a folder
                folder.rmdir()


def _publish_local(staging: Path, model_root: Path) -> int:
    """Renames the staged model into the next free version; returns its number.

    Creating the version's folder is the claim (two deploys never get one number); the
    staged folder then replaces that empty folder in one rename, so a reader sees the
    version complete or not at all. This claim protocol is why ``files.swap_in`` is not
    used: a version is never replaced, and a rename onto a folder that is not empty fails.
    """
    version = max(_version_numbers(p.name for p in model_root.iterdir()), default=0) + 1
    while True:
        target = model_root / str(version)
        try:
            target.mkdir()
        except FileExistsError:
            version += 1
            continue
        try:
            staging.rename(target)
        except BaseException:
            target.rmdir()
            raise
        return version


def _copy_model(model_dir: Path, staging: Path) -> None:
    """Copies the model folder; an entry that cannot be copied is named, with the fix."""
    try:
        shutil.copytree(model_dir, staging)
    except shutil.Error as exc:  # each entry that failed: (source, target, why)
        entries = exc.args[0] if exc.args and isinstance(exc.args[0], list) else []
        first = f"{entries[0][0]}: {entries[0][2]}" if entries else str(exc)
        raise ConfigError(
            f"the model in {model_dir} cannot be copied: {first}",
            "deploy a model folder as train writes it (no links, pipes or unreadable files "
            "in it): train it again (make pipeline) or pass --model with another folder",
        ) from None


def _register_local(model_dir: Path, registry_uri: str, name: str) -> tuple[int, str, tuple]:
    """``register_and_test`` on this machine's disk: stage, smoke-test, claim, rename."""
    model_root = _model_root(registry_uri, name)
    with _deploy_lock(model_root):
        # Not ``files.staging_beside``: the target's number is claimed only once the copy
        # answered, and the ``.staging-`` prefix is what ``_deploy_lock`` cleans up.
        staging = model_root / f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}"
        try:
            _copy_model(model_dir, staging)
            smoke = smoke_test(str(staging), str(model_dir))
            version = _publish_local(staging, model_root)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return version, f"{registry_uri.rstrip('/')}/{name}/{version}", smoke


def _bucket_names(fs, folder: str) -> list[str]:
    """The names in a bucket's folder; none for a prefix that holds nothing yet."""
    try:
        return [p.rstrip("/").rsplit("/")[-1] for p in fs.ls(folder, detail=False)]
    except FileNotFoundError:
        return []


def _modified_times(fs, paths: list[str]) -> list[float]:
    """The objects' modification times, where the filesystem gives them."""
    times = []
    for path in paths:
        with contextlib.suppress(NotImplementedError, FileNotFoundError):
            stamp = fs.modified(path)
            if isinstance(stamp, datetime.datetime):
                times.append(stamp.timestamp())
    return times


def _left_by_a_killed_deploy(fs, paths: list[str], known: list[float]) -> bool:
    """Whether every time known of a leftover is older than ``STALE_BUCKET_STAGING_S``.

    ``known`` are the times a deploy wrote (its start, its claim); the objects' own
    modification times are asked for only when those are old. A deploy still copying
    keeps writing objects: it is never taken for a leftover. Where no time at all is
    known, nothing is removed (readers skip it all the same).
    """

    def fresh(times: list[float]) -> bool:
        return any(time.time() - t <= STALE_BUCKET_STAGING_S for t in times)

    if fresh(known):
        return False
    modified = _modified_times(fs, paths)
    return bool(known or modified) and not fresh(modified)


def _claim_time(fs, claim: str) -> list[float]:
    """The time a deploy wrote into its claim (none in claims of older deploys)."""
    try:
        return [float(fs.cat_file(claim))]
    except (FileNotFoundError, ValueError):
        return []


def _clean_bucket_leftovers(fs, model_uri: str, model_url: str) -> None:
    """Removes what killed deploys left: old staging folders and incomplete versions.

    An incomplete version (claimed, no ``COMPLETE_MARKER``) loses its objects; its claim
    stays, so that its number is never taken again.
    """
    fs.invalidate_cache(model_uri)  # a listing cached earlier must not hide a marker
    names = _bucket_names(fs, model_uri)
    for name in names:
        match = re.fullmatch(rf"{re.escape(STAGING_PREFIX)}(\d+)-\w+", name)
        folder = f"{model_uri}/{name}"
        if match and _left_by_a_killed_deploy(fs, fs.find(folder), [int(match.group(1))]):
            fs.rm(folder, recursive=True)
    marked = {p.split("/")[-2] for p in fs.glob(f"{model_uri}/*/{COMPLETE_MARKER}")}
    for number in _version_numbers(n for n in names if n not in marked):
        if version_complete(f"{model_url}/{number}"):  # finished since the listing
            continue
        folder, claim = f"{model_uri}/{number}", f"{model_uri}/{CLAIMS}/{number}"
        objects = fs.find(folder)
        if objects and _left_by_a_killed_deploy(fs, [*objects, claim], _claim_time(fs, claim)):
            fs.rm(folder, recursive=True)
            print(f"removed {model_url}/{number}: incomplete, left by a killed deploy")


def _claim_bucket_version(fs, model_uri: str) -> int:
    """Takes the next version number by writing its claim only if it is absent."""
    names = _bucket_names(fs, model_uri) + _bucket_names(fs, f"{model_uri}/{CLAIMS}")
    version = max(_version_numbers(names), default=0) + 1
    while True:
        try:
            with fs.open(f"{model_uri}/{CLAIMS}/{version}", "xb") as claim:
                claim.write(str(time.time()).encode())  # when: for _clean_bucket_leftovers
        except FileExistsError:
            version += 1
            continue
        return version


def _copy_saved_model_last(fs, source: str, target: str) -> None:
    """Copies a bucket folder; ``COMPLETE_MARKER`` last, so a reader never loads half."""
    files = sorted(fs.find(source), key=lambda p: p.endswith(f"/{COMPLETE_MARKER}"))
    for path in files:
        fs.copy(path, target + path[len(source) :])


def _register_bucket(model_dir: Path, registry_uri: str, name: str) -> tuple[int, str, tuple]:
    """``register_and_test`` in a bucket: stage, smoke-test, claim, copy the marker last."""
    fs, root = fsspec.core.url_to_fs(registry_uri)
    model_uri = f"{root.rstrip('/')}/{name}"
    fs.makedirs(model_uri, exist_ok=True)
    registry = registry_uri.rstrip("/")
    _clean_bucket_leftovers(fs, model_uri, f"{registry}/{name}")
    staging = f"{model_uri}/{STAGING_PREFIX}{int(time.time())}-{uuid.uuid4().hex[:12]}"
    try:
        fs.put(str(model_dir), staging, recursive=True)
        smoke = smoke_test(f"{registry}/{name}/{staging.rsplit('/', 1)[-1]}", str(model_dir))
        version = _claim_bucket_version(fs, model_uri)
        try:
            _copy_saved_model_last(fs, staging, f"{model_uri}/{version}")
        except BaseException:
            unregister(registry_uri, version, name)
            raise
    finally:
        with contextlib.suppress(FileNotFoundError):  # the copy may not have begun
            fs.rm(staging, recursive=True)
    return version, f"{registry}/{name}/{version}", smoke


def register_and_test(
    model_dir: str | os.PathLike[str], registry_uri: str, name: str = MODEL_NAME
) -> tuple[int, str, tuple[dict[str, Any], dict[str, Any]]]:
    """Registers a SavedModel as the next version once a copy of it answered a request.

    The model is copied into a hidden staging folder beside the versions and smoke-tested
    there; only then is a version number taken and the copy published under it. A model
    that fails leaves the registry as it was. On a local disk (a folder or ``file://``)
    the number is taken by creating its folder, and the copy renamed onto it in one step;
    leftovers of killed deploys go at the next deploy (``_deploy_lock``). In a bucket the
    number is an object under ``.claims/`` written only if absent (``xb``: GCS's
    ``ifGenerationMatch=0``, S3's ``If-None-Match``) holding the time it was taken, and
    ``saved_model.pb`` is copied last: until it is there, no reader sees the version
    (``version_complete``). Staging folders and incomplete versions whose every known
    time is over a day old are removed; a claim stays, so a number is never used twice.

    Returns:
        The version number, the version's URI, and the smoke request and response.

    Raises:
        ConfigError: ``model_dir`` holds no SavedModel, the model does not answer, or the
            registry is a file.
    """
    model_dir = require_saved_model(model_dir)
    if is_remote(registry_uri):
        return _register_bucket(model_dir, registry_uri, name)
    return _register_local(model_dir, registry_uri, name)


def register(
    model_dir: str | os.PathLike[str], registry_uri: str, name: str = MODEL_NAME
) -> tuple[int, str]:
    """Registers a SavedModel as ``<registry_uri>/<name>/<next version>/``.

    See ``register_and_test``.

    Returns:
        The version number and the version's URI.
    """
    version, uri, _ = register_and_test(model_dir, registry_uri, name)
    return version, uri


def unregister(registry_uri: str, version: int, name: str = MODEL_NAME) -> None:
    """Removes a version that a failed deploy published: no reader sees it again.

    Locally the version is first renamed away, so that it disappears at once. In a bucket
    its ``COMPLETE_MARKER`` goes first; its claim stays, so its number is not used again.
    """
    if is_remote(registry_uri):
        fs, root = fsspec.core.url_to_fs(registry_uri)
        model_uri = f"{root.rstrip('/')}/{name}"
        for path, recursive in (
            (f"{model_uri}/{version}/{COMPLETE_MARKER}", False),  # incomplete from here on
            (f"{model_uri}/{version}", True),
        ):
            with contextlib.suppress(FileNotFoundError):
                fs.rm(path, recursive=recursive)
        return
    model_root = Path(local_path(registry_uri)) / name
    doomed = model_root / f"{STAGING_PREFIX}removed-{uuid.uuid4().hex[:12]}"
    (model_root / str(version)).rename(doomed)
    shutil.rmtree(doomed, ignore_errors=True)
