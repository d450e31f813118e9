"""workshop: how notebook cells find a Docker engine, a cluster or a KFP host, or do without."""

import json
import re
import shlex
import stat
import sys

import pytest

from crypto_pipeline.errors import ConfigError
from crypto_workshop import commands, machine, offline
from crypto_workshop.commands import CommandError
from crypto_workshop.tape import RECORD_TO, Tape, comparable


def fake_tool(folder, name, script):
    path = folder / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def bare_path(tmp_path, monkeypatch):
    """A PATH with only the fakes a test puts there."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", str(folder))
    return folder


def test_docker_engine_absent_installed_but_stopped_and_running(bare_path):
    missing = machine.docker_engine()
    assert not missing and "not installed" in missing.detail
    fake_tool(bare_path, "docker", "echo 'Cannot connect to the Docker daemon' >&2; exit 1")
    stopped = machine.docker_engine()
    assert not stopped and "no engine answers" in stopped.detail
    fake_tool(bare_path, "docker", "echo 27.5.1")
    running = machine.docker_engine()
    assert running and running.detail == "Docker Engine 27.5.1"
    assert str(running) == "Docker engine: available (Docker Engine 27.5.1)"
    assert stopped.missing == "no Docker engine here"


def test_kube_context_needs_a_context_and_an_answering_server(bare_path):
    assert "not installed" in machine.kube_context().detail
    fake_tool(bare_path, "kubectl", "echo 'error: current-context is not set' >&2; exit 1")
    assert "no current context" in machine.kube_context().detail
    fake_tool(
        bare_path,
        "kubectl",
        'if [ "$2" = current-context ]; then echo kind-poets; else exit 1; fi',
    )
    down = machine.kube_context()
    assert not down and "'kind-poets' does not answer" in down.detail
    fake_tool(
        bare_path,
        "kubectl",
        'if [ "$2" = current-context ]; then echo kind-poets; '
        """else echo '{"serverVersion": {"gitVersion": "v1.33.1"}}'; fi""",
    )
    up = machine.kube_context()
    assert up and up.detail == "context 'kind-poets', Kubernetes v1.33.1"


def test_kfp_host_empty_unreachable_failing_and_healthy(httpserver):
    assert "set the notebook's kfp_host parameter" in machine.kfp_host("").detail
    assert "nothing answered" in machine.kfp_host("http://127.0.0.1:9", timeout_s=2).detail
    httpserver.expect_request("/apis/v2beta1/healthz").respond_with_data("no", status=503)
    assert "answered 503" in machine.kfp_host(httpserver.url_for("/")).detail
    httpserver.clear()
    httpserver.expect_request("/apis/v2beta1/healthz").respond_with_json({"commit_sha": "x"})
    assert machine.kfp_host(httpserver.url_for("/"))


PRINT_ARGV = "import sys; print(sys.argv[1:])"


def test_sh_shows_runs_and_fails_loudly(capsys, tmp_path):
    assert commands.sh(["echo", "hello"], run=False, why_not="no engine") is None
    assert capsys.readouterr().out == "$ echo hello\n  (shown, not run here: no engine)\n"
    assert commands.sh(["echo", "hello"], cwd=tmp_path) is None
    assert capsys.readouterr().out == "$ echo hello\nhello\n"
    assert commands.sh("echo hello", cwd=tmp_path, capture=True) == "hello\n"
    assert commands.sh(["echo", "hello"], run=False, capture=True) is None
    fail = [sys.executable, "-c", "import sys; print('oops', file=sys.stderr); sys.exit(3)"]
    with pytest.raises(CommandError, match="failed with exit status 3"):
        commands.sh(fail, cwd=tmp_path)
    assert commands.sh(fail, cwd=tmp_path, check=False, capture=True) == ""
    assert "oops" in capsys.readouterr().out


def test_sh_passes_a_value_with_a_space_and_a_semicolon_as_one_argument(capsys, tmp_path):
    value = "poets image; touch injected"
    said = commands.sh([sys.executable, "-c", PRINT_ARGV, value], cwd=tmp_path, capture=True)
    assert said == f"{[value]}\n"
    assert not (tmp_path / "injected").exists()
    assert list(tmp_path.iterdir()) == []
    shown = capsys.readouterr().out.splitlines()[0]
    assert shown.endswith(" 'poets image; touch injected'")
    assert shlex.split(shown.removeprefix("$ ")) == [sys.executable, "-c", PRINT_ARGV, value]


def test_sh_shows_a_command_quoted_so_it_can_be_pasted(capsys):
    image = "localhost:5001/poets image:0.1.0;id"
    commands.sh(
        ["docker", "image", "inspect", "--format", "user={{.Config.User}}", image], run=False
    )
    shown = capsys.readouterr().out.splitlines()[0]
    assert shown == (
        "$ docker image inspect --format 'user={{.Config.User}}' "
        "'localhost:5001/poets image:0.1.0;id'"
    )
    commands.sh(["kubectl", "get", "pods", "-n", "poets"], run=False)
    assert capsys.readouterr().out.startswith("$ kubectl get pods -n poets\n")


def test_sh_accepts_paths_as_arguments(tmp_path):
    folder = tmp_path / "a folder; with spaces"
    folder.mkdir()
    said = commands.sh([sys.executable, "-c", PRINT_ARGV, folder], cwd=folder, capture=True)
    assert said == f"{[str(folder)]}\n"


def test_sh_sets_environment_variables_without_a_shell(capsys, tmp_path):
    read = "import os; print(os.environ['PROJECT'], os.environ['PATH'] != '')"
    project = "my project; touch injected"
    said = commands.sh(
        [sys.executable, "-c", read], env={"PROJECT": project}, cwd=tmp_path, capture=True
    )
    assert said == f"{project} True\n"
    assert not (tmp_path / "injected").exists()
    assert capsys.readouterr().out.startswith("$ PROJECT='my project; touch injected' ")
    commands.sh(["bash", "scripts/cluster.sh", "--dry-run", "gke"], env={"PROJECT": "p"}, run=False)
    assert capsys.readouterr().out.startswith("$ PROJECT=p bash scripts/cluster.sh --dry-run gke\n")
    with pytest.raises(ConfigError, match="'MY-VAR' is not an environment variable name"):
        commands.sh(["env"], env={"MY-VAR": "x"}, run=False)


@pytest.mark.parametrize(
    "text",
    [
        "echo a; touch injected",
        "echo a && touch injected",
        "curl -s http://localhost:30001/ | head -5",
        "echo $HOME",
        "date > injected",
        'docker run -v "$PWD":/work image',
    ],
)
def test_sh_refuses_shell_text_whether_or_not_it_would_run(text, capsys, tmp_path):
    for run in (True, False):
        with pytest.raises(ConfigError, match="is shell text, not a plain command"):
            commands.sh(text, run=run, cwd=tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert capsys.readouterr().out == ""


def test_sh_refuses_a_variable_prefix_and_names_env():
    with pytest.raises(ConfigError, match="variable assignment") as refused:
        commands.sh("PROJECT=my-project bash scripts/cluster.sh --dry-run gke", run=False)
    assert "env={'NAME': 'value'}" in refused.value.fix


def test_sh_refuses_an_unclosed_quote():
    with pytest.raises(ConfigError, match="cannot be read as a command: No closing quotation"):
        commands.sh("echo 'hello", run=False)


def test_sh_refuses_an_empty_command():
    for empty in ("", []):
        with pytest.raises(ConfigError, match="no command given"):
            commands.sh(empty, run=False)


def test_sh_names_a_program_that_is_not_there(tmp_path):
    with pytest.raises(CommandError, match="could not start: no-such-program-here"):
        commands.sh(["no-such-program-here", "--version"], cwd=tmp_path)


def test_show_prints_shell_text_and_runs_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert commands.show("date > injected; curl -s x | head -5", why_not="open it") is None
    assert capsys.readouterr().out == (
        "$ date > injected; curl -s x | head -5\n  (shown, not run here: open it)\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_project_root_is_the_checkout():
    root = machine.project_root()
    assert (root / "notebooks").is_dir() and (root / "docker-intro").is_dir()


def test_lint_dockerfiles_reports_findings(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM debian\nRUN cd /tmp && apt-get install curl\n")
    findings = offline.lint_dockerfiles(dockerfile)
    codes = {line.split()[1] for line in findings}
    assert {"DL3006", "DL3003", "DL3008"} <= codes, findings
    assert all(line.startswith(f"{dockerfile}:") for line in findings)


def test_validate_manifests_lists_resources_and_refuses_bad_ones(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: poets\n")
    assert offline.validate_manifests(good) == ["namespace/poets: valid"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: five\n"
    )
    with pytest.raises(CommandError, match="do not match the Kubernetes schema"):
        offline.validate_manifests(bad)


def test_registry_and_wait_for_http(httpserver):
    host = httpserver.url_for("/").removeprefix("http://").rstrip("/")
    httpserver.expect_request("/v2/").respond_with_json({})
    assert machine.registry(host)
    assert "start one with" in machine.registry("127.0.0.1:9", timeout_s=2).detail
    httpserver.expect_request("/page").respond_with_data("hello")
    assert machine.wait_for_http(httpserver.url_for("/page"), timeout_s=5) == "hello"
    with pytest.raises(TimeoutError, match="did not answer within 1 s"):
        machine.wait_for_http("http://127.0.0.1:9/", timeout_s=1)


def test_manifest_objects_lists_what_the_intro_deploys():
    path = machine.project_root() / "kubernetes-intro" / "deployment.yaml"
    assert [(o["kind"], o["name"]) for o in offline.manifest_objects(path)] == [
        ("Namespace", "poets"),
        ("Deployment", "nginx-server"),
        ("Service", "nginx-server"),
        ("NetworkPolicy", "nginx-server"),
    ]


ROOT = machine.project_root()
SCANNED = sorted(
    [
        *ROOT.glob("**/Dockerfile"),
        *ROOT.glob("kubernetes-intro/*.yaml"),
        *ROOT.glob("cluster/*.yaml"),
    ]
)


def without_comments(text):
    return [
        line.split(" #")[0].rstrip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


@pytest.mark.parametrize(
    "path", [p for p in SCANNED if ".venv" not in p.parts and ".tools" not in p.parts], ids=str
)
def test_files_shown_to_learners_lose_only_the_scanner_notes(path):
    import yaml

    text = path.read_text()
    shown = offline.without_scanner_notes(text)
    assert "checkov" not in shown.lower()
    if path.suffix == ".yaml":
        objects = list(yaml.safe_load_all(text))
        for obj in objects:
            metadata = (obj or {}).get("metadata", {})
            notes = metadata.get("annotations")
            if notes is None:
                continue
            for key in [k for k in notes if k.startswith("checkov.io/")]:
                del notes[key]
            if not notes:
                del metadata["annotations"]
        assert list(yaml.safe_load_all(shown)) == objects
    else:  # every instruction is still there, word for word
        assert without_comments(shown) == without_comments(text)


def test_scanner_notes_with_folded_text_and_other_annotations():
    text = (
        "metadata:\n"
        "  annotations:\n"
        "    # the scan (checkov) finds what is deliberate here:\n"
        "    checkov.io/skip1: >-\n"
        "      CKV_K8S_43=a reason\n"
        "      on two lines\n"
        "    team: poets\n"
        "spec: {}\n"
    )
    assert offline.without_scanner_notes(text) == (
        "metadata:\n  annotations:\n    team: poets\nspec: {}\n"
    )


def test_a_tape_records_where_the_command_runs_and_replays_where_it_cannot(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv(RECORD_TO, str(tmp_path / "fresh"))
    monkeypatch.setenv("POETS_RECORDED_BY", "a test")
    monkeypatch.setenv("POETS_RECORD_TOOLS", "sh")
    tape = Tape(tmp_path / "kept" / "tape.json")
    commands.sh([sys.executable, "-c", "print('hello from where it ran')"], tape=tape)
    commands.sh([sys.executable, "-c", "pass"], tape=tape)
    recorded = Tape(tmp_path / "fresh" / "tape.json")
    assert [c["output"] for c in recorded.recording["commands"]] == ["hello from where it ran", ""]
    capsys.readouterr()

    command = [sys.executable, "-c", "print('hello from where it ran')"]
    assert commands.sh(command, run=False, why_not="no tool here", tape=recorded) is None
    label, shown, output = capsys.readouterr().out.splitlines()
    # The label comes first: nobody reads the output as this machine's.
    assert re.fullmatch(
        r"\[recorded on 20\d\d-\d\d-\d\d, sh, not this machine: no tool here\]", label
    )
    assert shown == f"$ {shlex.join(command)}" and output == "hello from where it ran"
    commands.sh([sys.executable, "-c", "pass"], run=False, why_not="no tool here", tape=recorded)
    assert capsys.readouterr().out.splitlines()[1:] == [f"$ {sys.executable} -c pass"]
    commands.sh(["never-recorded"], run=False, why_not="no tool here", tape=recorded)
    assert "(shown, not run here: no tool here)" in capsys.readouterr().out


def test_comparable_masks_what_changes_between_two_runs():
    first = (
        "abc123def4567   kubeflow-for-poets/nginx-server:0.1.0   2 seconds ago   Up 1 second "
        "(health: starting)   127.0.0.1:8081->8080/tcp\n172.17.0.1 - - [30/Nov/2026:10:27:40 "
        "+0000] GET / 200\n0.1.0: digest: sha256:" + "a" * 64 + " size: 944\nab12cd34ef56: Pushed"
    )
    second = (
        "99887766aabbcc   kubeflow-for-poets/nginx-server:0.1.0   About a minute ago   Up 2 "
        "minutes (healthy)   127.0.0.1:8081->8080/tcp\n172.17.0.3 - - [01/Dec/2026:09:01:02 "
        "+0000] GET / 200\n0.1.0: digest: sha256:" + "b" * 64 + " size: 944\nab12cd34ef56: "
        "Layer already exists"
    )
    assert comparable(first) == comparable(second)
    pushing = "ab12cd34ef56: Preparing\nab12cd34ef56: Waiting\nab12cd34ef56: Pushed"
    assert comparable(pushing) == comparable("ab12cd34ef56: Pushed")
    health = '127.0.0.1 - - [01/Dec/2026:09:01:12 +0000] "GET / HTTP/1.1" 200 339 "-" "Wget"\n'
    assert comparable(health + second) == comparable(first)
    assert comparable("uid=101") != comparable("uid=0")
    page = "<html>\n<p>Kubeflow for Poets</p>\n</html>\n"
    assert comparable(page + "curl: (52) Empty reply from server\n") == comparable(page)
    assert comparable(page) != comparable("<html>\n<p>another page</p>\n</html>\n")


def test_comparable_reads_buildkit_steps_in_any_order_cached_or_not():
    first = (
        "#1 [internal] load build definition from Dockerfile\n#1 transferring dockerfile: 32B done"
        "\n#1 DONE 0.0s\n\n#2 [internal] load build context\n#2 DONE 0.0s\n\n"
        "#3 [2/2] RUN echo hi\n#3 0.196 hi\n#3 DONE 0.5s\n\n#4 exporting to image\n"
        "#4 exporting layers 0.1s done\n#4 writing image sha256:" + "a" * 64 + "\n"
        "#4 writing image sha256:" + "a" * 64 + " done\n#4 DONE 0.1s"
    )
    second = (
        "#1 [internal] load build context\n#1 DONE 0.0s\n\n"
        "#2 [internal] load build definition from Dockerfile\n#2 transferring dockerfile: 827B "
        "done\n#2 DONE 0.0s\n\n#3 [2/2] RUN echo hi\n#3 CACHED\n\n#4 exporting to image\n"
        "#4 exporting layers done\n#4 writing image sha256:" + "b" * 64 + " done\n#4 DONE 0.0s"
    )
    assert comparable(first) == comparable(second)
    assert comparable(first) != comparable(second.replace("echo hi", "echo ho"))
    # the step printed first need not be #1: here #2 finished first
    one_first = "#1 [internal] load .dockerignore\n#1 DONE 0.0s\n\n#2 exporting to image\n"
    two_first = "#2 exporting to image\n\n#1 [internal] load .dockerignore\n#1 DONE 0.0s\n"
    assert comparable(two_first) == comparable(one_first)
    assert "#N exporting to image" in comparable(two_first)
    # a slow machine also shows a status while it runs, before its done line
    running = "#2 [internal] load build context\n#2 transferring context: 0.0s\n"
    done = "#2 [internal] load build context\n#2 transferring context: 32B done\n#2 DONE 0.0s"
    assert comparable(running + done) == comparable(done)
    assert "#N [internal] load build context" in comparable(running + done)


def available(name="Docker engine"):
    return machine.Tool(name, True, "a test's")


def absent(name="Docker engine", detail="not installed here"):
    return machine.Tool(name, False, detail)


def test_a_program_runs_what_it_shows_without_a_shell(capsys, tmp_path):
    python = commands.Program(sys.executable, needs=available(), cwd=tmp_path)
    python(["-c", PRINT_ARGV, "poets image; touch injected"])
    shown, said = capsys.readouterr().out.splitlines()
    assert (
        shown
        == f"$ {shlex.join([sys.executable, '-c', PRINT_ARGV, 'poets image; touch injected'])}"
    )
    assert said == "['poets image; touch injected']" and list(tmp_path.iterdir()) == []
    assert python.last.here and python.last.stdout == f"{said}\n" and python.last.status == 0
    python("-c 'import os; print(os.environ[\"WHO\"])'", env={"WHO": "a poet"})
    assert capsys.readouterr().out.startswith("$ WHO='a poet' ")
    assert python.last.output == "a poet"
    assert python.ran("-c 'import os; print(os.environ[\"WHO\"])'") is python.last
    assert python.ran("--version") is None


def test_a_program_refuses_shell_text_and_raises_when_the_command_fails(capsys, tmp_path):
    docker = commands.Program("docker", needs=absent())
    for text in ("ps | head -3", 'run -v "$PWD":/work image', "logs x > log.txt"):
        with pytest.raises(ConfigError, match="is shell text"):
            docker(text)
    assert capsys.readouterr().out == "" and docker.runs == []
    python = commands.Program(sys.executable, cwd=tmp_path)
    with pytest.raises(CommandError, match="failed with exit status 3"):
        python(["-c", "import sys; sys.exit(3)"])
    python(["-c", "import sys; sys.exit(3)"], check=False)
    assert python.last.status == 3


def test_a_program_replays_its_recording_under_a_label_where_it_cannot_run(capsys, tmp_path):
    tape = tmp_path / "02-docker.json"
    tape.write_text(
        json.dumps(
            {
                "recorded_by": "make test-containers",
                "recorded_on": "2026-12-05",
                "tools": "Docker Engine 20.10.24+dfsg1 (BuildKit)",
                "commands": [
                    {"command": "docker image ls", "output": "REPOSITORY   TAG", "status": 0},
                    {"command": "docker tag a b", "output": "", "status": 0},
                    {"command": "docker push b", "output": "pushed", "status": 0},
                ],
            }
        )
    )
    docker = commands.Program("docker", needs=absent(), recorded=tape)
    docker("image ls")
    assert capsys.readouterr().out == (
        "[recorded on 2026-12-05, Docker Engine 20.10.24+dfsg1 (BuildKit), not this machine: "
        "no Docker engine here]\n$ docker image ls\nREPOSITORY   TAG\n"
    )
    assert docker.last == commands.Ran("docker image ls", "recorded", "REPOSITORY   TAG", "", 0)
    docker("tag a b")
    assert capsys.readouterr().out.splitlines()[1:] == ["$ docker tag a b"]
    docker("image ls --all")
    assert capsys.readouterr().out == (
        "$ docker image ls --all\n  (shown, not run here: no Docker engine here)\n"
    )
    assert docker.last.where == "shown" and not docker.last.here
    # With the engine, a command that needs more (a registry) replays when that is missing.
    online = commands.Program("docker", needs=available(), recorded=tape)
    online("push b", needs=absent("Registry localhost:5001", "nothing answers"))
    assert (
        capsys.readouterr()
        .out.splitlines()[0]
        .endswith("not this machine: Registry localhost:5001: nothing answers]")
    )


def test_a_program_records_what_ran_when_asked(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(RECORD_TO, str(tmp_path / "fresh"))
    monkeypatch.setenv("POETS_RECORD_TOOLS", "Python")
    monkeypatch.setenv("POETS_RECORD_NOTE", "a test's machine")
    python = commands.Program(sys.executable, recorded=tmp_path / "kept" / "tape.json")
    python(["-c", "print('hello')"])
    recording = json.loads((tmp_path / "fresh" / "tape.json").read_text())
    assert recording["tools"] == "Python" and recording["note"] == "a test's machine"
    assert recording["commands"] == [
        {
            "command": shlex.join([sys.executable, "-c", "print('hello')"]),
            "output": "hello",
            "status": 0,
        }
    ]
    assert not (tmp_path / "kept").exists()


def test_docker_image_says_why_a_command_that_needs_it_cannot_run(bare_path):
    assert machine.docker_image("alpine:3.22").detail == "no Docker engine here"
    fake_tool(bare_path, "docker", 'if [ "$1" = version ]; then echo 27.5.1; else exit 1; fi')
    missing = machine.docker_image("alpine:3.22")
    assert not missing and "`docker pull alpine:3.22` where there is internet" in missing.detail
    fake_tool(bare_path, "docker", "echo 27.5.1")
    assert machine.docker_image("alpine:3.22")


def test_show_file_says_how_many_scanner_notes_it_left_out(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one = tmp_path / "Dockerfile"
    one.write_text("# checkov:skip=CKV_DOCKER_2: a reason\nFROM alpine:3.22\n")
    offline.show_file(one.name)
    assert capsys.readouterr().out == (
        "# Dockerfile\n# (left out here: 1 '# checkov:skip' line, kept in the file with its "
        "reason for the security scanner checkov)\nFROM alpine:3.22\n"
    )
    two = tmp_path / "manifest.yaml"
    two.write_text(
        "metadata:\n  annotations:\n    checkov.io/skip1: CKV_K8S_43=a reason\n"
        "    checkov.io/skip2: CKV_K8S_14=another\n  name: x\n"
    )
    offline.show_file(two.name)
    out = capsys.readouterr().out
    assert "2 'checkov.io/skip' annotations, kept in the file with their reasons" in out
    assert "checkov.io" not in out.split("\n", 2)[2]
    three = tmp_path / "plain"
    three.write_text("FROM alpine:3.22\n")
    offline.show_file(three.name)
    assert capsys.readouterr().out == "# plain\nFROM alpine:3.22\n"
