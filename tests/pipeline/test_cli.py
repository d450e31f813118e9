import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REAL_DATA, days, row
from crypto_pipeline.cli import main
from crypto_pipeline.sample_data import SAMPLE_PATH

COMMANDS = [
    "run",
    "ingest",
    "transform",
    "tune",
    "train",
    "trial",
    "deploy",
    "compile",
    "submit",
    "serve",
    "predict",
    "sample",
]


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
        (["serve", "--pipeline-root", "/no/such/runs"], "no finished run"),
        (["serve", "--model", "/no/such"], "no SavedModel in /no/such (saved_model.pb is missing)"),
        (["serve", "--port", "70000"], "--port 70000 is not a TCP port"),
        (["serve", "--port", "-1"], "--port -1 is not a TCP port"),
        (["serve", "--port", "0"], "--port 0 is not a TCP port"),
        (["serve", "--host", "203.0.113.7"], "cannot listen on 203.0.113.7:8082"),
        (["serve", "--host", "no-such-host.invalid"], "cannot listen on no-such-host.invalid"),
        (["predict", "--open", "nan", "--high", "104", "--low", "97"], "--open: nan is not finite"),
        (["predict", "--open", "100", "--high", "inf", "--low", "97"], "--high: inf is not finite"),
        (["predict", "--open", "1e308", "--high", "1e308", "--low", "97"], "float32 range"),
        (["predict", "--open", "100", "--high", "96", "--low", "97"], "high 96.0 is below low"),
        (["predict", "--open", "-1", "--high", "104", "--low", "97"], "not a positive price"),
        (
            ["predict", "--url", "http://127.0.0.1:9", "--open", "1", "--high", "2", "--low", "1"],
            "no server answered at http://127.0.0.1:9",
        ),
        (["submit", "--host", "http://127.0.0.1:9", "--package", "/no/such.yaml"], "no compiled"),
        (["submit", "--host", "http://127.0.0.1:9", "--param", "trials"], "KEY=VALUE"),
        (["deploy", "--model", "/no/such", "--output-dir", "x"], "no SavedModel"),
        (["run", "--epochs", "0"], "epochs=0 must be a whole number of at least 1"),
        (["run", "--seed", "-1"], "seed=-1 must be a whole number from 0 to 4294967295"),
        (["tune", "--katib-manifest", "k.yaml", "--seed", "-1"], "seed=-1 must be"),
        (["sample", "--output", "."], "--output . is a folder"),
        (["compile", "--output", "/"], "--output / is a folder"),
        (["run", "--pipeline-root", "/dev/null"], "--pipeline-root /dev/null is a file"),
        (["ingest", "--source", "a", "--output-dir", "/dev/null/x"], "lies inside /dev/null"),
    ],
)
def test_errors_name_the_problem_and_the_fix_and_exit_non_zero(tmp_path, args, message):
    result = cli(*args)
    assert result.returncode == 1
    assert message in result.stderr
    assert "fix:" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_a_port_in_use_before_loading_a_model():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = cli("serve", "--port", str(port), "--model", "/no/such")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "fix: pass a free --port" in result.stderr


def test_serve_says_where_it_listens():
    help_text = cli("serve", "--help").stdout
    assert "--host HOST" in help_text and "127.0.0.1" in help_text and "0.0.0.0" in help_text


def test_bad_choice_is_a_usage_error():
    result = cli("transform", "--input", "x", "--output-dir", "y", "--date-format", "us")
    assert result.returncode == 2 and "invalid choice" in result.stderr


TRIAL_FLAGS = (
    "--num-layers",
    "2",
    "--first-layer-size",
    "16",
    "--layer-size-scale",
    "0.5",
    "--learning-rate",
    "0.003",
    "--batch-size",
    "64",
)


def test_run_s_registry_and_tag_reach_the_serve_image_kserve_runs():
    from crypto_pipeline.cli_parser import build_parser
    from crypto_pipeline.cli_settings import run_settings

    def settings(*flags):
        args = build_parser().parse_args(["run", "--coin", "bitcoin", *flags])
        args.beam_args = []  # as main sets them: no Beam options
        return run_settings(args)

    moved = ("--registry", "registry.example/poets", "--tag", "2.0")
    assert settings(*moved).deploy.image == "registry.example/poets/serve:2.0"
    assert settings(*moved, "--deploy-image", "other/serve:3").deploy.image == "other/serve:3"


