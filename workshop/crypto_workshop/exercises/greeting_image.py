"""Where ``greet.sh`` ends up in the image a Dockerfile builds, and what the container starts.

Without an engine (the usual case in a workshop) reading must do what a build would
show, so notebook 02's check follows the Dockerfile as Docker runs it: where each COPY (or
ADD) puts ``greet.sh`` (into a folder, or as a file of another name; a relative destination
from WORKDIR; ``COPY . dest`` copies the whole context; ``--from`` an earlier stage), what
RUN does to it (cp, mv, install, ln, rm, chmod), and whether the command the container
starts (ENTRYPOINT and CMD, as Docker joins them) starts that very file: an absolute path,
a relative one from WORKDIR, a bare name found in PATH, or a shell that runs it
(``sh path``, ``sh -c "path"``).
"""

from __future__ import annotations

import copy
import fnmatch
import posixpath
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crypto_workshop import machine
from crypto_workshop.exercises.dockerfile import (
    Instruction,
    command_form,
    env_values,
    executable_after,
    from_image,
    getopt,
    instruction_words,
    shell_commands,
    split_flags,
)

SCRIPT = "greet.sh"


def context_dir() -> Path:
    """The build context: ``docker-intro/greeting`` (it holds ``greet.sh``)."""
    return machine.project_root() / "docker-intro" / "greeting"


DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""The PATH a container gets when the image sets none."""
BASE_DIRS = frozenset(
    ("/", "/bin", "/sbin", "/lib", "/etc", "/home", "/root", "/opt", "/srv", "/tmp", "/mnt")
    + ("/media", "/run", "/var", "/var/tmp", "/usr", "/usr/bin", "/usr/sbin", "/usr/lib")
    + ("/usr/share", "/usr/local", "/usr/local/bin", "/usr/local/sbin", "/usr/local/lib")
)
"""Folders every Linux base image has: a COPY to one of them, slash or not, goes into it."""
SHELLS = frozenset({"sh", "ash", "dash", "bash"})
_NO_BASH = ("alpine", "busybox")
"""Base images without bash (their sh is BusyBox's ash)."""
_GLOB = re.compile(r"[*?\[]")
NO_DESTINATION = "names no destination"
"""What a COPY with one word lacks (hadolint's DL1000 says it too)."""


@dataclass
class Stage:
    """What the check follows through one build stage: where greet.sh is, and the rest."""

    base: str = ""
    files: dict[str, bool] = field(default_factory=dict)
    """Where greet.sh is in the image, and whether it is executable there."""
    dirs: set[str] = field(default_factory=lambda: set(BASE_DIRS))
    workdir: str = "/"
    env: dict[str, str] = field(default_factory=dict)
    args: dict[str, str] = field(default_factory=dict)
    user: str = ""
    has_user: bool = False
    cmd: tuple[bool, Any] | None = None
    """The CMD: (exec form?, its words or its shell string)."""
    entrypoint: tuple[bool, Any] | None = None
    problems: list[str] = field(default_factory=list)
    bash: bool = False
    """Whether a RUN installs bash."""
    copied: bool = False
    """Whether a COPY put greet.sh in (a RUN may take it out again)."""


def _expand(text: str, stage: Stage) -> str:
    """``$NAME``, ``${NAME}`` and ``${NAME:-default}`` replaced as Docker does."""
    known = {"PATH": DEFAULT_PATH, **stage.args, **stage.env}  # the base image sets PATH

    def value(match: re.Match[str]) -> str:
        found = known.get(match["braced"] or match["bare"], "")
        return found or (match["default"] or "")

    return re.sub(r"\$\{(?P<braced>\w+)(?::-(?P<default>[^}]*))?\}|\$(?P<bare>\w+)", value, text)


def _absolute(path: str, workdir: str) -> str:
    """PATH in the image: a relative one from WORKDIR; ``.``, ``..`` and ``//`` resolved."""
    joined = posixpath.join(workdir, path)
    normal = posixpath.normpath(joined)
    return "/" + normal.lstrip("/") if normal not in ("/", "//") else "/"


def _parents(path: str) -> set[str]:
    parents, path = set(), posixpath.dirname(path)
    while path not in ("", "/"):
        parents.add(path)
        path = posixpath.dirname(path)
    return parents | {"/"}


def _context_files() -> list[str]:
    """The files of the build context, as paths relative to it."""
    root = context_dir()
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _copy(stage: Stage, instruction: Instruction, stages: dict[str, Stage]) -> None:
    """Where a COPY or ADD puts greet.sh (from the context, or from an earlier stage)."""
    flags, rest = split_flags(instruction.arguments)
    words = [_expand(w, stage) for w in instruction_words(rest)]
    if len(words) < 2:
        stage.problems.append(
            f"{instruction.keyword} on line {instruction.line} {NO_DESTINATION}: write "
            f"the file to copy, then where it goes ({instruction.keyword} {SCRIPT} /folder/)"
        )
        return
    *sources, dest = words
    target = _absolute(dest, stage.workdir)
    folder = dest.endswith("/") or dest in (".", "..") or target in stage.dirs or len(sources) > 1
    placed: dict[str, bool] = {}  # where greet.sh goes: whether it is executable there
    origin = flags.get("from")
    if origin is not None:  # from an earlier stage (an image's files are not known here)
        earlier = stages.get(origin.lower())
        for source in sources if earlier is not None else []:
            source = _absolute(source, "/")
            for where, executable in earlier.files.items():
                inside = _matches(where, source, recursive=True)
                if inside:
                    placed[posixpath.join(target, inside)] = executable
                elif inside == "":
                    name = posixpath.basename(where)
                    placed[posixpath.join(target, name) if folder else target] = executable
    else:
        files = _context_files()
        for source in sources:
            if "://" in source:  # ADD of a URL: not greet.sh from the context
                continue
            inside = posixpath.normpath(source.lstrip("/") or ".")
            if inside == ".." or inside.startswith("../"):
                stage.problems.append(
                    f"{instruction.keyword} {source}: that is outside the build context "
                    f"(docker-intro/greeting), which is all a build can copy from: name "
                    f"{SCRIPT} as it is in the context"
                )
                continue
            under = "" if inside == "." else inside + "/"
            if _GLOB.search(inside):
                matched = [f for f in files if fnmatch.fnmatchcase(f, inside)]
                into = folder or len(matched) > 1
                pairs = [(posixpath.basename(f), f, into) for f in matched]
            elif inside in files:
                pairs = [(posixpath.basename(inside), inside, folder)]
            else:  # a folder of the context (``.`` is all of it): its contents go into dest
                pairs = [(f[len(under) :], f, True) for f in files if f.startswith(under)]
            if not pairs:
                stage.problems.append(
                    f"{instruction.keyword} {source}: the build context (docker-intro/greeting) "
                    f"holds no {source}: name files as they are in the context, e.g. {SCRIPT}"
                )
            for name, found, into in pairs:
                if found == SCRIPT:  # executable in the context (git keeps its mode 0755)
                    placed[posixpath.join(target, name) if into else target] = True
    if folder:
        stage.dirs.add(target)
    stage.copied = stage.copied or bool(placed)
    for where, executable in placed.items():
        stage.files[where] = (
            executable_after(flags["chmod"], executable) if "chmod" in flags else executable
        )
        stage.dirs |= _parents(where)


def _matches(where: str, path: str, recursive: bool) -> str | None:
    """Where greet.sh sits relative to PATH (a file, a glob, or a folder): "" if it is PATH."""
    if where == path or (_GLOB.search(path) and fnmatch.fnmatchcase(where, path)):
        return ""
    if recursive and where.startswith(path.rstrip("/") + "/"):
        return posixpath.relpath(where, path)
    return None


def _run(stage: Stage, instruction: Instruction) -> None:
    """What a RUN does to greet.sh: cp, mv, install, ln, rm and chmod of it, mkdir."""
    _, rest = split_flags(instruction.arguments)
    words = instruction_words(rest) if rest.startswith("[") else None
    if words and len(words) >= 3 and posixpath.basename(words[0]) in SHELLS and words[1] == "-c":
        text = words[2]
    else:
        text = " ".join(shlex.quote(w) for w in words) if words else rest
    if re.search(r"\bapk\b.*\badd\b.*\bbash\b|\bapt-get\b.*\binstall\b.*\bbash\b", text):
        stage.bash = True
    for command in shell_commands(text):
        while command and (re.match(r"^\w+=", command[0]) or command[0] in ("sudo", "exec")):
            command = command[1:]
        if not command:
            continue
        name, rest_words = posixpath.basename(command[0]), command[1:]
        expanded = [_expand(w, stage) for w in rest_words]
        if name == "mkdir":
            _, made = getopt(expanded, "m")
            for folder in made:
                stage.dirs |= {_absolute(folder, stage.workdir)} | _parents(
                    _absolute(folder, stage.workdir)
                )
        elif name in ("cp", "mv", "install", "ln"):
            _moved(stage, name, *getopt(expanded, "mogtS" if name == "install" else "tS"))
        elif name == "rm":
            options, paths = getopt(expanded, "")
            recursive = bool({"r", "R", "recursive"} & options.keys())
            for path in paths:
                path = _absolute(path, stage.workdir)
                for where in list(stage.files):
                    if _matches(where, path, recursive) is not None:
                        del stage.files[where]
        elif name == "chmod":
            options, plain = getopt(expanded, "")
            if not plain:
                continue
            mode, paths = plain[0], plain[1:]
            for path in paths:
                path = _absolute(path, stage.workdir)
                for where, before in list(stage.files.items()):
                    if _matches(where, path, bool({"R", "recursive"} & options.keys())) is not None:
                        stage.files[where] = executable_after(mode, before)


def _moved(stage: Stage, name: str, options: dict[str, str], plain: list[str]) -> None:
    """Where cp, mv, install or ln put greet.sh (and where mv took it from)."""
    if name == "install" and "d" in options:
        stage.dirs |= {_absolute(p, stage.workdir) for p in plain}
        return
    into = options.get("t") or options.get("target-directory")
    if into:
        sources, dest, folder = plain, into, True
    elif name == "ln" and len(plain) == 1:
        sources, dest, folder = plain, ".", True
    elif len(plain) >= 2:
        sources, dest = plain[:-1], plain[-1]
        folder = dest.endswith("/") or len(sources) > 1
    else:
        return
    target = _absolute(dest, stage.workdir)
    folder = folder or target in stage.dirs
    recursive = name == "mv" or bool({"r", "R", "a", "recursive", "archive"} & options.keys())
    for source in sources:
        source = _absolute(source, stage.workdir)
        for where, executable in list(stage.files.items()):
            inside = _matches(where, source, recursive)
            if inside is None:
                continue
            if inside:  # a folder that holds it
                top = posixpath.join(target, posixpath.basename(source)) if folder else target
                new = posixpath.join(top, inside)
            else:
                new = posixpath.join(target, posixpath.basename(where)) if folder else target
            if name == "mv":
                del stage.files[where]
            if name == "install":
                executable = executable_after(options.get("m") or "0755", executable)
            stage.files[new] = executable
            stage.dirs |= _parents(new)


def follow(found: list[Instruction]) -> Stage:
    """Follows the Dockerfile through its stages: the final stage, as the check sees it."""
    stages: dict[str, Stage] = {}  # by name (FROM … AS name) and by number, from 0
    stage = Stage()
    problems: list[str] = []
    number = 0
    for instruction in found:
        keyword, arguments = instruction.keyword, instruction.arguments
        if keyword == "FROM":
            problems += stage.problems
            base = from_image(arguments)
            earlier = stages.get(base.lower())
            if earlier is not None:  # FROM an earlier stage: it goes on from there
                stage = copy.deepcopy(earlier)
                stage.problems = []
            else:
                stage = Stage(base=base, args=dict(stage.args))
            stages[str(number)] = stage
            number += 1
            words = arguments.split()
            if len(words) >= 2 and words[-2].lower() == "as":
                stages[words[-1].lower()] = stage
        elif keyword in ("COPY", "ADD"):
            _copy(stage, instruction, stages)
        elif keyword == "RUN":
            _run(stage, instruction)
        elif keyword == "WORKDIR":
            stage.workdir = _absolute(_expand(arguments, stage), stage.workdir)
            stage.dirs |= {stage.workdir} | _parents(stage.workdir)
        elif keyword == "ENV":
            stage.env.update({k: _expand(v, stage) for k, v in env_values([instruction]).items()})
        elif keyword == "ARG":
            name, _, value = arguments.partition("=")
            stage.args.setdefault(name.strip(), value.strip().strip('"'))
        elif keyword == "USER":
            stage.user, stage.has_user = arguments.strip(), True
        elif keyword == "CMD":
            stage.cmd = command_form(arguments)
        elif keyword == "ENTRYPOINT":
            stage.entrypoint = command_form(arguments)
    stage.problems = problems + stage.problems
    return stage


def _argv(form: tuple[bool, Any]) -> list[str]:
    exec_form, value = form
    return list(value) if exec_form else ["/bin/sh", "-c", value]


def startup(stage: Stage) -> tuple[list[str], str]:
    """The container's command (ENTRYPOINT then CMD, as Docker joins them), and its name."""
    if stage.entrypoint is not None:
        argv = _argv(stage.entrypoint)
        if stage.entrypoint[0] and stage.cmd is not None:
            argv += _argv(stage.cmd)
        return argv, "ENTRYPOINT"
    return (_argv(stage.cmd), "CMD") if stage.cmd is not None else ([], "CMD")


def _meant(stage: Stage, path: str) -> bool:
    """Whether PATH looks like it means the script (``*.sh``, or a name COPY gave it)."""
    name = posixpath.basename(path)
    return name.endswith(".sh") or name in {posixpath.basename(w) for w in stage.files}


def hint(stage: Stage, said: str) -> str:
    """How to start the script: its path where COPY put it, when it did."""
    where = sorted(stage.files)
    return f'{said} ["{where[0] if where else "/…/" + SCRIPT}"]'


def _elsewhere(stage: Stage, said: str, path: str, how: str) -> str:
    """The phrase for a command that starts PATH where no greet.sh is."""
    where = sorted(stage.files)
    if not where:
        return ""  # "greet.sh is not copied" says it
    named = " and ".join(where)
    fix = f"start the file where it is ({hint(stage, said)})"
    as_file = [w for w in where if path.startswith(w + "/")]
    if as_file:  # COPY greet.sh /app, then CMD ["/app/greet.sh"]
        fix = (
            f"a destination without / at its end names the file itself, so the script is the "
            f"file {as_file[0]}: write {as_file[0]}/ to copy it into that folder"
        )
    return f"{said} {how}, but COPY put {SCRIPT} at {named}: {fix}"


def starts(stage: Stage, argv: list[str], said: str, depth: int = 0) -> tuple[str, str]:
    """Where greet.sh is that ARGV starts, or "" and what is wrong (or "" when not copied)."""
    while argv and (posixpath.basename(argv[0]) == "env" or re.match(r"^\w+=", argv[0])):
        argv = argv[1:]
    if not argv:
        return "", f"{said} starts nothing: name the script's path in it, {hint(stage, said)}"
    program, name = argv[0], posixpath.basename(argv[0])
    shown = " ".join(argv)
    if name in SHELLS and depth < 3:
        if name == "bash" and stage.base.startswith(_NO_BASH) and not stage.bash:
            return "", (
                f"{said} runs bash, which {stage.base.split(':')[0]} does not have: run the "
                f"script with sh, or start it directly"
            )
        options, plain = getopt(argv[1:], "o")
        if "c" in options:  # sh -c 'greet.sh …': the string's first command
            commands = shell_commands(plain[0]) if plain else []
            first = commands[0] if commands else []
            while first and first[0] == "exec":
                first = first[1:]
            return starts(stage, first, said, depth + 1)
        if not plain:
            return "", f"{said} runs {program} alone, which starts nothing: start {SCRIPT}"
        script = _absolute(plain[0], stage.workdir)
        if script in stage.files:
            return script, ""
        if not stage.files and _meant(stage, plain[0]):
            return "", ""
        how = f"runs {program} {plain[0]}"
        if not plain[0].startswith("/"):
            how += f", which reads {script} (WORKDIR {stage.workdir})"
        return "", _elsewhere(stage, said, script, how) or (
            f"{said} runs {program} {plain[0]}, not {SCRIPT}"
        )
    if "/" in program:
        path = _absolute(program, stage.workdir)
        candidates = [path]
        how = f"starts {program}" + (
            "" if program.startswith("/") else f", which is {path} from WORKDIR {stage.workdir}"
        )
    else:
        search = stage.env.get("PATH", DEFAULT_PATH)
        candidates = [posixpath.join(d or ".", program) for d in search.split(":")]
        candidates = [_absolute(c, stage.workdir) for c in candidates]
        path = candidates[0]
        how = (
            f"names {program} without a folder, so it is looked up in PATH ({search}), "
            f"where there is no {program}"
        )
    started = [c for c in candidates if c in stage.files]
    if started:
        if not stage.files[started[0]]:
            return "", (
                f"{SCRIPT} at {started[0]} is not executable (its mode has no x bit), and "
                f"{said} starts it directly: keep it executable (--chmod=755, or RUN chmod "
                f"0755 {started[0]}) or run it with sh"
            )
        return started[0], ""
    if _meant(stage, program):
        return "", _elsewhere(stage, said, path, how)
    if any(_meant(stage, w) for w in argv[1:]):
        return "", (
            f"{said} runs {name} ({shown}), which does not start {SCRIPT} (it only gets it as "
            f"an argument): put the script's path first, {hint(stage, said)}"
        )
    return "", f"{said} runs {name} ({shown}), not {SCRIPT}: start the script, {hint(stage, said)}"
