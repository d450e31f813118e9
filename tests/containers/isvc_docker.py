"""The `docker run` arguments that run a KServe InferenceService's predictor as KServe would.

scripts/test_containers.sh runs the serve image with these arguments, so that what it
checks is the container the deploy step's ``inferenceservice.yaml`` describes, field by
field, not a hand-written approximation of it:

- ``image``, ``command`` and ``args``: the image, ``--entrypoint`` and its arguments;
- ``env``: ``--env`` for each variable, with ``STORAGE_URI`` set to ``/mnt/models`` as
  KServe's storage initializer sets it once it has downloaded the model there; the model
  folder given with ``--model`` is mounted read-only at ``/mnt/models`` in its place;
- ``ports``: ``--publish HOST::PORT/PROTOCOL`` (an ephemeral host port; ``docker port``
  tells which);
- ``readinessProbe`` (``httpGet``): a ``--health-cmd`` that GETs the same path and port
  from inside the container, every ``periodSeconds``, with the probe's timeout and failure
  threshold; the container is ready when Docker says ``healthy``;
- ``livenessProbe`` and ``startupProbe`` (``httpGet``): checked as the readiness probe is,
  and not mapped: Docker has one health check, and restarts nothing when it fails;
- ``resources``: ``limits.cpu`` ``--cpus``, ``limits.memory`` ``--memory`` (and the same
  ``--memory-swap``: no swap, as the kubelet runs pods), ``requests.cpu`` ``--cpu-shares``
  (the kubelet's conversion, 1024 per CPU); ``requests.memory`` only places the pod on a
  node, and the kubelet sets nothing for it, so nothing is mapped;
- ``securityContext``: ``runAsNonRoot`` refuses an image whose user is root or not
  numeric (as the kubelet does), ``runAsUser``/``runAsGroup`` ``--user``,
  ``readOnlyRootFilesystem`` ``--read-only``, ``capabilities`` ``--cap-drop``/``--cap-add``,
  ``allowPrivilegeEscalation: false`` ``--security-opt no-new-privileges``, ``seccompProfile``
  ``RuntimeDefault`` the engine's default profile (``Unconfined``: ``seccomp=unconfined``);
- ``volumeMounts`` of ``emptyDir`` volumes: ``--tmpfs PATH:rw,exec,size=sizeLimit``;
- the pod's ``minReplicas`` (one container is one replica) and ``serviceAccountName`` (the
  storage initializer's credentials; the mounted model replaces its download) need nothing.

Any other field, or a value it cannot map, is refused with its path and exit status 1, so
that a change to the manifest cannot pass the rehearsal unnoticed.

Usage:
    python tests/containers/isvc_docker.py MANIFEST --model DIR --image-user USER
        [--name NAME] [--publish-host IP]

prints the arguments, one per line: the flags, then the image and its arguments.
"""

from __future__ import annotations

import argparse
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

MODEL_MOUNT = "/mnt/models"
"""Where KServe's storage initializer puts the model, and what STORAGE_URI then says."""

_SUFFIXES = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "m": Decimal("0.001"),
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
}


class Unmappable(ValueError):
    """A field of the manifest that has no `docker run` equivalent here."""

    def __init__(self, field: str, why: str = "no docker run equivalent is known"):
        super().__init__(f"cannot map {field} to docker run: {why}")
        self.field = field


def quantity(value: Any, field: str) -> Decimal:
    """A Kubernetes quantity (``100m``, ``1``, ``512Mi``, ``1G``, ``1e3``) as a number."""
    text = str(value)
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if suffix and text.endswith(suffix):
            number, scale = text[: -len(suffix)], _SUFFIXES[suffix]
            break
    else:
        number, scale = text, 1
    try:
        result = Decimal(number) * scale
    except InvalidOperation:
        raise Unmappable(field, f"{value!r} is not a Kubernetes quantity") from None
    if not result.is_finite() or result < 0:
        raise Unmappable(field, f"{value!r} is not a Kubernetes quantity")
    return result


