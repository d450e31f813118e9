"""Rows and values that must not slip through: a byte-order mark on a later line, dates no
market has, and flags whose rule differs between commands. Each runs the real command
line in a real process."""

from __future__ import annotations

import csv
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import HEADER, days, row
from crypto_pipeline.hyperparameters import SEARCH_SPACE, Params
from crypto_pipeline.sample_data import SAMPLE_PATH

MARK = "\ufeff"
FIRST_DAY = dt.date(2009, 1, 3)  # Bitcoin's first block: no crypto market is older
FUTURE_DAYS = 2  # a date may lie this many days after today (UTC), not more


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "crypto_pipeline.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def transform(tmp_path: Path, lines: list[str]) -> tuple[dict, list[dict], str]:
    """Runs ``crypto-pipeline transform`` on LINES: stats.json, the rejects and what it printed."""
    source = tmp_path / "crypto-markets.csv"
    source.write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    result = cli("transform", "--input", str(source), "--output-dir", str(out))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    stats = json.loads((out / "stats.json").read_text())
    with (out / stats["rejects_file"]).open(encoding="utf-8") as f:
        rejects = list(csv.DictReader(f))
    return stats, rejects, result.stdout


def accounted(stats: dict) -> bool:
    """Every row read is kept, rejected with a reason, a dropped duplicate or another coin's."""
    return stats["rows_read"] == (
        stats["rows_kept"] + stats["rows_rejected"] + stats["duplicates"] + stats["other_coins"]
    ) and stats["rows_rejected"] == sum(stats["rejected_by_reason"].values())


def test_a_byte_order_mark_on_a_later_line_is_no_coin_of_its_own(tmp_path):
    dates = days(40)
    lines = [row(d) for d in dates]
    lines[25] = MARK + lines[25]  # a file joined from two, the second saved with a mark
    lines[30] = MARK + lines[30] + "\r"  # and one from Windows
    stats, rejects, _ = transform(tmp_path, lines)
    assert stats["top_coins"] == {"bitcoin": 40}
    assert (stats["rows_read"], stats["rows_kept"], stats["other_coins"]) == (40, 40, 0)
    assert stats["byte_order_marks_removed"] == 2 and accounted(stats)
    assert rejects == []


