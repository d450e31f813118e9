"""What a notebook finds on the machine it runs on: the checkout, and which tools answer.

A notebook cell that needs a Docker engine, a Kubernetes cluster or a Kubeflow Pipelines
host asks here whether one answers (a ``Tool``, true when it does). When it does, the cell
runs the real command (``crypto_workshop.commands``); when it does not, the cell does the
part that needs no engine or cluster (``crypto_workshop.offline``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from crypto_pipeline.errors import ConfigError


@dataclass(frozen=True)
class Tool:
    """Whether a tool answers on this machine, and what it said (or why it did not)."""

    name: str
    available: bool
    detail: str

    def __bool__(self) -> bool:
        return self.available

    @property
    def missing(self) -> str:
        """Why a command that needs this tool is only shown (its probe says more)."""
        return f"no {self.name} here"

    def __str__(self) -> str:
        return f"{self.name}: {'available' if self.available else 'not available'} ({self.detail})"


def project_root() -> Path:
    """The repository's root folder (the notebooks, the Dockerfiles and the manifests).

    Raises:
        ConfigError: The package is not installed from a checkout of the repository.
    """
    root = Path(__file__).resolve().parents[2]
    if not (root / "notebooks").is_dir() or not (root / "pyproject.toml").is_file():
        raise ConfigError(
            f"{root} is not a checkout of the tutorial (no notebooks/ or pyproject.toml)",
            "clone the repository and run `make lab` there (it installs the package "
            "from the checkout)",
        )
    return root


def tool_path(name: str) -> str | None:
    """A command from this environment's bin folder first (hadolint, kubectl), else PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def _quiet(command: Sequence[str], timeout_s: float) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired):
        return None


def docker_engine(timeout_s: float = 15) -> Tool:
    """Whether a Docker engine answers the ``docker`` command here."""
    name = "Docker engine"
    docker = shutil.which("docker")
    if docker is None:
        return Tool(name, False, "the docker command is not installed")
    result = _quiet([docker, "version", "--format", "{{.Server.Version}}"], timeout_s)
    if result is None or result.returncode != 0 or not result.stdout.strip():
        return Tool(
            name,
            False,
            "docker is installed but no engine answers: start Docker Desktop, "
            "or `sudo systemctl start docker`",
        )
    return Tool(name, True, f"Docker Engine {result.stdout.strip()}")


def docker_image_present(image: str, timeout_s: float = 15) -> bool:
    """Whether ``image`` is already on this machine's Docker engine (no pull)."""
    result = _quiet(["docker", "image", "inspect", image], timeout_s)
    return result is not None and result.returncode == 0


def docker_image(image: str, engine: Tool | None = None, timeout_s: float = 15) -> Tool:
    """Whether ``image`` is on this machine's Docker engine, as a ``Tool`` a command can need."""
    name = f"Image {image}"
    engine = engine if engine is not None else docker_engine(timeout_s)
    if not engine:
        return Tool(name, False, engine.missing)
    if not docker_image_present(image, timeout_s):
        return Tool(
            name, False, f"not on this machine: `docker pull {image}` where there is internet"
        )
    return Tool(name, True, "on this machine")


def kube_context(timeout_s: float = 15) -> Tool:
    """Whether kubectl has a current context whose API server answers."""
    name = "Kubernetes cluster"
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return Tool(name, False, "kubectl is not installed")
    context = _quiet([kubectl, "config", "current-context"], timeout_s)
    if context is None or context.returncode != 0:
        return Tool(
            name, False, "kubectl has no current context: create a cluster (scripts/cluster.sh)"
        )
    context_name = context.stdout.strip()
    server = _quiet([kubectl, "version", "-o", "json", "--request-timeout=10s"], timeout_s)
    if server is None or server.returncode != 0 or "serverVersion" not in server.stdout:
        return Tool(name, False, f"context {context_name!r} does not answer: is the cluster up?")
    version = json.loads(server.stdout)["serverVersion"]["gitVersion"]
    return Tool(name, True, f"context {context_name!r}, Kubernetes {version}")


def kfp_host(host: str, timeout_s: float = 10) -> Tool:
    """Whether a Kubeflow Pipelines API answers at ``host`` (empty: none was given)."""
    name = "Kubeflow Pipelines"
    if not host:
        return Tool(
            name,
            False,
            "no host given: set the notebook's kfp_host parameter, e.g. http://localhost:8080 "
            "after `kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80`",
        )
    import requests

    url = f"{host.rstrip('/')}/apis/v2beta1/healthz"
    try:
        response = requests.get(url, timeout=timeout_s)
    except requests.RequestException as exc:
        return Tool(name, False, f"nothing answered at {url}: {type(exc).__name__}")
    if response.status_code != 200:
        return Tool(name, False, f"{url} answered {response.status_code}")
    return Tool(name, True, f"API at {host}")


def registry(host: str, timeout_s: float = 5) -> Tool:
    """Whether a container registry (Docker's registry API v2) answers at ``host``."""
    import requests

    name = f"Registry {host}"
    url = f"http://{host}/v2/"
    try:
        response = requests.get(url, timeout=timeout_s)
    except requests.RequestException:
        return Tool(
            name,
            False,
            f"nothing answers at {url}: start one with "
            f"`docker run -d -p 127.0.0.1:{host.rsplit(':', 1)[-1]}:5000 --name kind-registry "
            "registry:3`",
        )
    if response.status_code not in (200, 401):  # 401: it answers, and wants a login
        return Tool(name, False, f"{url} answered {response.status_code}, not a registry")
    return Tool(name, True, f"registry API v2 at {host}")


def wait_for_http(url: str, timeout_s: float = 60) -> str:
    """Fetches ``url`` once it answers (a container that is still starting); its body.

    Raises:
        TimeoutError: Nothing answered with a success within ``timeout_s``.
    """
    import requests

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            response = requests.get(url, timeout=2)
            if response.ok:
                return response.text
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout_s:.0f} s")
        time.sleep(0.5)
