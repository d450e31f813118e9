"""The cluster side: one file of versions, the registry kind pulls from, RBAC and storage."""

import os
import re
import subprocess
from pathlib import Path

import yaml

from crypto_pipeline import workshop
from crypto_pipeline.config import DEFAULT_REGISTRY, DeployConfig
from crypto_pipeline.deploy import KSERVE_GROUP, KSERVE_PLURAL, MODELS_PVC
from crypto_pipeline.tune import DATA_PVC

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"


def versions() -> dict[str, str]:
    lines = (CLUSTER / "versions.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if re.match(r"^[A-Z_]+=", line))


def cluster_sh(*args: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in versions()}
    result = subprocess.run(
        ["bash", ROOT / "scripts" / "cluster.sh", "--dry-run", *args],
        capture_output=True,
        text=True,
        env={**clean, **env},
        timeout=30,
        check=True,
    )
    return result.stdout


def objects(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_the_scripts_install_the_pinned_versions():
    """(i) Kubeflow 26.03's components, kind's node image by digest, from one file."""
    v = versions()
    assert v["KFP_VERSION"] == "2.16.0" and v["KATIB_VERSION"] == "v0.19.0"
    assert v["KSERVE_VERSION"] == "v0.16.0" and v["CERT_MANAGER_VERSION"].startswith("v1.19.")
    assert re.fullmatch(r"kindest/node:v1\.\d+\.\d+@sha256:[0-9a-f]{64}", v["KIND_NODE_IMAGE"])
    assert f"kindest/node:v{v['KUBERNETES_VERSION']}." in v["KIND_NODE_IMAGE"]
    assert f"--image {v['KIND_NODE_IMAGE']}" in cluster_sh("kind")
    assert f"kustomize/env/platform-agnostic?ref={v['KFP_VERSION']}" in cluster_sh("kfp")
    assert f"katib-standalone?ref={v['KATIB_VERSION']}" in cluster_sh("katib")
    kserve = cluster_sh("kserve")
    assert f"download/{v['KSERVE_VERSION']}/kserve.yaml" in kserve
    assert f"download/{v['CERT_MANAGER_VERSION']}/cert-manager.yaml" in kserve
    # An override in the environment wins over the file.
    assert "ref=2.99.0" in cluster_sh("kfp", KFP_VERSION="2.99.0")


def test_the_readme_quotes_the_pinned_versions():
    readme = (ROOT / "README.md").read_text()
    for name in ("KUBEFLOW_VERSION", "KFP_VERSION", "KATIB_VERSION", "KSERVE_VERSION"):
        assert versions()[name] in readme, name
    assert versions()["KIND_NODE_IMAGE"].split("@")[0] in readme


def test_kind_gets_the_registry_the_compiled_pipeline_names():
    """(a) kind's local-registry recipe, for the localhost:5001 the images are named by."""
    host = DEFAULT_REGISTRY.split("/")[0]
    out = cluster_sh("kind")
    assert f"-p 127.0.0.1:{host.split(':')[1]}:5000" in out and "--name kind-registry" in out
    assert f"/etc/containerd/certs.d/{host}/hosts.toml" in out
    assert '[host."http://kind-registry:5000"]' in out
    assert "docker network connect kind kind-registry" in out
    (config_map,) = objects(CLUSTER / "local-registry-hosting.yaml")
    assert config_map["metadata"] == {"name": "local-registry-hosting", "namespace": "kube-public"}
    assert yaml.safe_load(config_map["data"]["localRegistryHosting.v1"])["host"] == host
    assert "cluster/local-registry-hosting.yaml" in out


def test_pipeline_runner_may_create_the_inferenceservice():
    """(f) KFP standalone's pipeline-runner has no KServe rule: the deploy step needs this."""
    role, binding = objects(CLUSTER / "kserve-rbac.yaml")
    (rule,) = role["rules"]
    assert rule["apiGroups"] == [KSERVE_GROUP] and rule["resources"] == [KSERVE_PLURAL]
    assert {"create", "get", "update"} <= set(rule["verbs"])  # what deploy.apply calls
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "pipeline-runner", "namespace": "kubeflow"}
    ]
    assert role["metadata"]["namespace"] == DeployConfig().namespace
    assert "cluster/kserve-rbac.yaml" in cluster_sh("rbac")


def test_the_predictor_and_the_trials_can_read_their_storage():
    """(d, e) The service account and claims the manifests name exist in cluster/."""
    by_kind = {o["kind"]: o for o in objects(CLUSTER / "model-storage.yaml")}
    account = by_kind["ServiceAccount"]
    assert account["metadata"]["name"] == DeployConfig().service_account
    claims = {o["metadata"]["name"] for o in objects(CLUSTER / "model-storage.yaml")}
    assert {MODELS_PVC, DATA_PVC} <= claims
    out = cluster_sh("storage")
    (secret,) = account["secrets"]
    assert f"create secret generic {secret['name']}" in out
    assert "serving.kserve.io/s3-endpoint=minio-service.kubeflow:9000" in out
    assert "serving.kserve.io/s3-usehttps=0" in out
    upload = cluster_sh("upload-model", "runs/models/crypto/3", "3")
    assert f"cp runs/models/crypto/3/. upload-{MODELS_PVC}:/mnt/claim/crypto/3" in upload


def test_the_cluster_manifests_match_the_kubernetes_schema():
    lines = workshop.validate_manifests(*sorted(CLUSTER.glob("*.yaml")))
    assert len(lines) == 6 and all(line.endswith(": valid") for line in lines), lines
