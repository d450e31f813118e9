"""Pipeline parameters given to ``crypto-pipeline submit --param KEY=VALUE``: each value is
read as its parameter's type in the compiled pipeline (or, for one setting of a step,
``STEP.FIELD=VALUE``, as its field's type) and checked by the rule the other commands apply
to the same setting, before any host is contacted. Each drill runs the real command in a
real process against a closed port."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from crypto_pipeline.config import DeployConfig, IngestConfig, TransformConfig, TuneConfig
from crypto_pipeline.errors import ConfigError
from crypto_pipeline.sample_data import SAMPLE_PATH


def cli(*args: str, timeout: float = 120) -> tuple[int, str]:
    """Runs ``crypto-pipeline ARGS``; returns (exit status, stdout + stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "crypto_pipeline.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    return done.returncode, output


@pytest.fixture(scope="module")
def closed_port() -> int:
    """A port on this machine that nothing listens on: a connection to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def submit(cluster_package, closed_port):
    """``submit PARAMS`` of the compiled pipeline to a host that refuses every connection."""
    host = f"http://127.0.0.1:{closed_port}"

    def run(*params: str) -> tuple[int, str]:
        flags = [f for p in params for f in ("--param", p)]
        return cli("submit", "--package", str(cluster_package), "--host", host, *flags)

    return run


def error_lines(output: str) -> tuple[str, str]:
    """The ``error:`` line and the ``fix:`` line of a refused command."""
    lines = output.splitlines()
    (error,) = [line for line in lines if line.startswith("error: ")]
    (fix,) = [line for line in lines if line.startswith("  fix: ")]
    return error.removeprefix("error: "), fix.removeprefix("  fix: ")


def refused(status: int, output: str, param: str) -> tuple[str, str]:
    """The error and fix of a refusal that names ``--param PARAM`` before any host is tried."""
    assert status == 1, output
    error, fix = error_lines(output)
    assert f"--param {param}" in error, output
    assert "could not submit" not in output and "Retrying" not in output, output
    return error, fix


@pytest.mark.parametrize(
    "param, flags",
    [
        ("tune.trials=0", ["--trials", "0"]),
        ("tune.trials=-2", ["--tune-trials", "-2"]),
        ("tune.epochs=0", ["--epochs", "0"]),
        ("train.epochs=-3", ["--train-epochs", "-3"]),
        ("tune.patience=0", ["--tune-patience", "0"]),
        ("train.patience=-1", ["--train-patience", "-1"]),
        ("tune.seed=-1", ["--seed", "-1"]),
        ("train.seed=4294967296", ["--train-seed", "4294967296"]),
        ("transform.split=0.5,0.5,0.5", ["--split", "0.5,0.5,0.5"]),
        ("transform.split=abc", ["--split", "abc"]),
        ("transform.coin=", ["--coin", ""]),
        ("deploy.ready_timeout=0", ["--deploy-ready-timeout", "0"]),
    ],
)
def test_a_value_run_refuses_is_refused_by_submit_with_the_same_rule(
    submit, tmp_path, param, flags
):
    error, fix = refused(*submit(param), param)
    status, output = cli("run", "--pipeline-root", str(tmp_path / "runs"), *flags)
    assert status == 1, output
    rule, rule_fix = error_lines(output)
    assert error.endswith(f": {rule}"), (error, rule)
    assert rule_fix in fix, (fix, rule_fix)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "param, setting",
    [
        ("ingest.max_mb=-5", lambda: IngestConfig(max_mb=-5)),
        ("ingest.max_mb=0", lambda: IngestConfig(max_mb=0)),
        ("ingest.max_seconds=nan", lambda: IngestConfig(max_seconds=float("nan"))),
        ("ingest.max_seconds=inf", lambda: IngestConfig(max_seconds=float("inf"))),
        ("ingest.max_seconds=-1", lambda: IngestConfig(max_seconds=-1.0)),
        ("transform.date_format=yyyy", lambda: TransformConfig(date_format="yyyy")),
        ("deploy.target=cluster2", lambda: DeployConfig(target="cluster2")),
        ("deploy.ready_timeout=0", lambda: DeployConfig(ready_timeout=0)),
    ],
)
def test_a_value_its_settings_dataclass_refuses_is_refused_with_that_rule(submit, param, setting):
    """Settings whose flags other commands check in argparse: the dataclass's own rule."""
    with pytest.raises(ConfigError) as rule:
        setting()
    error, fix = refused(*submit(param), param)
    assert error.endswith(f": {rule.value.problem}"), (error, rule.value.problem)
    assert rule.value.fix in fix, fix


@pytest.mark.parametrize(
    "param, kind",
    [
        ("tune.trials=abc", "a whole number"),
        ("train.seed=1.5", "a whole number"),
        ("ingest.max_mb=1e3", "a whole number"),
        ("deploy.ready_timeout=", "a whole number"),
        ("ingest.max_seconds=abc", "a number"),
    ],
)
def test_a_value_not_of_its_field_s_type_is_refused(submit, param, kind):
    key, _, value = param.partition("=")
    error, fix = refused(*submit(param), param)
    assert f"{key}={value!r} is not {kind}" in error, error
    assert f"e.g. --param {key}=" in fix, fix


@pytest.mark.parametrize(
    "param, suggested",
    [
        ("epochs=0", "did you mean train.epochs or tune.epochs?"),
        ("learning_rate=nan", "its parameters are: deploy.image, deploy.namespace,"),
        ("tune.seeds=7", "did you mean tune.seed?"),
        ("tune={}", "did you mean tune.epochs or tune.patience or tune.seed?"),
        ("tune_epochs=3", "did you mean tune.epochs?"),
    ],
)
def test_an_unknown_key_names_the_pipeline_s_parameters(submit, param, suggested):
    error, fix = refused(*submit(param), param)
    assert f"has no parameter '{param.partition('=')[0]}'" in error, error
    assert suggested in fix and "tune.patience" in fix and "ingest.max_mb" in fix, fix


def test_a_key_given_twice_is_refused_not_overwritten(submit):
    error, fix = refused(*submit("tune.trials=3", "tune.trials=30"), "tune.trials=30")
    assert "gives tune.trials a second time" in error and "once" in fix, error


SECRET = "s3cret-pw"  # pragma: allowlist secret


@pytest.mark.parametrize(
    "param, problem",
    [
        ("sourc_uri=https://alice:{}@host/x.csv", "has no parameter 'sourc_uri'"),
        ("transform.beam_args=--temp_location=gs://alice:{}@b/tmp '--x", "are not shell words"),
    ],
)
def test_a_refused_value_never_shows_a_password(submit, param, problem):
    status, output = submit(param.format(SECRET))
    assert status == 1 and problem in output, output
    assert SECRET not in output and "://***@" in output, output


@pytest.mark.parametrize(
    "source",
    [
        "https://alice:{}@host/x.csv",
        "https://host/x.csv?token={}",
        "gs://alice:{}@bucket/x.csv",
        "https://host/x.csv?pass={}",
        "https://host/x.csv?pwd={}",
        "https://host/x.csv?dl=1&jwt={}",
        "https://host/app;jsessionid={}/x.csv",
        "https://host/x.csv?zq_blob={}",  # a name a service invents
    ],
)
def test_a_source_url_with_credentials_is_refused_masked(submit, source):
    """A run's parameters are stored and shown by Kubeflow Pipelines: no place for a secret.

    Every user and every parameter value of the URL may be one, whatever its name.
    """
    status, output = submit(f"source_uri={source.format(SECRET)}")
    error, fix = error_lines(output)
    assert status == 1 and "may carry credentials" in error and "workload identity" in fix, output
    assert SECRET not in output and "***" in output, output
    assert "could not submit" not in output, output


@pytest.mark.parametrize(
    "params, refused_for_size",
    [(("ingest.max_mb=1",), True), ((), False)],
    ids=["ingest.max_mb=1", "default"],
)
def test_submit_reads_a_local_source_within_the_runs_own_size_limit(
    submit, closed_port, tmp_path, params, refused_for_size
):
    """The source is fingerprinted within ``--param ingest.max_mb``, as its ingest step reads it."""
    source = tmp_path / "crypto-markets.csv"
    lines = SAMPLE_PATH.read_text(encoding="utf-8").splitlines(keepends=True)
    with source.open("w", encoding="utf-8") as f:
        f.write(lines[0])
        while f.tell() < 3 << 20:  # 3 MB: over a limit of 1 MB, far below the default
            f.writelines(lines[1:])
    status, output = submit(f"source_uri={source}", "transform.coin=bitcoin", *params)
    error, fix = error_lines(output)
    assert status == 1, output
    if refused_for_size:
        assert error.startswith(f"{source} holds more than 1 MB"), output
        assert "--max-source-mb 4" in fix and "could not submit" not in output, output
    else:
        assert error.startswith(f"could not submit to http://127.0.0.1:{closed_port}"), output


def test_the_value_is_refused_before_the_source_is_read(submit, closed_port):
    """The source (an unreachable URL) is read for its header and fingerprint after the check."""
    source = f"source_uri=http://127.0.0.1:{closed_port}/crypto-markets.csv"
    error, _ = refused(*submit(source, "tune.trials=0"), "tune.trials=0")
    assert "trials=0 must be a whole number of at least 1" in error, error


@pytest.mark.parametrize(
    "params",
    [
        (
            "tune.trials=1",
            "tune.epochs=1",
            "tune.patience=1",
            "train.epochs=1",
            "train.patience=1",
            "tune.seed=0",
            "ingest.max_mb=1",
            "ingest.max_seconds=0.5",
            "transform.split=0.6,0.2,0.2",
            "transform.date_format=iso",
            "transform.coin=bitcoin",
            "transform.beam_args=--runner=DirectRunner --direct_num_workers=1",
            "deploy.target=cluster",
            "deploy.ready_timeout=1",
        ),
        (
            "train.seed=4294967295",
            "ingest.max_seconds=7",
            "deploy.namespace=kubeflow",
            "source_uri=sample",
        ),
    ],
)
def test_good_values_pass_the_check_and_meet_the_closed_host(submit, closed_port, params):
    status, output = submit(*params)
    assert status == 1, output
    error, fix = error_lines(output)
    assert error.startswith(f"could not submit to http://127.0.0.1:{closed_port}"), output
    assert "check --host" in fix, output


def test_values_reach_the_kfp_api_as_their_parameters_types(httpserver, cluster_package):
    """A digit string for a text parameter stays text; a whole number for a float is a float."""
    httpserver.expect_request("/apis/v2beta1/healthz").respond_with_json({})
    httpserver.expect_request("/apis/v2beta1/experiments", method="GET").respond_with_json(
        {"experiments": []}
    )
    httpserver.expect_request("/apis/v2beta1/experiments", method="POST").respond_with_json(
        {"experiment_id": "exp-1", "display_name": "crypto"}
    )
    httpserver.expect_request("/apis/v2beta1/runs", method="POST").respond_with_json(
        {"run_id": "run-1", "display_name": "x"}
    )
    host = httpserver.url_for("").rstrip("/")
    params = [
        "transform.coin=2049",
        "ingest.max_seconds=60",
        "tune.trials=3",
        "transform.split=0.6,0.2,0.2",
    ]
    flags = [f for p in params for f in ("--param", p)]
    status, output = cli("submit", "--package", str(cluster_package), "--host", host, *flags)
    assert status == 0, output
    (run,) = [r for r, _ in httpserver.log if (r.method, r.path) == ("POST", "/apis/v2beta1/runs")]
    sent = json.loads(run.data)["runtime_config"]["parameters"]
    transform, ingest, tune = sent["transform"], sent["ingest"], sent["tune"]
    assert transform["coin"] == "2049" and transform["split"] == "0.6,0.2,0.2", sent
    assert ingest["max_seconds"] == 60.0 and isinstance(ingest["max_seconds"], float), sent
    assert tune["trials"] == 3 and isinstance(tune["trials"], int), sent
    assert tune["epochs"] == TuneConfig().epochs, sent  # the settings not given: defaults


def test_param_takes_each_field_of_each_step_s_settings(cluster_package, tmp_path):
    """``STEP.FIELD`` for every field (``dataclasses.fields``), and the parameters of their own."""
    import dataclasses

    from crypto_pipeline.config import STEP_SETTINGS
    from crypto_pipeline.package_params import parameter_arguments

    fields = [
        f"{step}.{f.name}" for step, s in STEP_SETTINGS.items() for f in dataclasses.fields(s)
    ]
    with pytest.raises(ConfigError) as unknown:
        parameter_arguments(["nothing=1"], cluster_package)
    listed = unknown.value.fix.partition("its parameters are: ")[2].partition(" (")[0]
    assert sorted(listed.split(", ")) == sorted([*fields, "source_fingerprint", "source_uri"])
