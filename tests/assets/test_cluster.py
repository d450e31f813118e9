"""The cluster side: one file of versions, the registry kind pulls from, RBAC and storage.

Each finding of the cluster path's line-by-line check against the pinned releases has a
test here that fails on the code before its fix (the upstream facts themselves are held in
tests/upstream/ and checked by test_upstream.py).
"""

import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml

from crypto_pipeline.config import DATA_PVC, DEFAULT_REGISTRY, DeployConfig
from crypto_pipeline.deploy import MODELS_PVC
from crypto_pipeline.inference_service import KSERVE_GROUP, KSERVE_PLURAL
from crypto_workshop import offline

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
SCRIPT = ROOT / "scripts" / "cluster.sh"
COMMANDS = ("kind", "minikube", "kfp", "katib", "kserve", "rbac", "storage", "load-images", "down")


def versions() -> dict[str, str]:
    lines = (CLUSTER / "versions.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if re.match(r"^[A-Z_]+=", line))


def clean_env(**env: str) -> dict[str, str]:
    names = {*versions(), "NAMESPACE", "REGISTRY", "REGISTRY_PORT", "TAG", "CLUSTER"}
    return {**{k: v for k, v in os.environ.items() if k not in names}, **env}


def cluster_sh(*args: str, cwd: Path = ROOT, **env: str) -> str:
    result = subprocess.run(
        ["bash", SCRIPT, "--dry-run", *args],
        capture_output=True,
        text=True,
        env=clean_env(**env),
        cwd=cwd,
        timeout=60,
        check=True,
    )
    return result.stdout


def commands(out: str) -> list[str]:
    return [line[2:] for line in out.splitlines() if line.startswith("+ ")]


def objects(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def image_tag() -> str:
    return subprocess.run(
        ["python3", ROOT / "scripts" / "image_tag.py"], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_the_scripts_install_the_pinned_versions():
    """(j) The newest patch releases of what Kubeflow 26.03 ships, from one file."""
    v = versions()
    assert v["KUBEFLOW_VERSION"] == "26.03"
    assert v["KFP_VERSION"] == "2.16.1" and v["KATIB_VERSION"] == "v0.19.0"
    assert v["KSERVE_VERSION"] == "v0.16.0" and v["CERT_MANAGER_VERSION"] == "v1.19.6"
    assert re.fullmatch(r"kindest/node:v1\.\d+\.\d+@sha256:[0-9a-f]{64}", v["KIND_NODE_IMAGE"])
    assert f"kindest/node:v{v['KUBERNETES_VERSION']}." in v["KIND_NODE_IMAGE"]
    assert f"--image {v['KIND_NODE_IMAGE']}" in cluster_sh("kind")
    assert f"kustomize/env/platform-agnostic?ref={v['KFP_VERSION']}" in cluster_sh("kfp")
    assert f"katib-standalone?ref={v['KATIB_VERSION']}" in cluster_sh("katib")
    kserve = cluster_sh("kserve")
    assert f"download/{v['KSERVE_VERSION']}/kserve.yaml" in kserve
    assert f"download/{v['CERT_MANAGER_VERSION']}/cert-manager.yaml" in kserve
    # An override in the environment wins over the file.
    assert "ref=2.99.0" in cluster_sh("kfp", KFP_VERSION="2.99.0")


def test_the_readme_quotes_the_pinned_versions():
    readme = (ROOT / "README.md").read_text()
    for name in ("KUBEFLOW_VERSION", "KFP_VERSION", "KATIB_VERSION", "KSERVE_VERSION"):
        assert versions()[name] in readme, name
    assert versions()["CERT_MANAGER_VERSION"] in readme
    assert versions()["KIND_NODE_IMAGE"].split("@")[0] in readme


def test_kind_gets_the_registry_the_compiled_pipeline_names():
    """kind's local-registry recipe, for the localhost:5001 the images are named by."""
    host = DEFAULT_REGISTRY.split("/")[0]
    out = cluster_sh("kind")
    assert f"-p 127.0.0.1:{host.split(':')[1]}:5000" in out and "--name kind-registry" in out
    hosts = f"poets-control-plane:/etc/containerd/certs.d/{host}/hosts.toml"
    assert f"docker cp cluster/containerd-hosts.toml {hosts}" in out
    toml = [
        line
        for line in (CLUSTER / "containerd-hosts.toml").read_text().splitlines()
        if not line.startswith("#")
    ]
    assert toml == ['[host."http://kind-registry:5000"]']
    assert "docker network connect kind kind-registry" in out
    (config_map,) = objects(CLUSTER / "local-registry-hosting.yaml")
    assert config_map["metadata"] == {"name": "local-registry-hosting", "namespace": "kube-public"}
    assert yaml.safe_load(config_map["data"]["localRegistryHosting.v1"])["host"] == host
    assert "cluster/local-registry-hosting.yaml | kubectl apply -f -" in out


def test_another_registry_port_reaches_every_object():
    """(h) Before, the ConfigMap said 5001 whatever REGISTRY_PORT was."""
    out = cluster_sh("kind", REGISTRY_PORT="5002")
    assert "-p 127.0.0.1:5002:5000" in out
    assert "/etc/containerd/certs.d/localhost:5002/hosts.toml" in out
    assert (
        "sed s/localhost:5001/localhost:5002/ cluster/local-registry-hosting.yaml | kubectl apply"
        in out
    )
    assert "localhost:5001" not in out.replace("s/localhost:5001/", "")


def test_the_helper_pods_and_loaded_images_follow_the_registry_and_tag():
    """(h) Before, the upload pod's image was always localhost:$REGISTRY_PORT/…:0.1.0."""
    upload = cluster_sh("upload-model", "runs/models/crypto/3", "3")
    assert f"--image=localhost:5001/kubeflow-for-poets/serve:{image_tag()}" in upload
    assert f"cp runs/models/crypto/3/. upload-{MODELS_PVC}:/mnt/claim/crypto/3" in upload
    mine = cluster_sh("upload-data", "runs/data", REGISTRY="ghcr.io/me/poets", TAG="7")
    assert "--image=ghcr.io/me/poets/serve:7" in mine and ":0.1.0" not in mine
    loaded = commands(cluster_sh("load-images", REGISTRY="r.example/p", TAG="9"))
    assert loaded == [
        f"kind load docker-image --name poets r.example/p/{image}:9"
        for image in ("ingest", "transform", "train", "serve")
    ]
    assert "load-images" in cluster_sh("minikube")  # minikube pulls from no local registry


def test_pipeline_runner_may_deploy_and_watch_in_the_namespace_given():
    """(b) The Role goes where the InferenceService goes; it names no namespace itself."""
    role, binding = objects(CLUSTER / "kserve-rbac.yaml")
    rules = {
        (g, r): set(rule["verbs"])
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    assert {"create", "get", "update"} <= rules[KSERVE_GROUP, KSERVE_PLURAL]
    assert "namespace" not in role["metadata"] and "namespace" not in binding["metadata"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "pipeline-runner", "namespace": "kubeflow"}
    ]
    assert "kubectl -n team-a apply -f cluster/kserve-rbac.yaml" in cluster_sh(
        "rbac", NAMESPACE="team-a"
    )


def test_the_predictor_reads_kfps_object_store_from_any_namespace():
    """(a, b) KFP 2.16 stores artifacts in SeaweedFS, in kubeflow, whatever the profile."""
    by_kind = {o["kind"]: o for o in objects(CLUSTER / "model-storage.yaml")}
    account = by_kind["ServiceAccount"]
    assert account["metadata"]["name"] == DeployConfig().service_account
    claims = {o["metadata"]["name"] for o in objects(CLUSTER / "model-storage.yaml")}
    assert {MODELS_PVC, DATA_PVC} <= claims
    assert all("namespace" not in o["metadata"] for o in objects(CLUSTER / "model-storage.yaml"))
    for namespace in ("kubeflow", "kubeflow-user-example-com"):
        out = cluster_sh("storage", NAMESPACE=namespace)
        (secret,) = account["secrets"]
        assert f"kubectl -n {namespace} create secret generic {secret['name']}" in out
        assert f"kubectl -n {namespace} get secret mlpipeline-minio-artifact" in out
        assert "serving.kserve.io/s3-endpoint=seaweedfs.kubeflow:9000" in out
        assert "minio-service" not in out
        assert f"kubectl -n {namespace} apply -f cluster/model-storage.yaml" in out


def test_kserve_installs_its_crds_first_and_patches_nothing():
    """(d) One apply of kserve.yaml could not map its LLMInferenceServiceConfig objects."""
    out = commands(cluster_sh("kserve"))
    steps = [c for c in out if c.startswith(("kubectl", "scripts/cluster.sh"))]
    crds = next(i for i, c in enumerate(steps) if c.endswith("/crds.yaml") and "apply" in c)
    established = next(i for i, c in enumerate(steps) if "condition=established" in c)
    rest = next(i for i, c in enumerate(steps) if c.endswith("/rest.yaml") and "apply" in c)
    assert steps[crds - 1].startswith("scripts/cluster.sh split-crds")
    assert crds < established < rest
    applies = [c for c in steps if " apply " in c]
    assert applies and all("--server-side --force-conflicts" in c for c in applies)
    assert not any(" patch " in c for c in steps)  # it fought with the server-side apply


KSERVE_YAML = textwrap.dedent(
    """\
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata:
      name: llminferenceserviceconfigs.serving.kserve.io
    ---
    apiVersion: serving.kserve.io/v1alpha1
    kind: LLMInferenceServiceConfig
    metadata:
      name: kserve-config-llm-template
      namespace: kserve
    ---
    apiVersion: v1
    kind: ConfigMap
    metadata:
      name: inferenceservice-config
      namespace: kserve
    data:
      deploy: |-
        {
          "defaultDeploymentMode": "Serverless"
        }
    ---
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata:
      name: inferenceservices.serving.kserve.io
    """
)


def fake_tools(tmp_path: Path, failures: int) -> Path:
    """kubectl and curl that log their arguments; kubectl refuses the first applies of the
    objects whose CRDs are new, as an API server does before it can map their kind."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "kserve.yaml").write_text(KSERVE_YAML)
    (bin_dir / "curl").write_text(
        '#!/bin/bash\necho "curl $*" >> "$LOG"\n'
        "while [[ $# -gt 0 ]]; do [[ $1 == -o ]] && out=$2; shift; done\n"
        'case "$out" in *kserve.yaml) cp "$FIXTURE" "$out" ;;\n'
        '  *) echo "kind: List" > "$out" ;;\nesac\n'
    )
    (bin_dir / "kubectl").write_text(
        '#!/bin/bash\necho "kubectl $*" >> "$LOG"\n'
        'if [[ "$*" == *rest.yaml* ]]; then\n'
        '  n=$(cat "$COUNT" 2>/dev/null || echo 0); echo $((n + 1)) > "$COUNT"\n'
        f"  if (( n < {failures} )); then\n"
        '    echo "no matches for kind LLMInferenceServiceConfig" >&2; exit 1; fi\nfi\n'
    )
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return bin_dir


def install_kserve(tmp_path: Path, bin_dir: Path, log: Path) -> subprocess.CompletedProcess:
    shutil.copytree(ROOT / "scripts", tmp_path / "repo" / "scripts")
    shutil.copytree(ROOT / "cluster", tmp_path / "repo" / "cluster")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / "repo" / name)
    env = clean_env(
        PATH=f"{bin_dir}:{os.environ['PATH']}",
        LOG=str(log),
        COUNT=str(tmp_path / "count"),
        FIXTURE=str(tmp_path / "kserve.yaml"),
        RETRY_PAUSE="0",
        TAG="t",
    )
    return subprocess.run(
        ["bash", "scripts/cluster.sh", "kserve"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path / "repo",
        timeout=60,
    )


def test_kserve_retries_until_its_kinds_are_known_and_runs_again_unchanged(tmp_path):
    """(d) The first try of the rest fails, as on a real API server; a second and third
    run of the whole command send the very same requests and files."""
    bin_dir = fake_tools(tmp_path, failures=1)
    runs = []
    for n in range(3):
        log = tmp_path / f"log-{n}"
        result = install_kserve(tmp_path, bin_dir, log)
        assert result.returncode == 0, result.stdout + result.stderr
        runs.append(log.read_text().splitlines())
        shutil.rmtree(tmp_path / "repo")
    assert sum("rest.yaml" in line for line in runs[0]) == 2  # refused once, then applied
    assert runs[1] == runs[2]
    assert not any(" patch " in line for run in runs for line in run)


def test_split_crds_sets_the_mode_in_the_file(tmp_path):
    source = tmp_path / "kserve.yaml"
    source.write_text(KSERVE_YAML)
    subprocess.run(
        ["bash", SCRIPT, "split-crds", source, tmp_path / "crds.yaml", tmp_path / "rest.yaml"],
        check=True,
        env=clean_env(TAG="t"),
    )
    crds = objects(tmp_path / "crds.yaml")
    rest = objects(tmp_path / "rest.yaml")
    assert [o["kind"] for o in crds] == ["CustomResourceDefinition"] * 2
    assert [o["kind"] for o in rest] == ["LLMInferenceServiceConfig", "ConfigMap"]
    assert '"defaultDeploymentMode": "Standard"' in rest[1]["data"]["deploy"]
    # A release that words it otherwise stops with the fix instead of serving Serverless.
    source.write_text(KSERVE_YAML.replace('"Serverless"', '"Knative"'))
    result = subprocess.run(
        ["bash", SCRIPT, "split-crds", source, tmp_path / "c.yaml", tmp_path / "r.yaml"],
        capture_output=True,
        text=True,
        env=clean_env(TAG="t"),
    )
    assert result.returncode == 1 and "fix: set it to Standard" in result.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_every_shown_command_pastes_into_bash_and_zsh(command, tmp_path):
    """What the dry run shows is what a learner copies: quoted for both shells."""
    shells = ["bash"] + (["zsh"] if shutil.which("zsh") else [])
    script = tmp_path / "commands.sh"
    script.write_text("\n".join(commands(cluster_sh(command))) + "\n")
    for shell in shells:
        result = subprocess.run([shell, "-n", script], capture_output=True, text=True)
        assert result.returncode == 0, (shell, result.stderr)


def test_shown_paths_are_relative_to_where_it_runs():
    out = cluster_sh("kserve", cwd=ROOT / "notebooks")
    assert "../scripts/cluster.sh split-crds ../build/kserve-" in out
    assert str(ROOT) not in out


def test_the_cluster_manifests_match_the_kubernetes_schema():
    lines = offline.validate_manifests(*sorted(CLUSTER.glob("*.yaml")))
    assert len(lines) == 6 and all(line.endswith(": valid") for line in lines), lines


def run_with(tmp_path: Path, tools: dict[str, str], *args: str, **env: str):
    """cluster.sh for real, against stand-in tools that log their calls to $LOG."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in tools.items():
        (bin_dir / name).write_text(f'#!/bin/bash\necho "{name} $*" >> "$LOG"\n{body}\n')
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "log"
    log.write_text("")
    result = subprocess.run(
        ["bash", SCRIPT, *args],
        capture_output=True,
        text=True,
        env=clean_env(PATH=f"{bin_dir}:{os.environ['PATH']}", LOG=str(log), TAG="t", **env),
        cwd=ROOT,
        timeout=60,
    )
    return result, log.read_text().splitlines()


def test_a_namespace_kfp_standalone_does_not_serve_is_refused(tmp_path):
    """(b) Its object store admits kubeflow and profiles' namespaces only."""
    tools = {"kubectl": 'if [[ "$*" == *"get namespace"* ]]; then printf ""; fi'}
    for command in ("storage", "rbac"):
        result, calls = run_with(tmp_path, tools, command, NAMESPACE="team-a")
        assert result.returncode == 1, result.stdout
        assert "team-a is not a Kubeflow profile's namespace" in result.stderr
        assert "fix: on KFP standalone leave NAMESPACE unset" in result.stderr
        assert not any(" apply " in c for c in calls)
    profile = {
        "kubectl": 'if [[ "$*" == *"get namespace"* ]]; then printf kubeflow-profile; fi',
    }
    result, calls = run_with(tmp_path, profile, "rbac", NAMESPACE="team-a")
    assert result.returncode == 0, result.stderr
    assert "kubectl -n team-a apply -f cluster/kserve-rbac.yaml" in calls


def test_storage_without_kfps_keys_says_to_install_kfp(tmp_path):
    tools = {"kubectl": '[[ "$*" != *"get secret mlpipeline-minio-artifact"* ]]'}
    result, calls = run_with(tmp_path, tools, "storage")
    assert result.returncode == 1
    assert "no Secret mlpipeline-minio-artifact in kubeflow" in result.stderr
    assert "cluster.sh kfp" in result.stderr


def test_down_keeps_the_registry_another_kind_cluster_uses(tmp_path):
    """Before, deleting any kind cluster also deleted the shared kind-registry."""
    tools = {
        "kind": 'if [[ "$1 $2" == "get clusters" ]]; then echo poets; fi',
        "docker": "",
        "minikube": "exit 1",
    }
    result, calls = run_with(tmp_path, tools, "down", CLUSTER="poets-e2e")
    assert result.returncode == 0, result.stderr
    assert "kind delete cluster --name poets-e2e" in calls
    assert not any(c.startswith("docker rm") for c in calls)
    tools["kind"] = "true"
    result, calls = run_with(tmp_path, tools, "down")
    assert "docker rm -f kind-registry" in calls


def test_reinstalling_kfp_keeps_katibs_namespace_label(tmp_path):
    """KFP's apply of the kubeflow Namespace drops the label Katib's trials need."""
    result, calls = run_with(tmp_path, {"kubectl": ""}, "kfp")
    assert result.returncode == 0, result.stderr
    label = (
        "kubectl label namespace kubeflow --overwrite "
        "katib.kubeflow.org/metrics-collector-injection=enabled"
    )
    assert calls[-1] == label
    assert commands(cluster_sh("katib"))[-1] == label


def kind_route_blocks() -> dict[str, str]:
    """The kind route's command blocks, as a learner copies them."""
    import nbformat

    readme = (ROOT / "README.md").read_text()
    section = readme.split("### From nothing to a run on kind", 1)[1]
    blocks = {"README.md": section.split("```bash\n", 1)[1].split("```", 1)[0]}
    notebook = nbformat.read(ROOT / "notebooks" / "04-kubeflow.ipynb", as_version=4)
    (cell,) = [c for c in notebook.cells if "## From nothing to a pipeline run on kind" in c.source]
    blocks["notebook 04"] = cell.source.split("```bash\n", 1)[1].split("```", 1)[0]
    return blocks


@pytest.mark.parametrize("where", ["README.md", "notebook 04"])
def test_the_kind_route_pastes_into_an_interactive_zsh(where, tmp_path):
    """Interactive zsh reads `#` as a word, and a `'` in a comment opens a quote."""
    block = kind_route_blocks()[where]
    assert "scripts/cluster.sh kind" in block and "submit" in block
    assert "#" not in block, "no comments in a block to paste: say it in the prose"
    if not shutil.which("zsh"):
        pytest.skip("zsh is not installed (.ci/run installs it)")
    script = tmp_path / "block.sh"
    script.write_text(block)
    for shell in (["bash", "-n"], ["zsh", "-f", "-n"]):
        result = subprocess.run([*shell, script], capture_output=True, text=True)
        assert result.returncode == 0, (shell, result.stderr)
