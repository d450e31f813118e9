"""The KServe InferenceService that serves the model (``serving.kserve.io/v1beta1``).

Its predictor is the project's serve image, a KServe custom predictor: KServe's storage
initializer downloads ``storageUri`` to ``/mnt/models`` and the same server as locally
answers there, with the same checks, protocol and answers. ``manifest_yaml`` writes it
for ``kubectl apply -f``; ``crypto_pipeline.cluster_apply`` applies it through the API.
"""

from __future__ import annotations

from typing import Any

from crypto_pipeline.config import DeployConfig
from crypto_pipeline.serving.model import MODEL_NAME

SERVING_PORT = 8080
"""The port of the server in the serve image; KServe's default for a custom predictor."""
KSERVE_GROUP, KSERVE_VERSION, KSERVE_PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
DEPLOY_ID = "crypto-pipeline/deploy-id"
"""An annotation set anew by every cluster deploy on the predictor, which KServe copies
onto its pods: the wait knows the pods of this deploy from those of an earlier one."""
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
