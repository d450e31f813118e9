"""Notebook 02's exercise: a Dockerfile for docker-intro/greeting, checked for real.

The check passes on the solution, names what is missing on the empty answer, catches the
usual wrong answers, builds and runs the image where a Docker engine answers (tested here
against the real engine when one runs), and says why it did not build where none does.
The notebook holds the empty answer and its verdict, never the solution; every command it
shows pastes into bash and zsh.
"""

import stat
import subprocess
from pathlib import Path

import nbformat
import pytest

from crypto_workshop import machine
from crypto_workshop.exercises import docker as exercise
from crypto_workshop.exercises.dockerfile import instructions

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "02-docker.ipynb"
SOLUTION = ROOT / "notebooks" / "solutions" / "02-docker" / "Dockerfile"
NO_ENGINE = machine.Tool("Docker engine", False, "the docker command is not installed")


def check(dockerfile, tmp_path, engine=NO_ENGINE):
    return exercise.check_dockerfile(dockerfile, workdir=tmp_path, engine=engine)


def solution():
    return SOLUTION.read_text()


def test_the_solution_is_right_and_says_why_it_was_not_built_without_an_engine(tmp_path):
    verdict = check(solution(), tmp_path)
    assert verdict.ok, verdict
    assert str(verdict).startswith("Right: hadolint finds nothing; it starts from alpine:3.22")
    assert "runs as user 65534:65534" in str(verdict)
    assert 'its CMD ["/usr/local/bin/greet.sh"] starts greet.sh at /usr/local/bin/greet.sh' in str(
        verdict
    )
    assert str(verdict).endswith(
        "not built here: no Docker engine here (the docker command is not installed)"
    )
    assert (tmp_path / "Dockerfile").read_text() == solution()


def test_the_empty_answer_names_every_point_of_the_task(tmp_path):
    for empty in ("", "\n", '"""\n"""'.strip('"')):
        verdict = check(empty, tmp_path)
        assert not verdict.ok
        text = str(verdict)
        assert text.startswith("Not yet: no FROM")
        for point in ("greet.sh is not copied", "GREETING_NAME is not set", "no USER", "CMD"):
            assert point in text, text
        assert "alpine:3.22" not in text and "65534" not in text, "the verdict gives it away"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (("FROM alpine:3.22", "FROM alpine:latest"), "hadolint DL3007 on line 7"),
        (("FROM alpine:3.22", "FROM alpine"), "hadolint DL3006"),
        (("USER 65534:65534", "USER root"), "USER root runs the container as root"),
        (("USER 65534:65534", "USER 0:0"), "USER 0:0 runs the container as root"),
        (("USER 65534:65534\n", ""), "no USER: the container would run as root"),
        (("GREETING_NAME=Kubeflow", "GREETING_NAME=Poets"), "GREETING_NAME is 'Poets'"),
        (('CMD ["/usr/local/bin/greet.sh"]', "CMD /usr/local/bin/greet.sh"), "DL3025"),
        (('CMD ["/usr/local/bin/greet.sh"]\n', ""), "nothing starts greet.sh"),
        (("COPY greet.sh", "COPY date-script.sh"), "greet.sh is not copied"),
        (("COPY greet.sh /usr/local/bin/greet.sh", "COPY greet.sh"), "hadolint DL1000"),
    ],
    ids=lambda value: value if isinstance(value, str) else value[1][:24],
)
def test_a_typical_wrong_answer_is_caught_and_named(change, named, tmp_path):
    wrong = solution().replace(*change)
    assert wrong != solution()
    verdict = check(wrong, tmp_path)
    assert not verdict.ok and named in str(verdict), verdict


HEAD = "FROM alpine:3.22\nENV GREETING_NAME=Kubeflow\nUSER 65534:65534\n"
"""The task's other points, right: each answer below differs in where COPY puts the
script and what starts it."""


