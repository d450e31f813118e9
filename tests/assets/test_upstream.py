"""The project against the upstream releases it pins, by their own files (tests/upstream/).

Every in-cluster address the project writes must name a Service and port that the pinned
installs create; every manifest it writes must validate strictly against the pinned
schema; the deploy step's Kubernetes API calls must be granted to the service account it
runs as; the docs' auth facts must be upstream's; and the facts must be those of the
versions cluster/versions.env pins.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import (
    UPSTREAM,
    experiment_validator,
    inference_service_validator,
    pinned_versions,
    upstream,
)
from crypto_pipeline import submit
from crypto_pipeline.cluster_apply import API_RULES
from crypto_pipeline.config import DEFAULT_NAMESPACE, DeployConfig
from crypto_pipeline.inference_service import (
    KSERVE_GROUP,
    KSERVE_PLURAL,
    KSERVE_VERSION,
    inference_service,
)
from crypto_pipeline.katib import katib_experiment

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ["scripts/*.sh", "cluster/*.yaml", "README.md"]
SCANNED += ["components/crypto_pipeline/**/*.py", "workshop/crypto_workshop/**/*.py"]
SCANNED += ["notebooks/*.ipynb"]
RUNNER = ("pipeline-runner", "kubeflow")
"""The service account KFP standalone runs every step as: (name, namespace)."""
# Which pin each upstream repository's facts must carry (Argo Workflows is pinned by KFP's
# own manifests, not by versions.env).
PIN_OF = {
    "kubeflow/pipelines": "KFP_VERSION",
    "kubeflow/katib": "KATIB_VERSION",
    "kserve/kserve": "KSERVE_VERSION",
    "kubeflow/community-distribution": "KUBEFLOW_VERSION",
}
SERVICE_FACTS = [
    "kfp-{KFP_VERSION}-services.yaml",
    "katib-{KATIB_VERSION}-services.yaml",
    "kserve-{KSERVE_VERSION}-services.yaml",
    "kubeflow-{KUBEFLOW_VERSION}-services.yaml",
]
# Hosts that look like `name:port` in a URL but are not Services, each with its reason.
NOT_SERVICES = {
    "localhost": "this machine (a port-forward, or a local server)",
    "kind-registry": "a Docker container on the kind network (kind's local-registry recipe)",
}
# A two-label name whose last label is one of these is a domain or a file, not NAME.NAMESPACE.
NOT_NAMESPACES = {"com", "io", "org", "net", "goog", "ai", "co", "app", "cloud"}
NOT_NAMESPACES |= {"py", "sh", "md", "txt", "json", "yaml", "yml", "csv", "ipynb", "toml"}

VARIABLE = r"\$\{?[A-Za-z_]\w*\}?"
# A DNS label as written, shell variables allowed: seaweedfs, $NAMESPACE, $ISVC-predictor.
NAME = rf"(?:[a-z]|{VARIABLE})(?:[-a-z0-9]|{VARIABLE})*"
NAMESPACE = rf"(?:[a-z0-9]|{VARIABLE})(?:[-a-z0-9]|{VARIABLE})*"
PORT = rf"(?:\d+|{VARIABLE})"
# NAME.NAMESPACE[.svc[.cluster.local]]:PORT
SERVICE_DNS = re.compile(
    rf"(?<![\w.$-])(?P<name>{NAME})\.(?P<namespace>{NAMESPACE})"
    rf"(?P<svc>\.svc(?:\.cluster\.local)?)?:(?P<port>{PORT})(?![\w.}}])"
)
# scheme://NAME:PORT, one label: a Service of the pod's own namespace, or another host.
URL_HOST = re.compile(rf"://(?P<name>{NAME}):(?P<port>{PORT})(?![\w.}}])")
FLAG = rf"(?:-n|--namespace)(?:=|\s+)({NAMESPACE})"
PORT_FORWARD = re.compile(
    rf"kubectl(?:\s+{FLAG})*\s+port-forward(?:\s+{FLAG})*\s+(?:svc|service|services)/"
    rf"(?P<name>{NAME})(?P<ports>(?:\s+(?:{PORT}?:)?{PORT}(?![\w:}}]))+)(?:\s+{FLAG})*"
)
ANY_PORT_FORWARD = re.compile(r"port-forward\b[^\n`|]*?\b(?:svc|service|services)/(\S+)")
PLACEHOLDER = re.compile(r"[A-Z][A-Z_]*")


def load_yaml(path: Path):
    return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@functools.cache
def known_services() -> dict[tuple[str, str], set[int]]:
    """(namespace, name) -> its ports, over every pinned install; "*": any namespace."""
    found: dict[tuple[str, str], set[int]] = {}
    for name in SERVICE_FACTS:
        facts = load_yaml(upstream(name))
        for service in facts["services"]:
            key = (service["namespace"], service["name"])
            found.setdefault(key, set()).update(p["port"] for p in service["ports"])
        # What KServe makes for the project's own InferenceService, in its namespace.
        isvc = inference_service("gs://bucket/model")["metadata"]["name"]
        for service in facts.get("perInferenceService", []):
            key = ("*", service["name"].format(inferenceservice=isvc))
            found.setdefault(key, set()).add(service["port"])
    return found


def shell_settings(text: str) -> dict[str, str]:
    """A script's settings and defaults: NAMESPACE="${NAMESPACE:-kubeflow}", ISVC=crypto …"""
    found = dict(re.findall(r'^(\w+)="?\$\{\1:-([^}"$]*)\}"?', text, re.M))
    for name, value in re.findall(r"^(\w+)=([\w.:/-]+)(?:\s|$)", text, re.M):
        found.setdefault(name, value)
    return found


