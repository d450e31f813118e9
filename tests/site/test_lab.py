"""JupyterLab, the learner's way in, runs notebook 01 in a real browser with no internet.

The project's JupyterLab starts on a free local port with a random token, serving a copy
of notebooks/01-introduction.ipynb from a temporary folder (autosave never writes into the
committed notebook), with everything that would reach the internet turned off (news,
update checks, the PyPI extension manager). Headless Chromium opens the notebook, waits
for its kernel, opens the folded check cells (View → Expand All Code) and runs the
notebook from the menu (Run → Run All Cells). What a person then sees is checked: every
code cell numbered in order, no error or traceback, the pipeline's graph drawn and its
tasks listed, the exercise's check saying what the empty answer is missing, and no error
in the page. The screenshot is
build/screenshots/lab-01-introduction.png.
"""

import json
import os
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import nbformat
import pytest

from conftest import page_problems

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "build" / "screenshots"
NOTEBOOK = "01-introduction.ipynb"
# The project's Jupyter settings (make lab, the workshop image): nothing that reaches the
# internet (news, update checks, the PyPI extension manager) and no question about news.
JUPYTER_CONFIG = ROOT / "jupyter"
KERNEL_IDLE = """status => [...document.querySelectorAll('.jp-StatusBar-TextItem')]
    .some(item => item.textContent.trim() === status)"""
# Run All puts [*] on every queued cell at once; an error stops the run and clears the rest.
RUN_OVER = f"""([status, failed]) => {{
    const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')]
        .map(p => p.textContent);
    return ({KERNEL_IDLE})(status) && !prompts.some(p => p.includes('*'))
        && (document.querySelector(failed) !== null || prompts.every(p => /\\[\\d+\\]/.test(p)));
}}"""
# JupyterLab 4 renders a traceback, like anything on stderr, as an stderr text output.
ERRORS = (
    ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'],"
    " .jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']"
)
STDOUT = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stdout']"


@dataclass
class Lab:
    url: str
    token: str
    folder: Path
    log: Path


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_serving(server, lab, timeout_s=90):
    request = urllib.request.Request(
        f"{lab.url}/api/status", headers={"Authorization": f"token {lab.token}"}
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"jupyter lab exited ({server.returncode}):\n{lab.log.read_text()}")
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    pytest.fail(f"jupyter lab did not answer in {timeout_s} s:\n{lab.log.read_text()}")


def stop(server):
    if server.poll() is None:
        server.terminate()  # SIGTERM: the server shuts its kernels down, then exits
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()  # a kernel it leaves exits when it sees its parent gone
            server.wait()


@pytest.fixture
def lab(tmp_path, request):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    shutil.copy(ROOT / "notebooks" / NOTEBOOK, folder)
    settings = tmp_path / "lab-settings"
    port, token = free_port(), secrets.token_hex(16)
    lab = Lab(f"http://127.0.0.1:{port}", token, folder, tmp_path / "jupyter-lab.log")
    request.node.failure_logs = [lab.log]  # shown with a failure (conftest.py)
    # The user's own Jupyter and IPython configuration, kernels and extensions stay out.
    env = os.environ | {
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "JUPYTER_CONFIG_PATH": str(JUPYTER_CONFIG),
        "JUPYTER_DATA_DIR": str(tmp_path / "jupyter-data"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
    }
    command = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        "--allow-root",  # CI runs as root, where Jupyter refuses to start without it
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",  # that port or a failure, never another one
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={folder}",
        f"--LabApp.user_settings_dir={settings}",
        f"--LabApp.workspaces_dir={tmp_path / 'lab-workspaces'}",
    ]
    with lab.log.open("w") as log:
        server = subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=log)
    try:
        wait_until_serving(server, lab)
        yield lab
    finally:
        stop(server)


def menu(page, *path):
    for label in path:
        page.get_by_role("menuitem", name=label, exact=True).click()


def png_size(path):
    width, height = struct.unpack(">II", path.read_bytes()[16:24])  # the IHDR chunk
    return width, height


def test_notebook_01_runs_from_the_menu_with_every_output_shown(browser, lab):
    from crypto_pipeline.compiled import compiled_tasks

    notebook = nbformat.read(lab.folder / NOTEBOOK, as_version=4)
    idle = f"{notebook.metadata.kernelspec.display_name} | Idle"
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    problems = page_problems(page, only_host=urlsplit(lab.url).netloc)
    page.goto(f"{lab.url}/lab/tree/{NOTEBOOK}?token={lab.token}")
    page.wait_for_function(KERNEL_IDLE, arg=idle, timeout=90_000)
    menu(page, "View", "Expand All Code")  # the check cells start folded, their [n] hidden
    menu(page, "Run", "Run All Cells")
    page.wait_for_function(RUN_OVER, arg=[idle, ERRORS], timeout=240_000)
    screenshot(page, "lab-01-introduction.png")

    # Text content, not the rendered text: cells scrolled out of sight render nothing.
    prompts = page.locator(".jp-CodeCell .jp-InputArea-prompt").all_text_contents()
    assert page.locator(ERRORS).all_text_contents() == [], "an error in the notebook"
    code_cells = sum(cell.cell_type == "code" for cell in notebook.cells)
    assert [p.strip() for p in prompts] == [f"[{n}]:" for n in range(1, code_cells + 1)]

    graph = page.locator(".jp-OutputArea-output[data-mime-type='image/png'] img")
    assert graph.count() == 1, "the pipeline's graph is not shown"
    shown = tuple(graph.evaluate("img => [img.naturalWidth, img.naturalHeight]"))
    drawn = ROOT / "runs" / "notebooks" / "figures" / "pipeline-graph.png"
    assert shown[0] > 0 and shown == png_size(drawn), "not the graph the cell drew"

    printed = "\n".join(page.locator(STDOUT).all_text_contents())
    for task in compiled_tasks(ROOT / "crypto_pipeline.yaml"):
        assert task["task"] in printed and task["image"] in printed, task
    for tool in ("Docker engine: ", "Kubernetes cluster: ", "Kubeflow Pipelines: "):
        assert tool in printed
    assert "Not yet: my_artifacts is empty" in printed  # the exercise, not yet answered
    page.close()
    assert problems == [], problems


def screenshot(page, name):
    # JupyterLab scrolls inside a window-sized page: grow the window to the whole notebook,
    # from its top (the run left it scrolled to the last cell).
    notebook = page.locator(".jp-NotebookPanel .jp-WindowedPanel-outer")
    top, height = notebook.evaluate("n => [n.getBoundingClientRect().top, n.scrollHeight]")
    page.set_viewport_size({"width": 1280, "height": int(top + height + 40)})
    notebook.evaluate("n => { n.scrollTop = 0; }")
    page.wait_for_timeout(500)  # the layout follows the new size
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=True)


def test_the_project_s_jupyter_settings_keep_it_offline(lab):
    def get(path):
        request = urllib.request.Request(
            f"{lab.url}{path}", headers={"Authorization": f"token {lab.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.load(answer)

    schema = get("/lab/api/settings/@jupyterlab/apputils-extension:notification")["schema"]
    defaults = {k: v.get("default") for k, v in schema["properties"].items()}
    assert defaults["fetchNews"] == "false" and defaults["checkForUpdates"] is False
    assert get("/lab/api/update") == {"notification": None}
    assert "Extension Manager is 'readonly'" in lab.log.read_text()
