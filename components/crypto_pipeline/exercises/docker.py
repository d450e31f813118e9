"""Notebook 02's write-it exercise: a Dockerfile for ``docker-intro/greeting/greet.sh``.

The task: an image that starts from a pinned base, copies ``greet.sh`` in, sets
``GREETING_NAME=Kubeflow``, runs as a user that is not root and starts the script with
``CMD``. ``check_dockerfile`` lints the learner's Dockerfile with hadolint, reads its
instructions for each point of the task and, where a Docker engine answers and the base
image is there, builds it and runs the container: the script must greet Kubeflow as a
user other than root. It says what it did, or why it did not build.

Without an engine (the usual case in a workshop) reading must do what a build would
show, so the check follows the Dockerfile as Docker runs it: where each COPY (or ADD)
puts ``greet.sh`` (into a folder, or as a file of another name; a relative destination
from WORKDIR; ``COPY . dest`` copies the whole context; ``--from`` an earlier stage), what
RUN does to it (cp, mv, install, ln, rm, chmod), and whether the command the container
starts (ENTRYPOINT and CMD, as Docker joins them) starts that very file: an absolute path,
a relative one from WORKDIR, a bare name found in PATH, or a shell that runs it
(``sh path``, ``sh -c "path"``).

One answer: ``notebooks/solutions/02-docker/Dockerfile``.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import posixpath
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crypto_pipeline import workshop
from crypto_pipeline.exercises import Verdict, verdict

IMAGE = "kubeflow-for-poets/greeting:0.1.0"
"""The tag the check builds the learner's image as."""
NAME = "Kubeflow"
"""Whom the image must greet (its ``GREETING_NAME``)."""
SCRIPT = "greet.sh"
CONTAINER = "poets-greeting-check"
"""The name of the container the check runs (and removes)."""
_ROOT_USERS = {"0", "root"}


def context_dir() -> Path:
    """The build context: ``docker-intro/greeting`` (it holds ``greet.sh``)."""
    return workshop.project_root() / "docker-intro" / "greeting"