def expand(written: str, settings: dict[str, str]) -> str | None:
    """WRITTEN with its shell variables replaced by their defaults; None: one has none."""
    names = re.findall(r"\$\{?(\w+)\}?", written)
    if any(n not in settings for n in names):
        return None
    return re.sub(r"\$\{?(\w+)\}?", lambda m: settings[m[1]], written)


def project_texts():
    """(where, text, settings) for every file the project writes addresses in.

    A script's variables take its own defaults; elsewhere, those of the scripts. Notebooks:
    their cells' sources.
    """
    scripts = [p.read_text() for p in sorted(ROOT.glob("scripts/*.sh"))]
    everywhere = {}
    for text in reversed(scripts):
        everywhere |= shell_settings(text)
    for pattern in SCANNED:
        for path in sorted(ROOT.glob(pattern)):
            where = path.relative_to(ROOT)
            if path.suffix == ".ipynb":
                for number, cell in enumerate(json.loads(path.read_text())["cells"], 1):
                    source = cell["source"]
                    text = "".join(source) if isinstance(source, list) else source
                    yield f"{where} cell {number}", text, everywhere
            elif path.suffix == ".sh":
                text = path.read_text()
                yield str(where), text, shell_settings(text)
            else:
                yield str(where), path.read_text(), everywhere


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def service_problem(namespace: str | None, name: str | None, port: str | None) -> str | None:
    """Why NAMESPACE/NAME:PORT is no Service of the pinned installs; None when it is one."""
    if None in (namespace, name, port):
        return "a shell variable in it has no default"
    services = known_services()
    ports = services.get((namespace, name), services.get(("*", name)))
    if ports is None:
        same_name = sorted(f"{ns}/{n}" for ns, n in services if n == name)
        return f"no Service {namespace}/{name}" + (f" (there is {same_name})" if same_name else "")
    if int(port) not in ports:
        return f"Service {namespace}/{name} has no port {port}: {sorted(ports)}"
    return None


def addresses(texts=None):
    """Every in-cluster address the project writes: (where, written, namespace, name, port)."""
    for where, text, settings in texts or project_texts():
        for m in SERVICE_DNS.finditer(text):
            if m["svc"] is None and m["namespace"] in NOT_NAMESPACES:
                continue
            at = f"{where}:{line_of(text, m.start())}"
            found = (expand(m[g], settings) for g in ("namespace", "name", "port"))
            yield at, m[0], *found
        for m in URL_HOST.finditer(text):
            if m["name"] not in NOT_SERVICES:
                at = f"{where}:{line_of(text, m.start())}"
                name, port = expand(m["name"], settings), expand(m["port"], settings)
                yield at, m[0], DEFAULT_NAMESPACE, name, port


