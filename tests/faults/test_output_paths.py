"""Output paths of the wrong kind, and files that are not what a command expects: every
command that writes ends with an error that names the flag and a fix, never a traceback,
and quotes nothing of a file it cannot use. Each runs the real command line in a real
process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crypto_pipeline.hyperparameters import Params
from crypto_pipeline.sample_data import SAMPLE_PATH

QUICK = ("--trials", "1", "--epochs", "1")


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "crypto_pipeline.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


@pytest.fixture(scope="module")
def inputs(sample_data, trained, tmp_path_factory) -> dict[str, str]:
    """Real inputs, so that a command that checks nothing first reaches its write."""
    params = tmp_path_factory.mktemp("params") / "best_params.json"
    params.write_text(json.dumps(Params().to_dict()))
    return {
        "source": str(SAMPLE_PATH),
        "data": str(sample_data),
        "params": str(params),
        "model": str(trained[0] / "model"),
    }


def folder_output(command: str, i: dict[str, str], out: str) -> list[str]:
    """COMMAND writing into the folder OUT."""
    return {
        "run": ["run", "--source", i["source"], "--pipeline-root", out, *QUICK],
        "ingest": ["ingest", "--source", i["source"], "--output-dir", out],
        "transform": ["transform", "--input", i["source"], "--output-dir", out],
        "tune": ["tune", "--data-dir", i["data"], "--output-dir", out, *QUICK],
        "train": [
            "train",
            "--data-dir",
            i["data"],
            "--params",
            i["params"],
            "--output-dir",
            out,
            "--epochs",
            "1",
        ],
        "deploy": ["deploy", "--model", i["model"], "--output-dir", out],
    }[command]


def file_output(command: str, out: str) -> list[str]:
    """COMMAND writing the file OUT."""
    return {
        "sample": ["sample", "--output", out],
        "compile": ["compile", "--output", out],
        "tune": ["tune", "--katib-manifest", out],
    }[command]


FOLDER_FLAGS = {
    "run": "--pipeline-root",
    "ingest": "--output-dir",
    "transform": "--output-dir",
    "tune": "--output-dir",
    "train": "--output-dir",
    "deploy": "--output-dir",
}
FILE_FLAGS = {"sample": "--output", "compile": "--output", "tune": "--katib-manifest"}


def assert_refused(result: subprocess.CompletedProcess, flag: str | None) -> list[str]:
    """Exit status 1, an error line (naming FLAG) then a fix line, and no traceback."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode == 1, output
    lines = result.stderr.splitlines()
    errors = [n for n, line in enumerate(lines) if line.startswith("error: ")]
    assert errors, output
    error = lines[errors[-1]]
    assert lines[errors[-1] + 1].startswith("  fix: "), output
    if flag is not None:
        assert flag in error, output
    return lines


@pytest.fixture
def in_the_way(tmp_path) -> tuple[Path, Path]:
    """A file and a folder where the command's output should go; both must stay as they are."""
    file = tmp_path / "notes.txt"
    file.write_text("keep me\n")
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "keep.txt").write_text("keep me too\n")
    return file, folder


def unharmed(file: Path, folder: Path) -> bool:
    return (
        file.read_text() == "keep me\n"
        and [p.name for p in folder.iterdir()] == ["keep.txt"]
        and (folder / "keep.txt").read_text() == "keep me too\n"
    )


@pytest.mark.parametrize("below", [False, True], ids=["a-file", "below-a-file"])
@pytest.mark.parametrize("command", list(FOLDER_FLAGS))
def test_a_file_where_a_folder_is_needed(inputs, in_the_way, command, below):
    file, folder = in_the_way
    out = file / "out" if below else file
    assert_refused(cli(*folder_output(command, inputs, str(out))), FOLDER_FLAGS[command])
    assert unharmed(file, folder)


