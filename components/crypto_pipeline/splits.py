"""The transform step's output folder: one CSV file per split, found by name.

Kept apart from ``transform`` so that the steps reading the splits (tune, train) need
no Apache Beam. The folder may be a local path or any fsspec URI (``gs://…``, ``s3://…``):
a Katib trial on a cluster reads the splits straight from a bucket.
"""

from __future__ import annotations

import os
from pathlib import Path

import fsspec

from crypto_pipeline.errors import SourceError

SPLITS: tuple[str, ...] = ("train", "eval", "test")
"""The splits, in date order."""


def split_path(data_dir: str | os.PathLike[str], split: str) -> Path | str:
    """The CSV file of one split in a transform output folder (a path or a URI).

    Returns:
        The file: a ``Path`` in a local folder, a URI (the folder's scheme) in a remote one.

    Raises:
        SourceError: The folder holds no such split.
    """
    fs, root = fsspec.core.url_to_fs(os.fspath(data_dir))
    matches = sorted(fs.glob(f"{root.rstrip('/')}/{split}-*.csv"))
    if len(matches) != 1:
        raise SourceError(
            f"no single {split} split in {data_dir} (found {len(matches)} files)",
            "pass the output folder of the transform step (it holds train-*.csv, "
            "eval-*.csv and test-*.csv)",
        )
    return Path(matches[0]) if "://" not in os.fspath(data_dir) else fs.unstrip_protocol(matches[0])