def port_forwards(texts=None):
    """Every `kubectl port-forward svc/…`: (where, written, namespace, name, remote port).

    A namespace not given is kubectl's default one. A port-forward to a Service in a form
    this scan does not read comes with port None and namespace "?".
    """
    for where, text, settings in texts or project_texts():
        text = text.replace('"', "")  # shell quoting: the same words without the quotes
        parsed = set()
        for m in PORT_FORWARD.finditer(text):
            namespaces = re.findall(FLAG, m[0])
            namespace = expand(namespaces[-1], settings) if namespaces else "default"
            at = f"{where}:{line_of(text, m.start())}"
            for spec in m["ports"].split():
                remote = expand(spec.rsplit(":", 1)[-1], settings)
                yield at, m[0], namespace, expand(m["name"], settings), remote
            parsed.add(m.start("name"))
        for m in ANY_PORT_FORWARD.finditer(text):
            name = m[1].strip("`'")
            if m.start(1) not in parsed and not PLACEHOLDER.fullmatch(name):
                yield f"{where}:{line_of(text, m.start())}", m[0], "?", name, None


# Services and ports


def test_every_in_cluster_address_the_project_writes_is_a_service_of_the_pinned_installs():
    found = list(addresses())
    assert found, "no in-cluster address found: is the scan still looking at the project?"
    problems = [
        f"{at}: {written!r}: {problem}"
        for at, written, namespace, name, port in found
        if (problem := service_problem(namespace, name, port))
    ]
    assert problems == []


def test_every_port_forward_names_a_service_and_port_of_the_pinned_installs():
    found = list(port_forwards())
    assert any(name == "ml-pipeline-ui" for _, _, _, name, _ in found)
    problems = []
    for at, written, namespace, name, port in found:
        if namespace == "?":
            problems.append(f"{at}: {written!r}: not read as kubectl [-n NS] port-forward svc/…")
        elif problem := service_problem(namespace, name, port):
            problems.append(f"{at}: {written!r}: {problem}")
    assert problems == []


def test_the_scan_reads_the_forms_the_project_writes_and_flags_a_wrong_one():
    script = """NAMESPACE="${NAMESPACE:-kubeflow}"
ISVC=crypto  # the InferenceService
kubectl -n kubeflow port-forward svc/ml-pipeline-ui 8080:80 &
kubectl port-forward -n istio-system svc/istio-ingressgateway 8080:80
kubectl port-forward svc/ml-pipeline 8888 --namespace kubeflow
kubectl -n "$NAMESPACE" port-forward "svc/$ISVC-predictor" "$LOCAL:80"
kubectl port-forward --address 0.0.0.0 svc/ml-pipeline 8888
s3-endpoint="minio-service.$NAMESPACE:9000" http://ml-pipeline.kubeflow.svc:8888
http://kind-registry:5000 http://ml-pipeline:8887 seaweedfs.$KFP_NAMESPACE:9000 x.py:12
"""
    texts = [("x.sh", script, shell_settings(script))]
    forwards = [(namespace, name, port) for _, _, namespace, name, port in port_forwards(texts)]
    assert forwards == [
        ("kubeflow", "ml-pipeline-ui", "80"),
        ("istio-system", "istio-ingressgateway", "80"),
        ("kubeflow", "ml-pipeline", "8888"),
        ("kubeflow", "crypto-predictor", "80"),
        ("?", "ml-pipeline", None),
    ]
    hosts = [(namespace, name, port) for _, _, namespace, name, port in addresses(texts)]
    assert hosts == [
        ("kubeflow", "minio-service", "9000"),
        ("kubeflow", "ml-pipeline", "8888"),
        (None, "seaweedfs", "9000"),
        ("kubeflow", "ml-pipeline", "8887"),
    ]
    problems = [service_problem(*found) for found in hosts + forwards[:4]]
    assert problems[0].startswith("no Service kubeflow/minio-service")
    assert problems[2] == "a shell variable in it has no default"
    assert problems[1] is None and problems[3] is None and problems[4:] == [None] * 4
    assert "no port 9001" in service_problem("kubeflow", "seaweedfs", "9001")
    assert "no Service default/ml-pipeline-ui" in service_problem("default", "ml-pipeline-ui", "80")