def test_a_mark_before_a_single_asset_file_s_date_is_removed_too(tmp_path):
    source = tmp_path / "btc.csv"
    lines = [f"{d},1,2,0.5,1.5" for d in days(40)]
    lines[10] = MARK + lines[10]
    source.write_text("\n".join(["Date,Open,High,Low,Close", *lines]) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    result = cli("transform", "--input", str(source), "--output-dir", str(out), "--coin", "btc")
    assert result.returncode == 0, result.stderr
    stats = json.loads((out / "stats.json").read_text())
    assert (stats["rows_kept"], stats["rows_rejected"]) == (40, 0)
    assert stats["byte_order_marks_removed"] == 1 and accounted(stats)


def test_dates_no_market_has_are_rejected_with_their_reason(tmp_path):
    today = dt.datetime.now(dt.UTC).date()
    soon = (today + dt.timedelta(days=FUTURE_DAYS)).isoformat()  # the last day accepted
    first = FIRST_DAY.isoformat()
    outside = [
        "0001-01-01",
        "1999-12-31",
        (FIRST_DAY - dt.timedelta(days=1)).isoformat(),
        (today + dt.timedelta(days=FUTURE_DAYS + 1)).isoformat(),
        "2090-06-01",
        "9999-12-31",
    ]
    lines = [row(d) for d in [first, *days(40), soon, *outside]]
    stats, rejects, printed = transform(tmp_path, lines)
    assert stats["rejected_by_reason"] == {"date_out_of_range": len(outside)}
    assert stats["rows_kept"] == 42 and accounted(stats)
    assert sorted(r["raw"].split(",")[3] for r in rejects) == sorted(outside)
    assert all(r["reason"] == "date_out_of_range" for r in rejects)
    assert stats["splits"]["train"]["first_date"] == first
    assert stats["splits"]["test"]["last_date"] == soon
    assert f"date_out_of_range {len(outside)}" in printed and "9999-12-31" not in printed


def test_a_file_of_only_impossible_dates_is_refused_with_examples(tmp_path):
    source = tmp_path / "future.csv"
    lines = [row(d) for d in ("2090-01-01", "2091-01-01", "2092-01-01")]
    source.write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    result = cli("transform", "--input", str(source), "--output-dir", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "date_out_of_range 3" in result.stderr and "is in the future" in result.stderr
    assert "\n  fix: " in result.stderr and "Traceback" not in result.stderr


# ----- flags: one rule per value, the same in every command


def command(name: str, tmp_path: Path) -> list[str]:
    """The command NAME as a user types it, with its quickest settings.

    ``run`` gets a tiny source and one trial, so that a run which ignores the value still
    ends soon. The other commands' data folder does not exist: a value out of range is
    refused before any input is read.
    """
    data = ["--data-dir", str(tmp_path / "transform")]
    if name == "run":
        source = tmp_path / "tiny.csv"  # the sample's first 100 days of bitcoin
        source.write_text("".join(SAMPLE_PATH.read_text().splitlines(keepends=True)[:101]))
        return [
            "run",
            "--source",
            str(source),
            "--pipeline-root",
            str(tmp_path / "runs"),
            "--trials",
            "1",
        ]
    if name == "tune":
        return ["tune", *data, "--output-dir", str(tmp_path / "tune"), "--trials", "1"]
    if name == "train":
        params = tmp_path / "best_params.json"
        params.write_text(json.dumps(Params().to_dict()))
        return ["train", *data, "--params", str(params), "--output-dir", str(tmp_path / "train")]
    chosen = Params().to_dict()
    return ["trial", *data, *(f"--{h.flag}={chosen[h.name]}" for h in SEARCH_SPACE)]


COMMANDS = ("run", "tune", "train", "trial")
SEED_RULE = "must be a whole number from 0 to 4294967295 (2**32 - 1)"
BAD_VALUES = {
    ("--epochs", "0"): (
        "error: epochs=0 must be a whole number of at least 1",
        "  fix: pass --epochs with a positive integer",
    ),
    ("--epochs", "-3"): (
        "error: epochs=-3 must be a whole number of at least 1",
        "  fix: pass --epochs with a positive integer",
    ),
    ("--seed", "-1"): (
        f"error: seed=-1 {SEED_RULE}",
        "  fix: pass --seed with a whole number from 0 to 4294967295, e.g. --seed 42",
    ),
    ("--seed", "4294967296"): (
        f"error: seed=4294967296 {SEED_RULE}",
        "  fix: pass --seed with a whole number from 0 to 4294967295, e.g. --seed 42",
    ),
}


@pytest.mark.parametrize("flag", list(BAD_VALUES), ids=lambda f: f"{f[0]}={f[1]}")
@pytest.mark.parametrize("name", COMMANDS)
def test_a_value_out_of_range_gets_the_same_error_and_fix_in_every_command(tmp_path, name, flag):
    try:
        result = cli(*command(name, tmp_path), *flag, timeout=180)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{name} {' '.join(flag)} ran on instead of refusing the value")
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert result.returncode == 1, output
    assert result.stderr.splitlines()[-2:] == list(BAD_VALUES[flag]), output
    # refused before any work: nothing written
    assert not any((tmp_path / d).exists() for d in ("runs", "tune", "train")), output


_SECONDS_RULE = "must be a number of seconds above 0 and at most 604800 (7 days)"
_SECONDS_FIX = (
    "pass --max-source-seconds with a positive number up to 604800, e.g. --max-source-seconds 3600"
)
SOURCE_LIMITS = {
    ("--max-source-mb", "0"): (
        "error: max_mb=0 must be a whole number of at least 1",
        "  fix: pass --max-source-mb with a positive integer",
    ),
    ("--max-source-seconds", "nan"): (
        f"error: max_seconds=nan {_SECONDS_RULE}",
        f"  fix: {_SECONDS_FIX}",
    ),
    ("--max-source-seconds", "-1"): (
        f"error: max_seconds=-1.0 {_SECONDS_RULE}",
        f"  fix: {_SECONDS_FIX}",
    ),
    # beyond what a timer counts: threading's OverflowError, once reported as "could not reach"
    ("--max-source-seconds", "1e10"): (
        f"error: max_seconds=10000000000.0 {_SECONDS_RULE}",
        f"  fix: {_SECONDS_FIX}",
    ),
}


@pytest.mark.parametrize("flag", list(SOURCE_LIMITS), ids=lambda f: f"{f[0]}={f[1]}")
@pytest.mark.parametrize("name", ("run", "ingest"))
def test_a_source_limit_out_of_range_gets_its_settings_rule_in_run_and_ingest(tmp_path, name, flag):
    """The rule of ``IngestConfig``, which ``submit --param`` applies too, not argparse's own."""
    if name == "run":
        args = command("run", tmp_path)
    else:
        args = ["ingest", "--source", "sample", "--output-dir", str(tmp_path / "runs")]
    result = cli(*args, *flag, timeout=180)
    output = result.stdout + result.stderr
    assert "Traceback" not in output and "usage:" not in output
    assert result.returncode == 1, output
    assert result.stderr.splitlines()[-2:] == list(SOURCE_LIMITS[flag]), output
    assert not (tmp_path / "runs").exists(), output
