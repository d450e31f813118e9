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
line, a storage initializer that cannot download the model). ``API_RULES`` lists every
API call it makes, so that the roles it runs under can be checked against them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import fcntl
import json
import os
import re
import shutil
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import fsspec

from crypto_pipeline.config import DeployConfig, cluster_uri
from crypto_pipeline.errors import ConfigError, PipelineError
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


STAGING_PREFIX = ".staging-"
"""Hidden folders beside the versions where a deploy copies and smoke-tests a model."""
REGISTRY_LOCK = ".deploy.lock"
"""Held shared by every deploy while it stages into a local registry: the first deploy
that gets it exclusively knows that no other deploy is staging, and cleans up."""
CLAIMS = ".claims"
"""In a bucket registry: one object per version number taken, written only if absent."""
STALE_BUCKET_STAGING_S = 24 * 3600
"""A bucket's staging folders and incomplete versions whose every known time (the one a
deploy wrote in the name or claim, the objects' modification times) is older than this
are leftovers of killed deploys: a bucket has no lock that dies with its holder."""
COMPLETE_MARKER = "saved_model.pb"
"""The file that makes a version folder a version. It is what loads the model, so a
folder without it serves nothing, and versions registered before it was the marker count
as they are. Locally the staged copy is renamed onto the version in one step; in a bucket
it is the last object copied, and the first one ``unregister`` removes."""


def _is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def _local_path(uri: str) -> Path:
    return Path(uri.removeprefix("file://"))


def _version_numbers(names) -> list[int]:
    return [int(n) for n in names if re.fullmatch(r"\d+", n)]


def _registry_not_a_folder(registry_uri: str, path: Path) -> ConfigError:
    return ConfigError(
        f"the registry {registry_uri} cannot hold models: {path} is a file, not a folder",
        "pass a folder (it is created if missing) or a gs:// or s3:// URI as --registry, "
        "or move the file away",
    )


def _model_root(registry_uri: str, name: str) -> Path:
    """``<registry>/<name>/`` on this machine's disk, created if missing."""
    root = _local_path(registry_uri)
    for path in (root, *root.parents):
        if path.exists() and not path.is_dir():
            raise _registry_not_a_folder(registry_uri, path)
    model_root = root / name
    if model_root.exists() and not model_root.is_dir():
        raise _registry_not_a_folder(registry_uri, model_root)
    model_root.mkdir(parents=True, exist_ok=True)
    return model_root


def version_complete(version_uri: str | os.PathLike[str]) -> bool:
    """Whether a version's folder holds a whole model: every reader of the registry asks.

    A folder without ``COMPLETE_MARKER`` is a number claimed by a deploy that has not
    published yet (locally, the moment between creating the folder and renaming the
    staged copy onto it; in a bucket, the copy of its objects) or that was killed: no
    version. Works for a folder, ``file://``, ``gs://``, ``s3://`` and ``memory://``.
    """
    version_uri = str(version_uri)
    if _is_remote(version_uri):
        fs, path = fsspec.core.url_to_fs(version_uri)
        marker = f"{path.rstrip('/')}/{COMPLETE_MARKER}"
        fs.invalidate_cache(marker)  # a listing cached earlier may predate the copy
        return fs.isfile(marker)
    return (_local_path(version_uri) / COMPLETE_MARKER).is_file()


def registered_versions(registry_uri: str, name: str = MODEL_NAME) -> list[int]:
    """The registry's complete versions, oldest first; none where nothing was registered."""
    if _is_remote(registry_uri):
        fs, root = fsspec.core.url_to_fs(registry_uri)
        names = _bucket_names(fs, f"{root.rstrip('/')}/{name}")
    else:
        folder = _local_path(registry_uri) / name
        names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
    base = f"{registry_uri.rstrip('/')}/{name}"
    return sorted(n for n in _version_numbers(names) if version_complete(f"{base}/{n}"))


def latest_version(registry_uri: str, name: str = MODEL_NAME) -> int | None:
    """The newest complete version, or ``None`` when the registry holds none."""
    return max(registered_versions(registry_uri, name), default=None)


