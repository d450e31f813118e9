"""Applies the InferenceService to a cluster and waits until the model is served.

The credentials come from the environment: the pod's service account in a cluster, the
kubeconfig on a workstation. Served means the InferenceService is ``Ready`` and every
predictor pod is ready and this deploy's; a predictor that cannot start is reported with
the pod's own reason (``ImagePullBackOff``, ``CrashLoopBackOff`` and its last log line, a
storage initializer that cannot download the model). ``API_RULES`` lists every API call
made here, so that the roles a deploy runs under can be checked against them.
"""

from __future__ import annotations

import time
from typing import Any

from crypto_pipeline.errors import PipelineError
from crypto_pipeline.inference_service import (
    DEPLOY_ID,
    KSERVE_GROUP,
    KSERVE_PLURAL,
    KSERVE_VERSION,
)

ISVC_LABEL = "serving.kserve.io/inferenceservice"
"""The label KServe puts on an InferenceService's pods."""
API_RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (KSERVE_GROUP, KSERVE_PLURAL, ("create", "get", "update")),
    ("", "pods", ("list",)),
    ("", "pods/log", ("get",)),
)
"""Every Kubernetes API call of a cluster deploy: (API group, resource, verbs)."""
POLL_SECONDS = 5


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


def api_error(exc, namespace: str) -> PipelineError:
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
    poll: float | None = None,
) -> dict[str, Any]:
    """Waits until the InferenceService is ``Ready`` and every predictor pod is ready.

    Every pod of the InferenceService must be ready and be this deploy's (its ``DEPLOY_ID``
    annotation), not only the service: while a new version rolls out the old pod keeps
    ``Ready`` true, and a new pod that crash-loops would otherwise go unnoticed.

    Args:
        manifest: From ``inference_service``, as applied.
        api_client: A ``kubernetes.client.ApiClient`` (default: from the environment).
        timeout: Seconds to wait.
        poll: Seconds between two looks (default: ``POLL_SECONDS``).

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
        pods = _predictor_pods(core, namespace, name)
        if _condition(isvc, "Ready").get("status") == "True" and _pods_ready(pods, deploy_id):
            return isvc
        if time.monotonic() >= deadline:
            break
        time.sleep(POLL_SECONDS if poll is None else poll)
    reasons = _not_served_reasons(isvc, pods, core, namespace, deploy_id)
    raise PipelineError(
        f"the InferenceService {namespace}/{name} is not serving after {timeout:g} s: "
        + ("; ".join(reasons) or "no reason reported yet"),
        f"look at `kubectl -n {namespace} describe inferenceservice {name}` and "
        f"`kubectl -n {namespace} get pods -l {ISVC_LABEL}={name}`; an image that cannot be "
        "pulled needs `scripts/build_images.sh --push` and the compiled pipeline's tag, a "
        "storage initializer that fails needs `scripts/cluster.sh storage`; a slow first "
        "pull needs a longer ready_timeout",
    )


def _predictor_pods(core, namespace: str, name: str) -> list:
    """The InferenceService's pods that serve or may yet serve.

    Pods on their way out, or ended (evicted, failed), serve nothing and stay listed until
    garbage-collected: they must not hold the wait up.
    """
    return [
        p
        for p in core.list_namespaced_pod(namespace, label_selector=f"{ISVC_LABEL}={name}").items
        if p.metadata.deletion_timestamp is None
        and (p.status.phase or "") not in ("Succeeded", "Failed")
    ]


def _pods_ready(pods: list, deploy_id: str | None) -> bool:
    """Whether every pod is ready and this deploy's.

    An earlier deploy's pod keeps serving while this one's rolls out: not yet served.
    """
    ours = [p for p in pods if (p.metadata.annotations or {}).get(DEPLOY_ID) == deploy_id]
    return (
        bool(ours)
        and len(ours) == len(pods)
        and all(
            any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
            for p in pods
        )
    )


def _not_served_reasons(
    isvc: dict[str, Any], pods: list, core, namespace: str, deploy_id: str | None
) -> list[str]:
    """Why the model is not served: the InferenceService's conditions, each pod's reason."""
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
    return reasons
