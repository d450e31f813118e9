"""Step 5, deploy: register the model version, prove it answers, describe it for KServe.

Deploy

1. registers the SavedModel as the next version, ``<registry>/crypto/<n>/``, when a
   registry is given (a folder, ``gs://…`` or ``s3://…``); with none (the pipeline's
   default on a cluster) the model artifact itself is what gets served;
2. loads that copy with the serving code and answers a smoke request;
3. writes a KServe ``InferenceService`` (``serving.kserve.io/v1beta1``) whose predictor
   is the project's serve image, a KServe custom predictor: KServe's storage initializer
   downloads ``storageUri`` to ``/mnt/models`` and the same server as locally answers
   there, with the same checks, protocol and answers.

Where the cluster reads the model (``storageUri``):

- a bucket registry: the version's URI (GKE: ``gs://…`` with workload identity);
- no registry, inside Kubeflow Pipelines: the model artifact in KFP's object store
  (``minio://…`` becomes ``s3://…``; ``cluster/`` gives KServe MinIO's endpoint and
  credentials from a Secret);
- a local registry: ``pvc://crypto-models/crypto/<n>``, the PersistentVolumeClaim that
  ``scripts/cluster.sh upload-model`` copies the version into (kind).

With the cluster target it also applies that manifest through the Kubernetes API (the
credentials come from the environment: the pod's service account in a cluster, the
kubeconfig on a workstation).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import tempfile
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import fsspec

from crypto_pipeline.config import DeployConfig, cluster_uri
from crypto_pipeline.serve import MODEL_NAME, make_model, require_saved_model

MANIFEST_NAME = "inferenceservice.yaml"
DEPLOYMENT_NAME = "deployment.json"
SMOKE_INSTANCE = {"open": 100.0, "high": 104.0, "low": 97.0}
MODELS_PVC = "crypto-models"
"""The PersistentVolumeClaim that a local registry's versions are copied into on kind."""
SERVING_PORT = 8080
"""The port of the server in the serve image; KServe's default for a custom predictor."""
KSERVE_GROUP, KSERVE_VERSION, KSERVE_PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"


@dataclass(frozen=True)
class Deployment:
    """What deploy did, as recorded in ``deployment.json``."""

    model_name: str
    version: int | None
    version_uri: str
    storage_uri: str
    smoke_request: dict[str, Any]
    smoke_response: dict[str, Any]
    manifest_path: str
    applied: bool


def _next_version(fs, model_uri: str) -> int:
    if not fs.exists(model_uri):
        return 1
    numbers = [
        int(name)
        for name in (Path(p.rstrip("/")).name for p in fs.ls(model_uri, detail=False))
        if re.fullmatch(r"\d+", name)
    ]
    return max(numbers, default=0) + 1


def register(
    model_dir: str | os.PathLike[str], registry_uri: str, name: str = MODEL_NAME
) -> tuple[int, str]:
    """Copies a SavedModel to ``<registry_uri>/<name>/<next version>/``.

    The copy lands in a hidden folder first and is renamed into place, so a version
    folder is either complete or absent.

    Returns:
        The version number and the version's URI.

    Raises:
        ConfigError: ``model_dir`` holds no SavedModel.
    """
    model_dir = require_saved_model(model_dir)
    fs, root = fsspec.core.url_to_fs(registry_uri)
    model_uri = f"{root.rstrip('/')}/{name}"
    fs.makedirs(model_uri, exist_ok=True)
    version = _next_version(fs, model_uri)
    staging = f"{model_uri}/.staging-{uuid.uuid4().hex[:8]}"
    fs.put(str(model_dir), staging, recursive=True)
    target = f"{model_uri}/{version}"
    fs.mv(staging, target, recursive=True)
    return version, f"{registry_uri.rstrip('/')}/{name}/{version}"


