"""Commands a notebook shows and runs the way a terminal does.

A notebook calls a program the way a terminal does (``docker = Program("docker",
needs=machine.docker_engine(), recorded=…)``, then ``docker("image ls")``): the command runs
when what it needs answers, and otherwise shows what it printed where it did run (a
``tape.Tape``), or says why it did not run. Commands that no machine of the project's can
run (a cluster's) are written in the notebook's text. No output is made up.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from crypto_pipeline.errors import ConfigError, PipelineError
from crypto_workshop.machine import Tool, project_root
from crypto_workshop.tape import RECORD_TO, Tape


class CommandError(PipelineError):
    """A shown command ran and failed."""


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
                "use commands.show",
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
