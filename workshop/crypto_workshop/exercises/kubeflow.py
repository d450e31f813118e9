"""Notebook 04's exercise: a KServe InferenceService for the crypto model, written by hand.

The learner writes the manifest as YAML. The check validates it strictly against the
pinned KServe's InferenceService schema (its CRD, ``crypto_workshop.manifest_schemas``),
then reads it as KServe would run it: a custom predictor whose one container, named
``kserve-container``, runs the project's serve image, is given the model version in
``STORAGE_URI`` (KServe's storage initializer downloads it to ``/mnt/models``), and whose
command line, parsed by the project's own ``crypto-pipeline`` parser, serves that folder on
every interface at the port KServe sends requests to.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
from pathlib import Path
from typing import Any

from crypto_pipeline.config import DEFAULT_SERVING_IMAGE
from crypto_workshop.exercises import Verdict, one_yaml_object, verdict

MODEL_URI = "gs://my-bucket/models/crypto/1"
"""The model version the exercise serves."""
API_VERSION, KIND = "serving.kserve.io/v1beta1", "InferenceService"
CONTAINER = "kserve-container"
"""The container name KServe gives the model's storage to (``STORAGE_URI``)."""
MODEL_MOUNT = "/mnt/models"
"""Where KServe's storage initializer puts what ``STORAGE_URI`` names."""
KSERVE_PORT = 8080
"""The port KServe sends requests to when the container declares none."""
ENTRYPOINT = "crypto-pipeline"
"""The serve image's entrypoint (components/serve/Dockerfile)."""
SERVE_DOCKERFILE = Path("components") / "serve" / "Dockerfile"
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_SCHEMA_PROBLEMS = 4


def image_command(dockerfile: str | Path | None = None) -> list[str]:
    """The serve image's CMD: the arguments its container runs with when ``args`` is unset."""
    if dockerfile is None:
        from crypto_workshop import machine

        dockerfile = machine.project_root() / SERVE_DOCKERFILE
    text = Path(dockerfile).read_text().replace("\\\n", " ")
    commands = [
        line.split(None, 1)[1]
        for line in text.splitlines()
        if line.strip() and line.split()[0].upper() == "CMD"
    ]
    if not commands:
        return []
    last = commands[-1].strip()
    return json.loads(last) if last.startswith("[") else ["sh", "-c", last]


def _serve_options(argv: list[str]) -> tuple[Any, str]:
    """ARGV parsed by ``crypto-pipeline``'s own parser: (options or None, what it said)."""
    from crypto_pipeline import cli

    said = io.StringIO()
    with contextlib.redirect_stderr(said), contextlib.redirect_stdout(said):
        try:
            return cli.build_parser().parse_args(argv), ""
        except SystemExit:
            lines = [line.strip() for line in said.getvalue().splitlines() if line.strip()]
            errors = [line.removeprefix("error: ") for line in lines if line.startswith("error:")]
            return None, errors[-1] if errors else lines[-1] if lines else "it does not parse"


def _command_problems(container: dict[str, Any]) -> tuple[list[str], int]:
    """What keeps the container's command line from serving the model where KServe looks.

    Returns:
        The problems, and the port the server listens on (KServe's when unknown).
    """
    command = container.get("command")
    if command and list(command) != [ENTRYPOINT]:
        return [
            f"its command {shlex.join(map(str, command))!r} replaces the image's entrypoint "
            f"({ENTRYPOINT}): leave command out and set args"
        ], KSERVE_PORT
    args = container.get("args")
    argv = [str(a) for a in args] if args is not None else image_command()
    if argv[:1] != ["serve"]:
        return [
            f"the container must run `{ENTRYPOINT} serve …`, and its args are "
            f"{shlex.join(argv) or 'empty'}: begin them with serve"
        ], KSERVE_PORT
    options, said = _serve_options(argv)
    if options is None:
        return [f"{ENTRYPOINT} refuses its args {shlex.join(argv)!r}: {said}"], KSERVE_PORT
    problems = []
    if options.model != MODEL_MOUNT:
        problems.append(
            f"the server must load the model from {MODEL_MOUNT}, where KServe's storage "
            f"initializer puts it (--model {MODEL_MOUNT}; it is {options.model or 'not set'})"
        )
    if options.host != "0.0.0.0":
        problems.append(
            f"the server listens on {options.host}, which only its own container reaches: "
            "pass --host 0.0.0.0 (every interface of the pod)"
        )
    declared = [p.get("containerPort") for p in container.get("ports") or []]
    if declared and options.port not in declared:
        problems.append(
            f"the server listens on port {options.port}, but the container declares "
            f"{', '.join(map(str, declared))}: make --port and containerPort agree"
        )
    elif not declared and options.port != KSERVE_PORT:
        problems.append(
            f"the server listens on port {options.port}, but with no ports declared KServe "
            f"sends requests to {KSERVE_PORT}: pass --port {KSERVE_PORT}"
        )
    return problems, options.port


