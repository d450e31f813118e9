import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REAL_DATA, days, row
from crypto_pipeline.cli import main

COMMANDS = ["run", "ingest", "transform", "sample"]


def cli(*args: str) -> subprocess.CompletedProcess:
    """Runs the installed console script, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "crypto_pipeline.cli", *args], capture_output=True, text=True
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = cli(command, "--help")
    assert result.returncode == 0
    assert "usage: crypto-pipeline " + command in result.stdout


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("crypto-pipeline")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and "crypto-pipeline" in result.stdout


def test_ingest_then_transform(tmp_path, csv_file):
    source = csv_file([row(d) for d in days(20)])
    result = cli("ingest", "--source", str(source), "--output-dir", str(tmp_path / "raw"))
    assert result.returncode == 0, result.stderr
    assert "ingested 20 rows" in result.stdout
    result = cli(
        "transform",
        "--input",
        str(tmp_path / "raw" / "crypto-markets.csv"),
        "--output-dir",
        str(tmp_path / "data"),
        "--split",
        "0.5,0.25,0.25",
        "--runner=DirectRunner",
    )
    assert result.returncode == 0, result.stderr
    assert "kept 20 rows of bitcoin" in result.stdout
    stats = json.loads((tmp_path / "data" / "stats.json").read_text())
    assert [stats["splits"][s]["rows"] for s in ("train", "eval", "test")] == [10, 5, 5]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ingest", "--source", "/no/such.csv", "--output-dir", "x"], "source file not found"),
        (["transform", "--input", "/no/such.csv", "--output-dir", "x"], "input not found"),
        (["transform", "--input", "x", "--output-dir", "y", "--coins", "eth"], "unknown option"),
        (["transform", "--input", "x", "--output-dir", "y", "--split", "1,2"], "--split"),
        (
            ["ingest", "--source", "a", "--output-dir", "b", "--runner=DirectRunner"],
            "unknown option",
        ),
    ],
)
def test_errors_name_the_problem_and_the_fix_and_exit_non_zero(tmp_path, args, message):
    result = cli(*args)
    assert result.returncode == 1
    assert message in result.stderr
    assert "fix:" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_choice_is_a_usage_error():
    result = cli("transform", "--input", "x", "--output-dir", "y", "--date-format", "us")
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_run_on_the_bundled_sample(tmp_path, capsys):
    assert main(["run", "--runs-dir", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "SYNTHETIC" in out and "still to come" in out
    latest = tmp_path / "runs" / "latest"
    assert latest.is_symlink()
    summary = json.loads((latest / "summary.json").read_text())
    assert summary["synthetic"] is True
    rows = summary["rows"]
    assert rows["train"] + rows["eval"] + rows["test"] == rows["valid"] - rows["duplicates"]
    assert rows["train"] >= 1000
    assert set(summary["durations_s"]) == {"ingest", "transform"}


@pytest.mark.skipif(not REAL_DATA.exists(), reason=f"real data not present at {REAL_DATA}")
def test_run_on_real_data(tmp_path):
    result = cli("run", "--source", str(REAL_DATA), "--runs-dir", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stderr
    assert "kept 1,793 rows of bitcoin" in result.stdout
    assert "SYNTHETIC" not in result.stdout
