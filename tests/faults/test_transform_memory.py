"""The transform's peak memory does not grow with the rows of a repeated date."""

import json
import subprocess
import sys

import pytest

from conftest import HEADER, days, row

pytestmark = pytest.mark.slow

# The child reports its own high-water mark (VmHWM): ru_maxrss of a child of this large
# pytest process would carry the parent's peak over (vfork, then exec).
CHILD = """
import json, sys
from crypto_pipeline import transform
transform._RANGE_BYTES = 1 << 20  # small ranges: the same range size for both files
stats = transform.transform(sys.argv[1], sys.argv[2])
hwm = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"stats": stats, "peak_kib": int(hwm)}))
"""


def one_coin(path, dates: int, repeats: int):
    """One coin; its dates follow each other ``repeats`` times."""
    lines = [row(d) for d in days(dates)] * repeats
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    return path


def transform_in_child(input_path, output_dir) -> tuple[float, dict]:
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(input_path), str(output_dir)],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    report = json.loads(child.stdout.splitlines()[-1])
    return report["peak_kib"] / 1024, report["stats"]


def test_peak_memory_does_not_grow_with_repeated_dates(tmp_path):
    small, _ = transform_in_child(one_coin(tmp_path / "small.csv", 500, 50), tmp_path / "small")
    large, stats = transform_in_child(
        one_coin(tmp_path / "large.csv", 500, 200), tmp_path / "large"
    )
    assert (stats["rows_kept"], stats["duplicates"]) == (500, 99_500)
    assert large - small < 50, (
        f"peak memory {small:.0f} MiB for 25,000 rows, {large:.0f} MiB for 100,000 rows "
        "of the same 500 dates"
    )