@pytest.mark.slow  # real tuning and training through the CLI
def test_tune_train_and_trial_commands(tmp_path):
    data = tmp_path / "data"
    assert cli("transform", "--input", str(SAMPLE_PATH), "--output-dir", str(data)).returncode == 0
    result = cli(
        "tune",
        "--data-dir",
        str(data),
        "--output-dir",
        str(tmp_path / "tune"),
        "--trials",
        "2",
        "--epochs",
        "2",
        "--seed",
        "3",
    )
    assert result.returncode == 0, result.stderr
    assert "tuned 2 trials" in result.stdout
    result = cli(
        "train",
        "--data-dir",
        str(data),
        "--params",
        str(tmp_path / "tune" / "best_params.json"),
        "--output-dir",
        str(tmp_path / "train"),
        "--epochs",
        "3",
    )
    assert result.returncode == 0, result.stderr
    assert "baseline: least_squares" in result.stdout
    assert (tmp_path / "train" / "model" / "saved_model.pb").exists()
    result = cli("trial", "--data-dir", str(data), "--epochs", "3", *TRIAL_FLAGS)
    assert result.returncode == 0, result.stderr
    reported = [line for line in result.stdout.splitlines() if "eval_loss=" in line]
    assert len(reported) == 4  # one per epoch, then the kept weights' (Katib takes the last)
    assert reported[-1].startswith("kept eval_loss=")


def test_trial_refuses_out_of_range_params(tmp_path):
    result = cli("trial", "--data-dir", str(tmp_path), *TRIAL_FLAGS, "--num-layers", "7")
    assert result.returncode == 1
    assert "num_layers=7" in result.stderr and "integer from 1 to 4" in result.stderr


def check_run(summary: dict) -> None:
    rows = summary["rows"]
    assert rows["train"] + rows["eval"] + rows["test"] == rows["valid"] - rows["duplicates"]
    assert set(summary["durations_s"]) == {
        "ingest",
        "transform",
        "tune",
        "train",
        "deploy",
        "total",
    }
    metrics = summary["metrics"]
    baselines = metrics["baselines"]
    # The quality bar: at most 0.80 x the midpoint rule's RMSE, and at most least squares'
    # (1.00 x, to float32's precision: the network that keeps its least-squares start
    # computes the line in float32, the baseline in float64).
    assert metrics["test_rmse"] <= 0.80 * baselines["midpoint"]["rmse"]
    assert metrics["test_rmse"] <= 1.0005 * baselines["least_squares"]["rmse"]
    assert Path(summary["model_dir"], "saved_model.pb").exists()
    assert all(Path(p).exists() for p in summary["plots"])
    (close,) = summary["deployment"]["smoke_response"]["predictions"]
    assert 90 < close < 110  # the smoke request is a day at 100 / 104 / 97
    assert Path(summary["deployment"]["version_uri"], "saved_model.pb").exists()


def test_run_on_the_bundled_sample_with_defaults_then_from_cache(tmp_path, capsys):
    root = tmp_path / "runs"
    assert main(["run", "--pipeline-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "SYNTHETIC" in out and "no step served from cache" in out
    summary = json.loads((root / "latest" / "summary.json").read_text())
    assert summary["synthetic"] is True and summary["cache_hits"] == []
    assert summary["rows"]["train"] >= 1000
    check_run(summary)

    started = time.perf_counter()
    assert main(["run", "--pipeline-root", str(root)]) == 0
    assert time.perf_counter() - started < 15
    again = json.loads((root / "latest" / "summary.json").read_text())
    assert again["cache_hits"] == ["ingest", "transform", "tune", "train", "deploy"]
    assert again["metrics"] == summary["metrics"]
    assert again["run_dir"] != summary["run_dir"]


def test_no_cache_runs_every_step(tmp_path):
    root = tmp_path / "runs"
    quick = ["run", "--pipeline-root", str(root), "--trials", "2", "--epochs", "2"]
    assert cli(*quick).returncode == 0
    result = cli(*quick, "--no-cache")
    assert result.returncode == 0, result.stderr
    summary = json.loads((root / "latest" / "summary.json").read_text())
    assert summary["cache_hits"] == []
    assert summary["deployment"]["version"] == 2


@pytest.mark.skipif(not REAL_DATA.exists(), reason=f"real data not present at {REAL_DATA}")
def test_run_on_real_data_with_defaults(tmp_path):
    result = cli("run", "--source", str(REAL_DATA), "--pipeline-root", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stderr
    assert "kept 1,793 of bitcoin" in result.stdout
    assert "SYNTHETIC" not in result.stdout
    check_run(json.loads((tmp_path / "runs" / "latest" / "summary.json").read_text()))
