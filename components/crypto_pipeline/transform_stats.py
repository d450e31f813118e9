"""The transform's ``stats.json``, made from the passes' counts, and the checks of a run.

``make_stats`` turns the counts of a run into what ``stats.json`` holds: rows read, kept,
rejected (by reason), duplicates, other coins, the splits' sizes and dates. Nothing is
lost without being counted: ``rows_read = rows_kept + rows_rejected + duplicates +
other_coins``. ``check_usable`` raises the clear error for a run whose output cannot be
used: no data rows, a file of several assets without a coin column, dates of no
decidable style, or no valid row of the coin.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
from collections import Counter
from typing import Any

from apache_beam.io.filesystems import FileSystems

from crypto_pipeline import dates
from crypto_pipeline.beam_graph import REJECTS_FILE
from crypto_pipeline.config import TransformConfig
from crypto_pipeline.errors import CoinNotFoundError, SchemaError
from crypto_pipeline.range_passes import (
    COIN_KEY,
    LABEL_COLUMNS,
    LABEL_KEY,
    REJECTED_KEY,
    evidence,
)
from crypto_pipeline.raw_file import no_data_rows
from crypto_pipeline.schema import Header
from crypto_pipeline.splits import SPLITS


def make_stats(
    counts: dict[str, Any],
    input_path: str,
    header: Header,
    config: TransformConfig,
    style: str,
    runner: str,
) -> dict[str, Any]:
    """What ``stats.json`` holds, from the COUNTS of a run (``beam_graph.build_pipeline``)."""
    rejected = {
        k[len(REJECTED_KEY) :]: v for k, v in sorted(counts.items()) if k.startswith(REJECTED_KEY)
    }
    coins = Counter({k[len(COIN_KEY) :]: v for k, v in counts.items() if k.startswith(COIN_KEY)})
    splits = {}
    for name in SPLITS:
        splits[name] = {
            "rows": counts.get(f"split:{name}:rows", 0),
            "first_date": counts.get(f"split:{name}:first_date"),
            "last_date": counts.get(f"split:{name}:last_date"),
            "file": f"{name}-00000-of-00001.csv",
        }
    rows_rejected = sum(rejected.values())
    duplicates = counts.get("duplicates", 0)
    rows_kept = sum(s["rows"] for s in splits.values())
    return {
        "input": input_path,
        "format": header.format,
        "coin": config.coin,
        "coin_from": "--coin (a single-asset file)" if header.single_asset else "slug column",
        "columns_used": header.column_map(),
        "date_format": {"requested": config.date_format, "used_for_slashed_dates": style},
        "rows_read": counts.get("rows_read", 0),
        "rows_valid": rows_kept + duplicates,
        "rows_kept": rows_kept,
        "rows_rejected": rows_rejected,
        "rejected_by_reason": rejected,
        "duplicates": duplicates,
        "other_coins": counts.get("other_coins", 0),
        "blank_lines": counts.get("blank_lines", 0),
        "byte_order_marks_removed": counts.get("byte_order_marks", 0),
        "coins_in_file": len(coins),
        "top_coins": dict(coins.most_common(10)),
        "date_evidence": evidence(counts),
        "split_fractions": dataclasses.asdict(config.split),
        "splits": splits,
        "rejects_file": REJECTS_FILE,
        "runner": runner,
    }


def _first_rejects(rejects_path: str, limit: int = 3) -> list[str]:
    with FileSystems.open(rejects_path) as f:
        rows = list(
            itertools.islice(csv.reader(io.TextIOWrapper(f, encoding="utf-8")), 1, limit + 1)
        )
    return [f"line {line}: {reason}: {detail}" for line, reason, detail, _ in rows]


def _one_asset(counts: dict[str, Any], header: Header, input_path: str) -> None:
    """Refuses a file without a slug column whose symbol or name column names several assets.

    Such a file does not say which rows are the coin's: taking them all would mix the
    assets' prices under one name.
    """
    for column in LABEL_COLUMNS:
        prefix = f"{LABEL_KEY}{column}:"
        values = Counter({k[len(prefix) :]: v for k, v in counts.items() if k.startswith(prefix)})
        if len(values) < 2:
            continue
        name = header.names[header.index[column]]
        listing = ", ".join(
            f"{v} ({n:,} row{'' if n == 1 else 's'})" for v, n in values.most_common(5)
        )
        first = values.most_common(1)[0][0]
        raise SchemaError(
            f"{input_path} has no coin column (slug), but its {name} column names "
            f"{len(values)} different assets: {listing}",
            "a file without a slug column must hold one asset: keep the rows of the one you "
            f"want (in pandas: df[df[{name!r}].str.lower() == {first!r}].to_csv(new_path, "
            "index=False)) and name it with --coin, or add a slug column that names each "
            "row's coin",
        )


def check_usable(
    stats: dict[str, Any],
    counts: dict[str, Any],
    header: Header,
    config: TransformConfig,
    work: str,
) -> None:
    """Raises the clear error for a run whose output cannot be used."""
    if stats["rows_read"] == 0:
        raise no_data_rows(stats["input"])
    _one_asset(counts, header, stats["input"])
    dates.resolve_date_style(config.date_format, evidence(counts))
    if stats["rows_kept"] == 0:
        single_asset = stats["coin_from"] != "slug column"
        of_coin = stats["rows_read"] if single_asset else counts.get(COIN_KEY + config.coin, 0)
        if of_coin == 0:
            listing = ", ".join(f"{c} ({n:,})" for c, n in stats["top_coins"].items()) or "none"
            raise CoinNotFoundError(
                f"coin {config.coin!r} is not in the file; coins with the most rows: {listing}",
                "pass --coin with one of those slugs (lower case, as in the slug column)",
            )
        whose = f"of {stats['input']}" if single_asset else f"of coin {config.coin!r}"
        reasons = ", ".join(f"{k} {v:,}" for k, v in stats["rejected_by_reason"].items())
        examples = "\n    ".join(_first_rejects(f"{work}/{stats['rejects_file']}"))
        raise CoinNotFoundError(
            f"all {of_coin:,} rows {whose} were rejected ({reasons}); for example:\n    {examples}",
            "fix those rows in the data, or pass the --date-format that the file uses, "
            "and run again",
        )