def smoke_test(version_uri: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Loads a registered version with the serving code and answers one request.

    Returns:
        The request and the response, as a client would send and get them.
    """
    request = {"instances": [SMOKE_INSTANCE]}
    with tempfile.TemporaryDirectory() as tmp:
        local_dir = version_uri
        if "://" in version_uri:  # a bucket: fetch the registered copy, as a server would
            fs, path = fsspec.core.url_to_fs(version_uri)
            local_dir = os.path.join(tmp, "model")
            fs.get(path, local_dir, recursive=True)
        model = make_model(local_dir)
        response = asyncio.run(model.predict(asyncio.run(model.preprocess(request))))
    return request, response


def inference_service(storage_uri: str, config: DeployConfig | None = None) -> dict[str, Any]:
    """The KServe InferenceService that serves the model with the project's serve image.

    A custom predictor: the container must be named ``kserve-container`` for KServe to
    set ``STORAGE_URI`` up; the storage initializer downloads it to ``/mnt/models``
    (read-only), where ``crypto-pipeline serve`` loads it and listens on every interface
    of the pod (``--host 0.0.0.0``; its default, 127.0.0.1, would not be reachable).
    Standard (raw Deployment) mode: no Knative or Istio needed. The container runs as
    non-root, without privilege escalation, capabilities or a writable root filesystem
    (TensorFlow needs a writable ``/tmp``: an ``emptyDir``), under the runtime's default
    seccomp profile.

    Args:
        storage_uri: The model version's folder (``gs://``, ``s3://``, ``pvc://`` …).
        config: Namespace, service account (it must be able to read ``storage_uri``) and
            the serve image.
    """
    config = config or DeployConfig()
    predictor: dict[str, Any] = {
        "minReplicas": 1,
        "containers": [
            {
                "name": "kserve-container",
                "image": config.image,
                "args": [
                    "serve",
                    "--model",
                    "/mnt/models",
                    "--port",
                    str(SERVING_PORT),
                    "--host",
                    "0.0.0.0",
                ],
                "env": [{"name": "STORAGE_URI", "value": storage_uri}],
                "ports": [{"containerPort": SERVING_PORT, "protocol": "TCP"}],
                "readinessProbe": {
                    "httpGet": {"path": f"/v1/models/{MODEL_NAME}", "port": SERVING_PORT},
                    "periodSeconds": 5,
                },
                "resources": {
                    "requests": {"cpu": "100m", "memory": "512Mi"},
                    "limits": {"cpu": "1", "memory": "1Gi"},
                },
                "securityContext": {
                    "runAsNonRoot": True,
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                    "readOnlyRootFilesystem": True,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
    }
    if config.service_account:
        predictor["serviceAccountName"] = config.service_account
    return {
        "apiVersion": f"{KSERVE_GROUP}/{KSERVE_VERSION}",
        "kind": "InferenceService",
        "metadata": {
            "name": MODEL_NAME,
            "namespace": config.namespace,
            "annotations": {"serving.kserve.io/deploymentMode": "Standard"},
        },
        "spec": {"predictor": predictor},
    }


def manifest_yaml(manifest: dict[str, Any]) -> str:
    """The manifest as YAML, with a header that says it is generated."""
    import yaml

    return (
        "# Generated by the deploy step (crypto_pipeline.deploy): a KServe InferenceService\n"
        "# for the registered model. Apply with `kubectl apply -f` or the deploy step's\n"
        "# cluster target.\n" + yaml.safe_dump(manifest, sort_keys=False)
    )


def apply(manifest: dict[str, Any], api_client=None) -> dict[str, Any]:
    """Creates the InferenceService, or replaces it when it exists.

    Args:
        manifest: From ``inference_service``.
        api_client: A ``kubernetes.client.ApiClient``; by default one configured from the
            environment (in-cluster service account, else the kubeconfig).

    Returns:
        The object the API server answered with.
    """
    from kubernetes import client, config

    if api_client is None:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        api_client = client.ApiClient()
    api = client.CustomObjectsApi(api_client)
    namespace = manifest["metadata"]["namespace"]
    name = manifest["metadata"]["name"]
    try:
        return api.create_namespaced_custom_object(
            KSERVE_GROUP, KSERVE_VERSION, namespace, KSERVE_PLURAL, manifest
        )
    except client.ApiException as exc:
        if exc.status != 409:  # 409: it exists already
            raise
    current = api.get_namespaced_custom_object(
        KSERVE_GROUP, KSERVE_VERSION, namespace, KSERVE_PLURAL, name
    )
    updated = {
        **manifest,
        "metadata": {
            **manifest["metadata"],
            "resourceVersion": current["metadata"]["resourceVersion"],
        },
    }
    return api.replace_namespaced_custom_object(
        KSERVE_GROUP, KSERVE_VERSION, namespace, KSERVE_PLURAL, name, updated
    )


def deploy(
    model_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    config: DeployConfig | None = None,
    model_uri: str = "",
    api_client=None,
) -> Deployment:
    """Registers, smoke-tests and describes the model; applies it with ``target="cluster"``.

    Args:
        model_dir: The SavedModel (train's ``model/``).
        output_dir: Folder for ``inferenceservice.yaml`` and ``deployment.json``.
        config: Registry, storage, namespace, service account, image and target.
        model_uri: Where the pipeline stored ``model_dir`` (a KFP artifact URI); served
            as it is when no registry is given.
        api_client: For ``cluster``: a Kubernetes API client (default: from the
            environment).

    Returns:
        What was deployed.
    """
    config = config or DeployConfig()
    if config.registry_uri:
        version, version_uri = register(model_dir, config.registry_uri)
        request, response = smoke_test(version_uri)
    else:  # nothing to copy: the model artifact is the version
        model_dir = require_saved_model(model_dir)
        version = None
        remote = "://" in model_uri and not model_uri.startswith("file://")
        version_uri = cluster_uri(f"{model_uri.rstrip('/')}/model") if remote else str(model_dir)
        request, response = smoke_test(str(model_dir))
    # A cluster cannot read this machine's folders: a local version is described as the
    # volume that `scripts/cluster.sh upload-model` copies it into.
    storage = config.storage_uri or (
        version_uri if "://" in version_uri else f"pvc://{MODELS_PVC}/{MODEL_NAME}/{version or 1}"
    )
    manifest = inference_service(storage, config)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST_NAME).write_text(manifest_yaml(manifest))
    applied = False
    if config.target == "cluster":
        apply(manifest, api_client)
        applied = True
    result = Deployment(
        MODEL_NAME,
        version,
        version_uri,
        storage,
        request,
        response,
        str(out / MANIFEST_NAME),
        applied,
    )
    (out / DEPLOYMENT_NAME).write_text(json.dumps(asdict(result), indent=2) + "\n")
    return result
