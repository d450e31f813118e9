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
  (``minio://…`` becomes ``s3://…``; ``cluster/`` gives KServe the store's endpoint,
  SeaweedFS's ``seaweedfs.kubeflow:9000``, and credentials from a Secret);
- a local registry: ``pvc://crypto-models/crypto/<n>``, the PersistentVolumeClaim that
  ``scripts/cluster.sh upload-model`` copies the version into (kind).

With the cluster target it also applies that manifest through the Kubernetes API (the
credentials come from the environment: the pod's service account in a cluster, the
kubeconfig on a workstation) and waits until the model is served: the InferenceService is
``Ready`` and every predictor pod is ready. A predictor that cannot start fails the step
with the pod's own reason (``ImagePullBackOff``, ``CrashLoopBackOff`` and its last log
line, a storage initializer that cannot download the model). ``API_RULES`` lists every
API call it makes, so that the roles it runs under can be checked against them.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import fsspec

from crypto_pipeline.config import DeployConfig, cluster_uri
from crypto_pipeline.errors import PipelineError
from crypto_pipeline.serve import MODEL_NAME, make_model, require_saved_model

MANIFEST_NAME = "inferenceservice.yaml"
DEPLOYMENT_NAME = "deployment.json"
SMOKE_INSTANCE = {"open": 100.0, "high": 104.0, "low": 97.0}
MODELS_PVC = "crypto-models"
"""The PersistentVolumeClaim that a local registry's versions are copied into on kind."""
SERVING_PORT = 8080
"""The port of the server in the serve image; KServe's default for a custom predictor."""
KSERVE_GROUP, KSERVE_VERSION, KSERVE_PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
ISVC_LABEL = "serving.kserve.io/inferenceservice"
"""The label KServe puts on an InferenceService's pods."""
DEPLOY_ID = "crypto-pipeline/deploy-id"
"""An annotation set anew by every cluster deploy on the predictor, which KServe copies
onto its pods: the wait knows the pods of this deploy from those of an earlier one."""
API_RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (KSERVE_GROUP, KSERVE_PLURAL, ("create", "get", "update")),
    ("", "pods", ("list",)),
    ("", "pods/log", ("get",)),
)
"""Every Kubernetes API call of a cluster deploy: (API group, resource, verbs)."""
POLL_SECONDS = 5


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


def inference_service(
    storage_uri: str, config: DeployConfig | None = None, deploy_id: str = ""
) -> dict[str, Any]:
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
        deploy_id: Set as the predictor's ``DEPLOY_ID`` annotation (a cluster deploy's).
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
    if deploy_id:
        predictor["annotations"] = {DEPLOY_ID: deploy_id}
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