def _refused_by_schema(manifest: dict[str, Any]) -> list[str]:
    """What is wrong with MANIFEST's name, and what KServe's pinned schema refuses in it."""
    from crypto_workshop import manifest_schemas

    missing = []
    metadata = manifest.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str) or not DNS_1035.match(name):
        missing.append(
            "metadata.name must be a lower-case name that starts with a letter "
            f"(e.g. crypto; it is {name!r})"
        )
    version = manifest_schemas.pinned_versions()["KSERVE_VERSION"]
    refused = manifest_schemas.inference_service_problems(manifest)
    missing += [f"KServe {version}'s schema refuses {p}" for p in refused[:MAX_SCHEMA_PROBLEMS]]
    if len(refused) > MAX_SCHEMA_PROBLEMS:
        missing.append(f"and {len(refused) - MAX_SCHEMA_PROBLEMS} more the schema refuses")
    return missing


def _predictor_container(manifest: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The predictor's one container, or None and what is wrong with its containers."""
    predictor = manifest.get("spec", {}).get("predictor", {})
    containers = predictor.get("containers") or []
    if not containers:
        return None, (
            "spec.predictor has no containers: serve the model with the project's serve "
            "image as a custom predictor (spec.predictor.containers, one container); "
            "KServe's built-in model formats do not run the project's server"
        )
    if len(containers) != 1 or containers[0].get("name") != CONTAINER:
        named = ", ".join(str(c.get("name")) for c in containers)
        return None, (
            f"the predictor must have one container, named {CONTAINER}: KServe gives the "
            f"model's storage to the container of that name only (it has: {named})"
        )
    return containers[0], ""


def _container_problems(container: dict[str, Any]) -> tuple[list[str], str, int]:
    """What the predictor's container lacks; its image; the port its server listens on."""
    missing = []
    image = str(container.get("image", ""))
    repository = DEFAULT_SERVING_IMAGE.rsplit(":", 1)[0]
    if not re.fullmatch(rf"{re.escape(repository)}:\w[\w.-]{{0,127}}", image):
        missing.append(
            f"the container's image must be the project's serve image, {DEFAULT_SERVING_IMAGE} "
            f"(it is {image or 'not set'})"
        )
    env = {e.get("name"): e.get("value") for e in container.get("env") or []}
    if "STORAGE_URI" not in env:
        missing.append(
            f"set the container's STORAGE_URI variable to {MODEL_URI}: KServe's storage "
            f"initializer downloads what it names to {MODEL_MOUNT} before the server starts"
        )
    elif env["STORAGE_URI"] != MODEL_URI:
        missing.append(
            f"STORAGE_URI is {env['STORAGE_URI']}, but the model version to serve is {MODEL_URI}"
        )
    problems, port = _command_problems(container)
    return missing + problems, image, port


def check_inference_service(text: Any) -> Verdict:
    """Whether TEXT is an InferenceService that serves the crypto model as KServe runs it.

    Args:
        text: The manifest, as YAML.
    """
    right = f"an InferenceService that serves {MODEL_URI} with the project's serve image"
    if not isinstance(text, str) or not text.strip():
        return verdict(
            [
                f"my_inference_service is empty: write an InferenceService (apiVersion: "
                f"{API_VERSION}, kind: {KIND}) that serves {MODEL_URI} with the serve image"
            ],
            right,
        )
    manifest, problem = one_yaml_object(text, "InferenceService")
    if manifest is None:
        return verdict([problem], right)
    if manifest.get("apiVersion") != API_VERSION or manifest.get("kind") != KIND:
        return verdict(
            [
                f"it must say apiVersion: {API_VERSION} and kind: {KIND} (it says apiVersion: "
                f"{manifest.get('apiVersion')}, kind: {manifest.get('kind')})"
            ],
            right,
        )
    missing = _refused_by_schema(manifest)
    if missing:
        return verdict(missing, right)
    container, problem = _predictor_container(manifest)
    if container is None:
        return verdict([problem], right)
    missing, image, port = _container_problems(container)
    if not missing:
        right = (
            f"InferenceService {manifest['metadata']['name']} runs {image} as a custom "
            f"predictor: KServe downloads {MODEL_URI} to {MODEL_MOUNT}, and the server there "
            f"answers on port {port} at /v1/models/crypto:predict."
        )
    return verdict(missing, right)
