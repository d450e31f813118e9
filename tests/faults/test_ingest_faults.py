"""Ingest onto a full disk: a clear error, the previous copy kept, no leftovers (the read-only
folder drill for ingest and transform is in test_transform_faults.py)."""

import os

import pytest

from conftest import HEADER, days, needs_root, row, tmpfs
from crypto_pipeline.errors import StorageError
from crypto_pipeline.ingest import MANIFEST_NAME, ingest
from crypto_pipeline.raw_file import RAW_FILE_NAME

pytestmark = needs_root


def write(path, lines):
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    return str(path)


def test_a_full_disk_is_named_and_the_previous_copy_kept(tmp_path):
    small = write(tmp_path / "small.csv", [row(d) for d in days(5)])
    large = write(tmp_path / "large.csv", [row(d) for d in days(200)] * 20)  # about 400 kB
    with tmpfs(tmp_path / "disk", "size=256k") as disk:
        out = disk / "out"
        ingest(small, out)
        before = {p.name: p.read_bytes() for p in out.iterdir()}
        with pytest.raises(StorageError) as err:
            ingest(large, out)
        assert err.value.problem.startswith(f"cannot write to {out}: the disk is full")
        assert "free some space" in err.value.fix
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
        assert sorted(before) == [RAW_FILE_NAME, MANIFEST_NAME]


def test_a_manifest_that_does_not_fit_leaves_the_previous_pair(tmp_path):
    """The copy fits and the manifest does not: neither replaces what was there."""
    small = write(tmp_path / "small.csv", [row(d) for d in days(5)])
    with tmpfs(tmp_path / "disk", "size=64k") as disk:
        out = disk / "out"
        ingest(small, out)
        before = {p.name: p.read_bytes() for p in out.iterdir()}
        stat = os.statvfs(disk)
        free = stat.f_bavail * stat.f_frsize
        # a copy that fills the last free block: no room is left for a manifest
        rows = (free - 300 - len(HEADER) - 1) // (len(row()) + 1)
        snug = write(tmp_path / "snug.csv", [row(d) for d in days(rows)])
        with pytest.raises(StorageError, match="the disk is full"):
            ingest(snug, out)
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