def default_workdir() -> Path:
    """Where the check writes the learner's Dockerfile: ``runs/notebooks/docker``."""
    return workshop.project_root() / "runs" / "notebooks" / "docker"


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: its keyword (upper case), its arguments, its first line."""

    keyword: str
    arguments: str
    line: int


def instructions(dockerfile: str) -> list[Instruction]:
    """The instructions of a Dockerfile: comments dropped, continued lines joined."""
    found: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, line in enumerate(dockerfile.splitlines(), 1):
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        keyword, _, arguments = " ".join(p for p in pending if p).partition(" ")
        found.append(Instruction(keyword.upper(), arguments.strip(), start))
        pending = []
    if pending:
        keyword, _, arguments = " ".join(p for p in pending if p).partition(" ")
        found.append(Instruction(keyword.upper(), arguments.strip(), start))
    return found


def _words(arguments: str) -> list[str]:
    """An instruction's arguments: the JSON (exec) form's list, else the words."""
    if arguments.startswith("["):
        try:
            words = json.loads(arguments)
        except json.JSONDecodeError:
            return arguments.split()
        if isinstance(words, list):
            return [str(w) for w in words]
    return arguments.split()


def _base(arguments: str) -> str:
    """The image a FROM names: ``FROM --platform=… IMAGE AS stage`` gives IMAGE."""
    words = [w for w in arguments.split() if not w.startswith("--")]
    return words[0] if words else ""


def _pinned(image: str) -> bool:
    """Whether an image name holds a tag other than ``latest``, or a digest."""
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest")


def _environment(found: list[Instruction]) -> dict[str, str]:
    """The variables the ENV instructions set (``ENV A=b C=d`` and the old ``ENV A b``)."""
    values: dict[str, str] = {}
    for instruction in found:
        if instruction.keyword != "ENV":
            continue
        try:
            words = shlex.split(instruction.arguments)
        except ValueError:
            continue  # an unclosed quote: hadolint names it
        if words and "=" not in words[0]:
            values[words[0]] = " ".join(words[1:])
            continue
        for word in words:
            name, _, value = word.partition("=")
            values[name] = value
    return values


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
_OPERATORS = frozenset({"&&", "||", ";", "|", "&", ";;", "\n"})
_GLOB = re.compile(r"[*?\[]")
_NO_DESTINATION = "names no destination"
"""What a COPY with one word lacks (hadolint's DL1000 says it too)."""


@dataclass
class _Stage:
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


def _expand(text: str, stage: _Stage) -> str:
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


def _flags(arguments: str) -> tuple[dict[str, str], str]:
    """An instruction's ``--name=value`` flags, and the rest of its arguments."""
    flags: dict[str, str] = {}
    rest = arguments.strip()
    while rest.startswith("--"):
        word, _, rest = rest.partition(" ")
        name, _, value = word[2:].partition("=")
        flags[name.lower()] = value
        rest = rest.strip()
    return flags, rest


def _executable_after(mode: str, before: bool) -> bool:
    """Whether a file is executable after ``chmod MODE`` (any x bit counts)."""
    if re.fullmatch(r"[0-7]{3,4}", mode):
        return bool(int(mode, 8) & 0o111)
    for clause in mode.split(","):
        match = re.fullmatch(r"([ugoa]*)([-+=])([rwxXst]*)", clause)
        if match is None:
            continue
        who, op, perms = match.groups()
        if op == "+" and "x" in perms:
            before = True
        elif op == "-" and "x" in perms and who in ("", "a", "ugo"):
            before = False
        elif op == "=":
            before = "x" in perms or (who not in ("", "a", "ugo") and before)
    return before


def _context_files() -> list[str]:
    """The files of the build context, as paths relative to it."""
    root = context_dir()
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _copy(stage: _Stage, instruction: Instruction, stages: dict[str, _Stage]) -> None:
    """Where a COPY or ADD puts greet.sh (from the context, or from an earlier stage)."""
    flags, rest = _flags(instruction.arguments)
    words = [_expand(w, stage) for w in _words(rest)]
    if len(words) < 2:
        stage.problems.append(
            f"{instruction.keyword} on line {instruction.line} {_NO_DESTINATION}: write "
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
            _executable_after(flags["chmod"], executable) if "chmod" in flags else executable
        )
        stage.dirs |= _parents(where)


def _getopt(words: list[str], takes_value: str) -> tuple[dict[str, str], list[str]]:
    """A command's options and its other words, as getopt reads them."""
    options: dict[str, str] = {}
    plain: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        if word == "--":
            plain += words[index + 1 :]
            break
        if word.startswith("--"):
            name, _, value = word[2:].partition("=")
            options[name] = value
        elif word.startswith("-") and len(word) > 1:
            for at, letter in enumerate(word[1:], 2):
                if letter in takes_value:
                    value = word[at:]
                    if not value and index + 1 < len(words):
                        index += 1
                        value = words[index]
                    options[letter] = value
                    break
                options[letter] = ""
        else:
            plain.append(word)
        index += 1
    return options, plain


def _matches(where: str, path: str, recursive: bool) -> str | None:
    """Where greet.sh sits relative to PATH (a file, a glob, or a folder): "" if it is PATH."""
    if where == path or (_GLOB.search(path) and fnmatch.fnmatchcase(where, path)):
        return ""
    if recursive and where.startswith(path.rstrip("/") + "/"):
        return posixpath.relpath(where, path)
    return None


def _shell_words(text: str) -> list[list[str]]:
    """A shell command line as its simple commands' words (``a && b; c`` gives 3)."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    try:
        for token in lexer:
            if token in _OPERATORS:
                commands.append([])
            else:
                commands[-1].append(token)
    except ValueError:
        return []
    return [c for c in commands if c]


def _run(stage: _Stage, instruction: Instruction) -> None:
    """What a RUN does to greet.sh: cp, mv, install, ln, rm and chmod of it, mkdir."""
    _, rest = _flags(instruction.arguments)
    words = _words(rest) if rest.startswith("[") else None
    if words and len(words) >= 3 and posixpath.basename(words[0]) in SHELLS and words[1] == "-c":
        text = words[2]
    else:
        text = " ".join(shlex.quote(w) for w in words) if words else rest
    if re.search(r"\bapk\b.*\badd\b.*\bbash\b|\bapt-get\b.*\binstall\b.*\bbash\b", text):
        stage.bash = True
    for command in _shell_words(text):
        while command and (re.match(r"^\w+=", command[0]) or command[0] in ("sudo", "exec")):
            command = command[1:]
        if not command:
            continue
        name, rest_words = posixpath.basename(command[0]), command[1:]
        expanded = [_expand(w, stage) for w in rest_words]
        if name == "mkdir":
            _, made = _getopt(expanded, "m")
            for folder in made:
                stage.dirs |= {_absolute(folder, stage.workdir)} | _parents(
                    _absolute(folder, stage.workdir)
                )
        elif name in ("cp", "mv", "install", "ln"):
            _moved(stage, name, *_getopt(expanded, "mogtS" if name == "install" else "tS"))
        elif name == "rm":
            options, paths = _getopt(expanded, "")
            recursive = bool({"r", "R", "recursive"} & options.keys())
            for path in paths:
                path = _absolute(path, stage.workdir)
                for where in list(stage.files):
                    if _matches(where, path, recursive) is not None:
                        del stage.files[where]
        elif name == "chmod":
            options, plain = _getopt(expanded, "")
            if not plain:
                continue
            mode, paths = plain[0], plain[1:]
            for path in paths:
                path = _absolute(path, stage.workdir)
                for where, before in list(stage.files.items()):
                    if _matches(where, path, bool({"R", "recursive"} & options.keys())) is not None:
                        stage.files[where] = _executable_after(mode, before)


def _moved(stage: _Stage, name: str, options: dict[str, str], plain: list[str]) -> None:
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
                executable = _executable_after(options.get("m") or "0755", executable)
            stage.files[new] = executable
            stage.dirs |= _parents(new)


def _command_form(arguments: str) -> tuple[bool, Any]:
    """A CMD's or ENTRYPOINT's form: (True, its words) in JSON, else (False, its text)."""
    if arguments.startswith("["):
        try:
            words = json.loads(arguments)
        except json.JSONDecodeError:
            words = None
        if isinstance(words, list) and all(isinstance(w, str) for w in words):
            return True, words
    return False, arguments  # Docker runs what is not a JSON list of strings with /bin/sh -c


def _follow(found: list[Instruction]) -> _Stage:
    """Follows the Dockerfile through its stages: the final stage, as the check sees it."""
    stages: dict[str, _Stage] = {}  # by name (FROM … AS name) and by number, from 0
    stage = _Stage()
    problems: list[str] = []
    number = 0
    for instruction in found:
        keyword, arguments = instruction.keyword, instruction.arguments
        if keyword == "FROM":
            problems += stage.problems
            base = _base(arguments)
            earlier = stages.get(base.lower())
            if earlier is not None:  # FROM an earlier stage: it goes on from there
                stage = copy.deepcopy(earlier)
                stage.problems = []
            else:
                stage = _Stage(base=base, args=dict(stage.args))
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
            stage.env.update({k: _expand(v, stage) for k, v in _environment([instruction]).items()})
        elif keyword == "ARG":
            name, _, value = arguments.partition("=")
            stage.args.setdefault(name.strip(), value.strip().strip('"'))
        elif keyword == "USER":
            stage.user, stage.has_user = arguments.strip(), True
        elif keyword == "CMD":
            stage.cmd = _command_form(arguments)
        elif keyword == "ENTRYPOINT":
            stage.entrypoint = _command_form(arguments)
    stage.problems = problems + stage.problems
    return stage


def _argv(form: tuple[bool, Any]) -> list[str]:
    exec_form, value = form
    return list(value) if exec_form else ["/bin/sh", "-c", value]


def _startup(stage: _Stage) -> tuple[list[str], str]:
    """The container's command (ENTRYPOINT then CMD, as Docker joins them), and its name."""
    if stage.entrypoint is not None:
        argv = _argv(stage.entrypoint)
        if stage.entrypoint[0] and stage.cmd is not None:
            argv += _argv(stage.cmd)
        return argv, "ENTRYPOINT"
    return (_argv(stage.cmd), "CMD") if stage.cmd is not None else ([], "CMD")


def _meant(stage: _Stage, path: str) -> bool:
    """Whether PATH looks like it means the script (``*.sh``, or a name COPY gave it)."""
    name = posixpath.basename(path)
    return name.endswith(".sh") or name in {posixpath.basename(w) for w in stage.files}


def _hint(stage: _Stage, said: str) -> str:
    """How to start the script: its path where COPY put it, when it did."""
    where = sorted(stage.files)
    return f'{said} ["{where[0] if where else "/…/" + SCRIPT}"]'


def _elsewhere(stage: _Stage, said: str, path: str, how: str) -> str:
    """The phrase for a command that starts PATH where no greet.sh is."""
    where = sorted(stage.files)
    if not where:
        return ""  # "greet.sh is not copied" says it
    named = " and ".join(where)
    fix = f"start the file where it is ({_hint(stage, said)})"
    as_file = [w for w in where if path.startswith(w + "/")]
    if as_file:  # COPY greet.sh /app, then CMD ["/app/greet.sh"]
        fix = (
            f"a destination without / at its end names the file itself, so the script is the "
            f"file {as_file[0]}: write {as_file[0]}/ to copy it into that folder"
        )
    return f"{said} {how}, but COPY put {SCRIPT} at {named}: {fix}"


def _starts(stage: _Stage, argv: list[str], said: str, depth: int = 0) -> tuple[str, str]:
    """Where greet.sh is that ARGV starts, or "" and what is wrong (or "" when not copied)."""
    while argv and (posixpath.basename(argv[0]) == "env" or re.match(r"^\w+=", argv[0])):
        argv = argv[1:]
    if not argv:
        return "", f"{said} starts nothing: name the script's path in it, {_hint(stage, said)}"
    program, name = argv[0], posixpath.basename(argv[0])
    shown = " ".join(argv)
    if name in SHELLS and depth < 3:
        if name == "bash" and stage.base.startswith(_NO_BASH) and not stage.bash:
            return "", (
                f"{said} runs bash, which {stage.base.split(':')[0]} does not have: run the "
                f"script with sh, or start it directly"
            )
        options, plain = _getopt(argv[1:], "o")
        if "c" in options:  # sh -c 'greet.sh …': the string's first command
            commands = _shell_words(plain[0]) if plain else []
            first = commands[0] if commands else []
            while first and first[0] == "exec":
                first = first[1:]
            return _starts(stage, first, said, depth + 1)
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
            f"an argument): put the script's path first, {_hint(stage, said)}"
        )
    return "", f"{said} runs {name} ({shown}), not {SCRIPT}: start the script, {_hint(stage, said)}"