def cluster_sh(*args: str, **env: str) -> str:
    pinned = pinned_versions()
    clean = {k: v for k, v in os.environ.items() if k not in pinned and k != "NAMESPACE"}
    result = subprocess.run(
        ["bash", ROOT / "scripts" / "cluster.sh", "--dry-run", *args],
        capture_output=True,
        text=True,
        env={**clean, **env},
        timeout=30,
        check=True,
    )
    return result.stdout


@pytest.mark.parametrize("namespace", [None, "kubeflow-user-example-com"])
def test_kserve_reads_models_from_the_object_store_kfp_ships(namespace):
    """KFP 2.16 ships SeaweedFS (S3 on 9000) in its own namespace, and no minio-service."""
    out = cluster_sh("storage", **({"NAMESPACE": namespace} if namespace else {}))
    (endpoint,) = re.findall(r"serving\.kserve\.io/s3-endpoint=(\S+)", out)
    assert endpoint == "seaweedfs.kubeflow:9000"
    (name, namespace, port) = re.fullmatch(r"([\w-]+)\.([\w-]+):(\d+)", endpoint).groups()
    assert service_problem(namespace, name, port) is None
    assert ("kubeflow", "minio-service") not in known_services()


# Schemas


INFERENCE_SERVICES = {
    "gs": ("gs://bucket/models/crypto/3", DeployConfig()),
    "s3": ("s3://mlpipeline/v2/artifacts/crypto-pipeline/run-1/train-step/model/model", None),
    "pvc": ("pvc://crypto-models/crypto/1", DeployConfig(service_account="")),
    "namespace": (
        "gs://bucket/models/crypto/1",
        DeployConfig(namespace="kubeflow-user-example-com", service_account="crypto-reader"),
    ),
}


def schema_errors(validator, manifest) -> list[str]:
    return sorted(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(manifest)
    )


@pytest.mark.parametrize("case", sorted(INFERENCE_SERVICES))
def test_the_inferenceservice_validates_against_the_pinned_kserve_crd(case):
    storage_uri, config = INFERENCE_SERVICES[case]
    manifest = inference_service(storage_uri, config)
    assert manifest["apiVersion"] == f"{KSERVE_GROUP}/{KSERVE_VERSION}"
    assert schema_errors(inference_service_validator(), manifest) == []


def test_the_inferenceservice_check_refuses_a_misspelt_field():
    manifest = inference_service("gs://bucket/models/crypto/1")
    broken = copy.deepcopy(manifest)
    broken["spec"]["predictor"]["minReplica"] = broken["spec"]["predictor"].pop("minReplicas")
    assert any("minReplica" in e for e in schema_errors(inference_service_validator(), broken))
    broken = copy.deepcopy(manifest)
    broken["spec"]["predictor"]["containers"][0]["resources"]["limit"] = {"cpu": "1"}
    assert any("limit" in e for e in schema_errors(inference_service_validator(), broken))


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"data_dir": "gs://bucket/runs/transform"}, {"namespace": "kubeflow-user-example-com"}],
)
def test_the_experiment_validates_against_the_pinned_katib_schema(kwargs):
    manifest = katib_experiment(**kwargs)
    assert manifest["apiVersion"] == "kubeflow.org/v1beta1" and manifest["kind"] == "Experiment"
    assert schema_errors(experiment_validator(), manifest) == []


def test_the_experiment_check_refuses_a_misspelt_field():
    broken = katib_experiment()
    broken["spec"]["objective"]["objectiveMetricNames"] = ["eval_loss"]
    assert any("objectiveMetricNames" in e for e in schema_errors(experiment_validator(), broken))


# RBAC


def matches(value: str, allowed: list[str]) -> bool:
    return "*" in allowed or value in allowed


def grants(rules: list[dict], group: str, resource: str, verb: str) -> bool:
    """Whether RULES allow VERB on every object of GROUP/RESOURCE (Kubernetes' RBAC)."""
    return any(
        matches(group, r.get("apiGroups", []))
        and matches(resource, r.get("resources", []))
        and matches(verb, r.get("verbs", []))
        and not r.get("resourceNames")
        for r in rules
    )


def missing(rules: list[dict]) -> list[str]:
    return [
        f"{group or 'core'}/{resource}: {verb}"
        for group, resource, verbs in API_RULES
        for verb in verbs
        if not grants(rules, group, resource, verb)
    ]


