"""Step 5, deploy: register the model version, prove it answers, describe it for KServe.

Deploy

1. copies the SavedModel into a hidden staging folder of the registry, when one is given
   (a folder, ``file://``, ``gs://…`` or ``s3://…``), loads that copy with the serving
   code and answers a smoke request; only a model that answers becomes the next version,
   ``<registry>/crypto/<n>/`` (``register_and_test``). A version is a numbered folder
   holding ``saved_model.pb`` (``version_complete``, which every reader of the registry
   asks): a number claimed whose copy has not finished, or never will (a killed deploy),
   is no version, and the next deploy removes what a killed deploy left.
   With no registry (the pipeline's default on a cluster) the model artifact itself is
   smoke-tested and served;
2. writes a KServe ``InferenceService`` (``serving.kserve.io/v1beta1``) whose predictor
   is the project's serve image, a KServe custom predictor: KServe's storage initializer
   downloads ``storageUri`` to ``/mnt/models`` and the same server as locally answers
   there, with the same checks, protocol and answers.

A deploy that fails after registering (the manifest cannot be written, the cluster does
not serve the model) removes the version it registered: the registry is as it was (a
bucket keeps the version's claim, so that its number is never used twice).

Where the cluster reads the model (``storageUri``):

- a bucket registry: the version's URI (GKE: ``gs://…`` with workload identity);
- no registry, inside Kubeflow Pipelines: the model artifact in KFP's object store
  (``minio://…`` becomes ``s3://…``; ``cluster/`` gives KServe the store's endpoint,
  SeaweedFS's ``seaweedfs.kubeflow:9000``, and credentials from a Secret);
- a local registry (a folder or ``file://``): ``pvc://crypto-models/crypto/<n>``, the
  PersistentVolumeClaim that ``scripts/cluster.sh upload-model`` copies the version into
  (kind); a path of this machine is never written as ``storageUri``.

With the cluster target it also applies that manifest through the Kubernetes API (the
credentials come from the environment: the pod's service account in a cluster, the
kubeconfig on a workstation) and waits until the model is served: the InferenceService is
``Ready`` and every predictor pod is ready. A predictor that cannot start fails the step
with the pod's own reason (``ImagePullBackOff``, ``CrashLoopBackOff`` and its last log
line, a storage initializer that cannot download the model). ``cluster_apply.API_RULES``
lists every API call it makes, so that the roles it runs under can be checked against them.

This module is the step; its parts live in ``registry`` (versions: register, read,
clean up), ``smoke`` (the smoke request), ``inference_service`` (the manifest) and
``cluster_apply`` (applying it and waiting until served).
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from crypto_pipeline.cluster_apply import (
    api_client_from_environment,
    api_error,
    apply,
    wait_until_served,
)
from crypto_pipeline.config import DeployConfig, cluster_uri
from crypto_pipeline.errors import ConfigError, PipelineError
from crypto_pipeline.files import is_remote
from crypto_pipeline.inference_service import inference_service, manifest_yaml
from crypto_pipeline.registry import register_and_test, unregister
from crypto_pipeline.serving.model import MODEL_NAME, require_saved_model
from crypto_pipeline.smoke import smoke_test

MANIFEST_NAME = "inferenceservice.yaml"
DEPLOYMENT_NAME = "deployment.json"
MODELS_PVC = "crypto-models"
"""The PersistentVolumeClaim that a local registry's versions are copied into on kind."""


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