def api_client_from_environment():
    """A Kubernetes API client: the pod's service account in a cluster, else the kubeconfig."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


def apply(manifest: dict[str, Any], api_client=None) -> dict[str, Any]:
    """Creates the InferenceService, or replaces it when it exists.

    Args:
        manifest: From ``inference_service``.
        api_client: A ``kubernetes.client.ApiClient``; by default one configured from the
            environment (in-cluster service account, else the kubeconfig).

    Returns:
        The object the API server answered with.
    """
    from kubernetes import client

    api = client.CustomObjectsApi(api_client or api_client_from_environment())
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


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == kind), {})


def _pod_problems(pod) -> list[str]:
    """Why a predictor pod is not ready, in its own words (containers' states)."""
    problems = []
    status = pod.status
    statuses = [*(status.init_container_statuses or []), *(status.container_statuses or [])]
    for cs in statuses:
        if cs.ready:
            continue
        waiting = cs.state.waiting if cs.state else None
        last = cs.last_state.terminated if cs.last_state else None
        terminated = cs.state.terminated if cs.state else None
        if waiting and waiting.reason not in (None, "PodInitializing", "ContainerCreating"):
            text = f"{cs.name}: {waiting.reason}" + (
                f" ({waiting.message})" if waiting.message else ""
            )
            if last:
                text += f"; it last exited with code {last.exit_code} ({last.reason})"
            problems.append(text)
        elif terminated and terminated.exit_code:
            problems.append(
                f"{cs.name}: exited with code {terminated.exit_code} ({terminated.reason})"
                + (f": {terminated.message.strip()}" if terminated.message else "")
            )
    if not problems:
        for condition in status.conditions or []:
            if condition.status != "True" and condition.reason:
                problems.append(f"{condition.type}: {condition.reason} {condition.message or ''}")
    return problems


def _last_log_line(core, pod, container: str) -> str:
    from kubernetes import client

    try:
        text = core.read_namespaced_pod_log(
            pod.metadata.name,
            pod.metadata.namespace,
            container=container,
            previous=True,
            tail_lines=5,
        )
    except client.ApiException:
        return ""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _api_error(exc, namespace: str) -> PipelineError:
    """An API server's refusal, with what to do about it."""
    fixes = {
        401: "the step has no valid Kubernetes credentials: run it in a pod of the cluster, "
        "or with a kubeconfig that reaches it",
        403: f"let the step's service account create InferenceServices in {namespace}: "
        "`NAMESPACE=" + namespace + " scripts/cluster.sh rbac` on KFP standalone; on a "
        "multi-user Kubeflow, submit to your profile's namespace (its default-editor may)",
        404: "KServe is not installed there (no InferenceService API, or no such namespace): "
        "`scripts/cluster.sh kserve`, and check the namespace",
    }
    return PipelineError(
        f"the Kubernetes API refused the deploy in namespace {namespace}: "
        f"{exc.status} {exc.reason}",
        fixes.get(exc.status, "check the cluster's API server and KServe's controller"),
    )


def wait_until_served(
    manifest: dict[str, Any],
    api_client=None,
    timeout: float = 600,
    poll: float = POLL_SECONDS,
) -> dict[str, Any]:
    """Waits until the InferenceService is ``Ready`` and every predictor pod is ready.

    Every pod of the InferenceService must be ready and be this deploy's (its ``DEPLOY_ID``
    annotation), not only the service: while a new version rolls out the old pod keeps
    ``Ready`` true, and a new pod that crash-loops would otherwise go unnoticed.

    Returns:
        The InferenceService as the API server last answered.

    Raises:
        PipelineError: Not served within ``timeout`` seconds; the message carries the
            InferenceService's own condition and each predictor pod's reason.
    """
    from kubernetes import client

    api_client = api_client or api_client_from_environment()
    custom, core = client.CustomObjectsApi(api_client), client.CoreV1Api(api_client)
    namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    deploy_id = manifest["spec"]["predictor"].get("annotations", {}).get(DEPLOY_ID)
    deadline = time.monotonic() + timeout
    while True:
        isvc = custom.get_namespaced_custom_object(
            KSERVE_GROUP, KSERVE_VERSION, namespace, KSERVE_PLURAL, name
        )
        pods = [
            p
            for p in core.list_namespaced_pod(
                namespace, label_selector=f"{ISVC_LABEL}={name}"
            ).items
            # Pods on their way out, or ended (evicted, failed), serve nothing and stay
            # listed until garbage-collected: they must not hold the wait up.
            if p.metadata.deletion_timestamp is None
            and (p.status.phase or "") not in ("Succeeded", "Failed")
        ]
        # An earlier deploy's pod keeps serving while this one's rolls out: not yet served.
        ours = [p for p in pods if (p.metadata.annotations or {}).get(DEPLOY_ID) == deploy_id]
        pods_ready = (
            bool(ours)
            and len(ours) == len(pods)
            and all(
                any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
                for p in pods
            )
        )
        if _condition(isvc, "Ready").get("status") == "True" and pods_ready:
            return isvc
        if time.monotonic() >= deadline:
            break
        time.sleep(poll)
    reasons = []
    for kind in ("Ready", "PredictorReady"):
        condition = _condition(isvc, kind)
        if condition.get("status") != "True" and (
            condition.get("reason") or condition.get("message")
        ):
            reasons.append(
                f"{kind}: {condition.get('reason', '')} {condition.get('message', '')}".strip()
            )
    for pod in pods:
        for problem in _pod_problems(pod):
            container = problem.split(":", 1)[0]
            line = _last_log_line(core, pod, container) if "exit" in problem else ""
            reasons.append(
                f"pod {pod.metadata.name}: {problem}"
                + (f"; its last log line: {line}" if line else "")
            )
    if not pods:
        reasons.append(
            "no predictor pod exists: KServe's controller is not running, or the predictor's "
            "service account is missing in the namespace (`scripts/cluster.sh storage` "
            f"creates it; `kubectl -n {namespace} get events` says which)"
        )
    elif not any((p.metadata.annotations or {}).get(DEPLOY_ID) == deploy_id for p in pods):
        reasons.append("no pod of this deploy exists yet; only an earlier deploy's serves")
    raise PipelineError(
        f"the InferenceService {namespace}/{name} is not serving after {timeout:g} s: "
        + ("; ".join(reasons) or "no reason reported yet"),
        f"look at `kubectl -n {namespace} describe inferenceservice {name}` and "
        f"`kubectl -n {namespace} get pods -l {ISVC_LABEL}={name}`; an image that cannot be "
        "pulled needs `scripts/build_images.sh --push` and the compiled pipeline's tag, a "
        "storage initializer that fails needs `scripts/cluster.sh storage`; a slow first "
        "pull needs a longer ready_timeout",
    )


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
        PipelineError: With ``cluster``: the model is not served within
            ``config.ready_timeout`` seconds (the predictor's own reason is in the message).

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
    deploy_id = uuid.uuid4().hex if config.target == "cluster" else ""
    manifest = inference_service(storage, config, deploy_id)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST_NAME).write_text(manifest_yaml(manifest))
    applied = False
    if config.target == "cluster":
        from kubernetes import client

        api_client = api_client or api_client_from_environment()
        try:
            apply(manifest, api_client)
            wait_until_served(manifest, api_client, config.ready_timeout)
        except client.ApiException as exc:
            raise _api_error(exc, config.namespace) from None
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
