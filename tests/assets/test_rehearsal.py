"""The helpers of scripts/test_containers.sh's rehearsals, without Docker.

- tests/containers/isvc_docker.py maps the deploy step's InferenceService to docker run;
- components/transform/entrypoint.sh is crypto-pipeline, or Beam's worker pool with
  --worker_pool.
"""

import copy
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from crypto_pipeline.config import DEFAULT_SERVING_IMAGE, DeployConfig
from crypto_pipeline.inference_service import inference_service, manifest_yaml

ROOT = Path(__file__).resolve().parents[2]
HELPER = ROOT / "tests" / "containers" / "isvc_docker.py"
ENTRYPOINT = ROOT / "components" / "transform" / "entrypoint.sh"

_spec = importlib.util.spec_from_file_location("isvc_docker", HELPER)
isvc_docker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(isvc_docker)

STORAGE = "pvc://crypto-models/crypto/3"
IMAGE = DEFAULT_SERVING_IMAGE
EXPECTED = [
    "--name",
    "kserve-container",
    "--publish",
    "127.0.0.1::8080/tcp",
    "--volume",
    "/models/crypto/3:/mnt/models:ro",
    "--env",
    "STORAGE_URI=/mnt/models",
    "--health-cmd",
    "python -c \"import urllib.request as u; u.urlopen('http://127.0.0.1:8080/v1/models/crypto',"
    ' timeout=5)"',
    "--health-interval",
    "5s",
    "--health-timeout",
    "5s",
    "--health-retries",
    "3",
    "--cpus",
    "1",
    "--memory",
    str(2**30),
    "--memory-swap",
    str(2**30),
    "--cpu-shares",
    "102",
    "--read-only",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
    "--tmpfs",
    f"/tmp:rw,exec,size={64 * 2**20}",
    IMAGE,
    "serve",
    "--model",
    "/mnt/models",
    "--port",
    "8080",
    "--host",
    "0.0.0.0",
]


def manifest():
    return inference_service(STORAGE, DeployConfig(image=IMAGE))


def run_args(m, **kwargs):
    return isvc_docker.docker_run_args(
        m, kwargs.pop("model", "/models/crypto/3"), kwargs.pop("image_user", "10001"), **kwargs
    )


def container(m):
    return m["spec"]["predictor"]["containers"][0]


def test_the_deploy_step_s_manifest_maps_to_these_docker_run_arguments():
    assert run_args(manifest()) == EXPECTED


def test_the_command_line_reads_the_written_manifest(tmp_path):
    path = tmp_path / "inferenceservice.yaml"
    path.write_text(manifest_yaml(manifest()))
    result = subprocess.run(
        [sys.executable, HELPER, path, "--model", "/models/crypto/3", "--image-user", "10001"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == EXPECTED


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            lambda c: c.update(livenessProbe={"tcpSocket": {"port": 8080}}),
            "livenessProbe.tcpSocket",
        ),
        (lambda c: c.update(workingDir="/srv"), "containers[0].workingDir"),
        (lambda c: c["securityContext"].update(privileged=True), "securityContext.privileged"),
        (lambda c: c["resources"]["limits"].update({"nvidia.com/gpu": 1}), "nvidia.com/gpu"),
        (
            lambda c: c["env"].append({"name": "KEY", "valueFrom": {"secretKeyRef": {}}}),
            "env[1].valueFrom",
        ),
        (lambda c: c["readinessProbe"].update(initialDelaySeconds=5), "initialDelaySeconds"),
        (lambda c: c["ports"][0].update(hostPort=80), "ports[0].hostPort"),
        (lambda c: c["volumeMounts"][0].update(subPath="x"), "volumeMounts[0].subPath"),
        (
            lambda c: c["securityContext"]["seccompProfile"].update(type="Localhost"),
            "seccompProfile.type",
        ),
    ],
)
def test_a_field_it_cannot_map_is_refused_by_name(change, field):
    m = copy.deepcopy(manifest())
    change(container(m))
    with pytest.raises(isvc_docker.Unmappable) as refused:
        run_args(m)
    assert refused.value.field.startswith("spec.predictor.containers[0].")
    assert refused.value.field.endswith(field)
    assert str(refused.value).startswith(f"cannot map {refused.value.field} to docker run")


