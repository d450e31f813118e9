"""Regenerates tests/upstream/: facts of the pinned upstream releases, from their own files.

The tests hold the project against the releases cluster/versions.env pins: the Services an
install creates, the schemas of the custom resources the project writes, the RBAC rules its
pods run under and the facts of the multi-user auth route. Each fact comes from the pinned
tag's files (manifests built with kustomize, CRDs, OpenAPI specs, source constants), and
each file says where it came from.

    python scripts/upstream_facts.py --mirror-dir /work/.mirror   # from local bare mirrors
    python scripts/upstream_facts.py                              # git clone at the tags
    python scripts/upstream_facts.py --mirror-dir DIR --check     # fail when a file changes

--mirror-dir names a folder of bare git mirrors, one per repository, named OWNER+NAME
(e.g. kubeflow+pipelines/repo, or kubeflow+pipelines itself). Without it the repositories
are cloned (`git clone --depth 1 --branch TAG`) into a temporary folder. Either way the
manifests are built with `kubectl kustomize` (or `kustomize build`); remote bases that
kustomize would fetch from GitHub are replaced by a local copy of the same repository at the
same tag (Argo Workflows), or left out when no copy is made (listed in the file's header).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
VERSIONS = ROOT / "cluster" / "versions.env"
OUT = ROOT / "tests" / "upstream"
GENERATOR = "scripts/upstream_facts.py"
CLONE_URL = "https://github.com/{repo}.git"
REGENERATE = "python scripts/upstream_facts.py --mirror-dir DIR"

KFP = "kubeflow/pipelines"
KATIB = "kubeflow/katib"
KSERVE = "kserve/kserve"
PLATFORM = "kubeflow/community-distribution"
ARGO = "argoproj/argo-workflows"
PINS = {
    KFP: "KFP_VERSION",
    KATIB: "KATIB_VERSION",
    KSERVE: "KSERVE_VERSION",
    PLATFORM: "KUBEFLOW_VERSION",
}

# Only these paths are extracted from a mirror (a clone has everything); {tag} is the tag.
# The platform repository is extracted whole: its example kustomization reaches most of it.
NEEDED = {
    KFP: [
        "manifests/kustomize",
        "backend/src/apiserver/common/const.go",
        "sdk/python/kfp/client/__init__.py",
    ],
    KATIB: ["manifests/v1beta1", "api/openapi-spec/swagger.json"],
    KSERVE: [
        "install/{tag}",
        "config/crd/full/serving.kserve.io_inferenceservices.yaml",
        "pkg/constants/constants.go",
        "pkg/controller/v1beta1/inferenceservice/reconcilers/service/service_reconciler.go",
    ],
    PLATFORM: [],
    ARGO: ["manifests"],
}
ARGO_REMOTE = re.compile(
    r"(?:https://)?github\.com/argoproj/argo-workflows(?:\.git)?/+(?P<path>[^?\s]+)"
    r"\?ref=(?P<ref>[\w.-]+)"
)
REMOTE_ITEM = re.compile(r"^\s*-\s+(?P<url>(?:https?://|github\.com/)\S+)\s*\n", re.M)
AGGREGATE = "aggregate-to-"
M2M = "m2m-token-issuer"


@dataclass
class Checkout:
    """One upstream repository at a tag, as files on this machine."""

    repo: str
    tag: str
    path: Path
    commit: str
    left_out: list[tuple[str, Path]] = field(default_factory=list)
    """Remote resources taken out of its kustomizations: (URL, the kustomization's folder)."""

    def header(self, *lines: str) -> str:
        """Header lines naming this source; each line of ``lines`` is what was read."""
        out = [f"# source: {self.repo} {self.tag} (commit {self.commit})"]
        out += [f"#   {line}" for line in lines]
        return "\n".join(out)

    def text(self, path: str) -> str:
        return (self.path / path).read_text(encoding="utf-8")


def pinned_versions() -> dict[str, str]:
    lines = VERSIONS.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if re.match(r"^[A-Z_]+=", line))


