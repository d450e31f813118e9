import json
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import inference_service_validator
from crypto_pipeline.config import DeployConfig, cluster_uri
from crypto_pipeline.deploy import MODELS_PVC, deploy
from crypto_pipeline.errors import ConfigError
from crypto_pipeline.inference_service import PROBE_TIMEOUT_S, inference_service
from crypto_pipeline.registry import register


def crd_errors(manifest):
    """Against the pinned KServe's InferenceService CRD (tests/upstream/), strictly."""
    validator = inference_service_validator()
    return sorted(f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(manifest))


def test_versions_count_up_and_hold_the_savedmodel(trained, tmp_path):
    model_dir = trained[0] / "model"
    assert register(model_dir, str(tmp_path)) == (1, str(tmp_path / "crypto" / "1"))
    assert register(model_dir, str(tmp_path))[0] == 2
    assert (tmp_path / "crypto" / "2" / "saved_model.pb").exists()
    versions = [p.name for p in (tmp_path / "crypto").iterdir() if not p.name.startswith(".")]
    assert sorted(versions) == ["1", "2"]
    # Nothing staged is left beside the versions.
    assert not list((tmp_path / "crypto").glob(".staging-*"))


def test_register_refuses_a_folder_without_a_model(tmp_path):
    with pytest.raises(ConfigError, match="no SavedModel"):
        register(tmp_path, str(tmp_path / "registry"))


def container(manifest):
    (predictor,) = manifest["spec"]["predictor"]["containers"]
    return predictor


def storage_uri(manifest):
    return {e["name"]: e["value"] for e in container(manifest)["env"]}["STORAGE_URI"]


def test_deploy_answers_a_smoke_request_and_writes_the_manifest(trained, tmp_path):
    config = DeployConfig(registry_uri=str(tmp_path / "registry"))
    result = deploy(trained[0] / "model", tmp_path / "out", config)
    assert result.version == 1 and not result.applied
    (close,) = result.smoke_response["predictions"]
    assert 97 <= close <= 104 * 1.05
    manifest = yaml.safe_load((tmp_path / "out" / "inferenceservice.yaml").read_text())
    # A local version: the PVC that `scripts/cluster.sh upload-model` copies it into.
    assert storage_uri(manifest) == f"pvc://{MODELS_PVC}/crypto/1"
    recorded = json.loads((tmp_path / "out" / "deployment.json").read_text())
    assert recorded["version"] == 1 and recorded["smoke_response"] == result.smoke_response