def test_a_pod_field_it_cannot_map_is_refused_by_name(tmp_path):
    m = manifest()
    m["spec"]["predictor"]["nodeSelector"] = {"gpu": "yes"}
    path = tmp_path / "inferenceservice.yaml"
    path.write_text(yaml.safe_dump(m))
    result = subprocess.run(
        [sys.executable, HELPER, path, "--model", "/m", "--image-user", "10001"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and result.stdout == ""
    assert "cannot map spec.predictor.nodeSelector to docker run" in result.stderr


@pytest.mark.parametrize("user", ["", "0", "root", "0:0", "pipeline"])
def test_run_as_non_root_refuses_an_image_the_kubelet_would_refuse(user):
    with pytest.raises(isvc_docker.Unmappable, match="securityContext.runAsNonRoot"):
        run_args(manifest(), image_user=user)


def test_run_as_non_root_needs_the_image_s_user():
    with pytest.raises(isvc_docker.Unmappable, match="--image-user"):
        run_args(manifest(), image_user=None)


def test_other_values_map_as_the_kubelet_applies_them():
    m = manifest()
    c = container(m)
    c["resources"] = {"limits": {"cpu": "500m", "memory": "1.5G"}, "requests": {"cpu": "1m"}}
    c["securityContext"].update(runAsUser=2000, runAsGroup=3000)
    c["securityContext"]["capabilities"]["add"] = ["NET_BIND_SERVICE"]
    c["securityContext"]["seccompProfile"]["type"] = "Unconfined"
    c["command"] = ["python", "-m", "server"]
    del c["readinessProbe"]
    args = run_args(m, name="poets-serve", publish_host="0.0.0.0")
    assert args[:4] == ["--name", "poets-serve", "--publish", "0.0.0.0::8080/tcp"]
    joined = " ".join(args)
    for expected in (
        "--cpus 0.5 --memory 1500000000 --memory-swap 1500000000 --cpu-shares 2",
        "--user 2000:3000",
        "--cap-drop ALL --cap-add NET_BIND_SERVICE",
        "--security-opt seccomp=unconfined",
        f"--entrypoint python {IMAGE} -m server serve --model /mnt/models",
    ):
        assert expected in joined
    assert "--health-cmd" not in args


def test_storage_uri_needs_the_model_folder():
    with pytest.raises(isvc_docker.Unmappable, match=r"env\[0\]"):
        run_args(manifest(), model=None)


@pytest.mark.parametrize(
    ("text", "value"),
    [("100m", "0.1"), ("1", "1"), ("64Mi", str(64 * 2**20)), ("1G", "1000000000"), ("2e3", "2000")],
)
def test_quantities_read_as_kubernetes_reads_them(text, value):
    assert isvc_docker.quantity(text, "f") == isvc_docker.Decimal(value)


def test_a_quantity_that_is_not_one_is_refused():
    with pytest.raises(isvc_docker.Unmappable, match="limits.memory"):
        isvc_docker.quantity("lots", "limits.memory")


def entrypoint(tmp_path, *args):
    """Runs the entrypoint with stand-ins for python and crypto-pipeline that echo."""
    for name in ("python", "crypto-pipeline"):
        stub = tmp_path / name
        stub.write_text(f'#!/bin/sh\necho {name} "$@"\n')
        stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    result = subprocess.run(
        ["sh", ENTRYPOINT, *args], capture_output=True, text=True, env=env, check=True
    )
    return result.stdout.strip()


def test_the_transform_image_is_crypto_pipeline_with_its_arguments(tmp_path):
    assert entrypoint(tmp_path, "--help") == "crypto-pipeline --help"
    assert entrypoint(tmp_path, "transform", "--input", "a b.csv") == (
        "crypto-pipeline transform --input a b.csv"
    )


def test_with_worker_pool_the_transform_image_is_beam_s_worker_pool_on_50000(tmp_path):
    assert entrypoint(tmp_path, "--worker_pool") == (
        "python -m apache_beam.runners.worker.worker_pool_main --service_port=50000"
    )
    assert entrypoint(tmp_path, "--worker_pool", "--service_port=50001").endswith(
        "--service_port=50000 --service_port=50001"
    )


def test_the_transform_image_starts_with_that_entrypoint():
    dockerfile = (ROOT / "components" / "transform" / "Dockerfile").read_text()
    assert "COPY components/transform/entrypoint.sh /usr/local/bin/transform-entrypoint" in (
        dockerfile
    )
    assert 'ENTRYPOINT ["sh", "/usr/local/bin/transform-entrypoint"]' in dockerfile
