"""The transform step's output folder: one CSV file per split, found by name.

Kept apart from ``transform`` so that the steps reading the splits (tune, train) need
no Apache Beam.
"""

from __future__ import annotations

import os
from pathlib import Path

from crypto_pipeline.errors import SourceError

SPLITS: tuple[str, ...] = ("train", "eval", "test")
"""The splits, in date order."""


def split_path(data_dir: str | os.PathLike[str], split: str) -> Path:
    """The CSV file of one split in a transform output folder.

    Raises:
        SourceError: The folder holds no such split.
    """
    matches = sorted(Path(data_dir).glob(f"{split}-*.csv"))
    if len(matches) != 1:
        raise SourceError(
            f"no single {split} split in {data_dir} (found {len(matches)} files)",
            "pass the output folder of the transform step (it holds train-*.csv, "
            "eval-*.csv and test-*.csv)",
        )
    return matches[0]
