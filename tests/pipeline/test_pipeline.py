"""The Kubeflow pipeline: compiled YAML, submission to a KFP API (on loopback)."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from kfp import components

from crypto_pipeline.compiled import COMPILED_HEADER, compile_pipeline
from crypto_pipeline.config import STEP_SETTINGS, DeployConfig, PipelineConfig, TuneConfig
from crypto_pipeline.errors import ConfigError
from crypto_pipeline.local_run import run_root
from crypto_pipeline.pipeline import PIPELINE_NAME, STEP_IMAGES, pipeline_arguments
from crypto_pipeline.submit import read_token, submit

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "crypto_pipeline.yaml"


def kfp_api(httpserver):
    httpserver.expect_request("/apis/v2beta1/healthz").respond_with_json({})
    httpserver.expect_request("/apis/v2beta1/experiments", method="GET").respond_with_json(
        {"experiments": []}
    )
    httpserver.expect_request("/apis/v2beta1/experiments", method="POST").respond_with_json(
        {"experiment_id": "exp-1", "display_name": "poets"}
    )
    httpserver.expect_request("/apis/v2beta1/runs", method="POST").respond_with_json(
        {"run_id": "run-1", "display_name": "x"}
    )


def test_committed_pipeline_is_current(tmp_path):
    fresh = compile_pipeline(tmp_path / "crypto_pipeline.yaml")
    assert COMMITTED.read_text() == fresh.read_text(), (
        "crypto_pipeline.yaml is stale: run `make compile` and commit it"
    )
    assert COMMITTED.read_text().startswith(COMPILED_HEADER)


def test_compiled_pipeline_loads_back_with_kfp():
    pipeline = components.load_component_from_file(str(COMMITTED))
    assert pipeline.name == PIPELINE_NAME
    inputs = set(pipeline.component_spec.inputs)
    assert inputs == {"source_uri", "source_fingerprint", *STEP_SETTINGS}


def test_images_are_set_at_compile_time(tmp_path):
    path = compile_pipeline(tmp_path / "p.yaml", registry="registry.example/poets", tag="1.2.3")
    spec = yaml.safe_load(path.read_text())
    executors = spec["deploymentSpec"]["executors"]
    images = {
        name.removeprefix("exec-").removesuffix("-step"): e["container"]["image"]
        for name, e in executors.items()
    }
    assert images == {
        step: f"registry.example/poets/{image}:1.2.3" for step, image in STEP_IMAGES.items()
    }


def test_submit_sends_the_pipeline_to_the_kfp_api(httpserver, cluster_package):
    kfp_api(httpserver)
    arguments = {"tune": {"trials": 3}}
    result = submit(cluster_package, httpserver.url_for("").rstrip("/"), "poets", arguments)
    assert result.run_id == "run-1"
    requests = {(r.method, r.path): r for r, _ in httpserver.log}
    assert json.loads(requests["POST", "/apis/v2beta1/experiments"].data)["display_name"] == "poets"
    run = json.loads(requests["POST", "/apis/v2beta1/runs"].data)
    assert run["experiment_id"] == "exp-1"
    assert run["pipeline_spec"]["pipelineInfo"]["name"] == PIPELINE_NAME
    # Each step's settings go whole: those not given keep the package's defaults.
    defaults = yaml.safe_load(cluster_package.read_text())["root"]["inputDefinitions"]
    deploy = DeployConfig.from_dict(defaults["parameters"]["deploy"]["defaultValue"])
    assert run["runtime_config"]["parameters"] == {
        "tune": TuneConfig(trials=3).to_dict(),
        "deploy": replace(deploy, namespace="kubeflow").to_dict(),
    }


def test_submit_from_the_command_line_sends_the_sources_fingerprint(
    httpserver, tmp_path, cluster_package
):
    import hashlib

    from crypto_pipeline.cli import main

    kfp_api(httpserver)
    source = tmp_path / "prices.csv"
    source.write_text("slug,date\n")
    host = httpserver.url_for("").rstrip("/")
    package = str(cluster_package)
    assert (
        main(["submit", "--host", host, "--package", package, "--param", f"source_uri={source}"])
        == 0
    )
    run = json.loads(next(r.data for r, _ in httpserver.log if r.path == "/apis/v2beta1/runs"))
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert run["runtime_config"]["parameters"]["source_fingerprint"] == f"sha256:{digest}"


def test_the_pipelines_defaults_are_the_configs():
    spec = yaml.safe_load(COMMITTED.read_text())
    defaults = {
        name: p.get("defaultValue")
        for name, p in spec["root"]["inputDefinitions"]["parameters"].items()
    }
    expected = pipeline_arguments(PipelineConfig())
    expected["deploy"]["image"] = f"{PipelineConfig().registry}/serve:{PipelineConfig().tag}"
    expected["source_fingerprint"] = ""  # set per run by `run` and `submit`
    # A struct's numbers are floats in the IR: each step reads them back as its fields' types.
    for step, settings in STEP_SETTINGS.items():
        defaults[step] = settings.from_dict(defaults[step], step).to_dict()
    assert defaults == expected
    # Works inside a step's image: no folder relative to the image's root-owned WORKDIR.
    assert defaults["deploy"]["registry_uri"] == ""


def test_docker_runs_keep_their_own_cache(tmp_path):
    config = PipelineConfig(pipeline_root=str(tmp_path))
    assert run_root(config) == tmp_path
    assert run_root(PipelineConfig(pipeline_root=str(tmp_path), runner="docker")) == (
        tmp_path / "docker"
    )
    with pytest.raises(ConfigError, match="runner"):
        PipelineConfig(runner="kubernetes")


def test_submit_to_a_multi_user_kubeflow_sends_the_namespace_and_token(httpserver, cluster_package):
    kfp_api(httpserver)
    host = httpserver.url_for("").rstrip("/")
    submit(cluster_package, host, "poets", {}, namespace="team-a", token="tok-123")
    for request, _ in httpserver.log:
        assert request.headers.get("Authorization") == "Bearer tok-123", request.path
    requests = {(r.method, r.path): r for r, _ in httpserver.log}
    experiment = json.loads(requests["POST", "/apis/v2beta1/experiments"].data)
    assert experiment["namespace"] == "team-a"
    listed = requests["GET", "/apis/v2beta1/experiments"]
    assert listed.args.get("namespace") == "team-a"


def test_the_token_comes_from_a_file_or_the_environment(tmp_path):
    token = tmp_path / "token"
    token.write_text("from-file\n")
    assert read_token(str(token), environ={}) == "from-file"
    assert read_token(None, environ={"KF_PIPELINES_SA_TOKEN_PATH": str(token)}) == "from-file"
    assert read_token(None, environ={"KF_PIPELINES_TOKEN": "from-env"}) == "from-env"
    assert read_token(None, environ={}) is None
    with pytest.raises(ConfigError, match="cannot read the token file"):
        read_token(str(tmp_path / "missing"), environ={})
    (tmp_path / "empty").write_text("")
    with pytest.raises(ConfigError, match="empty"):
        read_token(str(tmp_path / "empty"), environ={})


def test_the_docker_runner_says_how_to_get_an_engine(tmp_path, monkeypatch):
    from crypto_pipeline.errors import PipelineError
    from crypto_pipeline.local_run import run_config

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    config = PipelineConfig(pipeline_root=str(tmp_path), runner="docker")
    with pytest.raises(PipelineError, match="no Docker engine answers") as caught:
        run_config(config)
    assert "build_images.sh" in caught.value.fix
