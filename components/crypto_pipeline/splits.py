"""The transform step's output folder: one CSV file per split, found by name and read.

Kept apart from ``transform`` so that the steps reading the splits (tune, train) need
no Apache Beam, and apart from ``train`` so that tune reads them without it. The folder
may be a local path or any fsspec URI (``gs://…``, ``s3://…``): a Katib trial on a
cluster reads the splits straight from a bucket.
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd

from crypto_pipeline import features
from crypto_pipeline.errors import DataError, SourceError
from crypto_pipeline.files import is_remote
from crypto_pipeline.rows import PRICE_COLUMNS, price_rejection

SPLITS: tuple[str, ...] = ("train", "eval", "test")
"""The splits, in date order."""

MIN_ROWS = {"train": 30, "eval": 5, "test": 5}
"""Fewest rows per split that tuning and training accept."""


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
    return fs.unstrip_protocol(matches[0]) if is_remote(data_dir) else Path(matches[0])


@dataclass(frozen=True)
class Splits:
    """The three splits of a transform output folder, with their file checksums."""

    train: pd.DataFrame
    eval: pd.DataFrame
    test: pd.DataFrame
    sha256: dict[str, str]

    def xy(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Features and target of one split."""
        frame = getattr(self, name)
        return features.feature_matrix(frame), features.target_vector(frame)


def load_splits(data_dir: str | os.PathLike[str]) -> Splits:
    """Reads train, eval and test from a transform output folder.

    Raises:
        SourceError: The folder is not a transform output.
        DataError: A split has fewer rows than ``MIN_ROWS`` asks, or a row whose prices
            break the transform's rules (``check_prices``).
    """
    frames, checksums = {}, {}
    for name in SPLITS:
        path = split_path(data_dir, name)
        with fsspec.open(path, "rb") as f:
            raw = f.read()
        frame = pd.read_csv(io.BytesIO(raw))
        if len(frame) < MIN_ROWS[name]:
            raise DataError(
                f"the {name} split in {data_dir} has {len(frame)} rows; training needs at "
                f"least {MIN_ROWS[name]} (and {MIN_ROWS['train']} train, "
                f"{MIN_ROWS['eval']} eval, {MIN_ROWS['test']} test rows in all)",
                "use a source with more days of the coin, or give that split a larger "
                "fraction with --split",
            )
        check_prices(raw, f"the {name} split in {data_dir}")
        frames[name] = frame
        checksums[posixpath.basename(str(path))] = hashlib.sha256(raw).hexdigest()
    return Splits(frames["train"], frames["eval"], frames["test"], checksums)


def check_prices(raw: bytes, what: str) -> None:
    """Holds a split's rows to the price rules the transform wrote them by.

    A split changed after the transform (by hand, or by another tool) is refused here,
    before any model sees a row of it: each row's prices must pass
    ``rows.price_rejection``, as each source row did.

    Args:
        raw: The split's CSV file.
        what: The split, as the message names it.

    Raises:
        SourceError: A price column is missing.
        DataError: Rows break the rules; the message counts them and shows the first.
    """
    cells = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False)
    missing = [column for column in PRICE_COLUMNS if column not in cells.columns]
    if missing:
        raise SourceError(
            f"{what} has no {', '.join(missing)} column",
            "pass the output folder of the transform step (its splits have date, open, "
            "high, low and close columns)",
        )
    broken = []
    for line, row in enumerate(cells[list(PRICE_COLUMNS)].to_dict("records"), start=2):
        if (rejection := price_rejection(row.__getitem__)) is not None:
            broken.append((line, rejection))
    if broken:
        line, rejection = broken[0]
        raise DataError(
            f"{what} holds {len(broken)} row(s) whose prices break the transform's rules; "
            f"the first, line {line}: {rejection.reason} ({rejection.detail})",
            "run the transform step again to rewrite the splits from the source (it "
            "keeps only rows with valid prices, and counts the others in its rejects)",
        )
