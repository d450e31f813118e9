"""The Kubeflow pipeline: compiled YAML, submission to a KFP API (on loopback)."""

import json
from pathlib import Path

import yaml
from kfp import components

from crypto_pipeline.pipeline import (
    COMPILED_HEADER,
    PIPELINE_NAME,
    STEP_IMAGES,
    compile_pipeline,
    submit,
)

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "crypto_pipeline.yaml"


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
    assert {"source_uri", "coin", "split", "trials", "seed", "beam_args"} <= inputs


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


def test_submit_sends_the_pipeline_to_the_kfp_api(httpserver):
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
    result = submit(COMMITTED, httpserver.url_for("").rstrip("/"), "poets", {"trials": 3})
    assert result.run_id == "run-1"
    requests = {(r.method, r.path): r for r, _ in httpserver.log}
    assert json.loads(requests["POST", "/apis/v2beta1/experiments"].data)["display_name"] == "poets"
    run = json.loads(requests["POST", "/apis/v2beta1/runs"].data)
    assert run["experiment_id"] == "exp-1"
    assert run["pipeline_spec"]["pipelineInfo"]["name"] == PIPELINE_NAME
    assert run["runtime_config"]["parameters"] == {"trials": 3}
