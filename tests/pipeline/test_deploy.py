import json

import jsonschema
import pytest
import yaml
from kubernetes import client

from conftest import SCHEMAS, strict_schema
from crypto_pipeline.deploy import (
    LOCAL_STORAGE_URI,
    apply,
    deploy,
    inference_service,
    register,
)
from crypto_pipeline.errors import ConfigError

KSERVE_CRD = SCHEMAS / "kserve-inferenceservices-crd.yaml"
needs_crd = pytest.mark.skipif(not KSERVE_CRD.exists(), reason=f"KServe CRD not at {KSERVE_CRD}")
PATH = "/apis/serving.kserve.io/v1beta1/namespaces/kubeflow/inferenceservices"


def crd_errors(manifest):
    crd = yaml.safe_load(KSERVE_CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    schema = strict_schema(version["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = {"type": "object"}  # ObjectMeta: checked by the API
    validator = jsonschema.Draft7Validator(schema)
    return sorted(f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(manifest))


def test_versions_count_up_and_hold_the_savedmodel(trained, tmp_path):
    model_dir = trained[0] / "model"
    assert register(model_dir, str(tmp_path)) == (1, str(tmp_path / "crypto" / "1"))
    assert register(model_dir, str(tmp_path))[0] == 2
    assert (tmp_path / "crypto" / "2" / "saved_model.pb").exists()
    assert sorted(p.name for p in (tmp_path / "crypto").iterdir()) == ["1", "2"]


def test_register_refuses_a_folder_without_a_model(tmp_path):
    with pytest.raises(ConfigError, match="no SavedModel"):
        register(tmp_path, str(tmp_path / "registry"))


def test_deploy_answers_a_smoke_request_and_writes_the_manifest(trained, tmp_path):
    result = deploy(trained[0] / "model", str(tmp_path / "registry"), tmp_path / "out")
    assert result.version == 1 and not result.applied
    (close,) = result.smoke_response["predictions"]
    assert 97 <= close <= 104 * 1.05
    manifest = yaml.safe_load((tmp_path / "out" / "inferenceservice.yaml").read_text())
    assert manifest["spec"]["predictor"]["model"]["storageUri"] == LOCAL_STORAGE_URI
    assert manifest["spec"]["predictor"]["model"]["modelFormat"] == {"name": "tensorflow"}
    recorded = json.loads((tmp_path / "out" / "deployment.json").read_text())
    assert recorded["version"] == 1 and recorded["smoke_response"] == result.smoke_response


@needs_crd
def test_manifest_matches_kserves_crd_schema():
    manifest = inference_service("gs://bucket/models/crypto", service_account="crypto-reader")
    assert crd_errors(manifest) == []


@needs_crd
def test_the_crd_check_catches_a_misspelt_field():
    manifest = inference_service("gs://bucket/models/crypto")
    manifest["spec"]["predictor"]["model"]["storageURI"] = manifest["spec"]["predictor"][
        "model"
    ].pop("storageUri")
    assert any("storageURI" in e for e in crd_errors(manifest))


def api_client(httpserver):
    configuration = client.Configuration(host=httpserver.url_for("").rstrip("/"))
    return client.ApiClient(configuration)


def test_cluster_deploy_creates_the_inferenceservice(trained, tmp_path, httpserver):
    httpserver.expect_request(PATH, method="POST").respond_with_json({"kind": "InferenceService"})
    result = deploy(
        trained[0] / "model",
        "memory://registry",
        tmp_path / "out",
        target="cluster",
        api_client=api_client(httpserver),
    )
    assert result.applied and result.storage_uri == "memory://registry/crypto"
    ((request, _),) = httpserver.log
    sent = json.loads(request.data)
    assert sent == inference_service("memory://registry/crypto")
    assert request.headers["Content-Type"] == "application/json"


def test_apply_replaces_an_existing_inferenceservice(httpserver):
    manifest = inference_service("gs://bucket/models/crypto")
    httpserver.expect_request(PATH, method="POST").respond_with_json(
        {"reason": "AlreadyExists"}, status=409
    )
    httpserver.expect_request(f"{PATH}/crypto", method="GET").respond_with_json(
        {**manifest, "metadata": {**manifest["metadata"], "resourceVersion": "41"}}
    )
    httpserver.expect_request(f"{PATH}/crypto", method="PUT").respond_with_json(manifest)
    apply(manifest, api_client(httpserver))
    methods = [request.method for request, _ in httpserver.log]
    assert methods == ["POST", "GET", "PUT"]
    put = json.loads(httpserver.log[-1][0].data)
    assert put["metadata"]["resourceVersion"] == "41"
    assert put["spec"] == manifest["spec"]


def test_unknown_target_is_refused(trained, tmp_path):
    with pytest.raises(ConfigError, match="target"):
        deploy(trained[0] / "model", str(tmp_path), tmp_path / "out", target="mars")