def deploy(
    model_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    config: DeployConfig | None = None,
    model_uri: str = "",
    api_client=None,
) -> Deployment:
    """Registers, smoke-tests and describes the model; with ``target="cluster"`` serves it.

    Args:
        model_dir: The SavedModel (train's ``model/``).
        output_dir: Folder for ``inferenceservice.yaml`` and ``deployment.json``.
        config: Registry, storage, namespace, service account, image and target.
        model_uri: Where the pipeline stored ``model_dir`` (a KFP artifact URI); served
            as it is when no registry is given.
        api_client: For ``cluster``: a Kubernetes API client (default: from the
            environment).

    Raises:
        ConfigError: The model holds no SavedModel or does not answer the smoke request
            (corrupt, truncated), the registry is a file, or ``storage_uri`` is a path.
        PipelineError: With ``cluster``: the model is not served within
            ``config.ready_timeout`` seconds (the predictor's own reason is in the message).
            Whatever fails, the registry is left as it was.

    Returns:
        What was deployed.
    """
    config = config or DeployConfig()
    _check_storage_uri(config.storage_uri)
    if config.registry_uri:
        version, version_uri, (request, response) = register_and_test(
            model_dir, config.registry_uri
        )
    else:  # nothing to copy: the model artifact is the version
        model_dir = require_saved_model(model_dir)
        version = None
        remote = is_remote(model_uri)
        version_uri = cluster_uri(f"{model_uri.rstrip('/')}/model") if remote else str(model_dir)
        request, response = smoke_test(str(model_dir))
    accepted: list[bool] = []  # once the cluster holds a manifest naming the version
    try:
        return _describe_and_apply(
            Deployment(MODEL_NAME, version, version_uri, "", request, response, "", False),
            Path(output_dir),
            config,
            api_client,
            accepted,
        )
    except BaseException:  # a deploy that failed registers nothing the cluster does not use
        if version is not None and not accepted:
            unregister(config.registry_uri, version)
        raise


def _check_storage_uri(storage_uri: str) -> None:
    """Refuses a ``--storage-uri`` that a cluster cannot read (a path of this machine).

    KServe's storage initializer reads ``file://`` and plain paths inside its own
    container, where this machine's folders do not exist.
    """
    if storage_uri and not is_remote(storage_uri):
        raise ConfigError(
            f"--storage-uri {storage_uri} is a path on this machine, which a cluster cannot read",
            "pass what the cluster reads: gs://…, s3://… or pvc://CLAIM/PATH (`scripts/"
            "cluster.sh upload-model DIR N` copies a version into pvc://crypto-models/crypto/N)"
            ", or leave --storage-uri out to have it derived",
        )


def _storage_uri(config: DeployConfig, version_uri: str, version: int | None) -> str:
    """What KServe downloads: the bucket version, or the volume a local one is copied into.

    A cluster cannot read this machine's folders (nor ``file://``): a local version is
    described as the volume that ``scripts/cluster.sh upload-model`` copies it into.
    """
    if config.storage_uri:
        return config.storage_uri
    if is_remote(version_uri):
        return version_uri
    return f"pvc://{MODELS_PVC}/{MODEL_NAME}/{version or 1}"


def _describe_and_apply(
    tested: Deployment, out: Path, config: DeployConfig, api_client, accepted: list[bool]
) -> Deployment:
    """Writes the manifest (and, for ``cluster``, applies it) and ``deployment.json``.

    ``accepted`` gets an entry once the cluster accepted the manifest: from then on the
    InferenceService names the version, which must stay registered even if it never
    becomes ready (the error then says so).
    """
    storage = _storage_uri(config, tested.version_uri, tested.version)
    deploy_id = uuid.uuid4().hex if config.target == "cluster" else ""
    manifest = inference_service(storage, config, deploy_id)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST_NAME).write_text(manifest_yaml(manifest))
    applied = False
    if config.target == "cluster":
        from kubernetes import client

        api_client = api_client or api_client_from_environment()
        try:
            apply(manifest, api_client)
            accepted.append(True)
            wait_until_served(manifest, api_client, config.ready_timeout)
        except client.ApiException as exc:
            raise api_error(exc, config.namespace) from None
        except PipelineError as exc:
            if tested.version is None or not accepted:
                raise
            raise PipelineError(
                f"{exc.problem} (version {tested.version} stays registered: the "
                "InferenceService names it)",
                exc.fix,
            ) from None
        applied = True
    result = Deployment(
        **{
            **asdict(tested),
            "storage_uri": storage,
            "manifest_path": str(out / MANIFEST_NAME),
            "applied": applied,
        }
    )
    (out / DEPLOYMENT_NAME).write_text(json.dumps(asdict(result), indent=2) + "\n")
    return result
