"""The pinned KServe's InferenceService schema, for checking a manifest with no cluster.

A custom resource is checked by the API server against the ``openAPIV3Schema`` of its
CustomResourceDefinition. The pinned release's CRD is kept in the repository
(``tests/upstream/``, written by ``scripts/upstream_facts.py`` from the release's own
file), so a manifest can be checked against it offline. The check here is stricter than
the API server: where the schema lists an object's fields, any other field is refused,
because a cluster would accept (or silently prune) a misspelt one.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from crypto_pipeline.errors import ConfigError
from crypto_workshop.machine import project_root

UPSTREAM_DIR = Path("tests") / "upstream"
"""Where the facts of the pinned upstream releases live, under the repository's root."""
VERSIONS_FILE = Path("cluster") / "versions.env"
"""The versions the cluster scripts install (KSERVE_VERSION, …)."""
INFERENCE_SERVICE_CRD = "kserve-{KSERVE_VERSION}-inferenceservice-crd.yaml"


def pinned_versions(root: Path | None = None) -> dict[str, str]:
    """The versions that ``cluster/versions.env`` pins (``KSERVE_VERSION`` and the rest)."""
    lines = ((root or project_root()) / VERSIONS_FILE).read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if re.match(r"^[A-Z_]+=", line))


def upstream_file(name: str, root: Path | None = None) -> Path:
    """A file of ``tests/upstream/``; ``{KSERVE_VERSION}`` … in NAME are the pinned versions.

    Raises:
        ConfigError: No facts of the pinned version are in the repository.
    """
    root = root or project_root()
    if not (root / UPSTREAM_DIR).is_dir():
        raise ConfigError(
            f"{root / UPSTREAM_DIR} is missing: the pinned releases' schemas live there",
            "work in a full checkout of the repository (an image built from it must keep "
            "tests/upstream/)",
        )
    path = root / UPSTREAM_DIR / name.format(**pinned_versions(root))
    if not path.is_file():
        raise ConfigError(
            f"{path}: no facts of the pinned version",
            "after changing cluster/versions.env, regenerate them: "
            "python scripts/upstream_facts.py --mirror-dir DIR",
        )
    return path


def strict_schema(node):
    """Forbids unknown fields wherever a published schema lists the fields of an object.

    Katib's and KServe's CRDs would accept (or silently prune) a misspelt field; a strict
    check against the published schema is what catches it before a cluster sees it.
    """
    if isinstance(node, dict):
        node = {k: strict_schema(v) for k, v in node.items()}
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [strict_schema(v) for v in node]
    return node


@functools.cache
def inference_service_crd() -> dict[str, Any]:
    """The pinned KServe's InferenceService CustomResourceDefinition, as upstream wrote it."""
    import yaml

    text = upstream_file(INFERENCE_SERVICE_CRD).read_text()
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@functools.cache
def inference_service_validator():
    """Strict validator of the pinned KServe's v1beta1 InferenceService (its CRD's schema)."""
    import jsonschema

    crd = inference_service_crd()
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    schema = strict_schema(version["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = {"type": "object"}  # ObjectMeta: checked by the API
    return jsonschema.Draft7Validator(schema)


def inference_service_problems(manifest: Any) -> list[str]:
    """What the strict schema refuses in MANIFEST: one ``field.path: message`` each."""
    problems = []
    for error in sorted(
        inference_service_validator().iter_errors(manifest),
        key=lambda e: [str(p) for p in e.absolute_path],
    ):
        where = ".".join(
            f"[{p}]" if isinstance(p, int) else str(p) for p in error.absolute_path
        ).replace(".[", "[")
        problems.append(f"{where or 'the manifest'}: {error.message}")
    return problems