def git(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"git {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout.strip()


def mirror_of(mirror_dir: Path, repo: str) -> Path:
    name = repo.replace("/", "+")
    for candidate in (f"{name}/repo/.git", f"{name}/repo", name, f"{name}.git"):
        path = mirror_dir / candidate
        if (path / "HEAD").is_file() and (path / "objects").is_dir():
            return path
    raise SystemExit(f"no git mirror of {repo} under {mirror_dir} (looked for {name}/repo)")


def checkout(repo: str, tag: str, work: Path, mirror_dir: Path | None) -> Checkout:
    dest = work / repo.replace("/", "+") / tag
    dest.mkdir(parents=True)
    if mirror_dir is None:
        url = CLONE_URL.format(repo=repo)
        git("clone", "--quiet", "--depth", "1", "--branch", tag, url, str(dest))
        commit = git("rev-parse", "HEAD", cwd=dest)
    else:
        mirror = mirror_of(mirror_dir, repo)
        commit = git("--git-dir", str(mirror), "rev-parse", f"{tag}^{{commit}}")
        archive = subprocess.run(
            ["git", "--git-dir", str(mirror), "archive", "--format=tar", commit]
            + [path.format(tag=tag) for path in NEEDED[repo]],
            capture_output=True,
            check=True,
        )
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return Checkout(repo, tag, dest, commit)


def localize(tree: Checkout, argo: dict[str, Checkout]) -> None:
    """Points remote Argo bases at the local copy; leaves out other remote resources."""
    for kustomization in sorted(tree.path.rglob("kustomization.yaml")):
        text = kustomization.read_text()
        here = kustomization.parent
        new = ARGO_REMOTE.sub(
            lambda m, here=here: os.path.relpath(argo[m["ref"]].path / m["path"].strip("/"), here),
            text,
        )
        for match in REMOTE_ITEM.finditer(new):
            tree.left_out.append((match["url"], here))
        new = REMOTE_ITEM.sub("", new)
        if new != text:
            kustomization.write_text(new)


def argo_refs(tree: Checkout) -> set[str]:
    return {
        match["ref"]
        for kustomization in tree.path.rglob("kustomization.yaml")
        for match in ARGO_REMOTE.finditer(kustomization.read_text())
    }


def reached(folder: Path, seen: set[Path] | None = None) -> set[Path]:
    """The kustomization folders that building ``folder`` reads (resources, components)."""
    seen = set() if seen is None else seen
    folder = folder.resolve()
    files = [folder / n for n in ("kustomization.yaml", "kustomization.yml", "Kustomization")]
    files = [f for f in files if f.is_file()]
    if folder in seen or not files:
        return seen
    seen.add(folder)
    kustomization = yaml.safe_load(files[0].read_text()) or {}
    for key in ("resources", "components", "bases"):
        for entry in kustomization.get(key) or []:
            if isinstance(entry, str) and (folder / entry).is_dir():
                reached(folder / entry, seen)
    return seen


def left_out(tree: Checkout, build: str) -> list[str]:
    """Header lines for the remote resources that the build of ``build`` went without."""
    folders = reached(tree.path / build)
    return [
        f"left out (remote, not fetched): {url} (in {where.relative_to(tree.path)})"
        for url, where in tree.left_out
        if where.resolve() in folders
    ]


def kustomize(tree: Checkout, path: str) -> list[dict]:
    if shutil.which("kubectl"):
        command = ["kubectl", "kustomize", str(tree.path / path)]
    elif shutil.which("kustomize"):
        command = ["kustomize", "build", str(tree.path / path)]
    else:
        raise SystemExit("needs kubectl (kubectl kustomize) or kustomize on PATH")
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{' '.join(command)}:\n{result.stderr[-3000:]}")
    return [d for d in yaml.safe_load_all(result.stdout) if d]


class Inline(dict):
    """A mapping written on one line (a port, a label set)."""


class Dumper(yaml.SafeDumper):
    """Block mappings; lists of plain values and ``Inline`` mappings on one line."""


Dumper.add_representer(
    Inline,
    lambda d, data: d.represent_mapping("tag:yaml.org,2002:map", list(data.items()), True),
)
Dumper.add_representer(
    list,
    lambda d, data: d.represent_sequence(
        "tag:yaml.org,2002:seq", data, not any(isinstance(x, dict | list) for x in data)
    ),
)


def dump(data) -> str:
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, default_flow_style=False, width=100)