@pytest.mark.parametrize("below", [False, True], ids=["a-folder", "below-a-file"])
@pytest.mark.parametrize("command", list(FILE_FLAGS))
def test_a_folder_where_a_file_is_needed(in_the_way, command, below):
    file, folder = in_the_way
    out = file / "out.yaml" if below else folder
    assert_refused(cli(*file_output(command, str(out))), FILE_FLAGS[command])
    assert unharmed(file, folder)


@pytest.mark.parametrize("link", [False, True], ids=["fifo", "link-to-fifo"])
@pytest.mark.parametrize("command", list(FILE_FLAGS))
def test_a_named_pipe_where_a_file_is_needed_is_refused_without_waiting(tmp_path, command, link):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    out = fifo
    if link:
        out = tmp_path / "link"
        out.symlink_to(fifo)
    lines = assert_refused(cli(*file_output(command, str(out))), FILE_FLAGS[command])
    assert any("not a regular file" in line for line in lines)


def test_a_folder_inside_the_output_where_a_file_goes_is_named(tmp_path):
    out = tmp_path / "ingested"
    (out / "crypto-markets.csv").mkdir(parents=True)
    result = cli("ingest", "--source", str(SAMPLE_PATH), "--output-dir", str(out))
    lines = assert_refused(result, None)
    assert f"error: {out / 'crypto-markets.csv'} is a folder" in lines[0]
    assert ".partial" not in result.stderr  # the folder in the way, not a temporary file


SECRET = (
    "root:$6$Zm9vYmFy$Q0hBTkdFTUVfc2VjcmV0X2hhc2hfdmFsdWVfMTIz"  # pragma: allowlist secret
    ":19000:0:99999:7:::"
)
SECRET_CSV = "api_key,s3cr3t-t0ken-9f8e7d6c5b4a"  # pragma: allowlist secret


@pytest.mark.parametrize("first_line", [SECRET, SECRET_CSV], ids=["shadow", "two-fields"])
@pytest.mark.parametrize("command", ["ingest", "transform", "run"])
def test_a_file_that_is_not_market_data_is_not_quoted(tmp_path, command, first_line):
    source = tmp_path / "shadow"
    source.write_text(f"{first_line}\ndaemon:*:19000:0:99999:7:::\n")
    out = str(tmp_path / "out")
    args = {
        "ingest": ["ingest", "--source", str(source), "--output-dir", out],
        "transform": ["transform", "--input", str(source), "--output-dir", out, "--coin", "x"],
        "run": ["run", "--source", str(source), "--pipeline-root", out, *QUICK],
    }[command]
    result = cli(*args)
    lines = assert_refused(result, None)
    output = result.stdout + result.stderr
    for secret in ("Zm9vYmFy", "Q0hBTkdF", "s3cr3t", "api_key", "daemon"):
        assert secret not in output, output
    assert any("required column(s) missing" in line for line in lines), output
    assert any("its text is not shown" in line for line in lines), output


def test_what_the_system_says_about_a_path_becomes_an_error_with_its_fix(tmp_path):
    """The net under every command: ``main`` turns these into ``error:`` and ``fix:``."""
    import os

    from crypto_pipeline.paths import path_error

    file, folder = tmp_path / "notes.txt", tmp_path / "results"
    file.write_text("x")
    folder.mkdir()
    raised = []
    for attempt in (
        lambda: open(folder, "w"),  # noqa: SIM115
        lambda: (file / "out").mkdir(),
        lambda: file.mkdir(),
        lambda: os.replace(file, folder),
        lambda: open(tmp_path / "missing" / "x"),  # noqa: SIM115
    ):
        with pytest.raises(OSError) as err:
            attempt()
        raised.append(path_error(err.value))
    assert [e.problem for e in raised] == [
        f"{folder} is a folder, where a file is needed",
        f"{file / 'out'} cannot be used: {file} is a file, where a folder is needed",
        f"{file} already exists, as a file, where a new folder was to be made",
        f"{folder} is a folder, where a file is needed",
        f"{tmp_path / 'missing' / 'x'} does not exist",
    ]
    assert all(e.fix for e in raised)
    assert path_error(OSError("no path")) is None