def standalone_rules(namespace: str, with_project: bool = True) -> list[dict]:
    """What KFP standalone's pipeline-runner may do in NAMESPACE; with the project's Role,
    as `NAMESPACE=… scripts/cluster.sh rbac` applies cluster/kserve-rbac.yaml."""
    facts = load_yaml(upstream("kfp-{KFP_VERSION}-pipeline-runner-rbac.yaml"))
    assert facts["serviceAccount"] == {"namespace": "kubeflow", "name": "pipeline-runner"}
    rules = [
        r
        for role in facts["roles"]
        if role["grantedIn"] in (namespace, "all namespaces")
        for r in role["rules"]
    ]
    if with_project:
        out = cluster_sh("rbac", NAMESPACE=namespace)
        (applied,) = re.findall(r"kubectl -n (\S+) apply -f \S*cluster/kserve-rbac\.yaml", out)
        objects = [o for o in yaml.safe_load_all((ROOT / "cluster/kserve-rbac.yaml").read_text())]
        objects = [o for o in objects if o]

        def where(o):
            return o["metadata"].get("namespace", applied)

        roles = {(where(o), o["metadata"]["name"]): o for o in objects if o["kind"] == "Role"}
        for binding in (o for o in objects if o["kind"] == "RoleBinding"):
            runs_steps = any(
                (s["kind"], s["name"], s.get("namespace")) == ("ServiceAccount", *RUNNER)
                for s in binding["subjects"]
            )
            if runs_steps and where(binding) == namespace:
                assert binding["roleRef"]["kind"] == "Role"
                rules += roles[(where(binding), binding["roleRef"]["name"])]["rules"]
    return rules


def aggregated_rules(roles: dict[str, dict], name: str) -> list[dict]:
    """A ClusterRole's rules as the aggregation controller fills them in (recursively)."""
    role = roles[name]
    if "aggregates" not in role:
        return role["rules"]
    selectors = [s["matchLabels"] for s in role["aggregates"]]
    return [
        rule
        for other, r in roles.items()
        if other != name
        and any(all(r["labels"].get(k) == v for k, v in s.items()) for s in selectors)
        for rule in aggregated_rules(roles, other)
    ]


def test_the_deploy_steps_api_calls_are_listed():
    """API_RULES lists what apply() calls: create, read and replace an InferenceService."""
    rules = {(g, r): set(v) for g, r, v in API_RULES}
    assert {"create", "get", "update"} <= rules[(KSERVE_GROUP, KSERVE_PLURAL)]
    assert all(isinstance(v, tuple) and v for _, _, v in API_RULES)


@pytest.mark.parametrize("namespace", [DeployConfig().namespace, "team-a"])
def test_pipeline_runner_may_make_every_call_of_the_deploy_step_on_kfp_standalone(namespace):
    assert missing(standalone_rules(namespace)) == []
    # Upstream's own rules do not reach KServe: cluster/kserve-rbac.yaml is what grants it.
    assert f"{KSERVE_GROUP}/{KSERVE_PLURAL}: create" in missing(
        standalone_rules(namespace, with_project=False)
    )


def test_default_editor_may_make_every_call_of_the_deploy_step_on_multi_user_kubeflow():
    facts = load_yaml(upstream("kubeflow-{KUBEFLOW_VERSION}-kubeflow-edit-rbac.yaml"))
    assert facts["binding"]["roleRef"] == "ClusterRole/kubeflow-edit"
    roles = facts["clusterRoles"]
    rules = aggregated_rules(roles, "kubeflow-edit")
    assert missing(rules) == []
    # The aggregation is what grants it: without KServe's role, no InferenceService.
    without = {k: v for k, v in roles.items() if k != "kubeflow-kserve-edit"}
    assert f"{KSERVE_GROUP}/{KSERVE_PLURAL}: create" in missing(
        aggregated_rules(without, "kubeflow-edit")
    )


def test_the_rbac_check_reads_wildcards_and_names():
    rules = [{"apiGroups": ["kubeflow.org"], "resources": ["*"], "verbs": ["*"]}]
    assert grants(rules, "kubeflow.org", "experiments", "create")
    assert not grants(rules, "serving.kserve.io", "inferenceservices", "create")
    named = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"], "resourceNames": ["a"]}]
    assert not grants(named, "", "pods", "list")


# The multi-user auth route


