"""Ingest and transform on a read-only output folder, and the transform on a full disk:
a clear error, no leftovers; ``file://`` input and output folders are local paths."""

import json
import subprocess
import sys

import pytest

from conftest import HEADER, days, needs_root, row, tmpfs
from crypto_pipeline.errors import StorageError
from crypto_pipeline.ingest import ingest
from crypto_pipeline.transform import transform


def write(path, lines):
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    return path


@needs_root
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


@needs_root
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


def cli(*args: str) -> tuple[int, str]:
    """Runs ``crypto-pipeline ARGS`` in a process of its own; returns its status and output."""
    done = subprocess.run(
        [sys.executable, "-m", "crypto_pipeline.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    return done.returncode, output


def test_file_uris_are_local_folders_for_ingest_and_transform(tmp_path):
    """``file://`` names a local path: the steps read and write it like one, staged."""
    source = write(tmp_path / "in.csv", [row(d) for d in days(40)])
    raw, data = tmp_path / "raw", tmp_path / "data"
    status, output = cli("ingest", "--source", f"file://{source}", "--output-dir", f"file://{raw}")
    assert status == 0, output
    raw_csv = raw / "crypto-markets.csv"
    assert raw_csv.read_bytes() == source.read_bytes()
    args = ("transform", "--input", f"file://{raw_csv}", "--output-dir", f"file://{data}")
    status, output = cli(*args)
    assert status == 0, output
    stats = json.loads((data / "stats.json").read_text())
    assert (stats["input"], stats["rows_kept"]) == (str(raw_csv), 40)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "in.csv", "raw"]
    status, output = cli(*args, "--coin", "dogecoin")  # a failed run keeps the last output
    assert status == 1 and "error: coin 'dogecoin' is not in the file" in output, output
    assert json.loads((data / "stats.json").read_text()) == stats
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "in.csv", "raw"], "no staging"
