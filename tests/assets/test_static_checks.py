"""Dockerfiles, shell scripts and Kubernetes manifests, checked with the real tools."""

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from crypto_workshop.offline import lint_dockerfiles, validate_manifests

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SKIP = {".venv", ".tools", "runs", ".git", "__pycache__", ".pytest_cache", ".ruff_cache"}
K8S = ROOT / "kubernetes-intro"


def repo_files(pattern: str) -> list[Path]:
    return sorted(p for p in ROOT.rglob(pattern) if not SKIP & set(p.relative_to(ROOT).parts))


def test_every_dockerfile_is_clean_under_hadolint():
    dockerfiles = repo_files("Dockerfile")
    assert dockerfiles, "no Dockerfile found"
    findings = lint_dockerfiles(*dockerfiles)
    assert findings == [], "\n".join(findings)


def test_every_shell_script_is_clean_under_shellcheck():
    scripts = repo_files("*.sh")
    assert scripts, "no shell script found"
    result = subprocess.run(
        [BIN / "shellcheck", "--external-sources", *scripts], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


def test_kubernetes_manifests_validate_against_the_schema():
    manifests = [p for p in K8S.glob("*.yaml") if p.name != "kind-cluster.yaml"]
    assert manifests
    assert validate_manifests(*manifests) == [
        "namespace/poets: valid",
        "deployment/nginx-server: valid",
        "service/nginx-server: valid",
        "networkpolicy/nginx-server: valid",
    ]


def load_deployment():
    docs = list(yaml.safe_load_all((K8S / "deployment.yaml").read_text()))
    return {d["kind"]: d for d in docs}


def test_deployment_keeps_the_originals_shape_and_is_hardened():
    objects = load_deployment()
    deployment, service = objects["Deployment"], objects["Service"]
    assert deployment["apiVersion"] == "apps/v1" and deployment["spec"]["replicas"] == 5
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == labels == service["spec"]["selector"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert {"readinessProbe", "livenessProbe"} <= set(container)
    assert {"requests", "limits"} <= set(container["resources"])
    assert not container["image"].endswith(":latest") and ":" in container["image"]
    # The image and port are those of the Docker chapter's nginx-server.
    dockerfile = (ROOT / "docker-intro" / "nginx-server" / "Dockerfile").read_text()
    assert f"docker build -t {container['image']} " in dockerfile
    (port,) = container["ports"]
    assert f"EXPOSE {port['containerPort']}" in dockerfile
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["ports"][0]["nodePort"] == 30001


def test_kind_config_maps_the_node_port_to_the_host():
    config = yaml.safe_load((K8S / "kind-cluster.yaml").read_text())
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    (mapping,) = config["nodes"][0]["extraPortMappings"]
    node_port = load_deployment()["Service"]["spec"]["ports"][0]["nodePort"]
    assert mapping["containerPort"] == mapping["hostPort"] == node_port


def test_dockerfiles_pin_their_base_images():
    for dockerfile in repo_files("Dockerfile"):
        for base in re.findall(r"^FROM\s+(\S+)", dockerfile.read_text(), re.MULTILINE):
            assert ":" in base and not base.endswith(":latest"), f"{dockerfile}: {base}"


@pytest.mark.slow  # a secrets scan of the whole tree
def test_no_secrets_in_the_tree():
    """detect-secrets over the whole tree finds nothing, and the baseline says so too."""
    baseline = json.loads((ROOT / ".secrets.baseline").read_text())
    assert baseline["results"] == {}
    result = subprocess.run(
        [
            BIN / "detect-secrets",
            "scan",
            "--exclude-files",
            r"(^|/)(\.venv|\.tools|runs|build|node_modules)/",
            # Notebook 02's recorded Docker outputs: an image's content digest as `docker
            # push` prints it, and a new container's id as `docker run -d` prints it. Both
            # are high in entropy and name public things; neither is a secret. Nor is the
            # upstream commit that a file of tests/upstream/ names as its source.
            "--exclude-lines",
            r'digest: sha256:[0-9a-f]{64} size: \d+|^ *"output": "[0-9a-f]{64}",$'
            r'|^ *"commit": "[0-9a-f]{40}",?$',
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["results"] == {}


def test_images_hold_no_credentials():
    """No instruction copies in or sets anything that looks like a key or a token.

    Comments may name a token (JupyterLab's, made when the workshop image starts); the
    secrets scan (detect-secrets) covers what any file holds.
    """
    for dockerfile in repo_files("Dockerfile"):
        lines = dockerfile.read_text().lower().splitlines()
        text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
        for word in ("service_account", "credentials.json", ".pem", "id_rsa", "token"):
            assert word not in text, f"{dockerfile} mentions {word}"


def cluster(*args, **env):
    import os

    return subprocess.run(
        ["bash", ROOT / "scripts" / "cluster.sh", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=30,
    )


def test_cluster_script_dry_runs_print_pinned_commands():
    expected = {
        "kind": "kind create cluster --name poets --image kindest/node:v",
        "minikube": "minikube start --profile poets",
        "kfp": "pipelines/manifests/kustomize/env/platform-agnostic?ref=",
        "katib": "katib-standalone?ref=v",
        "kserve": "kserve/releases/download/v",
        "down": "kind delete cluster --name poets",
    }
    for command, text in expected.items():
        result = cluster("--dry-run", command)
        assert result.returncode == 0, result.stderr
        assert text in result.stdout, command
        assert "latest" not in result.stdout
    result = cluster("--dry-run", "gke", PROJECT="demo-project")
    assert "--workload-pool demo-project.svc.id.goog" in result.stdout


def test_cluster_script_refuses_what_it_cannot_do():
    result = cluster("--dry-run", "gke", PROJECT="")
    assert result.returncode == 1 and "set PROJECT" in result.stderr
    result = cluster("teleport")
    assert result.returncode == 2 and "unknown command" in result.stderr


def test_pre_commit_hooks_run_the_project_s_own_tools_offline():
    """Every hook is local (nothing to download) and its command is in the repo or the venv."""
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    (repo,) = config["repos"]
    assert repo["repo"] == "local", "a remote hook repository needs the network"
    makefile = (ROOT / "Makefile").read_text()
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    for hook in repo["hooks"]:
        assert hook["language"] == "system", hook["id"]
        program, *args = shlex.split(hook["entry"])
        if "/" in program:
            assert (ROOT / program).is_file(), f"{hook['id']}: no {program} (make setup-dev)"
        else:
            assert shutil.which(program), f"{hook['id']}: {program} is not installed"
        if program == "make":
            assert re.search(rf"^{re.escape(args[0])}:", makefile, re.M), hook["id"]
        for arg in args:
            if re.fullmatch(r"(scripts|tests)/[\w/.-]+", arg):
                assert (ROOT / arg).is_file(), f"{hook['id']}: no {arg}"
        if "files" in hook:
            assert any(re.search(hook["files"], path) for path in tracked), hook["id"]


VERSION_SHOWN = (
    # Generated: the compiled pipeline, the locks (a package pinned at 0.1.0 is not ours)
    # and the outputs notebook 02's commands printed.
    "crypto_pipeline.yaml",
    "locks/",
    "environment.yml",
    "notebooks/recorded/",
    # What the learner reads and types: commands with the images' tags and their output.
    "README.md",
    "notebooks/",
    "docker-intro/",
    "kubernetes-intro/",
    "workshop/crypto_workshop/",
    "tests/",
)
"""Where the bare version may be written out: generated files and shown commands."""


def test_the_version_has_one_home():
    """Everything that needs the version reads crypto_pipeline.__version__."""
    home = "components/crypto_pipeline/__init__.py"
    (version,) = re.findall(r'^__version__ = "([^"]+)"', (ROOT / home).read_text(), re.M)
    found = subprocess.run(
        ["git", "grep", "--untracked", "-n", "-E", rf"(^|[^0-9.]){re.escape(version)}($|[^0-9])"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    elsewhere = [
        line
        for line in found
        if not line.startswith((f"{home}:", *VERSION_SHOWN))
        # a Dockerfile's header comment shows the command that builds it
        and not (re.match(r"[^:]*Dockerfile:\d+:#", line))
    ]
    assert elsewhere == [], f"write crypto_pipeline.__version__ instead of {version}"
    assert '"crypto_pipeline" / "__init__.py"' in (ROOT / "scripts/image_tag.py").read_text()
    for reader in ("Makefile", "scripts/build_images.sh", "scripts/test_containers.sh"):
        assert re.search(r'image_tag\.py"? --version', (ROOT / reader).read_text()), reader
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["dynamic"] == ["version"]
    dynamic = project["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "crypto_pipeline.__version__"}


def test_make_reads_the_version_from_its_home():
    done = subprocess.run(
        ["make", "-s", "--no-print-directory", "-f", "Makefile", "-f", "-", "show-version"],
        input="show-version:\n\t@echo $(VERSION)\n",
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    import crypto_pipeline

    assert done.stdout.strip() == crypto_pipeline.__version__, done.stderr


PROJECT_IMAGE = (
    r"kubeflow-for-poets/(ingest|transform|train|serve|workshop):([0-9]+\.[0-9]+\.[0-9]+)"
)
"""A project image named with a version (the tutorial's own images keep their tags)."""


def test_the_project_s_images_are_named_with_the_package_s_version():
    from crypto_pipeline import __version__

    found = subprocess.run(
        ["git", "grep", "--untracked", "-n", "-o", "-E", PROJECT_IMAGE, "--", ":!locks"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    stale = [line for line in found if not line.endswith(f":{__version__}")]
    assert found and not stale, (
        f"these name a project image with another version than __version__ {__version__} "
        f"(crypto_pipeline/__init__.py): write {__version__} there, or run `make compile` "
        f"and `make notebooks` for the generated ones: {stale}"
    )