def test_the_cluster_serves_with_the_same_server_as_here():
    """A KServe custom predictor running the serve image: not TF Serving 2.6.2."""
    manifest = inference_service("gs://bucket/models/crypto/3")
    predictor = manifest["spec"]["predictor"]
    assert "model" not in predictor  # no KServe runtime (tensorflow: TF Serving 2.6.2)
    serve = container(manifest)
    assert serve["name"] == "kserve-container"  # the name KServe sets STORAGE_URI up for
    assert serve["image"] == DeployConfig().image
    # Inside a pod the server must listen on the pod's interface, not on its loopback.
    assert serve["args"] == [
        "serve",
        "--model",
        "/mnt/models",
        "--port",
        "8080",
        "--host",
        "0.0.0.0",
    ]
    assert storage_uri(manifest) == "gs://bucket/models/crypto/3"
    assert manifest["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"


def test_without_a_registry_the_model_artifact_is_served(trained, tmp_path):
    """The pipeline's default in a pod: no copy, nothing written outside the artifact."""
    model_uri = "minio://mlpipeline/v2/artifacts/crypto-pipeline/run-1/train-step/model"
    result = deploy(trained[0] / "model", tmp_path / "out", DeployConfig(), model_uri)
    assert result.version is None
    assert (
        result.storage_uri
        == "s3://mlpipeline/v2/artifacts/crypto-pipeline/run-1/train-step/model/model"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert result.smoke_response["predictions"]


def test_kfp_minio_uris_become_s3():
    assert cluster_uri("minio://mlpipeline/a/b") == "s3://mlpipeline/a/b"
    assert cluster_uri("gs://bucket/a") == "gs://bucket/a"


def test_the_server_container_runs_with_least_privilege():
    """The restricted Pod Security profile, and a read-only root filesystem."""
    manifest = inference_service("gs://bucket/models/crypto/3")
    assert container(manifest)["securityContext"] == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    # TensorFlow will not import without a writable temporary folder.
    (mount,) = container(manifest)["volumeMounts"]
    (volume,) = manifest["spec"]["predictor"]["volumes"]
    assert mount == {"name": volume["name"], "mountPath": "/tmp"} and "emptyDir" in volume


def test_manifest_matches_kserves_crd_schema():
    config = DeployConfig(namespace="team-a", service_account="crypto-reader")
    manifest = inference_service("gs://bucket/models/crypto/1", config)
    assert crd_errors(manifest) == []
    assert manifest["spec"]["predictor"]["serviceAccountName"] == "crypto-reader"
    assert manifest["metadata"]["namespace"] == "team-a"


def test_the_crd_check_catches_a_misspelt_field():
    manifest = inference_service("gs://bucket/models/crypto/1")
    manifest["spec"]["predictor"]["containers"][0]["environment"] = container(manifest).pop("env")
    assert any("environment" in e for e in crd_errors(manifest))


def test_unknown_target_is_refused():
    with pytest.raises(ConfigError, match="target"):
        DeployConfig(target="mars")


def test_probes_wait_longer_than_kubernetes_default_second():
    """A busy server answers health checks late; 1 s (the default) would mark it unready."""
    serve = container(inference_service("gs://bucket/models/crypto/1"))
    probes = {kind: serve[kind] for kind in ("readinessProbe", "livenessProbe", "startupProbe")}
    assert all(p["timeoutSeconds"] == PROBE_TIMEOUT_S >= 5 for p in probes.values())
    assert probes["readinessProbe"]["httpGet"]["path"] == "/v1/models/crypto"
    assert probes["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    # Restarted only after a minute of silence, and never while TensorFlow still loads.
    liveness = probes["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 60
    startup = probes["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300


@pytest.mark.parametrize("local", ["/srv/models/crypto/1", "file:///srv/models/crypto/1"])
def test_a_path_of_this_machine_is_refused_as_storage_uri(trained, tmp_path, local):
    config = DeployConfig(storage_uri=local)
    with pytest.raises(ConfigError, match="cannot read") as raised:
        deploy(trained[0] / "model", tmp_path / "out", config)
    assert "pvc://" in raised.value.fix
    assert not (tmp_path / "out").exists()


def test_a_registry_that_is_a_file_is_refused(trained, tmp_path):
    registry = tmp_path / "registry"
    registry.write_text("not a folder\n")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        register(trained[0] / "model", str(registry))
    assert registry.read_text() == "not a folder\n"


def test_a_bucket_registry_claims_numbers_and_publishes_only_a_model_that_answers(
    trained, tmp_path
):
    """fsspec's memory:// stands in for gs:// and s3://: the same calls, in this process."""
    import fsspec

    fs = fsspec.filesystem("memory")
    registry = f"memory://registry-{tmp_path.name}"
    model_dir = trained[0] / "model"
    assert register(model_dir, registry) == (1, f"{registry}/crypto/1")
    assert register(model_dir, registry)[0] == 2
    root = f"/registry-{tmp_path.name}/crypto"
    wanted = sorted(
        p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file()
    )
    for version in (1, 2):
        found = sorted(p[len(f"{root}/{version}/") :] for p in fs.find(f"{root}/{version}"))
        assert found == wanted
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / "saved_model.pb").write_bytes(b"\x00" * 10)
    before = sorted(fs.find(root))
    with pytest.raises(ConfigError, match=f"the model in {broken} does not load"):
        register(broken, registry)
    assert sorted(fs.find(root)) == before  # no version, no claim, nothing staged
    assert sorted(fs.ls(f"{root}/.claims", detail=False)) == [
        f"{root}/.claims/1",
        f"{root}/.claims/2",
    ]


def test_a_cluster_deploy_the_api_refuses_leaves_the_registry_as_it_was(
    trained, tmp_path, httpserver
):
    from kubernetes import client

    from crypto_pipeline.errors import PipelineError

    registry = tmp_path / "registry"
    model_dir = trained[0] / "model"
    register(model_dir, str(registry))
    httpserver.expect_request(
        "/apis/serving.kserve.io/v1beta1/namespaces/kubeflow/inferenceservices", method="POST"
    ).respond_with_json({"kind": "Status", "code": 403}, status=403)
    api = client.ApiClient(client.Configuration(host=httpserver.url_for("").rstrip("/")))
    config = DeployConfig(registry_uri=str(registry), target="cluster")
    with pytest.raises(PipelineError, match="refused the deploy"):
        deploy(model_dir, tmp_path / "out", config, api_client=api)
    assert sorted(p.name for p in (registry / "crypto").iterdir()) == [".deploy.lock", "1"]


def test_the_deploy_step_loads_no_other_step():
    """Deploy, its registry and its manifest stand alone: no other step's module comes along."""
    code = "import sys, crypto_pipeline.deploy; print(*sorted(sys.modules), sep='\\n')"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "crypto_pipeline.registry" in loaded and "crypto_pipeline.cluster_apply" in loaded
    steps = {f"crypto_pipeline.{step}" for step in ("ingest", "transform", "tune", "train")}
    assert steps.isdisjoint(loaded)
