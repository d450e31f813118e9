"""What the notebooks use to meet the machine they run on.

A notebook cell that needs a Docker engine, a Kubernetes cluster or a Kubeflow Pipelines
host asks here whether one answers. When it does, the cell runs the real command; when it
does not, the cell does the part that needs no engine or cluster (lint the Dockerfile,
validate the manifest, compile the pipeline, run it locally). A Docker command that cannot
run shows what it printed where it did run (a ``Tape``, recorded by ``make
test-containers``), marked as recorded; commands that no machine of the project's can
run (a cluster's) are written in the notebook's text. No output is made up.

The offline checks here are the ones the test suite applies to the whole tree.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from crypto_pipeline.errors import ConfigError, PipelineError


class CommandError(PipelineError):
    """A shown command ran and failed."""


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


def _tool_path(name: str) -> str | None:
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
            f"`docker run -d -p 127.0.0.1:{host.rsplit(':', 1)[-1]}:5000 --name registry "
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


def manifest_objects(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The objects a Kubernetes manifest file declares: kind, apiVersion, name, namespace."""
    import yaml

    return [
        {
            "kind": doc["kind"],
            "apiVersion": doc["apiVersion"],
            "name": doc["metadata"]["name"],
            "namespace": doc["metadata"].get("namespace", ""),
        }
        for doc in yaml.safe_load_all(Path(path).read_text())
        if doc
    ]


