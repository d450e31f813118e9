"""Notebook 03's exercise: a ClusterIP Service in front of the nginx Deployment.

The learner writes the Service as YAML. The check validates it strictly against the
Kubernetes API's schema (``offline.validate_manifests``, as for any manifest of the
project), then reads it against the Deployment of ``kubernetes-intro/deployment.yaml``:
same namespace, a selector that matches the Deployment's Pod labels, and ports that
forward to a port the container listens on.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

from crypto_workshop.exercises import Verdict, one_yaml_object, verdict

DEPLOYMENT_MANIFEST = Path("kubernetes-intro") / "deployment.yaml"
"""The manifest whose Deployment the Service goes in front of (under the repository)."""
TAKEN_NAME = "nginx-server"
"""The name of the manifest's own (NodePort) Service."""


def deployment_pods(manifest_path: str | os.PathLike[str]) -> dict[str, Any]:
    """What a Service needs to know of the manifest's Deployment and its Pods.

    Returns:
        ``name`` and ``namespace`` of the Deployment, ``labels`` of its Pod template, and
        ``ports``: each container port's name (or its number as text) and number.
    """
    import yaml

    docs = [d for d in yaml.safe_load_all(Path(manifest_path).read_text()) if d]
    (deployment,) = [d for d in docs if d.get("kind") == "Deployment"]
    template = deployment["spec"]["template"]
    ports = {
        str(port.get("name", port["containerPort"])): port["containerPort"]
        for container in template["spec"]["containers"]
        for port in container.get("ports", [])
    }
    return {
        "name": deployment["metadata"]["name"],
        "namespace": deployment["metadata"].get("namespace", "default"),
        "labels": template["metadata"].get("labels", {}),
        "ports": ports,
    }


def _validation_problems(text: str) -> list[str]:
    """What strict validation against the Kubernetes schema says of the manifest TEXT."""
    from crypto_workshop import commands, offline

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "service.yaml"
        path.write_text(text)
        try:
            offline.validate_manifests(path)
        except commands.CommandError as refused:
            found = []
            for line in str(refused).splitlines():
                if line.startswith("ERROR"):
                    said = re.split(r" against version [\d.]+: | could not be validated: ", line)
                    found.append(f"strict validation refuses it: {said[-1].strip()}")
            return found or ["strict validation refuses it (see `kubernetes-validate --strict`)"]
    return []


def _labels(selector: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in selector.items())


def _placement_problems(
    metadata: dict[str, Any], spec: dict[str, Any], pods: dict[str, Any]
) -> list[str]:
    """What is wrong with the Service's name, namespace, type and selector for the Pods."""
    missing = []
    if metadata["name"] == TAKEN_NAME:
        missing.append(
            f"{TAKEN_NAME} is the name of the manifest's NodePort Service: give yours a name "
            "of its own (e.g. nginx-internal), or applying it would change that one"
        )
    namespace = metadata.get("namespace", "default")
    if namespace != pods["namespace"]:
        if "namespace" in metadata:
            placed = f"in the namespace {namespace}"
        else:
            placed = "in no namespace (so: default)"
        missing.append(
            f"it is {placed}, the Deployment's Pods in {pods['namespace']}: "
            f"a Service selects Pods of its own namespace only (metadata.namespace: "
            f"{pods['namespace']})"
        )
    kind = spec.get("type", "ClusterIP")
    if kind != "ClusterIP":
        missing.append(
            f"its type is {kind}: make it ClusterIP (or leave type out: ClusterIP is the "
            "default), reachable from inside the cluster only"
        )
    selector = spec.get("selector") or {}
    if not selector:
        missing.append(
            "spec.selector is missing: without one the Service sends traffic to no Pod; "
            "select the Deployment's Pods by their labels"
        )
    elif any(pods["labels"].get(k) != v for k, v in selector.items()):
        missing.append(
            f"its selector {_labels(selector)} matches no Pod of the {pods['name']} "
            f"Deployment: its Pods are labelled {_labels(pods['labels'])}"
        )
    return missing


def _port_problems(spec: dict[str, Any], pods: dict[str, Any]) -> tuple[list[str], list[str]]:
    """What is wrong with the Service's ports; what each forwards to (``port 80 to port 80``)."""
    missing = []
    ports = spec.get("ports") or []
    if not ports:
        missing.append("spec.ports is missing: say which port the Service listens on")
    numbers = set(pods["ports"].values())
    listening = ", ".join(f"{n} ({p})" for n, p in pods["ports"].items())
    forwards = []
    for port in ports:
        target = port.get("targetPort", port.get("port"))
        forwards.append(f"port {port.get('port')} to port {target}")
        if isinstance(target, int) and target not in numbers:
            said = "" if "targetPort" in port else " (no targetPort: it is the same as port)"
            missing.append(
                f"port {port.get('port')} forwards to the Pods' port {target}{said}, but the "
                f"container listens on {listening}: set targetPort to that name or number"
            )
        elif isinstance(target, str) and target not in pods["ports"]:
            missing.append(
                f"targetPort {target!r} names no port of the container (its ports: {listening})"
            )
    return missing, forwards


def check_service(text: Any, manifest_path: str | os.PathLike[str] | None = None) -> Verdict:
    """Whether TEXT is a ClusterIP Service that reaches the nginx Deployment's Pods.

    Args:
        text: The Service manifest, as YAML.
        manifest_path: The manifest that holds the Deployment; by default the repository's
            ``kubernetes-intro/deployment.yaml``.
    """
    if manifest_path is None:
        from crypto_workshop import machine

        manifest_path = machine.project_root() / DEPLOYMENT_MANIFEST
    pods = deployment_pods(manifest_path)
    right = "a ClusterIP Service in front of the {deployment} Pods".format(deployment=pods["name"])
    if not isinstance(text, str) or not text.strip():
        return verdict(
            [
                "my_service is empty: write a Service manifest in it (apiVersion: v1, "
                "kind: Service, metadata, and a spec with a selector and ports)"
            ],
            right,
        )
    service, problem = one_yaml_object(text, "Service")
    if service is None:
        return verdict([problem], right)
    if service.get("kind") != "Service" or service.get("apiVersion") != "v1":
        return verdict(
            [
                "it must be a Service of the core API: apiVersion: v1 and kind: Service "
                f"(it says apiVersion: {service.get('apiVersion')}, kind: {service.get('kind')})"
            ],
            right,
        )
    metadata = service.get("metadata")
    if not isinstance(metadata, dict) or not metadata.get("name"):
        return verdict(
            ["metadata.name is missing: give the Service a name, e.g. nginx-internal"], right
        )
    missing = _validation_problems(text)
    if missing:
        return verdict(missing, right)
    spec = service.get("spec") or {}
    missing = _placement_problems(metadata, spec, pods)
    port_problems, forwards = _port_problems(spec, pods)
    missing += port_problems
    if not missing:
        name, namespace = metadata["name"], metadata.get("namespace", "default")
        right = (
            f"Service {name} ({spec.get('type', 'ClusterIP')}) sends {', '.join(forwards)} of "
            f"the Pods labelled {_labels(spec['selector'])} in namespace {namespace}; other "
            f"Pods reach it by the name {name}.{namespace}."
        )
    return verdict(missing, right)
