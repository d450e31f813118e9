"""scripts/cluster_e2e.sh (make cluster-e2e) and the workflow that runs it on GitHub.

No machine of this project can pull an image or run a cluster: here the script's dry run
is checked on a PATH without docker, kind and kubectl, a real run against stand-ins for
them, and the workflow with actionlint.
"""

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SCRIPT = ROOT / "scripts" / "cluster_e2e.sh"
WORKFLOW = ROOT / ".github" / "workflows" / "cluster-e2e.yml"
CLUSTER_TOOLS = ("docker", "kind", "kubectl")
PHASES = [
    "kind",
    "kfp",
    "kserve",
    "rbac",
    "storage",
    "images",
    "compile",
    "run",
    "ready",
    "predict",
    "compare",
    "down",
]


def versions() -> dict[str, str]:
    lines = (ROOT / "cluster" / "versions.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if re.match(r"^[A-Z_]+=", line))


SETTINGS = {"NAMESPACE", "REGISTRY_PORT", "CLUSTER", "KATIB", "KEEP", "TAG", "VENV"}
SETTINGS |= {"RUN_TIMEOUT", "KFP_PORT", "PREDICTOR_PORT", "LOCAL_PORT", "REGISTRY", "IMAGES"}


def bare_path(folder: Path) -> str:
    """A PATH with every command of this one but docker, kind and kubectl (links in FOLDER)."""
    folder.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            link = folder / entry.name
            if entry.name in CLUSTER_TOOLS or link.exists() or link.is_symlink():
                continue
            if entry.is_file() and os.access(entry.path, os.X_OK):
                link.symlink_to(entry.path)
    return str(folder)


VARIANTS = {
    "default": {},
    "custom": {"KATIB": "1", "REGISTRY_PORT": "5002"},
    "keep": {"KEEP": "1"},
}


class DryRun:
    def __init__(self, stdout: str):
        self.stdout = stdout
        lines = stdout.splitlines()
        # This script's commands start at the margin; those of the scripts it calls are
        # indented under them.
        self.commands = [line[2:] for line in lines if line.startswith("+ ")]
        self.nested = [line.strip()[2:] for line in lines if line.startswith("    + ")]
        self.phases = [m[1] for line in lines if (m := re.match(r"^--- (\w+): ", line))]
        times = stdout.split("\n--- times", 1)[1].splitlines()[1:]
        self.times = [line.split()[0] for line in times if re.match(r"^\w+ +\d+ s$", line)]

    def index(self, command: str) -> int:
        assert self.commands.count(command) == 1, f"not once: {command}\n{self.stdout}"
        return self.commands.index(command)


@pytest.fixture(scope="module")
def bare(tmp_path_factory) -> str:
    """This PATH without docker, kind and kubectl."""
    path = bare_path(tmp_path_factory.mktemp("path") / "bin")
    for tool in CLUSTER_TOOLS:
        assert shutil.which(tool, path=path) is None
    assert shutil.which("python3", path=path), "the content tag needs python3"
    return path


def clean_environment() -> dict[str, str]:
    """This environment less the script's settings and the pinned versions' overrides."""
    return {k: v for k, v in os.environ.items() if k not in SETTINGS | versions().keys()}


@pytest.fixture(scope="module")
def dry_runs(bare) -> dict[str, DryRun]:
    """The three variants' dry runs, run at once, with no docker, kind or kubectl on PATH."""
    clean = clean_environment()
    started = {
        name: subprocess.Popen(
            ["bash", SCRIPT, "--dry-run"],
            cwd=ROOT,
            env={**clean, **env, "PATH": bare},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, env in VARIANTS.items()
    }
    done = {}
    for name, process in started.items():
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, f"{name}: {stderr}\n{stdout}"
        done[name] = DryRun(stdout)
    return done


@pytest.fixture(scope="module")
def tag() -> str:
    result = subprocess.run(
        ["python3", "scripts/image_tag.py"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def test_the_dry_run_prints_the_phases_in_order(dry_runs, tag):
    run = dry_runs["default"]
    assert run.phases == PHASES
    registry = "localhost:5001/kubeflow-for-poets"
    package = "build/cluster-e2e/crypto_pipeline.yaml"
    ask = "--open 100 --high 104 --low 97"
    in_order = [
        "scripts/cluster.sh kind",
        "scripts/cluster.sh kfp",
        "scripts/cluster.sh kserve",
        "scripts/cluster.sh rbac",
        "scripts/cluster.sh storage",
        "TAG=$(python3 scripts/image_tag.py)",
        f"env REGISTRY={registry} TAG={tag} scripts/build_images.sh --push",
        f".venv/bin/crypto-pipeline compile -o {package} --registry {registry} --tag {tag}",
        "kubectl -n kubeflow port-forward svc/ml-pipeline-ui 8080:80 "
        "> build/cluster-e2e/kfp-port-forward.log 2>&1 &",
        "curl -fsS -o /dev/null http://localhost:8080/apis/v2beta1/healthz",
        f".venv/bin/crypto-pipeline submit --host http://localhost:8080 --package {package} "
        "--namespace kubeflow --param deploy.target=cluster --wait --timeout 3600",
        "kubectl -n kubeflow wait --for=condition=Ready --timeout=600s inferenceservice/crypto",
        f"cluster_answer=$(.venv/bin/crypto-pipeline predict --url http://127.0.0.1:8083 {ask})",
        f"local_answer=$(.venv/bin/crypto-pipeline predict --url http://127.0.0.1:8084 {ask})",
        'test "$cluster_answer" = "$local_answer"',
        "scripts/cluster.sh down",
    ]
    positions = [run.index(command) for command in in_order]
    assert positions == sorted(positions)
    assert not any("katib" in line for line in run.commands + run.nested)


def test_katib_only_when_asked_and_the_settings_reach_every_step(dry_runs):
    run = dry_runs["custom"]
    assert run.phases == PHASES[:3] + ["katib"] + PHASES[3:]
    assert run.index("scripts/cluster.sh kserve") < run.index("scripts/cluster.sh katib")
    assert run.index("scripts/cluster.sh katib") < run.index("scripts/cluster.sh rbac")
    assert any("katib-standalone" in line for line in run.nested)
    # REGISTRY_PORT reaches cluster.sh, the images and the pipeline.
    assert any("-p 127.0.0.1:5002:5000" in line for line in run.nested)
    assert any(
        c.startswith("env REGISTRY=localhost:5002/kubeflow-for-poets ") for c in run.commands
    )
    assert any(" compile " in c and "--registry localhost:5002/" in c for c in run.commands)
    # KFP standalone's namespace, the only one its object store serves besides profiles'.
    assert any(" submit " in c and "--namespace kubeflow" in c for c in run.commands)


def test_make_dry_run_prints_the_whole_sequence():
    """`make cluster-e2e --dry-run` (make's own -n) still shows every phase's commands."""
    import subprocess

    for argv in (["make", "--dry-run", "cluster-e2e"], ["make", "cluster-e2e", "DRY_RUN=1"]):
        out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        for phase in ("scripts/cluster.sh kind", "build_images.sh --push", " submit ", "down"):
            assert phase in out.stdout, (argv, phase)


def test_the_images_are_built_pushed_and_compiled_with_the_content_tag(dry_runs, tag):
    assert re.fullmatch(r"\d+\.\d+\.\d+-[0-9a-f]{12}", tag)
    run = dry_runs["default"]
    registry = "localhost:5001/kubeflow-for-poets"
    for image in ("ingest", "transform", "train", "serve"):
        assert any(
            line.startswith("docker build ") and f" -t {registry}/{image}:{tag} " in line
            for line in run.nested
        ), image
        assert f"docker push {registry}/{image}:{tag}" in run.nested


def test_the_dry_run_passes_dry_run_down_to_the_scripts_it_calls(dry_runs):
    nested = dry_runs["default"].nested
    for printed in ("kind create cluster", "kubectl apply -k", "docker push", "kind delete"):
        assert any(line.startswith(printed) for line in nested), printed


def test_the_served_model_is_copied_out_of_the_predictor_and_asked_the_same(dry_runs):
    run = dry_runs["default"]
    forward = "kubectl -n kubeflow port-forward svc/crypto-predictor 8083:80"
    pod = (
        "pod=$(kubectl -n kubeflow get pods -l serving.kserve.io/inferenceservice=crypto "
        r"--field-selector=status.phase=Running -o jsonpath=\{.items\[0\].metadata.name\})"
    )
    copy = 'kubectl -n kubeflow cp -c kserve-container "$pod":/mnt/models build/cluster-e2e/model'
    serve = ".venv/bin/crypto-pipeline serve --model build/cluster-e2e/model --port 8084"
    steps = [
        f"{forward} > build/cluster-e2e/predictor-port-forward.log 2>&1 &",
        pod,
        copy,
        f"{serve} > build/cluster-e2e/local-serve.log 2>&1 &",
    ]
    positions = [run.index(step) for step in steps]
    assert positions == sorted(positions)
    assert positions[-1] < run.index('test "$cluster_answer" = "$local_answer"')


def test_everything_started_is_stopped_and_each_phase_timed(dry_runs):
    run = dry_runs["default"]
    started = [c.removesuffix("=$!") for c in run.commands if c.endswith("=$!")]
    assert started == ["kfp_forward", "predictor_forward", "local_server"]
    down = run.commands[run.commands.index('test "$cluster_answer" = "$local_answer"') + 1 :]
    assert down == [f'kill "${name}"' for name in started] + ["scripts/cluster.sh down"]
    assert run.times == PHASES + ["total"]
    assert dry_runs["custom"].times == PHASES[:3] + ["katib"] + PHASES[3:] + ["total"]


def test_keep_leaves_the_cluster_and_says_how_to_delete_it(dry_runs):
    run = dry_runs["keep"]
    assert run.phases == PHASES[:-1] and run.times == PHASES[:-1] + ["total"]
    assert not any(c.startswith(("kill ", "scripts/cluster.sh down")) for c in run.commands)
    assert "KEEP=1: left running" in run.stdout and "    scripts/cluster.sh down" in run.stdout


def printed_commands(dry_runs) -> list[str]:
    return sorted({c for run in dry_runs.values() for c in run.commands + run.nested})


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_every_printed_command_parses(dry_runs, shell):
    """Each line is quoted to be pasted: bash -n and zsh -n parse it (and any nested one)."""
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed (apt-get install {shell}): only bash is checked")
    commands = printed_commands(dry_runs)
    assert len(commands) > 50
    bad = [
        c
        for c in commands
        if subprocess.run([shell, "-n"], input=c, capture_output=True, text=True).returncode
    ]
    assert bad == []


def test_without_docker_a_real_run_stops_before_running_anything(bare):
    env = {**clean_environment(), "PATH": bare}
    result = subprocess.run(
        ["bash", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: docker is not installed")
    assert "+ " not in result.stdout


def test_make_cluster_e2e_runs_the_script_and_lint_runs_actionlint():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(
        r"^cluster-e2e: setup  ## .+\n\t\+bash scripts/cluster_e2e\.sh .*--dry-run", makefile, re.M
    )
    assert re.search(r"^lint: .*\n(\t.*\n)*\t.*\$\(BIN\)/actionlint$", makefile, re.M)
    verbs = subprocess.run(["make", "help"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert re.search(r"^cluster-e2e +on kind: ", verbs.stdout, re.M)


# The workflow.


def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def test_the_workflow_is_clean_under_actionlint_and_its_shellcheck():
    actionlint = BIN / "actionlint"
    assert actionlint.exists(), "actionlint comes with the dev extra: make setup-dev"
    shellcheck = shutil.which("shellcheck", path=str(BIN)) or shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("no shellcheck (apt install shellcheck): the run: scripts go unchecked")
    result = subprocess.run(
        [actionlint, "-shellcheck", shellcheck, "-no-color", WORKFLOW],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_workflow_runs_weekly_and_by_hand_with_least_privilege():
    data = workflow()
    triggers = data.get("on", data.get(True))  # YAML 1.1 reads a bare `on` as true
    assert set(triggers) == {"workflow_dispatch", "schedule"}
    assert data["permissions"] == {"contents": "read"}
    (job,) = data["jobs"].values()
    assert job["runs-on"] == "ubuntu-24.04" and 0 < job["timeout-minutes"] <= 180
    runs = [step["run"] for step in job["steps"] if "run" in step]
    assert "make cluster-e2e" in runs
    for step in job["steps"]:
        if "uses" in step:  # an action by its full commit, not a tag that can move
            assert re.fullmatch(r"[\w-]+/[\w-]+@[0-9a-f]{40}", step["uses"]), step["uses"]
    setup_python = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-"))
    assert setup_python["with"]["python-version"] == "3.11"


def test_the_workflow_installs_the_kind_that_versions_env_pins(tmp_path):
    """The install step, run with stand-ins for curl, sha256sum and install, fetches it."""
    (job,) = workflow()["jobs"].values()
    (step,) = [s for s in job["steps"] if "kind-linux-amd64" in s.get("run", "")]
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    log = tmp_path / "calls.log"
    stand_ins = {  # curl: logs each -O URL and writes an empty file of its name
        "curl": "while [ $# -gt 0 ]; do\n"
        '  [ "$1" = -O ] && { echo "$2" >> "$LOG"; : > "${2##*/}"; }\n'
        "  shift\n"
        "done",
        "sha256sum": 'cat > /dev/null; echo "sha256sum $*" >> "$LOG"',
        "install": 'echo "install $*" >> "$LOG"',
    }
    for name, body in stand_ins.items():
        (stubs / name).write_text(f"#!/bin/sh\n{body}\n")
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    runner_temp = tmp_path / "runner"
    runner_temp.mkdir()
    env = {
        "PATH": f"{stubs}{os.pathsep}{os.environ['PATH']}",
        "LOG": str(log),
        "RUNNER_TEMP": str(runner_temp),
        "GITHUB_PATH": str(tmp_path / "github_path"),
    }
    subprocess.run(["bash", "-c", step["run"]], cwd=ROOT, env=env, check=True, timeout=30)
    v = versions()
    node = re.fullmatch(r"kindest/node:(v[\d.]+)@sha256:[0-9a-f]{64}", v["KIND_NODE_IMAGE"])
    calls = log.read_text().splitlines()
    kind = f"https://github.com/kubernetes-sigs/kind/releases/download/{v['KIND_VERSION']}"
    kubectl = f"https://dl.k8s.io/release/{node[1]}/bin/linux/amd64"
    assert calls[:2] == [f"{kind}/kind-linux-amd64", f"{kind}/kind-linux-amd64.sha256sum"]
    assert calls[2] == "sha256sum -c kind-linux-amd64.sha256sum"
    assert calls[3] == f"install -m 0755 kind-linux-amd64 {runner_temp}/bin/kind"
    assert calls[4:6] == [f"{kubectl}/kubectl", f"{kubectl}/kubectl.sha256"]
    assert calls[7] == f"install -m 0755 kubectl {runner_temp}/bin/kubectl"
    assert (tmp_path / "github_path").read_text() == f"{runner_temp}/bin\n"


# A real run, against stand-ins: cluster.sh and build_images.sh that log their calls,
# docker, kind, kubectl and curl that answer at once, and a crypto-pipeline that prints.

STAND_INS = {
    "scripts/cluster.sh": 'echo "cluster.sh $* NAMESPACE=$NAMESPACE" >> "$LOG"',
    "scripts/build_images.sh": 'echo "build_images.sh $* REGISTRY=$REGISTRY TAG=$TAG" >> "$LOG"',
    "bin/docker": "exit 0",
    # No cluster of that name yet (the script refuses to reuse, then delete, one).
    "bin/kind": 'echo "kind $*" >> "$LOG"; [[ "$1 $2" != "get kubeconfig" ]]',
    "bin/curl": "exit 0",
    "bin/kubectl": """echo "kubectl $*" >> "$LOG"
case "$*" in
  *port-forward*) exec sleep 300 ;;
  *" get pods "*) printf crypto-predictor-7d4f9-abcde ;;
  *" cp "*) for last; do :; done; mkdir -p "$last" ;;
esac""",
    "venv/bin/crypto-pipeline": """echo "crypto-pipeline $*" >> "$LOG"
case "$1" in
  serve) exec sleep 300 ;;
  submit) [ "${FAIL_AT:-}" != submit ] || exit 3 ;;
  predict)
    [ "${FAIL_AT:-}" != predict ] || exit 4
    answer="predicted close: 101.25 (open 100, high 104, low 97)"
    case "$*" in *":${LOCAL_PORT:-8084}"*) answer="${LOCAL_ANSWER:-$answer}" ;; esac
    echo "$answer" ;;
esac""",
}


def real_run(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Runs a copy of the script for real among the stand-ins; returns it and the calls."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(SCRIPT, tmp_path / "scripts" / "cluster_e2e.sh")
    for name, body in STAND_INS.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    log = tmp_path / "calls.log"
    log.touch()
    settings = {"TAG": "0.1.0-0123456789ab", "VENV": str(tmp_path / "venv"), "LOG": str(log)}
    result = subprocess.run(
        ["bash", tmp_path / "scripts" / "cluster_e2e.sh"],
        cwd=tmp_path,
        env={
            **clean_environment(),
            "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
            **settings,
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result, log.read_text().splitlines()


def started_processes(stdout: str) -> list[int]:
    return [int(pid) for pid in re.findall(r"^\+ kill (\d+)$", stdout, re.M)]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def gone(pid: int) -> bool:
    """Whether PID has ended: at once after a kill, but give a loaded machine 30 s."""
    for _ in range(300):
        if not alive(pid):
            return True
        time.sleep(0.1)
    return False


def test_a_real_run_goes_through_every_phase_and_cleans_up(tmp_path):
    result, calls = real_run(tmp_path)
    assert result.returncode == 0, result.stderr + result.stdout
    scripts = [c for c in calls if c.startswith(("cluster.sh", "build_images.sh"))]
    assert scripts == [
        *(f"cluster.sh {c} NAMESPACE=kubeflow" for c in ("kind", "kfp", "kserve", "rbac")),
        "cluster.sh storage NAMESPACE=kubeflow",
        "build_images.sh --push REGISTRY=localhost:5001/kubeflow-for-poets TAG=0.1.0-0123456789ab",
        "cluster.sh down NAMESPACE=kubeflow",
    ]
    assert any(
        c.startswith("crypto-pipeline submit ") and c.endswith("--wait --timeout 3600")
        for c in calls
    )
    pod = "crypto-predictor-7d4f9-abcde"
    copy = f"kubectl -n kubeflow cp -c kserve-container {pod}:/mnt/models build/cluster-e2e/model"
    assert copy in calls
    pids = started_processes(result.stdout)
    assert len(pids) == 3 and all(gone(pid) for pid in pids)
    assert DryRun(result.stdout).times == PHASES + ["total"]
    assert "the predictor and the local server gave the same answer" in result.stdout


@pytest.mark.parametrize(
    "env, failed, message",
    [
        ({"LOCAL_ANSWER": "predicted close: 101.26"}, "compare", "answered differently"),
        ({"FAIL_AT": "submit"}, "run", ""),
        ({"FAIL_AT": "predict"}, "predict", ""),
    ],
)
def test_a_failed_run_still_stops_everything_and_deletes_the_cluster(
    tmp_path, env, failed, message
):
    result, calls = real_run(tmp_path, **env)
    assert result.returncode != 0
    assert message in result.stderr and f"error: phase {failed} failed" in result.stderr
    assert calls[-1] == "cluster.sh down NAMESPACE=kubeflow"
    assert any(c.startswith("kind export logs build/cluster-e2e/kind-logs") for c in calls)
    assert (tmp_path / "build" / "cluster-e2e" / "diagnostics.txt").exists()
    assert all(gone(pid) for pid in started_processes(result.stdout))
    assert "\ntotal " in result.stdout


def test_keep_leaves_the_cluster_and_the_processes(tmp_path):
    result, calls = real_run(tmp_path, KEEP="1")
    pids = [int(p) for p in re.findall(r"^    kill (\d+)$", result.stdout, re.M)]
    try:
        assert result.returncode == 0, result.stderr
        assert not any(c.startswith("cluster.sh down") for c in calls)
        assert len(pids) == 3 and all(alive(pid) for pid in pids)
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