@pytest.mark.parametrize(
    ("copy_and_start", "named"),
    [
        (  # the reviewer's first: copied to one folder, started from another
            'COPY greet.sh /opt/\nCMD ["/usr/local/bin/greet.sh"]',
            "CMD starts /usr/local/bin/greet.sh, but COPY put greet.sh at /opt/greet.sh: "
            'start the file where it is (CMD ["/opt/greet.sh"])',
        ),
        (  # the reviewer's second: the whole context copied, and a command that only names it
            'COPY . /app/\nCMD ["echo", "greet.sh"]',
            "CMD runs echo (echo greet.sh), which does not start greet.sh (it only gets it as an "
            'argument): put the script\'s path first, CMD ["/app/greet.sh"]',
        ),
        (
            'COPY greet.sh /opt/\nCMD ["cat", "/opt/greet.sh"]',
            "CMD runs cat (cat /opt/greet.sh), which does not start greet.sh",
        ),
        (
            'COPY greet.sh /opt/\nCMD ["sleep", "60"]',
            'CMD runs sleep (sleep 60), not greet.sh: start the script, CMD ["/opt/greet.sh"]',
        ),
        (  # no slash at the end and no such folder: /app is the script itself
            'COPY greet.sh /app\nCMD ["/app/greet.sh"]',
            "a destination without / at its end names the file itself, so the script is the "
            "file /app: write /app/ to copy it into that folder",
        ),
        (  # a relative path is read from WORKDIR, here still /
            'COPY greet.sh /app/\nCMD ["./greet.sh"]',
            "CMD starts ./greet.sh, which is /greet.sh from WORKDIR /, but COPY put greet.sh at "
            "/app/greet.sh",
        ),
        (  # a WORKDIR set after the CMD's file was copied elsewhere
            'COPY greet.sh /opt/\nWORKDIR /app\nCMD ["sh", "greet.sh"]',
            "CMD runs sh greet.sh, which reads /app/greet.sh (WORKDIR /app), but COPY put "
            "greet.sh at /opt/greet.sh",
        ),
        (  # a name without a folder is looked up in PATH, not in WORKDIR
            'WORKDIR /app\nCOPY greet.sh .\nCMD ["greet.sh"]',
            "CMD names greet.sh without a folder, so it is looked up in PATH "
            "(/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin), where there is no "
            "greet.sh, but COPY put greet.sh at /app/greet.sh",
        ),
        (  # paths in COPY are relative to the build context, not to the repository
            'COPY docker-intro/greeting/greet.sh /opt/\nCMD ["/opt/greet.sh"]',
            "COPY docker-intro/greeting/greet.sh: the build context (docker-intro/greeting) "
            "holds no docker-intro/greeting/greet.sh",
        ),
        (
            'COPY ../greeting/greet.sh /opt/\nCMD ["/opt/greet.sh"]',
            "COPY ../greeting/greet.sh: that is outside the build context",
        ),
        (
            'COPY --chmod=644 greet.sh /opt/\nCMD ["/opt/greet.sh"]',
            "greet.sh at /opt/greet.sh is not executable (its mode has no x bit), and CMD "
            "starts it directly",
        ),
        (
            'COPY greet.sh /opt/\nRUN chmod a-x /opt/greet.sh\nCMD ["/opt/greet.sh"]',
            "greet.sh at /opt/greet.sh is not executable",
        ),
        (
            'COPY greet.sh /opt/\nRUN rm /opt/greet.sh\nCMD ["/opt/greet.sh"]',
            "a RUN takes greet.sh out of the image again (rm or mv)",
        ),
        (
            'COPY greet.sh /opt/\nCMD ["bash", "/opt/greet.sh"]',
            "CMD runs bash, which alpine does not have: run the script with sh",
        ),
        (
            "COPY greet.sh /opt/\nCMD ['/opt/greet.sh']",
            "CMD ['/opt/greet.sh'] is not a JSON list (each word in double quotes, "
            'CMD ["/opt/greet.sh"]): Docker runs it as a shell command line, which starts nothing',
        ),
        (
            'COPY greet.sh /opt/\nENTRYPOINT ["/usr/local/bin/greet.sh"]',
            "ENTRYPOINT starts /usr/local/bin/greet.sh, but COPY put greet.sh at /opt/greet.sh",
        ),
        (
            'COPY greet.sh /opt/\nCMD ["sh", "-c", "exec /usr/bin/greet.sh"]',
            "CMD starts /usr/bin/greet.sh, but COPY put greet.sh at /opt/greet.sh",
        ),
    ],
    ids=[
        "copied to /opt, started from /usr/local/bin",
        "the whole context, and echo",
        "cat of the script",
        "another program",
        "copied as the file /app",
        "relative to WORKDIR /",
        "sh, relative to another WORKDIR",
        "a bare name outside PATH",
        "a path from the repository",
        "a path outside the context",
        "--chmod=644",
        "chmod a-x",
        "removed again",
        "bash on alpine",
        "single quotes",
        "ENTRYPOINT elsewhere",
        "sh -c elsewhere",
    ],
)
def test_a_cmd_that_does_not_start_the_file_copy_put_in_is_caught_without_an_engine(
    copy_and_start, named, tmp_path
):
    """The check follows COPY (folder or file, WORKDIR, the whole context) and the CMD."""
    verdict = check(HEAD + copy_and_start + "\n", tmp_path)
    assert not verdict.ok, verdict
    assert named in str(verdict), verdict
    assert "greet.sh is not copied" not in str(verdict) or "COPY" in named, verdict


