"""The workshop image's Dockerfile, the dev container that uses it and the Makefile agree.

`make test-containers` builds and runs the image (JupyterLab answers, the notebooks run
inside it); these checks hold the names and paths the three files share.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

from crypto_pipeline.serving import server as serve

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "workshop" / "Dockerfile"
DEVCONTAINER = ROOT / ".devcontainer" / "devcontainer.json"


def instructions(name):
    """The arguments of every NAME instruction, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    return [line.split(None, 1)[1] for line in text.splitlines() if line.startswith(name + " ")]


def env():
    (block,) = instructions("ENV")
    return dict(re.findall(r"(\w+)=(\S+)", block))


def test_dev_container_builds_the_workshop_image():
    config = json.loads(DEVCONTAINER.read_text())
    build = config["build"]
    assert (DEVCONTAINER.parent / build["dockerfile"]).resolve() == DOCKERFILE
    assert (DEVCONTAINER.parent / build["context"]).resolve() == ROOT


def test_dev_container_mounts_the_clone_where_the_image_has_the_tutorial():
    config = json.loads(DEVCONTAINER.read_text())
    (workdir,) = instructions("WORKDIR")
    assert config["workspaceFolder"] == workdir
    assert f"target={workdir}," in config["workspaceMount"]
    assert "source=${localWorkspaceFolder}" in config["workspaceMount"]


def test_dev_container_uses_the_image_s_user_and_environment():
    config = json.loads(DEVCONTAINER.read_text())
    (run,) = [r for r in instructions("RUN") if "useradd" in r]
    user, uid = config["remoteUser"], instructions("USER")[0]
    assert re.search(rf"useradd --create-home --uid {uid} {user}\b", run)
    assert config["containerEnv"]["VENV"] == env()["VENV"]
    interpreter = config["customizations"]["vscode"]["settings"]["python.defaultInterpreterPath"]
    assert interpreter == env()["VENV"] + "/bin/python"
    assert env()["PATH"].startswith(env()["VENV"] + "/bin:")


def test_ports_are_the_project_s():
    config = json.loads(DEVCONTAINER.read_text())
    (cmd,) = instructions("CMD")
    assert instructions("EXPOSE") == ["8888"] and "--port=8888" in cmd
    assert set(config["forwardPorts"]) == {8888, serve.DEFAULT_PORT}
    assert "| 8888 | JupyterLab" in (ROOT / "README.md").read_text()


def test_jupyterlab_opens_notebook_01_of_the_image():
    (cmd,) = instructions("CMD")
    (workdir,) = instructions("WORKDIR")
    default = re.search(r"--LabApp.default_url=/lab/tree/([^\"]+)", cmd).group(1)
    assert (ROOT / default).is_file()
    assert f"--ServerApp.root_dir={workdir}" in cmd


def test_the_makefile_finds_the_image_s_environment():
    makefile = (ROOT / "Makefile").read_text()
    assert "VENV ?= .venv" in makefile, "the image sets VENV=/opt/venv for make"
    assert "setup_env.py learner --venv $(VENV)" in makefile
    assert "python scripts/setup_env.py learner --venv /opt/venv" in DOCKERFILE.read_text()


def test_the_workshop_image_copies_the_tutorial_but_no_built_state():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for kept in ("notebooks", "docker-intro", "kubernetes-intro", "scripts", "locks"):
        assert kept not in ignored
    for left_out in (".venv", ".tools", "runs", "build", "notebooks/executed", ".git"):
        assert left_out in ignored


def test_jupyterlab_uses_the_project_s_settings_everywhere():
    (workdir,) = instructions("WORKDIR")
    assert env()["JUPYTER_CONFIG_PATH"] == f"{workdir}/jupyter"
    assert 'JUPYTER_CONFIG_PATH="$(CURDIR)/jupyter' in (ROOT / "Makefile").read_text()
    config = json.loads((ROOT / "jupyter" / "jupyter_server_config.json").read_text())
    assert config["LabApp"]["news_url"] is None


EDITABLE_MAPPING = """
import pathlib, sys, zipfile
from setuptools import build_meta
wheel = pathlib.Path(sys.argv[1]) / build_meta.build_editable(sys.argv[1])
finder = [n for n in zipfile.ZipFile(wheel).namelist() if n.endswith("_finder.py")]
text = zipfile.ZipFile(wheel).read(finder[0]).decode() if finder else ""
print(sorted(eval(line.split("=", 1)[1]) for line in text.splitlines()
             if line.startswith("MAPPING")))
"""


def test_the_image_s_editable_install_maps_the_notebooks_helpers_too(tmp_path):
    """The learner's install runs before the tutorial is copied; it maps what exists then.

    Replays the image's steps up to `setup_env.py` (the files copied before it, then its
    RUN's commands before the install) and builds the editable wheel there: its finder must
    map crypto_workshop beside crypto_pipeline, or the notebooks' imports fail in the image.
    """
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    head = text[: text.index("setup_env.py learner")]
    for line in head.splitlines():
        if line.startswith("COPY "):
            *sources, destination = [w for w in line.split()[1:] if not w.startswith("--")]
            for source in sources:
                target = tmp_path / destination / Path(source).name
                if destination.endswith("/") and not (ROOT / source).is_dir():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes((ROOT / source).read_bytes())
    (run,) = [r for r in instructions("RUN") if "setup_env.py learner" in r]
    before = [c.strip() for c in run.split("&&") if "setup_env.py" not in c]
    subprocess.run(["bash", "-c", " && ".join(before)], cwd=tmp_path, check=True)
    out = tmp_path / "wheel"
    out.mkdir()
    mapped = subprocess.run(
        [sys.executable, "-c", EDITABLE_MAPPING, str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert mapped.returncode == 0, mapped.stderr[-3000:]
    assert "crypto_workshop" in mapped.stdout.splitlines()[-1], mapped.stdout
    assert "crypto_pipeline" in mapped.stdout.splitlines()[-1], mapped.stdout
    patterns = (ROOT / ".dockerignore").read_text().splitlines()
    assert not [p for p in patterns if p.startswith(("workshop", "/workshop"))], "COPY . . keeps it"
