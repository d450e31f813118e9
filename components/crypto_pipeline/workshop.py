"""What the notebooks use to meet the machine they run on.

A notebook cell that needs a Docker engine, a Kubernetes cluster or a Kubeflow Pipelines
host asks here whether one answers. When it does, the cell runs the real command; when it
does not, the cell does the part that needs no engine or cluster (lint the Dockerfile,
validate the manifest, compile the pipeline, run it locally). A notebook calls a program
the way a terminal does (``docker = Program("docker", needs=docker_engine(), recorded=…)``,
then ``docker("image ls")``); a Docker command that cannot run shows what it printed where
it did run (a ``Tape``, recorded by ``make test-containers``), labelled before the output
with the date, the engine and "not this machine"; commands that no machine of the
project's can run (a cluster's) are written in the notebook's text. No output is made up.

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


_SKIP_COMMENT = re.compile(r"^\s*#\s*checkov:skip", re.IGNORECASE)


def scanner_notes_left_out(text: str) -> str:
    """What ``without_scanner_notes`` leaves out of ``text``, in one comment line ('' if none).

    It counts the suppressions (``# checkov:skip=…`` lines, ``checkov.io/skip…`` keys), so
    that a learner knows the file has more than they read, and what for.
    """
    lines = text.splitlines()
    comments = sum(1 for line in lines if _SKIP_COMMENT.match(line))
    keys = sum(1 for line in lines if _SCANNER_KEY.match(line))
    parts = [
        f"{n} {what}{'s' if n > 1 else ''}"
        for n, what in ((comments, "'# checkov:skip' line"), (keys, "'checkov.io/skip' annotation"))
        if n
    ]
    if not parts:
        return ""
    their = "its reason" if comments + keys == 1 else "their reasons"
    return (
        f"# (left out here: {' and '.join(parts)}, kept in the file with {their} "
        "for the security scanner checkov)"
    )


def show_file(path: str | os.PathLike[str]) -> None:
    """Prints a Dockerfile or manifest of the repository as a learner reads it.

    Scanner suppressions are left out (``without_scanner_notes``), and a line under the
    file's name says how many: the file keeps them.
    """
    path = Path(path)
    text = path.read_text()
    print(f"# {path.relative_to(project_root()) if path.is_absolute() else path}")
    if note := scanner_notes_left_out(text):
        print(note)
    print(without_scanner_notes(text), end="")


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
"""When this variable names a folder, a command that runs with a tape is recorded there.

``make test-containers`` sets it (with ``POETS_RECORDED_BY``, ``POETS_RECORD_TOOLS`` and
``POETS_RECORD_NOTE``, which the recording keeps) while notebook 02 runs against its Docker
engine."""

_VOLATILE = (  # what differs between two runs of the same command
    # the legacy builder's cache notes
    (
        re.compile(
            r"^ ---> (Using cache|Running in \S+)\n|^Removing intermediate container.*\n", re.M
        ),
        "",
    ),
    # BuildKit: a step's own output (timed), whether it ran or came from the cache, and timings
    (re.compile(r"^#\d+ \d+\.\d+ .*\n", re.M), ""),
    (re.compile(r"^(#\d+) (CACHED|DONE \d+\.\d+s)$", re.M), r"\1 <done>"),
    (re.compile(r" \d+\.\d+s done$", re.M), " done"),
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
    (re.compile(r"\bcurl/[\d.]+"), "curl/<version>"),
    (re.compile(r"[ \t]+"), " "),
)


_BUILDKIT_STEP = re.compile(r"^#\d+ ", re.M)


def comparable(output: str) -> str:
    """A command's output with what changes from run to run (ids, times, sizes) masked.

    BuildKit's progress (``#1 [internal] load …``) numbers its steps in the order they
    start, and prints them in the order they finish, neither of which two runs share: its
    lines are compared without the numbers, as a sorted set.
    """
    for pattern, mask in _VOLATILE:
        output = pattern.sub(mask, output)
    if _BUILDKIT_STEP.match(output):  # the first step to finish, whichever it is
        lines = set(_BUILDKIT_STEP.sub("#N ", output).splitlines()) - {""}
        # a status printed while it ran, then again once done (`writing image …`): once
        output = "\n".join(sorted(line for line in lines if f"{line} done" not in lines))
    return output.strip()


class Tape:
    """Real outputs of a notebook's commands, recorded where the tool ran, for where it does not.

    A ``Program`` (or ``sh``) that cannot run a command here prints the output that the
    same command printed where it ran, under a label that says when, with what, and that it
    was not this machine; nothing is invented. With ``RECORD_TO`` set, what runs is
    recorded. The file is JSON: ``recorded_by``, ``recorded_on``, ``tools`` (e.g. ``Docker
    Engine 20.10.24+dfsg1 (BuildKit)``), ``note`` (optional: what else differed there) and
    ``commands`` (each ``command``, ``output``, ``status``).
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.recording = (
            json.loads(self.path.read_text()) if self.path.is_file() else {"commands": []}
        )

    @property
    def label(self) -> str:
        """E.g. ``recorded on 2026-12-05, Docker Engine 28.0.1 (BuildKit), not this machine``."""
        r = self.recording
        return f"recorded on {r.get('recorded_on')}, {r.get('tools')}, not this machine"

    def find(self, shown: str) -> dict | None:
        """The recording of exactly this command, or None."""
        return next((c for c in self.recording["commands"] if c["command"] == shown), None)

    def replay(self, shown: str, why_not: str = "") -> dict | None:
        """Prints the recorded output of ``shown`` under its label; None when it was not recorded.

        The label comes first, so nobody reads the output as this machine's: ``[recorded
        on DATE, TOOLS, not this machine: WHY NOT HERE]``, then ``$ command``, then what it
        printed there (nothing, when it printed nothing).
        """
        recorded = self.find(shown)
        if recorded is None:
            return None
        print(f"[{self.label}{f': {why_not}' if why_not else ''}]")
        print(f"$ {shown}")
        if recorded["output"]:
            print(recorded["output"])
        return recorded

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
                **({"note": note} if (note := os.environ.get("POETS_RECORD_NOTE")) else {}),
                "commands": [],
            }
        )
        commands = [c for c in recording["commands"] if c["command"] != shown]
        recording["commands"] = [*commands, {"command": shown, "output": output, "status": status}]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(recording, indent=1, ensure_ascii=False) + "\n")


