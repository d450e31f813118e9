"""files: the one rule for local versus remote; a folder written beside its target and swapped
in whole."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import needs_root
from crypto_pipeline.files import is_remote, local_path, staged_folder


@pytest.mark.parametrize(
    ("uri", "path"),
    [
        ("runs/models", "runs/models"),
        ("/data/transform", "/data/transform"),
        ("file:///data/transform", "/data/transform"),
        ("FILE:///data/transform", "/data/transform"),  # a scheme's case does not matter
        ("local:///data/transform", "/data/transform"),  # fsspec's other name for the disk
        ("Local://runs/models", "runs/models"),
        ("a:b/c.csv", "a:b/c.csv"),  # a colon in a file name is no scheme
    ],
)
def test_paths_and_local_uris_are_local(uri: str, path: str) -> None:
    assert not is_remote(uri)
    assert local_path(uri) == path


@pytest.mark.parametrize(
    "uri",
    ["gs://bucket/raw.csv", "S3://bucket/raw.csv", "https://example.com/raw.csv", "memory://x"],
)
def test_buckets_and_servers_are_remote(uri: str) -> None:
    assert is_remote(uri)
    assert local_path(uri) == uri


def test_a_finished_folder_replaces_the_target(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with staged_folder(target) as work:
        assert work.parent == tmp_path and not work.exists()
        work.mkdir()
        (work / "new.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert [p.name for p in target.iterdir()] == ["new.txt"]


def test_a_failure_leaves_the_target_and_nothing_beside_it(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "out"
    target.mkdir(parents=True)
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="half-way"), staged_folder(target) as work:
        work.mkdir()
        (work / "part.txt").write_text("part")
        raise RuntimeError("half-way")
    assert sorted(p.name for p in target.parent.iterdir()) == ["out"]
    assert (target / "old.txt").read_text() == "old"


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder every user may write in, as test_containers.sh mounts one for Beam's workers.

    pytest's tmp_path sits under a folder only its owner may enter, so this one is apart.
    """
    shared = Path(tempfile.mkdtemp(prefix="shared-"))
    shared.chmod(0o1777)
    yield shared
    shutil.rmtree(shared)


@needs_root
def test_a_writer_running_as_another_user_can_make_the_folder(shared_folder: Path) -> None:
    # As Beam's workers on a portable runner do: another uid, through a shared mount.
    target = shared_folder / "out"
    with staged_folder(target) as work:
        pid = os.fork()
        if pid == 0:  # the child: nobody, writing the whole folder
            try:
                os.setgid(65534)
                os.setuid(65534)
                work.mkdir()
                (work / "train.csv").write_text("a,b\n")
                os._exit(0)
            except BaseException:
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "another user could not write there"
    assert (target / "train.csv").read_text() == "a,b\n"
    assert target.stat().st_uid == 65534