def smoke_test(version_uri: str, shown: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
    """Loads a model with the serving code and answers one request.

    Args:
        version_uri: The model's folder (a bucket's is downloaded first).
        shown: The folder to name in an error (the user's, for a staged copy).

    Returns:
        The request and the response, as a client would send and get them.

    Raises:
        ConfigError: The model does not load or does not answer (a corrupt or truncated
            SavedModel); the message names the model's folder.
    """
    request = {"instances": [SMOKE_INSTANCE]}
    with tempfile.TemporaryDirectory() as tmp:
        local_dir = version_uri
        if _is_remote(version_uri):  # a bucket: fetch the copy, as a server would
            fs, path = fsspec.core.url_to_fs(version_uri)
            local_dir = os.path.join(tmp, "model")
            fs.get(path, local_dir, recursive=True)
        try:
            model = make_model(local_dir)
            response = asyncio.run(model.predict(asyncio.run(model.preprocess(request))))
        except Exception as exc:  # any failure to load or answer is the model's
            raise ConfigError(
                f"the model in {shown or version_uri} does not load or answer a smoke "
                f"request, it is corrupt or truncated ({type(exc).__name__}: "
                f"{textwrap.shorten(str(exc).replace(local_dir, shown or local_dir), 200)})",
                "train it again (`crypto-pipeline train`, or `make pipeline`) and deploy the "
                "new model/ folder; nothing was registered",
            ) from None
    return request, response


@contextlib.contextmanager
def _deploy_lock(model_root: Path) -> Iterator[None]:
    """Shares the registry's lock while the block stages; first removes leftovers.

    Every deploy holds ``REGISTRY_LOCK`` shared while its staging folder exists. Whoever
    gets it exclusively knows no other deploy is staging, so every ``.staging-*`` there is
    a leftover of a killed deploy: the kernel released that deploy's lock when it died.
    So is an empty version folder: a deploy claims its number while holding the lock.
    """
    with open(model_root / REGISTRY_LOCK, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another deploy is staging: its folder is not a leftover
            pass
        else:
            for leftover in model_root.glob(f"{STAGING_PREFIX}*"):
                shutil.rmtree(leftover, ignore_errors=True)
            _remove_empty_claims(model_root)
        fcntl.flock(lock, fcntl.LOCK_SH)
        yield


def _remove_empty_claims(model_root: Path) -> None:
    """Removes the empty version folders of deploys killed before their rename.

    Only an empty folder goes: one with files but no ``COMPLETE_MARKER`` was put there by
    hand (a copy under way, perhaps); readers skip it and it is left as it is.
    """
    for number in _version_numbers(p.name for p in model_root.iterdir()):
        folder = model_root / str(number)
        if not version_complete(folder):
            with contextlib.suppress(OSError):  # not empty, or not a folder
                folder.rmdir()


def _publish_local(staging: Path, model_root: Path) -> int:
    """Renames the staged model into the next free version; returns its number.

    Creating the version's folder is the claim (two deploys never get one number); the
    staged folder then replaces that empty folder in one rename, so a reader sees the
    version complete or not at all.
    """
    version = max(_version_numbers(p.name for p in model_root.iterdir()), default=0) + 1
    while True:
        target = model_root / str(version)
        try:
            target.mkdir()
        except FileExistsError:
            version += 1
            continue
        try:
            staging.rename(target)
        except BaseException:
            target.rmdir()
            raise
        return version


def _copy_model(model_dir: Path, staging: Path) -> None:
    """Copies the model folder; an entry that cannot be copied is named, with the fix."""
    try:
        shutil.copytree(model_dir, staging)
    except shutil.Error as exc:  # each entry that failed: (source, target, why)
        entries = exc.args[0] if exc.args and isinstance(exc.args[0], list) else []
        first = f"{entries[0][0]}: {entries[0][2]}" if entries else str(exc)
        raise ConfigError(
            f"the model in {model_dir} cannot be copied: {first}",
            "deploy a model folder as train writes it (no links, pipes or unreadable files "
            "in it): train it again (make pipeline) or pass --model with another folder",
        ) from None


def _register_local(model_dir: Path, registry_uri: str, name: str) -> tuple[int, str, tuple]:
    model_root = _model_root(registry_uri, name)
    with _deploy_lock(model_root):
        staging = model_root / f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}"
        try:
            _copy_model(model_dir, staging)
            smoke = smoke_test(str(staging), str(model_dir))
            version = _publish_local(staging, model_root)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return version, f"{registry_uri.rstrip('/')}/{name}/{version}", smoke


def _bucket_names(fs, folder: str) -> list[str]:
    """The names in a bucket's folder; none for a prefix that holds nothing yet."""
    try:
        return [p.rstrip("/").rsplit("/")[-1] for p in fs.ls(folder, detail=False)]
    except FileNotFoundError:
        return []


def _modified_times(fs, paths: list[str]) -> list[float]:
    """The objects' modification times, where the filesystem gives them."""
    times = []
    for path in paths:
        with contextlib.suppress(NotImplementedError, FileNotFoundError):
            stamp = fs.modified(path)
            if isinstance(stamp, datetime.datetime):
                times.append(stamp.timestamp())
    return times


def _left_by_a_killed_deploy(fs, paths: list[str], known: list[float]) -> bool:
    """Whether every time known of a leftover is older than ``STALE_BUCKET_STAGING_S``.

    ``known`` are the times a deploy wrote (its start, its claim); the objects' own
    modification times are asked for only when those are old. A deploy still copying
    keeps writing objects: it is never taken for a leftover. Where no time at all is
    known, nothing is removed (readers skip it all the same).
    """

    def fresh(times: list[float]) -> bool:
        return any(time.time() - t <= STALE_BUCKET_STAGING_S for t in times)

    if fresh(known):
        return False
    modified = _modified_times(fs, paths)
    return bool(known or modified) and not fresh(modified)


def _claim_time(fs, claim: str) -> list[float]:
    """The time a deploy wrote into its claim (none in claims of older deploys)."""
    try:
        return [float(fs.cat_file(claim))]
    except (FileNotFoundError, ValueError):
        return []


def _clean_bucket_leftovers(fs, model_uri: str, model_url: str) -> None:
    """Removes what killed deploys left: old staging folders and incomplete versions.

    An incomplete version (claimed, no ``COMPLETE_MARKER``) loses its objects; its claim
    stays, so that its number is never taken again.
    """
    fs.invalidate_cache(model_uri)  # a listing cached earlier must not hide a marker
    names = _bucket_names(fs, model_uri)
    for name in names:
        match = re.fullmatch(rf"{re.escape(STAGING_PREFIX)}(\d+)-\w+", name)
        folder = f"{model_uri}/{name}"
        if match and _left_by_a_killed_deploy(fs, fs.find(folder), [int(match.group(1))]):
            fs.rm(folder, recursive=True)
    marked = {p.split("/")[-2] for p in fs.glob(f"{model_uri}/*/{COMPLETE_MARKER}")}
    for number in _version_numbers(n for n in names if n not in marked):
        if version_complete(f"{model_url}/{number}"):  # finished since the listing
            continue
        folder, claim = f"{model_uri}/{number}", f"{model_uri}/{CLAIMS}/{number}"
        objects = fs.find(folder)
        if objects and _left_by_a_killed_deploy(fs, [*objects, claim], _claim_time(fs, claim)):
            fs.rm(folder, recursive=True)
            print(f"removed {model_url}/{number}: incomplete, left by a killed deploy")


def _claim_bucket_version(fs, model_uri: str) -> int:
    """Takes the next version number by writing its claim only if it is absent."""
    names = _bucket_names(fs, model_uri) + _bucket_names(fs, f"{model_uri}/{CLAIMS}")
    version = max(_version_numbers(names), default=0) + 1
    while True:
        try:
            with fs.open(f"{model_uri}/{CLAIMS}/{version}", "xb") as claim:
                claim.write(str(time.time()).encode())  # when: for _clean_bucket_leftovers
        except FileExistsError:
            version += 1
            continue
        return version


def _copy_saved_model_last(fs, source: str, target: str) -> None:
    """Copies a bucket folder; ``COMPLETE_MARKER`` last, so a reader never loads half."""
    files = sorted(fs.find(source), key=lambda p: p.endswith(f"/{COMPLETE_MARKER}"))
    for path in files:
        fs.copy(path, target + path[len(source) :])


def _register_bucket(model_dir: Path, registry_uri: str, name: str) -> tuple[int, str, tuple]:
    fs, root = fsspec.core.url_to_fs(registry_uri)
    model_uri = f"{root.rstrip('/')}/{name}"
    fs.makedirs(model_uri, exist_ok=True)
    registry = registry_uri.rstrip("/")
    _clean_bucket_leftovers(fs, model_uri, f"{registry}/{name}")
    staging = f"{model_uri}/{STAGING_PREFIX}{int(time.time())}-{uuid.uuid4().hex[:12]}"
    try:
        fs.put(str(model_dir), staging, recursive=True)
        smoke = smoke_test(f"{registry}/{name}/{staging.rsplit('/', 1)[-1]}", str(model_dir))
        version = _claim_bucket_version(fs, model_uri)
        try:
            _copy_saved_model_last(fs, staging, f"{model_uri}/{version}")
        except BaseException:
            unregister(registry_uri, version, name)
            raise
    finally:
        with contextlib.suppress(FileNotFoundError):  # the copy may not have begun
            fs.rm(staging, recursive=True)
    return version, f"{registry}/{name}/{version}", smoke


def register_and_test(
    model_dir: str | os.PathLike[str], registry_uri: str, name: str = MODEL_NAME
) -> tuple[int, str, tuple[dict[str, Any], dict[str, Any]]]:
    """Registers a SavedModel as the next version once a copy of it answered a request.

    The model is copied into a hidden staging folder beside the versions and smoke-tested
    there; only then is a version number taken and the copy published under it. A model
    that fails leaves the registry as it was. On a local disk (a folder or ``file://``)
    the number is taken by creating its folder, and the copy renamed onto it in one step;
    leftovers of killed deploys go at the next deploy (``_deploy_lock``). In a bucket the
    number is an object under ``.claims/`` written only if absent (``xb``: GCS's
    ``ifGenerationMatch=0``, S3's ``If-None-Match``) holding the time it was taken, and
    ``saved_model.pb`` is copied last: until it is there, no reader sees the version
    (``version_complete``). Staging folders and incomplete versions whose every known
    time is over a day old are removed; a claim stays, so a number is never used twice.

    Returns:
        The version number, the version's URI, and the smoke request and response.

    Raises:
        ConfigError: ``model_dir`` holds no SavedModel, the model does not answer, or the
            registry is a file.
    """
    model_dir = require_saved_model(model_dir)
    if _is_remote(registry_uri):
        return _register_bucket(model_dir, registry_uri, name)
    return _register_local(model_dir, registry_uri, name)


def register(
    model_dir: str | os.PathLike[str], registry_uri: str, name: str = MODEL_NAME
) -> tuple[int, str]:
    """Registers a SavedModel as ``<registry_uri>/<name>/<next version>/``.

    See ``register_and_test``.

    Returns:
        The version number and the version's URI.
    """
    version, uri, _ = register_and_test(model_dir, registry_uri, name)
    return version, uri


def unregister(registry_uri: str, version: int, name: str = MODEL_NAME) -> None:
    """Removes a version that a failed deploy published: no reader sees it again.

    Locally the version is first renamed away, so that it disappears at once. In a bucket
    its ``COMPLETE_MARKER`` goes first; its claim stays, so its number is not used again.
    """
    if _is_remote(registry_uri):
        fs, root = fsspec.core.url_to_fs(registry_uri)
        model_uri = f"{root.rstrip('/')}/{name}"
        for path, recursive in (
            (f"{model_uri}/{version}/{COMPLETE_MARKER}", False),  # incomplete from here on
            (f"{model_uri}/{version}", True),
        ):
            with contextlib.suppress(FileNotFoundError):
                fs.rm(path, recursive=recursive)
        return
    model_root = _local_path(registry_uri) / name
    doomed = model_root / f"{STAGING_PREFIX}removed-{uuid.uuid4().hex[:12]}"
    (model_root / str(version)).rename(doomed)
    shutil.rmtree(doomed, ignore_errors=True)


PROBE_TIMEOUT_S = 5
"""Seconds a probe waits for the server's answer (Kubernetes' default, 1 s, would mark a
busy pod unready); the server answers health checks in well under 100 ms."""


def _probes() -> dict[str, Any]:
    """The predictor's probes, with explicit timeouts.

    Readiness asks for the model (ready once loaded); liveness asks KServe's
    ``/v2/health/live``, and only after the start-up probe has seen the server up
    (TensorFlow's import and the model's load take tens of seconds on a small node).
    A pod goes unready after 3 missed answers (15 s) and is restarted after 6 (60 s).
    """

    def probe(path: str, period_s: int, failures: int) -> dict[str, Any]:
        return {
            "httpGet": {"path": path, "port": SERVING_PORT},
            "periodSeconds": period_s,
            "timeoutSeconds": PROBE_TIMEOUT_S,
            "failureThreshold": failures,
        }

    return {
        "readinessProbe": probe(f"/v1/models/{MODEL_NAME}", 5, 3),
        "livenessProbe": probe("/v2/health/live", 10, 6),
        "startupProbe": probe("/v2/health/live", 5, 60),
    }


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
                **_probes(),
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
        remote = _is_remote(model_uri)
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
    if storage_uri and not _is_remote(storage_uri):
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
    if _is_remote(version_uri):
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
            raise _api_error(exc, config.namespace) from None
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
