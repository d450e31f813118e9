"""Notebook 02's write-it exercise: a Dockerfile for ``docker-intro/greeting/greet.sh``.

The task: an image that starts from a pinned base, copies ``greet.sh`` in, sets
``GREETING_NAME=Kubeflow``, runs as a user that is not root and starts the script with
``CMD``. ``check_dockerfile`` lints the learner's Dockerfile with hadolint, reads its
instructions for each point of the task and, where a Docker engine answers and the base
image is there, builds it and runs the container: the script must greet Kubeflow as a
user other than root. It says what it did, or why it did not build.

Without an engine (the usual case in a workshop) the check reads the Dockerfile as a
build would run it (``exercises.greeting_image``): where COPY puts ``greet.sh``, what RUN
does to it, and whether the command the container starts starts that very file.

One answer: ``notebooks/solutions/02-docker/Dockerfile``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from crypto_workshop import machine, offline
from crypto_workshop.exercises import Verdict, verdict
from crypto_workshop.exercises.dockerfile import Instruction, instructions, pinned
from crypto_workshop.exercises.greeting_image import (
    NO_DESTINATION,
    SCRIPT,
    context_dir,
    follow,
    hint,
    starts,
    startup,
)

IMAGE = "kubeflow-for-poets/greeting:0.1.0"
"""The tag the check builds the learner's image as."""
NAME = "Kubeflow"
"""Whom the image must greet (its ``GREETING_NAME``)."""
CONTAINER = "poets-greeting-check"
"""The name of the container the check runs (and removes)."""
_ROOT_USERS = {"0", "root"}


def default_workdir() -> Path:
    """Where the check writes the learner's Dockerfile: ``runs/notebooks/docker``."""
    return machine.project_root() / "runs" / "notebooks" / "docker"


def _task_points(found: list[Instruction], linted: set[str]) -> tuple[list[str], str, str, str]:
    """What the task asks that the instructions lack; the base image; the user; the start.

    ``linted``: the hadolint rules that fired, so the same fault is not named twice.
    """
    missing: list[str] = []
    stage = follow(found)
    froms = [i for i in found if i.keyword == "FROM"]
    base = stage.base
    if not froms:
        missing.append("no FROM: start from a base image pinned to a release tag")
    elif not pinned(base) and not linted & {"DL3006", "DL3007"}:
        missing.append(f"FROM {base} is not pinned: name a release tag, not latest")
    missing += [p for p in stage.problems if "DL1000" not in linted or NO_DESTINATION not in p]
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
    argv, said = startup(stage)
    form = stage.entrypoint if said == "ENTRYPOINT" else stage.cmd
    start = ""
    if not argv:
        missing.append(f"nothing starts {SCRIPT} when the container starts (CMD)")
    elif form is not None and not form[0] and form[1].startswith("["):
        missing.append(
            f"{said} {form[1]} is not a JSON list (each word in double quotes, "
            f"{hint(stage, said)}): Docker runs it as a shell command line, which starts nothing"
        )
    else:
        started, problem = starts(stage, argv, said)
        if problem:
            missing.append(problem)
        elif started:
            start = f"{said} {json.dumps(argv)} starts {SCRIPT} at {started}"
    return missing, base, user, start


_FINDING = re.compile(r"^.*:(?P<line>\d+) (?P<code>\S+) (?P<level>\w+): (?P<message>.*)$")


def _lint(path: Path) -> tuple[list[str], set[str]]:
    """The findings of hadolint as phrases, and the rules that fired."""
    phrases, codes = [], set()
    for finding in offline.lint_dockerfiles(path):
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


def _build_and_run(dockerfile: Path, base: str, engine: machine.Tool) -> tuple[list[str], str]:
    """Builds and runs the image where it can: (what went wrong, what happened)."""
    if not engine:
        return [], f"not built here: {engine.missing} ({engine.detail})"
    if not machine.docker_image_present(base):
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
    engine: machine.Tool | None = None,
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
        engine: The Docker engine to build with (default: ``machine.docker_engine()``).

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
        path, base, engine if engine is not None else machine.docker_engine()
    )
    if built_missing:
        return verdict(built_missing, "")
    return verdict(
        [],
        f"hadolint finds nothing; it starts from {base}, sets GREETING_NAME={NAME}, runs as "
        f"user {user}, and its {start}; {built}",
    )