@pytest.mark.parametrize(
    ("copy_and_start", "where"),
    [
        ('COPY greet.sh /usr/local/bin/\nCMD ["greet.sh"]', "/usr/local/bin/greet.sh"),
        (
            'COPY greet.sh /usr/local/bin\nCMD ["/usr/local/bin/greet.sh"]',
            "/usr/local/bin/greet.sh",
        ),
        ('COPY greet.sh /usr/local/bin/greet\nCMD ["greet"]', "/usr/local/bin/greet"),
        ('COPY greet.sh /app\nCMD ["/app"]', "/app"),
        ('COPY . /app\nCMD ["/app/greet.sh"]', "/app/greet.sh"),
        ('WORKDIR /app\nCOPY . .\nCMD ["./greet.sh"]', "/app/greet.sh"),
        ('WORKDIR /app\nCOPY greet.sh bin/\nCMD ["bin/greet.sh"]', "/app/bin/greet.sh"),
        ('WORKDIR /opt\nCOPY ./greet.sh ./\nCMD ["sh", "greet.sh"]', "/opt/greet.sh"),
        ('COPY ["greet.sh", "/opt/"]\nCMD ["/bin/sh", "/opt/greet.sh"]', "/opt/greet.sh"),
        ('COPY *.sh /opt/\nCMD ["/bin/sh", "-c", "exec /opt/greet.sh"]', "/opt/greet.sh"),
        ('COPY --chmod=644 greet.sh /opt/\nCMD ["sh", "/opt/greet.sh"]', "/opt/greet.sh"),
        ('COPY greet.sh /opt/\nENTRYPOINT ["/opt/greet.sh"]', "/opt/greet.sh"),
        ('COPY greet.sh /opt/\nENTRYPOINT ["sh"]\nCMD ["/opt/greet.sh"]', "/opt/greet.sh"),
        (
            "COPY greet.sh /tmp/\nRUN install -m 0755 /tmp/greet.sh /usr/local/bin/greet\n"
            'CMD ["greet"]',
            "/usr/local/bin/greet",
        ),
        (
            'COPY greet.sh /opt/\nRUN ln -s /opt/greet.sh /usr/local/bin/greet\nCMD ["greet"]',
            "/usr/local/bin/greet",
        ),
        ('ENV PATH=/app:/bin\nCOPY greet.sh /app/\nCMD ["greet.sh"]', "/app/greet.sh"),
    ],
    ids=[
        "found in PATH",
        "into a folder without a slash",
        "renamed",
        "as the file /app",
        "the whole context",
        "the whole context into WORKDIR",
        "relative to WORKDIR",
        "sh, relative to WORKDIR",
        "JSON COPY, sh",
        "a glob, sh -c exec",
        "read by sh, not executed",
        "ENTRYPOINT",
        "ENTRYPOINT sh and CMD",
        "installed by RUN",
        "linked by RUN",
        "its own PATH",
    ],
)
def test_every_way_to_copy_and_start_it_that_works_is_right(copy_and_start, where, tmp_path):
    verdict = check(HEAD + copy_and_start + "\n", tmp_path)
    assert verdict.ok, verdict
    assert f"starts greet.sh at {where};" in str(verdict)


def test_a_script_copied_from_an_earlier_stage_is_followed(tmp_path):
    two_stages = (
        "FROM alpine:3.22 AS build\nCOPY greet.sh /src/\nRUN chmod 0755 /src/greet.sh\n"
        "FROM alpine:3.22\nCOPY --from=build /src/greet.sh /usr/local/bin/\n"
        'ENV GREETING_NAME=Kubeflow\nUSER 65534:65534\nCMD ["/usr/local/bin/greet.sh"]\n'
    )
    assert check(two_stages, tmp_path).ok
    wrong = two_stages.replace("--from=build /src/greet.sh", "--from=build /src/other.sh")
    assert "greet.sh is not copied into the image (COPY)" in str(check(wrong, tmp_path))


def test_an_answer_that_is_not_text_is_named_not_raised(tmp_path):
    assert "not NoneType" in str(check(None, tmp_path))


def test_the_instructions_are_read_across_continued_lines_and_comments():
    found = instructions(
        '# a comment\nFROM alpine:3.22 AS base\nENV A=1 \\\n    # inside\n    B=2\nCMD ["x"]\n'
    )
    assert [(i.keyword, i.arguments, i.line) for i in found] == [
        ("FROM", "alpine:3.22 AS base", 2),
        ("ENV", "A=1 B=2", 3),
        ("CMD", '["x"]', 6),
    ]


def fake_docker(folder, script):
    docker = folder / "docker"
    docker.write_text(f"#!/bin/sh\n{script}\n")
    docker.chmod(docker.stat().st_mode | stat.S_IEXEC)