def show(text: str, why_not: str = "") -> None:
    """Shows shell text to run elsewhere (a pipe, ``$PWD``, a server that runs until stopped).

    Nothing runs here: for a command that may run, use ``sh`` or a ``Program``.
    """
    print(f"$ {text}")
    print(f"  (shown, not run here: {why_not})" if why_not else "  (shown, not run here)")


def _environment(env: Mapping[str, str] | None) -> dict[str, str]:
    env = dict(env or {})
    for name in env:
        if not _VARIABLE.fullmatch(name):
            raise ConfigError(
                f"{name!r} is not an environment variable name",
                "use letters, digits and underscores, not starting with a digit",
            )
    return env


def _run(
    arguments: Sequence[str],
    shown: str,
    env: Mapping[str, str],
    cwd: str | os.PathLike[str] | None,
    timeout_s: float,
) -> subprocess.CompletedProcess:
    """Runs the command (no shell) and prints what it printed, standard error included."""
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
    return result


def _failed(shown: str, status: int) -> CommandError:
    return CommandError(
        f"`{shown}` failed with exit status {status}",
        "read its output above; rerun the cell once the cause is fixed",
    )


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
    argument and starts nothing else. A notebook reads better with a ``Program``
    (``docker("image ls")``), which calls this same machinery.

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
        tape: Where this command's real output was recorded: shown, labelled, when it
            cannot run here; recorded into when the ``POETS_RECORD_TO`` variable names a
            folder.

    Returns:
        With ``capture``, its standard output (None when it was only shown); else None.

    Raises:
        ConfigError: The command is shell text, empty, or names an invalid variable; this is
            checked whether or not it runs.
        CommandError: The command could not start, or failed (its output is quoted).
    """
    arguments = _arguments(command)
    env = _environment(env)
    shown = _shown(arguments, env)
    if not run:
        if tape is None or tape.replay(shown, why_not) is None:
            show(shown, why_not)
        return None  # a recorded output is not this machine's: the cell takes its own path
    result = _run(arguments, shown, env, cwd, timeout_s)
    if tape and os.environ.get(RECORD_TO):
        tape.record(shown, (result.stdout + result.stderr).rstrip(), result.returncode)
    if check and result.returncode != 0:
        raise _failed(shown, result.returncode)
    return result.stdout if capture else None


@dataclass(frozen=True)
class Ran:
    """One command a ``Program`` showed, and what it printed."""

    command: str
    """As shown (and pasteable): ``docker image ls``."""
    where: str
    """``here`` (it ran on this machine), ``recorded`` (a replay of where it ran), or
    ``shown`` (it could not run here and was never recorded)."""
    output: str = ""
    """Standard output and standard error, as printed."""
    stdout: str = ""
    """Standard output alone (empty unless it ran here)."""
    status: int | None = None

    @property
    def here(self) -> bool:
        return self.where == "here"


class Program:
    """A command-line program that a notebook calls the way a terminal does.

    ``docker = Program("docker", needs=docker_engine(), recorded=path)`` in a setup cell,
    then ``docker("build -t kubeflow-for-poets/hello-world:0.1.0 docker-intro/hello-world")``
    in a learner's cell: the cell shows ``$ docker build …`` and what it printed. It runs
    here when what it ``needs`` answers (no shell: exactly the arguments shown, quoted as
    ``shlex.join`` quotes them, so the line pastes into a terminal); otherwise it shows
    what the same command printed where it ran (``recorded``), labelled as recorded on
    another machine, or, never recorded, says why it did not run. A failing command raises
    ``CommandError``. Each call is kept in ``runs`` (``last``) for a notebook's checks.
    """

    def __init__(
        self,
        name: str,
        *,
        needs: Tool | None = None,
        recorded: str | os.PathLike[str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        timeout_s: float = 900,
    ):
        self.name = name
        self.needs = needs
        self.tape = Tape(recorded) if recorded else None
        self.cwd = cwd
        self.timeout_s = timeout_s
        self.runs: list[Ran] = []

    def __repr__(self) -> str:
        needs = f", needs {self.needs}" if self.needs is not None else ""
        return f"<program {self.name}{needs}>"

    @property
    def last(self) -> Ran | None:
        """The last command called, or None."""
        return self.runs[-1] if self.runs else None

    def ran(self, arguments: str) -> Ran | None:
        """The last call of ``NAME arguments`` (e.g. ``"exec poets-nginx id"``), or None.

        Variables set for it (``env``) do not matter: the command is found without them.
        """
        shown = shlex.join(_arguments(f"{shlex.quote(self.name)} {arguments}".rstrip()))
        return next(
            (
                r
                for r in reversed(self.runs)
                if r.command == shown or r.command.endswith(f" {shown}")
            ),
            None,
        )

    def __call__(
        self,
        arguments: str | Sequence[str | os.PathLike[str]] = (),
        *,
        needs: Tool | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        timeout_s: float | None = None,
    ) -> None:
        """Shows ``NAME arguments`` and runs it, or replays its recording, or says why not.

        Args:
            arguments: What follows the program's name, as typed in a terminal
                (``"image ls"``; quoted the way ``shlex.join`` quotes it), or a list of
                arguments (each one argument, whatever it holds).
            needs: What this command needs besides the program's own (a registry, an image).
            env: Environment variables for it, shown before it as a shell would.
            check: Raise ``CommandError`` when it fails here.
            timeout_s: Seconds before it is stopped (default: the program's).

        Raises:
            ConfigError: The arguments are shell text (a pipe, ``$``, a redirection) or an
                environment variable's name is invalid; checked whether or not it runs.
            CommandError: It could not start, or failed (with ``check``).
        """
        if isinstance(arguments, str):
            command: str | list[str] = f"{shlex.quote(self.name)} {arguments}".rstrip()
        else:
            command = [self.name, *map(os.fspath, arguments)]
        words = _arguments(command)
        env = _environment(env)
        shown = _shown(words, env)
        blocked = next((t for t in (self.needs, needs) if t is not None and not t), None)
        if blocked is not None:
            why_not = _why_not(blocked)
            recorded = self.tape.replay(shown, why_not) if self.tape else None
            if recorded is None:
                show(shown, why_not)
                self.runs.append(Ran(shown, "shown"))
            else:
                self.runs.append(Ran(shown, "recorded", recorded["output"], "", recorded["status"]))
            return
        result = _run(words, shown, env, self.cwd, timeout_s or self.timeout_s)
        output = (result.stdout + result.stderr).rstrip()
        self.runs.append(Ran(shown, "here", output, result.stdout, result.returncode))
        if self.tape and os.environ.get(RECORD_TO):
            self.tape.record(shown, output, result.returncode)
        if check and result.returncode != 0:
            raise _failed(shown, result.returncode)


def _why_not(tool: Tool) -> str:
    """Why a command that needs ``tool`` did not run: ``no Docker engine here``, or its probe."""
    return tool.missing if tool.name == "Docker engine" else f"{tool.name}: {tool.detail}"


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
