"""requirements.lock, environment.yml and pyproject.toml describe one environment."""

import importlib.util
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("render", ROOT / "scripts" / "render_environment.py")
render = importlib.util.module_from_spec(spec)
spec.loader.exec_module(render)


def locked() -> dict[str, str]:
    pins = render.pins((ROOT / "requirements.lock").read_text())
    return {canonicalize_name(p.split("==")[0]): p.split("==")[1] for p in pins}


def test_environment_yml_installs_exactly_the_lock():
    text = (ROOT / "environment.yml").read_text()
    assert text == render.render((ROOT / "requirements.lock").read_text()), (
        "environment.yml is stale: run `make lock`"
    )
    env = yaml.safe_load(text)
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pinned = {
        canonicalize_name(p.split("==")[0]): p.split("==")[1] for p in pip_section if "==" in p
    }
    assert pinned == locked()
    assert "-e ." in pip_section


def test_python_versions_agree():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda_python = next(
        d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python=")
    )
    version = conda_python.split("=")[1]
    assert SpecifierSet(project["requires-python"]).contains(version + ".0")
    assert "PYTHON ?= python" + version in (ROOT / "Makefile").read_text()


def test_lock_satisfies_every_declared_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for group in project["optional-dependencies"].values() for r in group]
    declared = project["dependencies"] + extras
    pins = locked()
    for text in declared:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        if name == canonicalize_name(project["name"]):
            continue  # dev's reference to the other extras
        assert name in pins, f"{name} is declared but not locked: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{name}=={pins[name]} in the lock does not satisfy {text}: run `make lock`"
        )


def test_versions_measured_to_fit_together():
    pins = locked()
    assert pins["kfp"] == "2.17.3"
    assert pins["apache-beam"] == "2.77.0"
    assert pins["tensorflow-cpu"] == "2.21.0"
    assert pins["pandas"].startswith("2."), "pandas 3 breaks Beam's DataFrame API"