def _task_points(found: list[Instruction], linted: set[str]) -> tuple[list[str], str, str, str]:
    """What the task asks that the instructions lack; the base image; the user; the start.

    ``linted``: the hadolint rules that fired, so the same fault is not named twice.
    """
    missing: list[str] = []
    stage = _follow(found)
    froms = [i for i in found if i.keyword == "FROM"]
    base = stage.base
    if not froms:
        missing.append("no FROM: start from a base image pinned to a release tag")
    elif not _pinned(base) and not linted & {"DL3006", "DL3007"}:
        missing.append(f"FROM {base} is not pinned: name a release tag, not latest")
    missing += [p for p in stage.problems if "DL1000" not in linted or _NO_DESTINATION not in p]
    if not stage.files and stage.copied:
        missing.append(
            f"a RUN takes {SCRIPT} out of the image again (rm or mv): keep it where COPY put it"
        )
    elif not stage.files:
        missing.append(f"{SCRIPT} is not copied into the image (COPY)")
    greeted = stage.env.get("GREETING_NAME")
    if greeted is None:
        missing.append(f"GREETING_NAME is not set to {NAME} (ENV)")
    elif greeted != NAME:
        missing.append(f"GREETING_NAME is {greeted!r}: the task asks for {NAME}")
    user = stage.user
    if not stage.has_user:
        missing.append("no USER: the container would run as root (name a user that is not root)")
    elif user.split(":")[0] in _ROOT_USERS:
        missing.append(f"USER {user} runs the container as root: name a user that is not root")
    argv, said = _startup(stage)
    form = stage.entrypoint if said == "ENTRYPOINT" else stage.cmd
    start = ""
    if not argv:
        missing.append(f"nothing starts {SCRIPT} when the container starts (CMD)")
    elif form is not None and not form[0] and form[1].startswith("["):
        missing.append(
            f"{said} {form[1]} is not a JSON list (each word in double quotes, "
            f"{_hint(stage, said)}): Docker runs it as a shell command line, which starts nothing"
        )
    else:
        started, problem = _starts(stage, argv, said)
        if problem:
            missing.append(problem)
        elif started:
            start = f"{said} {json.dumps(argv)} starts {SCRIPT} at {started}"
    return missing, base, user, start