def preamble(what: str) -> str:
    lines = textwrap.wrap(what, 96)
    lines += [f"Generated by {GENERATOR} from the upstream files named below; do not edit."]
    lines += [f"Regenerate: {REGENERATE}"]
    return "".join(f"# {line}\n" for line in lines)


# Services


def services(objects: list[dict]) -> list[dict]:
    found = []
    for o in objects:
        if o["kind"] != "Service":
            continue
        ports = []
        for p in o["spec"].get("ports", []):
            port = Inline((k, p[k]) for k in ("name", "port", "targetPort") if k in p)
            ports.append(port)
        found.append(
            {"namespace": o["metadata"].get("namespace", "default"), "name": o["metadata"]["name"]}
            | {"ports": ports}
        )
    return sorted(found, key=lambda s: (s["namespace"], s["name"]))


def services_file(what: str, headers: list[str], found: list[dict]) -> str:
    return preamble(what) + "\n".join(headers) + "\n" + dump({"services": found})


# RBAC


def rule(r: dict) -> dict:
    out = {k: list(r[k]) for k in ("apiGroups", "resources", "resourceNames", "verbs") if k in r}
    if "nonResourceURLs" in r:
        out["nonResourceURLs"] = list(r["nonResourceURLs"])
    return out


def bound_to(objects: list[dict], namespace: str, account: str) -> list[dict]:
    """The roles that bindings in ``objects`` give the service account, with their rules."""
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objects}
    found = []
    for o in objects:
        if o["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        where = o["metadata"].get("namespace")
        subjects = [
            s
            for s in o.get("subjects") or []
            if s.get("kind") == "ServiceAccount"
            and s.get("name") == account
            and s.get("namespace", where) == namespace
        ]
        if not subjects:
            continue
        ref = o["roleRef"]
        role_ns = where if ref["kind"] == "Role" else None
        role = roles[(ref["kind"], role_ns, ref["name"])]
        binding = f"{o['kind']} {where + '/' if where else ''}{o['metadata']['name']}"
        found.append(
            {
                "kind": ref["kind"],
                "name": ref["name"],
                **({"namespace": role_ns} if role_ns else {}),
                "boundBy": binding,
                # A ClusterRole bound by a RoleBinding grants its rules in that namespace.
                "grantedIn": where or "all namespaces",
                "rules": [rule(r) for r in role.get("rules") or []],
            }
        )
    return sorted(found, key=lambda r: (r["kind"], r["name"]))


def selected(selectors: list[dict], labels: dict) -> bool:
    return any(
        all(labels.get(k) == v for k, v in s.get("matchLabels", {}).items()) for s in selectors
    )


def aggregated(objects: list[dict], top: str) -> dict[str, dict]:
    """Every ClusterRole that ``top`` aggregates, directly or through others, as written."""
    cluster_roles = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ClusterRole"}
    reached: dict[str, dict] = {}
    todo = [top]
    while todo:
        name = todo.pop()
        if name in reached:
            continue
        role = cluster_roles[name]
        labels = role["metadata"].get("labels") or {}
        entry: dict = {
            "labels": Inline((k, v) for k, v in sorted(labels.items()) if AGGREGATE in k),
        }
        selectors = (role.get("aggregationRule") or {}).get("clusterRoleSelectors") or []
        if selectors:
            entry["aggregates"] = [
                {"matchLabels": Inline(s.get("matchLabels", {}))} for s in selectors
            ]
            todo += [
                n
                for n, r in cluster_roles.items()
                if n != name and selected(selectors, r["metadata"].get("labels") or {})
            ]
        else:
            entry["rules"] = [rule(r) for r in role.get("rules") or []]
        reached[name] = entry
    return dict(sorted(reached.items(), key=lambda item: (item[0] != top, item[0])))


# The generators: each returns {file name: text}.


def kfp_facts(kfp: Checkout) -> dict[str, str]:
    builds = [
        "manifests/kustomize/env/platform-agnostic",
        "manifests/kustomize/cluster-scoped-resources",
    ]
    objects = [o for path in builds for o in kustomize(kfp, path)]
    built = [f"kubectl kustomize {path}" for path in builds]
    missing = [line for path in builds for line in left_out(kfp, path)]
    v = kfp.tag
    found = services(objects)
    store = [s["name"] for s in found if s["name"] in ("seaweedfs", "minio-service")]
    files = {
        f"kfp-{v}-services.yaml": services_file(
            f"The Services that Kubeflow Pipelines {v} standalone creates (object store: "
            f"{', '.join(store) or 'none'}).",
            [kfp.header(*built, *missing)],
            found,
        )
    }
    runner = bound_to(objects, "kubeflow", "pipeline-runner")
    files[f"kfp-{v}-pipeline-runner-rbac.yaml"] = (
        preamble(
            f"What Kubeflow Pipelines {v} standalone grants the service account "
            "kubeflow/pipeline-runner, which runs every pipeline step."
        )
        + kfp.header(*built, "manifests/kustomize/base/pipeline/pipeline-runner-role.yaml")
        + "\n"
        + dump({"serviceAccount": Inline(namespace="kubeflow", name="pipeline-runner")})
        + dump({"roles": runner})
    )
    return files


def kfp_auth(kfp: Checkout) -> dict:
    const = kfp.text("backend/src/apiserver/common/const.go")
    (audience,) = re.findall(r'DefaultTokenReviewAudience\s+string\s*=\s*"([^"]+)"', const)
    sdk = kfp.text("sdk/python/kfp/client/__init__.py")
    (env,) = re.findall(r"^KF_PIPELINES_SA_TOKEN_ENV\s*=\s*'([^']+)'", sdk, re.M)
    (path,) = re.findall(r"^KF_PIPELINES_SA_TOKEN_PATH\s*=\s*'([^']+)'", sdk, re.M)
    return {
        "apiServerTokenAudience": audience,
        "sdkTokenPathVariable": env,
        "sdkDefaultTokenPath": path,
    }


def without_descriptions(node, field_names: bool = False):
    """A schema without its ``description`` texts (a field named description stays)."""
    if isinstance(node, dict):
        return {
            k: without_descriptions(v, k == "properties" and not field_names)
            for k, v in node.items()
            if field_names or not (k == "description" and isinstance(v, str))
        }
    if isinstance(node, list):
        return [without_descriptions(v) for v in node]
    return node


def katib_facts(katib: Checkout) -> dict[str, str]:
    v = katib.tag
    spec_path = "api/openapi-spec/swagger.json"
    spec = json.loads(katib.text(spec_path))
    schemas = spec["components"]["schemas"]
    keep: set[str] = set()

    def visit(node) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    name = value.rsplit("/", 1)[-1]
                    if name not in keep:
                        keep.add(name)
                        visit(schemas[name])
                else:
                    visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    keep.add("v1beta1.Experiment")
    visit(schemas["v1beta1.Experiment"])
    document = {
        "source": [
            {
                "repository": katib.repo,
                "tag": v,
                "commit": katib.commit,
                "paths": [spec_path],
            }
        ],
        "generatedBy": GENERATOR,
        "regenerate": REGENERATE,
        "note": (
            f"Katib's OpenAPI {spec['openapi']} spec at {v}, cut to the schema "
            "v1beta1.Experiment (the kubeflow.org/v1beta1 Experiment) and every schema it "
            "references, without their description texts; otherwise unchanged."
        ),
        "components": {
            "schemas": {name: without_descriptions(schemas[name]) for name in sorted(keep)}
        },
    }
    standalone = "manifests/v1beta1/installs/katib-standalone"
    return {
        f"katib-{v}-experiment-openapi.json": json.dumps(document, indent=1, sort_keys=False)
        + "\n",
        f"katib-{v}-services.yaml": services_file(
            f"The Services that Katib {v} standalone creates.",
            [katib.header(f"kubectl kustomize {standalone}")],
            services(kustomize(katib, standalone)),
        ),
    }


KSERVE_CONSTANTS = "pkg/constants/constants.go"
KSERVE_SERVICES = (
    "pkg/controller/v1beta1/inferenceservice/reconcilers/service/service_reconciler.go"
)


def predictor_service(kserve: Checkout) -> dict:
    """The Service KServe's controller makes for an InferenceService's predictor (Standard)."""
    constants = kserve.text(KSERVE_CONSTANTS)
    (component,) = re.findall(r'\bPredictor\s+InferenceServiceComponent\s*=\s*"(\w+)"', constants)
    naming = r'func PredictorServiceName\(name string\) string \{\s*return name \+ "-" \+ string\('
    if not re.search(naming + r"Predictor\)", constants):
        raise SystemExit(f"{KSERVE_CONSTANTS}: PredictorServiceName is no longer name-predictor")
    (port,) = re.findall(r"\bCommonDefaultHttpPort\s*=\s*(\d+)", constants)
    if "Port: constants.CommonDefaultHttpPort" not in re.sub(
        r"\s+", " ", kserve.text(KSERVE_SERVICES)
    ):
        raise SystemExit(
            f"{KSERVE_SERVICES}: the Service no longer listens on CommonDefaultHttpPort"
        )
    return Inline(name=f"{{inferenceservice}}-{component}", port=int(port))


def kserve_facts(kserve: Checkout) -> dict[str, str]:
    v = kserve.tag
    crd_path = "config/crd/full/serving.kserve.io_inferenceservices.yaml"
    install = f"install/{v}/kserve.yaml"
    crd_text = kserve.text(crd_path)
    crd = yaml.safe_load(crd_text)
    objects = [d for d in yaml.safe_load_all(kserve.text(install)) if d]
    (installed,) = [
        o
        for o in objects
        if o["kind"] == "CustomResourceDefinition"
        and o["metadata"]["name"] == crd["metadata"]["name"]
    ]
    if installed["spec"] != crd["spec"]:
        raise SystemExit(f"{crd_path} and the CRD in {install} differ at {v}: which one ships?")
    extra = [f"install/{v}/kserve-cluster-resources.yaml"]
    extra = [p for p in extra if (kserve.path / p).is_file()]
    for path in extra:
        objects += [d for d in yaml.safe_load_all(kserve.text(path)) if d]
    return {
        f"kserve-{v}-inferenceservice-crd.yaml": preamble(
            f"KServe {v}'s InferenceService CRD (serving.kserve.io), with its full "
            "openAPIV3Schema, as upstream wrote it; its spec is the same as that of the "
            f"CRD in the release's install file {install}."
        )
        + kserve.header(crd_path)
        + "\n"
        + crd_text,
        f"kserve-{v}-services.yaml": services_file(
            f"The Services that KServe {v}'s release install files create; and the one its "
            "controller creates for each InferenceService in Standard (raw Deployment) mode "
            "(perInferenceService: its name and port).",
            [
                kserve.header(
                    install,
                    *extra,
                    f"{KSERVE_CONSTANTS} (PredictorServiceName, CommonDefaultHttpPort)",
                    f"{KSERVE_SERVICES} (createDefaultSvc: port)",
                )
            ],
            services(objects),
        )
        + dump({"perInferenceService": [predictor_service(kserve)]}),
    }


def platform_facts(platform: Checkout, kfp: Checkout) -> dict[str, str]:
    v = platform.tag
    example = "example"
    objects = kustomize(platform, example)
    built = [f"kubectl kustomize {example} (the platform's example installation)"]
    missing = left_out(platform, example)
    files = {
        f"kubeflow-{v}-services.yaml": services_file(
            f"The Services that Kubeflow {v}'s example installation (multi-user: Istio, "
            "oauth2-proxy, Dex, Kubeflow Pipelines, Katib, KServe …) creates.",
            [platform.header(*built, *missing)],
            services(objects),
        )
    }
    roles = aggregated(objects, "kubeflow-edit")
    profiles = "applications/profiles/upstream/base/kustomization.yaml"
    (image,) = [
        f"{i['newName']}:{i['newTag']}"
        for i in yaml.safe_load(platform.text(profiles))["images"]
        if "profile-controller" in i.get("newName", i["name"])
    ]
    files[f"kubeflow-{v}-kubeflow-edit-rbac.yaml"] = (
        preamble(
            f"What a profile's service account default-editor may do on Kubeflow {v}: the "
            "ClusterRole kubeflow-edit, which aggregates every ClusterRole whose labels match "
            "its selectors (recursively)."
        )
        + platform.header(
            *built,
            *missing,
            f"{profiles} (the profile controller's image)",
        )
        + "\n# The profile controller binds default-editor to kubeflow-edit in each profile\n"
        "# namespace (RoleBinding default-editor); that binding is made by its code, not by the\n"
        "# manifests, so only the controller's image is read from them.\n"
        + dump(
            {
                "serviceAccount": Inline(namespace="<profile namespace>", name="default-editor"),
                "binding": {
                    "kind": "RoleBinding",
                    "name": "default-editor",
                    "roleRef": "ClusterRole/kubeflow-edit",
                    "createdBy": image,
                },
            }
        )
        + dump({"clusterRoles": roles})
    )
    files[f"kubeflow-{v}-auth.yaml"] = auth_file(platform, kfp, objects)
    return files


def gateway_routes(objects: list[dict]) -> list[dict]:
    """The paths on the Istio gateway that reach Kubeflow Pipelines (its VirtualServices)."""
    routes = []
    for o in objects:
        if o["kind"] != "VirtualService":
            continue
        for http in o["spec"].get("http", []):
            for route in http.get("route", []):
                host = route["destination"]["host"]
                if not host.startswith("ml-pipeline"):
                    continue
                port = route["destination"].get("port", {}).get("number")
                for match in http.get("match", []):
                    routes.append(
                        Inline(
                            prefix=match["uri"]["prefix"],
                            destination=f"{host}:{port}" if port else host,
                            virtualService=f"{o['metadata']['namespace']}/{o['metadata']['name']}",
                        )
                    )
    return sorted(routes, key=lambda r: r["prefix"])


def auth_file(platform: Checkout, kfp: Checkout, objects: list[dict]) -> str:
    v = platform.tag
    pod_default_path = "tests/poddefaults.access-ml-pipeline.kubeflow-user-example-com.yaml"
    pod_default = yaml.safe_load(platform.text(pod_default_path))
    spec = pod_default["spec"]
    (volume,) = spec["volumes"]
    (source,) = volume["projected"]["sources"]
    token = source["serviceAccountToken"]
    (mount,) = [m for m in spec["volumeMounts"] if m["name"] == volume["name"]]
    overlays_dir = "common/oauth2-proxy/overlays"
    overlays = {}
    for overlay in sorted(p.name for p in (platform.path / overlays_dir).iterdir() if p.is_dir()):
        built = kustomize(platform, f"{overlays_dir}/{overlay}")
        issuers = {
            o["metadata"]["name"]: [r["issuer"] for r in o["spec"].get("jwtRules", [])]
            for o in built
            if o["kind"] == "RequestAuthentication"
        }
        overlays[overlay] = {
            "requestAuthentications": {k: issuers[k] for k in sorted(issuers)},
            # istio-m2m's RequestAuthentication: the gateway trusts the cluster's service
            # account token issuer (`kubectl create token`), as the overlay sets it.
            "acceptsKubernetesServiceAccountTokens": M2M in issuers,
        }
    readme = platform.text("README.md")
    (default,) = re.findall(rf"^kustomize build {overlays_dir}/([\w-]+)/", readme, re.M)
    example = platform.text("example/kustomization.yaml")
    (in_example,) = re.findall(rf"^- \.\./{overlays_dir}/([\w-]+)", example, re.M)
    facts = {
        "kfp": kfp_auth(kfp),
        "podDefault": {
            "name": pod_default["metadata"]["name"],
            "selector": Inline(spec["selector"]["matchLabels"]),
            "env": {e["name"]: e["value"] for e in spec["env"]},
            "tokenPath": f"{mount['mountPath'].rstrip('/')}/{token['path']}",
            "audience": token["audience"],
            "expirationSeconds": token["expirationSeconds"],
        },
        "gateway": {"kfpRoutes": gateway_routes(objects)},
        "oauth2Proxy": {
            "defaultOverlay": default,
            "exampleOverlay": in_example,
            "overlays": overlays,
        },
    }
    return (
        preamble(
            f"The auth route to Kubeflow Pipelines' API on Kubeflow {v}: the token audience, "
            "the token file and its variable, and the oauth2-proxy overlays."
        )
        + kfp.header(
            "backend/src/apiserver/common/const.go (DefaultTokenReviewAudience)",
            "sdk/python/kfp/client/__init__.py (KF_PIPELINES_SA_TOKEN_ENV, _PATH)",
        )
        + "\n"
        + platform.header(
            pod_default_path,
            f"kubectl kustomize {overlays_dir}/<each overlay> (RequestAuthentication issuers)",
            f"README.md (the uncommented `kustomize build {overlays_dir}/…` line: default)",
            "example/kustomization.yaml (the overlay it includes)",
            "kubectl kustomize example (VirtualServices to ml-pipeline*: the gateway's routes)",
        )
        + "\n"
        + dump(facts)
    )


README_FILES = [
    ("kfp-{KFP_VERSION}-services.yaml", "Services of KFP standalone (`scripts/cluster.sh kfp`)"),
    ("katib-{KATIB_VERSION}-services.yaml", "Services of Katib standalone"),
    ("kserve-{KSERVE_VERSION}-services.yaml", "Services of KServe's release install file"),
    (
        "kubeflow-{KUBEFLOW_VERSION}-services.yaml",
        "Services of the multi-user platform (istio-ingressgateway, ml-pipeline, …)",
    ),
    (
        "kserve-{KSERVE_VERSION}-inferenceservice-crd.yaml",
        "KServe's InferenceService CRD, full `openAPIV3Schema` (validates `inference_service`)",
    ),
    (
        "katib-{KATIB_VERSION}-experiment-openapi.json",
        "Katib's OpenAPI schemas of `v1beta1.Experiment` (validates `katib_experiment`)",
    ),
    (
        "kfp-{KFP_VERSION}-pipeline-runner-rbac.yaml",
        "the rules bound to kubeflow/pipeline-runner, which runs KFP standalone's steps",
    ),
    (
        "kubeflow-{KUBEFLOW_VERSION}-kubeflow-edit-rbac.yaml",
        "kubeflow-edit and the ClusterRoles it aggregates: a profile's default-editor",
    ),
    (
        "kubeflow-{KUBEFLOW_VERSION}-auth.yaml",
        "token audience, token file and variable, oauth2-proxy overlays (multi-user route)",
    ),
]


def readme(checkouts: dict[str, Checkout], versions: dict[str, str]) -> str:
    rows = "\n".join(f"| `{name.format(**versions)}` | {what} |" for name, what in README_FILES)
    sources = "\n".join(
        f"| {c.repo} | `{c.tag}` | `{c.commit[:12]}` |"
        for c in sorted(checkouts.values(), key=lambda c: c.repo)
    )
    return f"""# tests/upstream

Facts of the upstream releases that `cluster/versions.env` pins, taken from those releases'
own files at their tags. The tests in `tests/assets/test_upstream.py`,
`tests/assets/test_katib.py` and `tests/pipeline/test_deploy.py` hold the project against
them: every in-cluster `host:port` and `port-forward` the project writes names a Service
and port that exists, every manifest it writes validates strictly against the pinned
schema, the deploy step's Kubernetes API calls are granted to the service account that
runs it, and the pins in `cluster/versions.env` equal the tags recorded here.

Every file here is generated by `{GENERATOR}`; none is edited by hand.
Each one names its sources in a header comment (`# source: REPOSITORY TAG (commit …)`,
then what was read or built) or, for JSON, in a top-level `source` key.

| File | What it holds |
| --- | --- |
{rows}

Sources:

| Repository | Tag | Commit |
| --- | --- | --- |
{sources}

How the facts are taken:

- Manifests are built with `kubectl kustomize`. Kustomize bases that upstream names by a
  GitHub URL are replaced by a local copy of that repository at the same tag (Argo
  Workflows, which Kubeflow Pipelines' manifests reference); other remote resources are
  left out, and the files whose builds went without any list them in their header.
- The KServe CRD is upstream's file as it is (`config/crd/full`); the script checks that
  the release's install file carries the same CRD.
- The Katib schemas are upstream's OpenAPI spec cut to `v1beta1.Experiment` and the
  schemas it references, without their description texts.
- `kubeflow-edit` aggregates ClusterRoles by label, and some of those aggregate others:
  the file keeps every ClusterRole reached, with its labels and selectors, and the tests
  resolve the aggregation as Kubernetes does. The RoleBinding of a profile's
  `default-editor` to `kubeflow-edit` is made by the profile controller's code, not by the
  manifests; the file records it with the controller's image.
- The Service KServe makes for each InferenceService (`<name>-predictor`, port 80) and
  KFP's token audience and token file come from constants in the upstream source.

## Regenerate

After changing a version in `cluster/versions.env`:

    python {GENERATOR} --mirror-dir DIR           # DIR: bare mirrors (see below)
    python {GENERATOR}                            # or: clone at the tags
    python {GENERATOR} --mirror-dir DIR --check   # exit 1: a file here is stale

`--mirror-dir` expects one bare mirror per repository, named `OWNER+NAME` (optionally with
a `repo/` folder inside). It needs `git` and `kubectl` (or `kustomize`).
"""


def generate(mirror_dir: Path | None, out: Path, work: Path) -> None:
    versions = pinned_versions()
    checkouts = {
        repo: checkout(repo, versions[pin], work, mirror_dir) for repo, pin in PINS.items()
    }
    refs = argo_refs(checkouts[KFP]) | argo_refs(checkouts[PLATFORM])
    argo = {ref: checkout(ARGO, ref, work, mirror_dir) for ref in sorted(refs)}
    for repo in (KFP, PLATFORM):
        localize(checkouts[repo], argo)
    files = kfp_facts(checkouts[KFP])
    files |= katib_facts(checkouts[KATIB])
    files |= kserve_facts(checkouts[KSERVE])
    files |= platform_facts(checkouts[PLATFORM], checkouts[KFP])
    files["README.md"] = readme(checkouts | {f"{ARGO} {r}": c for r, c in argo.items()}, versions)
    expected = {name.format(**versions) for name, _ in README_FILES} | {"README.md"}
    if set(files) != expected:
        raise SystemExit(f"generated {sorted(files)}, documented {sorted(expected)}")
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mirror-dir", type=Path, help="folder of bare mirrors (OWNER+NAME)")
    parser.add_argument("--check", action="store_true", help="fail when a file would change")
    parser.add_argument("--out", type=Path, default=OUT, help=f"default: {OUT.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="upstream-facts-") as tmp:
        tmp = Path(tmp)
        fresh = tmp / "out"
        generate(args.mirror_dir, fresh, tmp / "src")
        names = sorted(p.name for p in fresh.iterdir())
        current = sorted(p.name for p in args.out.iterdir()) if args.out.is_dir() else []
        stale = [n for n in current if n not in names]
        changed = [
            n for n in names if n not in current or not filecmp.cmp(fresh / n, args.out / n, False)
        ]
        if args.check:
            for name in changed + stale:
                print(f"stale: {args.out / name}", file=sys.stderr)
            if changed or stale:
                print(f"regenerate with: {REGENERATE}", file=sys.stderr)
                return 1
            print(f"{args.out}: {len(names)} files, all current")
            return 0
        args.out.mkdir(parents=True, exist_ok=True)
        for name in stale:
            (args.out / name).unlink()
        for name in names:
            shutil.copyfile(fresh / name, args.out / name)
        print(f"{args.out}: {len(changed)} written, {len(stale)} removed, {len(names)} in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
