"""Flags that argparse refuses (a value of the wrong type, a choice not offered, a missing
value, flag or command) end like every other refusal: an ``error:`` line and a ``  fix:``
line, with argparse's exit status 2. Each drill runs the real command in a real process."""

from __future__ import annotations

import subprocess
import sys

import pytest


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "crypto_pipeline.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


REFUSED = [  # (arguments, the start of the error line, the fix line)
    (
        ["ingest", "--max-source-mb", "1.5", "--output-dir", "out"],
        "error: argument --max-source-mb: invalid int value: '1.5'",
        "  fix: pass --max-source-mb a whole number (see `crypto-pipeline ingest --help`)",
    ),
    (
        ["run", "--epochs", "abc"],
        "error: argument --epochs: invalid int value: 'abc'",
        "  fix: pass --epochs a whole number (see `crypto-pipeline run --help`)",
    ),
    (
        ["predict", "--open", "1", "--high", "x", "--low", "1"],
        "error: argument --high: invalid float value: 'x'",
        "  fix: pass --high a number (see `crypto-pipeline predict --help`)",
    ),
    (
        ["transform", "--input", "x", "--output-dir", "y", "--date-format", "us"],
        "error: argument --date-format: invalid choice: 'us' "
        "(choose from 'auto', 'iso', 'dayfirst', 'monthfirst')",
        "  fix: use one of the choices listed for --date-format "
        "(see `crypto-pipeline transform --help`)",
    ),
    (
        ["serve", "--port"],
        "error: argument --port: expected one argument",
        "  fix: give --port a value (see `crypto-pipeline serve --help`)",
    ),
    (
        ["predict", "--open", "1"],
        "error: the following arguments are required: --high, --low",
        "  fix: pass --high, --low (see `crypto-pipeline predict --help`)",
    ),
    (
        ["ingest", "--output-dir", "out", "--max", "5"],
        "error: ambiguous option: --max could match --max-source-mb, --max-source-seconds",
        "  fix: see `crypto-pipeline ingest --help`",
    ),
    (
        ["bogus"],
        "error: argument COMMAND: invalid choice: 'bogus' (choose from 'run', 'ingest',",
        "  fix: use one of the choices listed for COMMAND (see `crypto-pipeline --help`)",
    ),
    (
        [],
        "error: the following arguments are required: COMMAND",
        "  fix: pass COMMAND (see `crypto-pipeline --help`)",
    ),
]


@pytest.mark.parametrize(
    "args, error, fix", REFUSED, ids=[" ".join(args) or "no command" for args, *_ in REFUSED]
)
def test_a_flag_argparse_refuses_ends_with_error_and_fix(args, error, fix):
    result = cli(*args)
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode == 2, output
    lines = result.stderr.splitlines()
    assert lines[0].startswith("usage: crypto-pipeline"), output
    assert lines[-2].startswith(error), output
    assert lines[-1] == fix, output
    assert not result.stdout, output


def test_an_unknown_flag_ends_with_error_and_fix_too(tmp_path):
    """Unknown flags reach the command (Beam options may follow it), which refuses them."""
    result = cli("sample", "--output", str(tmp_path / "x.csv"), "--bogus", "1")
    output = result.stdout + result.stderr
    assert "Traceback" not in output and result.returncode == 1, output
    assert result.stderr.splitlines()[-2:] == [
        "error: unknown option(s): --bogus 1",
        "  fix: check the spelling against `crypto-pipeline sample --help`",
    ], output
    assert not (tmp_path / "x.csv").exists(), output