_FINDING = re.compile(r"^.*:(?P<line>\d+) (?P<code>\S+) (?P<level>\w+): (?P<message>.*)$")


def _lint(path: Path) -> tuple[list[str], set[str]]:
    """The findings of hadolint as phrases, and the rules that fired."""
    phrases, codes = [], set()
    for finding in workshop.lint_dockerfiles(path):
        match = _FINDING.match(finding)
        if match is None:
            phrases.append(f"hadolint: {finding}")
            continue
        codes.add(match["code"])
        phrases.append(f"hadolint {match['code']} on line {match['line']}: {match['message']}")
    return phrases, codes


def _quiet(command: list[str], timeout_s: float) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired):
        return None


def _tail(text: str, lines: int = 3) -> str:
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " / ".join(kept[-lines:]) or "no output"


def _build_and_run(dockerfile: Path, base: str, engine: workshop.Tool) -> tuple[list[str], str]:
    """Builds and runs the image where it can: (what went wrong, what happened)."""
    if not engine:
        return [], f"not built here: {engine.missing} ({engine.detail})"
    if not workshop.docker_image_present(base):
        return [], (
            f"not built here: the base image {base} is not on this machine "
            f"(`docker pull {base}` where there is internet)"
        )
    context = context_dir()
    # --force-rm: the legacy builder keeps a failed step's container otherwise (BuildKit keeps none)
    built = _quiet(
        ["docker", "build", "-q", "--force-rm", "-t", IMAGE, "-f", str(dockerfile), str(context)],
        300,
    )
    if built is None or built.returncode != 0:
        said = _tail(built.stdout + built.stderr) if built else "it did not finish in 300 s"
        return [f"docker build failed: {said}"], ""
    ran = _quiet(["docker", "run", "--rm", "--name", CONTAINER, IMAGE], 60)
    if ran is None:
        _quiet(["docker", "rm", "-f", CONTAINER], 30)
        return [f"the container did not end within 60 s: CMD should run {SCRIPT}, which ends"], ""
    printed = (ran.stdout + ran.stderr).strip()
    match = re.fullmatch(r"Hello, (.*)! \(uid (\d+)\)", printed)
    if ran.returncode != 0 or match is None:
        return [
            f"the container printed {_tail(printed)!r} (exit status {ran.returncode}), "
            f"not the greeting: CMD should run {SCRIPT} where COPY put it"
        ], ""
    greeted, uid = match.groups()
    missing = []
    if greeted != NAME:
        missing.append(f"the container greeted {greeted!r}: set ENV GREETING_NAME={NAME}")
    if uid == "0":
        missing.append("the container ran as root (uid 0): set USER 65534:65534")
    return missing, f"built here as {IMAGE} and ran: it printed {printed!r}"