def auth_facts() -> dict:
    return load_yaml(upstream("kubeflow-{KUBEFLOW_VERSION}-auth.yaml"))


def test_the_token_route_is_upstreams():
    """The variable, file and audience the docs name are those of KFP and the platform."""
    facts = auth_facts()
    kfp, pod_default = facts["kfp"], facts["podDefault"]
    assert kfp["sdkTokenPathVariable"] == submit.TOKEN_PATH_ENV
    assert pod_default["env"][submit.TOKEN_PATH_ENV] == pod_default["tokenPath"]
    assert pod_default["tokenPath"] == kfp["sdkDefaultTokenPath"]
    assert pod_default["audience"] == kfp["apiServerTokenAudience"]
    for where, text, _ in project_texts():
        for audience in re.findall(r"audience\s+`+([\w.-]+)`+", text):
            assert audience == kfp["apiServerTokenAudience"], where
        for path in re.findall(r"/var/run/secrets/kubeflow/[\w/.-]*", text):
            assert path == kfp["sdkDefaultTokenPath"], where


def test_every_oauth2_proxy_overlay_the_project_names_exists():
    overlays = auth_facts()["oauth2Proxy"]["overlays"]
    named = {
        (where, name)
        for where, text, _ in project_texts()
        for name in re.findall(r"\bm2m-dex-[\w-]*[a-z]", text)
    }
    assert [f"{where}: {name}" for where, name in sorted(named) if name not in overlays] == []


def test_the_sign_in_overlays_do_what_the_docs_say():
    """Default m2m-dex-only: Dex sessions, no Kubernetes tokens; m2m-dex-and-kind: both."""
    oauth2_proxy = auth_facts()["oauth2Proxy"]
    overlays = oauth2_proxy["overlays"]
    assert oauth2_proxy["defaultOverlay"] == oauth2_proxy["exampleOverlay"] == "m2m-dex-only"
    assert not overlays["m2m-dex-only"]["acceptsKubernetesServiceAccountTokens"]
    assert overlays["m2m-dex-and-kind"]["acceptsKubernetesServiceAccountTokens"]
    source = Path(submit.__file__).read_text()
    assert "m2m-dex-only" in source and "m2m-dex-and-kind" in source


def test_the_gateway_paths_the_docs_use_reach_kubeflow_pipelines():
    prefixes = {route["prefix"] for route in auth_facts()["gateway"]["kfpRoutes"]}
    used = {
        (where, path)
        for where, text, _ in project_texts()
        for path in re.findall(r"localhost:\d+(/pipeline[\w/-]*)", text)
    }
    assert used, "no gateway path found in the docs"
    assert [f"{w}: {p}" for w, p in sorted(used) if not p.startswith(tuple(prefixes))] == []


# Provenance


def sources(path: Path) -> list[tuple[str, str]]:
    """(repository, tag) of every source a facts file names."""
    if path.suffix == ".json":
        return [(s["repository"], s["tag"]) for s in json.loads(path.read_text())["source"]]
    return re.findall(r"^# source: (\S+) (\S+) ", path.read_text(), re.M)


def test_the_facts_are_those_of_the_pinned_versions():
    """A version bump without `python scripts/upstream_facts.py` fails here."""
    pinned = pinned_versions()
    files = sorted(p for p in UPSTREAM.iterdir() if p.name != "README.md")
    assert len(files) >= 9
    for path in files:
        found = sources(path)
        assert found, f"{path.name} names no source"
        if path.suffix == ".json":
            assert json.loads(path.read_text())["generatedBy"] == "scripts/upstream_facts.py"
        else:
            assert "# Generated by scripts/upstream_facts.py" in path.read_text()[:2000]
        for repo, tag in found:
            if repo in PIN_OF:
                assert tag == pinned[PIN_OF[repo]], f"{path.name}: {repo} {tag}"
        # The version in the file's name (kfp-2.16.1-…) is one of its sources' tags.
        assert path.name.split("-")[1] in {tag for _, tag in found}, path.name
    readme = (UPSTREAM / "README.md").read_text()
    assert "python scripts/upstream_facts.py --mirror-dir DIR" in readme
    for repo, pin in PIN_OF.items():
        assert f"| {repo} | `{pinned[pin]}` |" in readme, repo