_SCANNER_COMMENT = re.compile(r"^\s*#.*checkov", re.IGNORECASE)
_SCANNER_KEY = re.compile(r"^(\s*)checkov\.io/skip\d*:")
_EMPTY_KEY = re.compile(r"^(\s*)annotations:\s*$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def without_scanner_notes(text: str) -> str:
    """A Dockerfile's or manifest's text as a learner reads it: no security-scanner notes.

    The repository keeps checkov's suppressions beside what they suppress, each with its
    reason (``# checkov:skip=…`` lines, ``checkov.io/skip…`` annotations); they are for
    the scanner, not the lesson. Left out here: those lines, a YAML key's folded text
    under them, comments naming the scanner, and an ``annotations:`` key left empty.
    """
    kept: list[str] = []
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if _SCANNER_COMMENT.match(line):
            continue
        if match := _SCANNER_KEY.match(line):
            while i < len(lines) and (
                not lines[i].strip() or _indent(lines[i]) > len(match.group(1))
            ):
                i += 1
            continue
        kept.append(line)
    return "".join(
        line
        for n, line in enumerate(kept)
        if not (
            (match := _EMPTY_KEY.match(line))
            and (n + 1 == len(kept) or _indent(kept[n + 1]) <= len(match.group(1)))
        )
    )


def show_file(path: str | os.PathLike[str]) -> None:
    """Prints a Dockerfile or manifest of the repository as a learner reads it.

    Scanner suppressions are left out (``without_scanner_notes``); the file keeps them.
    """
    path = Path(path)
    print(f"# {path.relative_to(project_root()) if path.is_absolute() else path}")
    print(without_scanner_notes(path.read_text()), end="")


_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _arguments(command: str | Sequence[str | os.PathLike[str]]) -> list[str]:
    """The program and its arguments; a string must already be what ``shlex.join`` shows."""
    if isinstance(command, str):
        try:
            arguments = shlex.split(command)
        except ValueError as exc:  # an unclosed quote
            raise ConfigError(
                f"`{command}` cannot be read as a command: {exc}",
                "close the quote, or pass the command as a list of arguments",
            ) from exc
        if arguments and "=" in arguments[0] and _VARIABLE.fullmatch(arguments[0].split("=")[0]):
            raise ConfigError(
                f"`{command}` starts with a variable assignment, which only a shell understands",
                "pass the variables as env={'NAME': 'value'} and the command without them",
            )
        if shlex.join(arguments) != command:
            raise ConfigError(
                f"`{command}` is shell text, not a plain command: without a shell it would run "
                f"as `{shlex.join(arguments)}`",
                "pass the command as a list of arguments (each value one item), variables as "
                "env={...}, and do pipes or redirections in Python; to only show shell text, "
                "use workshop.show",
            )
    else:
        arguments = [os.fspath(argument) for argument in command]
    if not arguments:
        raise ConfigError("no command given", "pass the program and its arguments as a list")
    return arguments


def _shown(arguments: Sequence[str], env: Mapping[str, str]) -> str:
    """The command as a learner can paste it into a POSIX shell."""
    return " ".join(
        [*(f"{name}={shlex.quote(value)}" for name, value in env.items()), shlex.join(arguments)]
    )


RECORD_TO = "POETS_RECORD_TO"
"""When this variable names a folder, ``sh`` records every command it runs with a tape there.

``make test-containers`` sets it (with ``POETS_RECORDED_BY`` and ``POETS_RECORD_TOOLS``,
which the recording keeps) while notebook 02 runs against its Docker engine."""

_VOLATILE = (  # what differs between two runs of the same command
    (
        re.compile(
            r"^ ---> (Using cache|Running in \S+)\n|^Removing intermediate container.*\n", re.M
        ),
        "",
    ),
    # a push's progress (how often a layer waited is timing) and whether the registry had it
    (re.compile(r"^\S+: (Preparing|Waiting)\n", re.M), ""),
    (re.compile(r": (Pushed|Layer already exists)$", re.M), ": <pushed>"),
    # a HEALTHCHECK's requests in nginx's log: as many as its interval allowed
    (re.compile(r'^.*"Wget[^\n]*\n?', re.M), ""),
    (re.compile(r"\b(sha256:)?[0-9a-f]{12,64}\b"), "<id>"),
    (
        re.compile(r"\d{4}[-/]\d{2}[-/]\d{2}([T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?)?"),
        "<date>",
    ),
    (re.compile(r"\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}"), "<date>"),
    (re.compile(r"\b\d{1,2}:\d{2}:\d{2}\b"), "<time>"),
    (re.compile(r"(About an? \w+|Less than a second|\d+ \w+)( ago)"), "<when>\\2"),
    (
        re.compile(r"\bUp (About an? \w+|Less than a second|\d+ \w+)( \(health: \w+\)| \(\w+\))?"),
        "Up <while>",
    ),
    (re.compile(r"\b\d+(\.\d+)?\s?[kMG]?B\b"), "<size>"),
    (re.compile(r"\b(\d{1,3}\.){3}\d{1,3}\b"), "<ip>"),
    (re.compile(r"[ \t]+"), " "),
)


def comparable(output: str) -> str:
    """A command's output with what changes from run to run (ids, times, sizes) masked."""
    for pattern, mask in _VOLATILE:
        output = pattern.sub(mask, output)
    return output.strip()


class Tape:
    """Real outputs of a notebook's commands, recorded where the tool ran, for where it does not.

    A notebook passes its tape to ``sh``. When a command cannot run here (no Docker
    engine), ``sh`` prints the output that the same command printed where it ran, and
    says who recorded it, when and with what; nothing is invented. With ``RECORD_TO``
    set, ``sh`` records what it runs. The file is JSON: ``recorded_by``, ``recorded_on``,
    ``tools`` and ``commands`` (each ``command``, ``output``, ``status``).
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.recording = (
            json.loads(self.path.read_text()) if self.path.is_file() else {"commands": []}
        )

    @property
    def label(self) -> str:
        r = self.recording
        return f"recorded on {r.get('recorded_on')} by {r.get('recorded_by')}, {r.get('tools')}"

    def find(self, shown: str) -> dict | None:
        """The recording of exactly this command, or None."""
        return next((c for c in self.recording["commands"] if c["command"] == shown), None)

    def record(self, shown: str, output: str, status: int) -> None:
        """Adds what a command printed to the recording in ``$POETS_RECORD_TO``."""
        target = Path(os.environ[RECORD_TO]) / self.path.name
        recording = (
            json.loads(target.read_text())
            if target.is_file()
            else {
                "recorded_by": os.environ.get("POETS_RECORDED_BY", "a notebook run"),
                "recorded_on": time.strftime("%Y-%m-%d"),
                "tools": os.environ.get("POETS_RECORD_TOOLS", ""),
                "commands": [],
            }
        )
        commands = [c for c in recording["commands"] if c["command"] != shown]
        recording["commands"] = [*commands, {"command": shown, "output": output, "status": status}]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(recording, indent=1, ensure_ascii=False) + "\n")


def show(text: str, why_not: str = "") -> None:
    """Shows shell text to run elsewhere (a pipe, ``$PWD``, a server that runs until stopped).

    Nothing runs here: for a command that may run, use ``sh``.
    """
    print(f"$ {text}")
    print(f"  (shown, not run here: {why_not})" if why_not else "  (shown, not run here)")


def sh(
    command: str | Sequence[str | os.PathLike[str]],
    *,
    run: bool = True,
    why_not: str = "",
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout_s: float = 900,
    check: bool = True,
    capture: bool = False,
    tape: Tape | None = None,
) -> str | None:
    """Shows a command and, when ``run`` is true, runs it (no shell) and prints its output.

    It is shown quoted as a POSIX shell needs it, so a learner can paste it into a terminal,
    and it runs as exactly those arguments: a value holding a space or a ``;`` stays one
    argument and starts nothing else.

    Args:
        command: The program and its arguments, e.g. ``["docker", "image", "ls", image]``.
            A string is accepted for a fixed command, and only when it is already quoted the
            way ``shlex.join`` shows it (no pipes, redirections, ``$`` or variables).
        run: Run it here; when false, only show it (with ``why_not``).
        why_not: Why it is not run here, e.g. the answer of ``docker_engine()``.
        env: Environment variables to set for it (shown before the command, as a shell would).
        cwd: Folder to run it in (default: the repository's root).
        timeout_s: Seconds before the command is stopped.
        check: Raise when the command fails.
        capture: Return its standard output too (a notebook cell shows nothing more).
        tape: Where this command's real output was recorded: shown when it cannot run
            here (with who recorded it, when and with what); recorded into when the
            ``POETS_RECORD_TO`` variable names a folder.

    Returns:
        With ``capture``, its standard output (None when it was only shown); else None.

    Raises:
        ConfigError: The command is shell text, empty, or names an invalid variable; this is
            checked whether or not it runs.
        CommandError: The command could not start, or failed (its output is quoted).
    """
    arguments = _arguments(command)
    env = dict(env or {})
    for name in env:
        if not _VARIABLE.fullmatch(name):
            raise ConfigError(
                f"{name!r} is not an environment variable name",
                "use letters, digits and underscores, not starting with a digit",
            )
    shown = _shown(arguments, env)
    if not run:
        recorded = tape.find(shown) if tape else None
        if recorded is None:
            show(shown, why_not)
        else:
            print(f"$ {shown}")
            if recorded["output"]:
                print(recorded["output"])
            said = "the output above" if recorded["output"] else "no output (it prints none)"
            print(f"  ({why_not or 'not run here'}: {said} {tape.label})")
        return None  # a recorded output is not this machine's: the cell takes its own path
    print(f"$ {shown}")
    try:
        result = subprocess.run(
            arguments,
            cwd=cwd or project_root(),
            env={**os.environ, **env} if env else None,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except OSError as exc:
        raise CommandError(
            f"`{shown}` could not start: {exc.filename or arguments[0]}: {exc.strerror}",
            "install the program, or fix the folder or path named, then rerun the cell",
        ) from exc
    output = (result.stdout + result.stderr).rstrip()
    if output:
        print(output)
    if tape and os.environ.get(RECORD_TO):
        tape.record(shown, output, result.returncode)
    if check and result.returncode != 0:
        raise CommandError(
            f"`{shown}` failed with exit status {result.returncode}",
            "read its output above; rerun the cell once the cause is fixed",
        )
    return result.stdout if capture else None


def lint_dockerfiles(*paths: str | os.PathLike[str]) -> list[str]:
    """Lints Dockerfiles with hadolint: its findings, one line each (empty: clean)."""
    hadolint = _tool_path("hadolint")
    if hadolint is None:
        raise ConfigError("hadolint is not installed", "run `make setup` (it installs hadolint)")
    result = subprocess.run(
        [hadolint, "--format", "json", *map(os.fspath, paths)], capture_output=True, text=True
    )
    if result.returncode not in (0, 1) or not result.stdout.strip().startswith("["):
        raise CommandError(f"hadolint failed: {result.stderr.strip()}", "check the paths given")
    return [
        f"{f['file']}:{f['line']} {f['code']} {f['level']}: {f['message']}"
        for f in json.loads(result.stdout)
    ]


def validate_manifests(*paths: str | os.PathLike[str]) -> list[str]:
    """Checks Kubernetes manifests against the API's schema, offline and strictly.

    Returns:
        One line per resource, e.g. ``deployment/nginx-server: valid``.

    Raises:
        CommandError: A resource does not match the schema (each problem is quoted).
    """
    validate = _tool_path("kubernetes-validate")
    if validate is None:
        raise ConfigError(
            "kubernetes-validate is not installed", "run `make setup` (it installs it)"
        )
    result = subprocess.run(
        [validate, "--strict", *map(os.fspath, paths)], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise CommandError(
            f"the manifests do not match the Kubernetes schema:\n{result.stdout}{result.stderr}",
            "fix the fields named above",
        )
    lines = []
    for line in result.stdout.splitlines():
        # INFO <file> passed for resource <kind>/<name> against version 1.37
        words = line.split()
        if "passed" in words:
            lines.append(f"{words[words.index('resource') + 1]}: valid")
    return lines
