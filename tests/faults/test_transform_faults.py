"""Ingest and transform on a read-only output folder, and the transform on a full disk:
a clear error, no leftovers."""

import pytest

from conftest import HEADER, days, needs_root, row, tmpfs
from crypto_pipeline.errors import StorageError
from crypto_pipeline.ingest import ingest
from crypto_pipeline.transform import transform

pytestmark = needs_root


def write(path, lines):
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    return path


@pytest.mark.parametrize(
    ("step", "below"),
    [(ingest, ""), (ingest, "new/out"), (transform, "out"), (transform, "new/out")],
)
def test_a_read_only_folder_is_named_and_left_empty(tmp_path, step, below):
    source = write(tmp_path / "in.csv", [row(d) for d in days(40)])
    with tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
        out = ro / below
        with pytest.raises(StorageError) as err:
            step(str(source), out)
        assert err.value.problem == f"cannot write to {out}: it is on a read-only file system"
        assert "writable" in err.value.fix
        assert list(ro.iterdir()) == []


def test_a_full_disk_is_named_and_the_previous_output_kept(tmp_path):
    small = write(tmp_path / "small.csv", [row(d) for d in days(40)])
    # 4,000 rows of 200 dates: about 400 kB of duplicates for the rejects file
    large = write(tmp_path / "large.csv", [row(d) for d in days(200)] * 20)
    with tmpfs(tmp_path / "disk", "size=256k") as disk:
        transform(small, disk / "out")
        before = {p.name: p.read_bytes() for p in (disk / "out").iterdir()}
        with pytest.raises(StorageError) as err:
            transform(large, disk / "out")
        assert err.value.problem.startswith(f"cannot write to {disk / 'out'}: the disk is full")
        assert "free some space" in err.value.fix
        assert [p.name for p in disk.iterdir()] == ["out"], "no staging folder left"
        assert {p.name: p.read_bytes() for p in (disk / "out").iterdir()} == before