def check_dockerfile(
    dockerfile: object,
    *,
    workdir: str | os.PathLike[str] | None = None,
    engine: workshop.Tool | None = None,
) -> Verdict:
    """Checks a Dockerfile for ``docker-intro/greeting`` against the task of notebook 02.

    Lints it with hadolint, reads its instructions for each point of the task (following
    where COPY puts ``greet.sh`` and whether the CMD starts that file), then, when
    nothing is missing and a Docker engine answers with the base image present, builds it
    (``docker build -f`` with ``docker-intro/greeting`` as the context) and runs it: it must
    print ``Hello, Kubeflow! (uid N)`` with N not 0. The Dockerfile is written to
    ``workdir/Dockerfile`` (default ``runs/notebooks/docker``) so the learner can build it
    by hand.

    Args:
        dockerfile: The learner's Dockerfile, as text.
        workdir: Where to write it.
        engine: The Docker engine to build with (default: ``workshop.docker_engine()``).

    Returns:
        What is missing, each with its fix; or what the Dockerfile does, and whether it was
        built and run here (or why not).
    """
    if not isinstance(dockerfile, str):
        return verdict(
            [f"my_dockerfile should hold the Dockerfile as text, not {type(dockerfile).__name__}"],
            "",
        )
    target = Path(workdir) if workdir is not None else default_workdir()
    target.mkdir(parents=True, exist_ok=True)
    path = target / "Dockerfile"
    path.write_text(
        dockerfile if dockerfile.endswith("\n") or not dockerfile else dockerfile + "\n"
    )
    missing, linted = _lint(path)
    points, base, user, start = _task_points(instructions(dockerfile), linted)
    missing += points
    if missing:
        return verdict(missing, "")
    built_missing, built = _build_and_run(
        path, base, engine if engine is not None else workshop.docker_engine()
    )
    if built_missing:
        return verdict(built_missing, "")
    return verdict(
        [],
        f"hadolint finds nothing; it starts from {base}, sets GREETING_NAME={NAME}, runs as "
        f"user {user}, and its {start}; {built}",
    )