def test_without_the_base_image_it_says_so_and_builds_nothing(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    fake_docker(bin_dir, f'echo "$@" >> {calls}; exit 1')  # `docker image inspect` fails
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    engine = machine.Tool("Docker engine", True, "Docker Engine 28.0.1")
    verdict = check(solution(), tmp_path, engine=engine)
    assert verdict.ok and str(verdict).endswith(
        "not built here: the base image alpine:3.22 is not on this machine "
        "(`docker pull alpine:3.22` where there is internet)"
    )
    assert calls.read_text().splitlines() == ["image inspect alpine:3.22"]


@pytest.fixture(scope="module")
def engine():
    """The real Docker engine with alpine:3.22 (a stand-in here), or skip."""
    found = machine.docker_engine()
    if not found:
        pytest.skip(f"no Docker engine here: {found.detail}")
    if not machine.docker_image_present("alpine:3.22"):
        pytest.skip("alpine:3.22 is not on this engine (scripts/test_containers.sh makes one)")
    yield found
    subprocess.run(["docker", "rmi", "-f", exercise.IMAGE], capture_output=True)


def test_with_an_engine_what_the_dockerfile_says_is_checked_before_it_builds(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    fake_docker(bin_dir, f'echo "$@" >> {calls}; exit 0')
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    engine = machine.Tool("Docker engine", True, "Docker Engine 28.0.1")
    wrong = solution().replace('CMD ["/usr/local/bin/greet.sh"]', 'CMD ["/usr/bin/greet.sh"]')
    verdict = check(wrong, tmp_path, engine=engine)
    assert str(verdict).startswith("Not yet: CMD starts /usr/bin/greet.sh, but COPY put")
    assert not calls.exists(), "it built what it could tell was wrong"


def test_with_an_engine_the_solution_is_built_and_run(engine, tmp_path):
    verdict = check(solution(), tmp_path, engine=engine)
    assert verdict.ok, verdict
    assert str(verdict).endswith(
        f"built here as {exercise.IMAGE} and ran: it printed 'Hello, Kubeflow! (uid 65534)'"
    )


def exited_containers():
    return set(
        subprocess.run(
            ["docker", "ps", "-aq", "--filter", "status=exited"], capture_output=True, text=True
        ).stdout.split()
    )


def test_with_an_engine_what_only_a_run_shows_is_caught(engine, tmp_path):
    before = exited_containers()
    changed = solution().replace(  # the script changed in the image: reading cannot tell
        "RUN chmod 0755 /usr/local/bin/greet.sh",
        "RUN chmod 0755 /usr/local/bin/greet.sh && sed -i 's/Hello/Bye/' /usr/local/bin/greet.sh",
    )
    assert check(changed, tmp_path).ok  # without an engine
    verdict = check(changed, tmp_path, engine=engine)
    assert not verdict.ok and "the container printed 'Bye, Kubeflow! (uid 65534)'" in str(
        verdict
    ), verdict
    assert "not the greeting: CMD should run greet.sh where COPY put it" in str(verdict)
    broken = solution().replace("RUN chmod 0755", "RUN chmod-it 0755")
    verdict = check(broken, tmp_path, engine=engine)
    assert not verdict.ok and str(verdict).startswith("Not yet: docker build failed"), verdict
    assert exited_containers() <= before, "a failed build or run left a container behind"
    assert (
        subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"name={exercise.CONTAINER}"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        == ""
    )


def cells():
    return nbformat.read(NOTEBOOK, as_version=4).cells


def test_the_notebook_holds_the_empty_answer_and_its_verdict_never_the_solution(tmp_path):
    code = [c for c in cells() if c.cell_type == "code"]
    (answer,) = [c for c in code if "my_dockerfile =" in c.source]
    namespace = {}
    exec(answer.source, namespace)
    assert namespace["my_dockerfile"].strip() == ""
    (checked,) = [c for c in code if "check_dockerfile(my_dockerfile)" in c.source]
    assert "nbval-check-output" in checked.metadata.get("tags", [])
    assert checked.source == "print(exercises.docker.check_dockerfile(my_dockerfile))"
    printed = "".join(o.get("text", "") for o in checked.outputs)
    assert printed == f"{check(namespace['my_dockerfile'], tmp_path)}\n"
    assert printed.startswith("Not yet: ")
    text = "\n".join(c.source for c in cells())
    assert "solutions/02-docker/Dockerfile" in text
    for line in ("ENV GREETING_NAME=Kubeflow", 'CMD ["/usr/local/bin/greet.sh"]'):
        assert line not in text, f"the notebook shows the solution's {line!r}"
    assert not any("solution" in c.metadata.get("tags", []) for c in cells())