def _number(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _bytes(value: Any, field: str) -> str:
    amount = quantity(value, field)
    if amount != amount.to_integral_value() or amount == 0:
        raise Unmappable(field, f"{value!r} is not a whole, positive number of bytes")
    return str(int(amount))


def _known(spec: dict[str, Any], where: str, keys: set[str]) -> None:
    if not isinstance(spec, dict):
        raise Unmappable(where, f"expected a mapping, got {spec!r}")
    for key in spec:
        if key not in keys:
            raise Unmappable(f"{where}.{key}")


def check_non_root(image_user: str | None, where: str) -> None:
    """The kubelet's runAsNonRoot check of the image's user (``USER`` of the image)."""
    if image_user is None:
        raise Unmappable(where, "runAsNonRoot needs the image's user (--image-user)")
    uid = image_user.split(":", 1)[0]
    if not uid.isdigit():
        raise Unmappable(
            where,
            f"the image's user is {image_user or 'not set (root)'}; with runAsNonRoot the "
            "kubelet refuses a user that is not a numeric uid",
        )
    if int(uid) == 0:
        raise Unmappable(where, "the image runs as root (uid 0), which runAsNonRoot refuses")


def _security(context: dict[str, Any], where: str, image_user: str | None) -> list[str]:
    _known(
        context,
        where,
        {
            "runAsNonRoot",
            "runAsUser",
            "runAsGroup",
            "readOnlyRootFilesystem",
            "allowPrivilegeEscalation",
            "capabilities",
            "seccompProfile",
        },
    )
    flags: list[str] = []
    user = context.get("runAsUser")
    group = context.get("runAsGroup")
    if user is not None:
        flags += ["--user", f"{user}:{group}" if group is not None else str(user)]
    elif group is not None:
        raise Unmappable(f"{where}.runAsGroup", "docker run sets a group only with a user")
    if context.get("runAsNonRoot"):
        check_non_root(str(user) if user is not None else image_user, f"{where}.runAsNonRoot")
    if context.get("readOnlyRootFilesystem"):
        flags.append("--read-only")
    capabilities = context.get("capabilities", {})
    _known(capabilities, f"{where}.capabilities", {"drop", "add"})
    for verb in ("drop", "add"):
        for capability in capabilities.get(verb, []):
            flags += [f"--cap-{verb}", str(capability).removeprefix("CAP_")]
    if context.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    seccomp = context.get("seccompProfile")
    if seccomp is not None:
        _known(seccomp, f"{where}.seccompProfile", {"type"})
        if seccomp["type"] == "Unconfined":
            flags += ["--security-opt", "seccomp=unconfined"]
        elif seccomp["type"] != "RuntimeDefault":  # RuntimeDefault: the engine's default
            raise Unmappable(f"{where}.seccompProfile.type", f"{seccomp['type']!r}")
    return flags


def _resources(resources: dict[str, Any], where: str) -> list[str]:
    _known(resources, where, {"limits", "requests"})
    flags: list[str] = []
    limits = resources.get("limits", {})
    _known(limits, f"{where}.limits", {"cpu", "memory"})
    if "cpu" in limits:
        flags += ["--cpus", _number(quantity(limits["cpu"], f"{where}.limits.cpu"))]
    if "memory" in limits:
        memory = _bytes(limits["memory"], f"{where}.limits.memory")
        flags += ["--memory", memory, "--memory-swap", memory]
    requests = resources.get("requests", {})
    _known(requests, f"{where}.requests", {"cpu", "memory"})
    if "cpu" in requests:  # the kubelet: cpu shares = milli-CPUs * 1024 / 1000, at least 2
        milli = quantity(requests["cpu"], f"{where}.requests.cpu") * 1000
        flags += ["--cpu-shares", str(max(2, int(milli * 1024 / 1000)))]
    if "memory" in requests:  # scheduling only: the kubelet sets no limit for it
        quantity(requests["memory"], f"{where}.requests.memory")
    return flags


def _probe(probe: dict[str, Any], where: str, ports: set[int]) -> list[str]:
    _known(probe, where, {"httpGet", "periodSeconds", "timeoutSeconds", "failureThreshold"})
    if "httpGet" not in probe:
        raise Unmappable(where, "only an httpGet probe is mapped")
    get = probe["httpGet"]
    _known(get, f"{where}.httpGet", {"path", "port", "scheme"})
    if get.get("scheme", "HTTP") != "HTTP":
        raise Unmappable(f"{where}.httpGet.scheme", f"{get['scheme']!r}")
    port = get["port"]
    if not isinstance(port, int) or port not in ports:
        raise Unmappable(f"{where}.httpGet.port", f"{port!r} is not a declared containerPort")
    timeout = int(probe.get("timeoutSeconds", 1))  # the kubelet's defaults
    url = f"http://127.0.0.1:{port}{get.get('path', '/')}"
    check = f"import urllib.request as u; u.urlopen({url!r}, timeout={timeout})"
    return [
        "--health-cmd",
        f'python -c "{check}"',
        "--health-interval",
        f"{int(probe.get('periodSeconds', 10))}s",
        "--health-timeout",
        f"{timeout}s",
        "--health-retries",
        str(int(probe.get("failureThreshold", 3))),
    ]


def docker_run_args(
    manifest: dict[str, Any],
    model: str | None,
    image_user: str | None,
    name: str | None = None,
    publish_host: str = "127.0.0.1",
) -> list[str]:
    """The arguments of ``docker run`` for the manifest's predictor container.

    Args:
        manifest: A KServe InferenceService
            (``crypto_pipeline.inference_service.inference_service``).
        model: The folder the storage initializer would have downloaded ``STORAGE_URI`` to.
        image_user: The image's user (``docker image inspect -f '{{.Config.User}}'``).
        name: The container's name; by default the spec's (``kserve-container``).
        publish_host: The host address container ports are published on.

    Returns:
        The flags, then the image and its arguments.

    Raises:
        Unmappable: A field, named in the message, that cannot be mapped.
    """
    _known(manifest, "", {"apiVersion", "kind", "metadata", "spec"})
    if manifest.get("kind") != "InferenceService":
        raise Unmappable("kind", f"{manifest.get('kind')!r} is not an InferenceService")
    _known(manifest["spec"], "spec", {"predictor"})
    predictor = manifest["spec"]["predictor"]
    where = "spec.predictor"
    _known(predictor, where, {"containers", "volumes", "minReplicas", "serviceAccountName"})
    if len(predictor.get("containers", [])) != 1:
        raise Unmappable(f"{where}.containers", "exactly one container is mapped")
    volumes = {}
    for i, volume in enumerate(predictor.get("volumes", [])):
        _known(volume, f"{where}.volumes[{i}]", {"name", "emptyDir"})
        if "emptyDir" not in volume:
            raise Unmappable(f"{where}.volumes[{i}]", "only emptyDir volumes are mapped")
        _known(volume["emptyDir"], f"{where}.volumes[{i}].emptyDir", {"sizeLimit", "medium"})
        volumes[volume["name"]] = (volume["emptyDir"], f"{where}.volumes[{i}].emptyDir")
    (container,) = predictor["containers"]
    where = f"{where}.containers[0]"
    _known(
        container,
        where,
        {
            "name",
            "image",
            "command",
            "args",
            "env",
            "ports",
            "readinessProbe",
            "livenessProbe",
            "startupProbe",
            "resources",
            "securityContext",
            "volumeMounts",
        },
    )
    flags = ["--name", name or container["name"]]
    ports: set[int] = set()
    for i, port in enumerate(container.get("ports", [])):
        _known(port, f"{where}.ports[{i}]", {"containerPort", "protocol", "name"})
        protocol = port.get("protocol", "TCP")
        if protocol not in ("TCP", "UDP", "SCTP"):
            raise Unmappable(f"{where}.ports[{i}].protocol", f"{protocol!r}")
        ports.add(port["containerPort"])
        flags += ["--publish", f"{publish_host}::{port['containerPort']}/{protocol.lower()}"]
    for i, variable in enumerate(container.get("env", [])):
        _known(variable, f"{where}.env[{i}]", {"name", "value"})
        value = variable.get("value", "")
        if variable["name"] == "STORAGE_URI":
            if model is None:
                raise Unmappable(f"{where}.env[{i}]", "STORAGE_URI needs the model (--model)")
            flags += ["--volume", f"{model}:{MODEL_MOUNT}:ro"]
            value = MODEL_MOUNT
        flags += ["--env", f"{variable['name']}={value}"]
    if "readinessProbe" in container:
        flags += _probe(container["readinessProbe"], f"{where}.readinessProbe", ports)
    for kind in ("livenessProbe", "startupProbe"):  # checked, not mapped (see above)
        if kind in container:
            _probe(container[kind], f"{where}.{kind}", ports)
    flags += _resources(container.get("resources", {}), f"{where}.resources")
    flags += _security(container.get("securityContext", {}), f"{where}.securityContext", image_user)
    for i, mount in enumerate(container.get("volumeMounts", [])):
        _known(mount, f"{where}.volumeMounts[{i}]", {"name", "mountPath"})
        if mount["name"] not in volumes:
            raise Unmappable(f"{where}.volumeMounts[{i}].name", f"no volume {mount['name']!r}")
        empty_dir, at = volumes[mount["name"]]
        options = "rw,exec"
        if "sizeLimit" in empty_dir:
            options += f",size={_bytes(empty_dir['sizeLimit'], f'{at}.sizeLimit')}"
        if empty_dir.get("medium", "") not in ("", "Memory"):
            raise Unmappable(f"{at}.medium", f"{empty_dir['medium']!r}")
        flags += ["--tmpfs", f"{mount['mountPath']}:{options}"]
    command = list(container.get("command", []))
    if command:
        flags += ["--entrypoint", command[0]]
    words = [*command[1:], *container.get("args", [])]
    for word in [*flags, container["image"], *words]:
        if "\n" in str(word):
            raise Unmappable(where, f"{word!r} holds a line break")
    return [*flags, container["image"], *map(str, words)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Prints the docker run arguments (one per line) that run an "
        "InferenceService's predictor container as KServe would."
    )
    parser.add_argument("manifest", help="inferenceservice.yaml")
    parser.add_argument("--model", help="the model folder, mounted at /mnt/models")
    parser.add_argument("--image-user", help="the image's USER, for runAsNonRoot")
    parser.add_argument("--name", help="the container's name (default: the spec's)")
    parser.add_argument("--publish-host", default="127.0.0.1")
    args = parser.parse_args(argv)
    import yaml

    manifest = yaml.safe_load(Path(args.manifest).read_text())
    try:
        words = docker_run_args(manifest, args.model, args.image_user, args.name, args.publish_host)
    except Unmappable as error:
        print(f"isvc_docker: {args.manifest}: {error}", file=sys.stderr)
        return 1
    print("\n".join(words))
    return 0


if __name__ == "__main__":
    sys.exit(main())
