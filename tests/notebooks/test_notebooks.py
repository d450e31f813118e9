"""The notebooks' shape (numbered, thin, one parameters cell, clean) and nbval's teeth.

nbval itself runs every notebook as part of `make test` (see pyproject's addopts); these
tests check what nbval cannot, and prove that a broken notebook does fail under nbval.
"""

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
SANITIZE = ROOT / "notebooks" / "nbval-sanitize.cfg"
CHECK_TAG = "nbval-check-output"  # a cell tag: nbval compares its output


def read(path):
    return nbformat.read(path, as_version=4)


def code_cells(path):
    return [c for c in read(path).cells if c.cell_type == "code"]


def python_of(cell) -> str:
    """A cell's source as the kernel runs it: IPython's `!command` lines made Python."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(cell.source)


def test_notebooks_are_numbered_in_order_and_the_readme_maps_them():
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(1, len(NOTEBOOKS) + 1)]
    assert len(NOTEBOOKS) == 6
    readme = (ROOT / "README.md").read_text()
    for path in NOTEBOOKS:
        assert f"notebooks/{path.name}" in readme, f"the README does not map {path.name}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_one_parameters_cell_of_plain_values(path):
    tagged = [c for c in code_cells(path) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged parameters"
    for statement in ast.parse(tagged[0].source).body:
        assert isinstance(statement, ast.Assign), ast.unparse(statement)
        ast.literal_eval(statement.value)  # a literal: papermill can override it


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_thin_no_functions_or_classes(path):
    for cell in code_cells(path):
        for node in ast.walk(ast.parse(python_of(cell))):
            assert not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef), (
                f"{path.name} defines {node.name}: move it into the package"
            )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_only_in_checked_cells(path):
    checked = 0
    for cell in code_cells(path):
        assert "NBVAL" not in cell.source, f"a marker comment in view; tag the cell:\n{cell.source}"
        if CHECK_TAG in cell.metadata.get("tags", []):
            checked += 1
            assert cell.outputs and cell.execution_count, f"unrun checked cell:\n{cell.source}"
        else:
            assert not cell.outputs and cell.execution_count is None, cell.source
    assert checked >= 1, f"{path.name} checks no output"
    result = subprocess.run(
        [sys.executable, ROOT / "scripts" / "clean_notebooks.py", "--check", path],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def nbval(path) -> tuple[int, str]:
    """Runs nbval on one notebook as `make test` does; its exit status and plain output."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "--nbval-lax",
            "--nbval-current-env",
            f"--nbval-sanitize-with={SANITIZE}",
            "-q",
            path,
        ],
        capture_output=True,
        text=True,
        cwd=path.parent,
        timeout=300,
    )
    return result.returncode, re.sub(r"\x1b\[[0-9;]*m", "", result.stdout)


@pytest.fixture
def kubernetes_copy(tmp_path):
    copy = tmp_path / "03-kubernetes.ipynb"
    shutil.copy(ROOT / "notebooks" / copy.name, copy)
    return copy


def test_nbval_passes_an_intact_copy(kubernetes_copy):
    status, output = nbval(kubernetes_copy)
    assert status == 0, output[-3000:]


def test_nbval_fails_a_copy_whose_checked_output_is_wrong(kubernetes_copy):
    text = kubernetes_copy.read_text()
    assert text.count("deployment/nginx-server: valid") == 1
    kubernetes_copy.write_text(
        text.replace("deployment/nginx-server: valid", "deployment/x: valid")
    )
    status, output = nbval(kubernetes_copy)
    assert status == 1, output[-3000:]
    assert "1 failed" in output
    assert "deployment/x: valid" in output  # nbval shows the expected and the actual output


def test_nbval_fails_a_copy_with_a_failing_cell(kubernetes_copy):
    notebook = read(kubernetes_copy)
    notebook.cells.insert(3, nbformat.v4.new_code_cell('assert cluster is None, "broken"'))
    nbformat.write(notebook, kubernetes_copy)
    status, output = nbval(kubernetes_copy)
    assert status == 1
    assert "AssertionError: broken" in output


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_opens_with_duration_and_goals_and_ends_with_exercises_and_solutions(path):
    cells = read(path).cells
    opening = cells[0].source
    assert re.search(r"\*\*Duration:\*\* about \d+ minutes", opening), opening[:300]
    assert "**Learning goals:**" in opening
    (start,) = [i for i, c in enumerate(cells) if c.source.startswith("## Exercises")]
    asked = re.findall(r"^\d+\. \*\*", cells[start].source, flags=re.MULTILINE)
    solutions = cells[start + 1 :]
    assert 1 <= len(asked) <= 3, cells[start].source
    assert len(solutions) == len(asked), "one solution cell per exercise, right after them"
    for number, cell in enumerate(solutions, 1):
        assert cell.cell_type == "code" and "solution" in cell.metadata.get("tags", [])
        assert cell.metadata.get("jupyter", {}).get("source_hidden"), "a solution starts folded"
        assert cell.source.startswith(f"# Solution {number}")
        assert "assert" in cell.source, "nbval runs each solution: it must check its answer"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_shows_a_picture(path):
    sources = [c.source for c in code_cells(path)]
    assert any("diagrams." in s and "Image(" in s for s in sources), f"{path.name}: no picture"


def test_no_command_is_shown_as_not_run_without_its_recorded_output(executed_notebooks):
    """Offline, a command either runs, or shows the real output recorded where it ran."""
    recorded, engine = 0, False
    for path in NOTEBOOKS:
        for cell in code_cells(executed_notebooks / path.name):
            text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
            assert "(shown, not run here" not in text, f"{path.name}:\n{cell.source}"
            engine |= path.name == "02-docker.ipynb" and "Docker engine: available" in text
            for line in text.splitlines():
                if line.startswith("  (") and " here" in line:  # a command that did not run
                    assert "recorded on" in line, f"{path.name}: {line}"
                    recorded += "recorded on" in line
    if engine:  # where an engine answered, notebook 02 ran every Docker command for real
        assert recorded == 0, "a Docker command replayed its recording beside a live engine"
    else:
        assert recorded >= 10, "notebook 02 shows its recorded Docker outputs"


def test_the_recorded_outputs_say_who_recorded_them_and_cover_notebook_02s_commands():
    from crypto_pipeline import workshop

    tape = workshop.Tape(ROOT / "notebooks" / "recorded" / "02-docker.json")
    assert tape.label.startswith("recorded on 20") and "make test-containers" in tape.label
    shown = {c["command"] for c in tape.recording["commands"]}
    assert {
        "docker build -t kubeflow-for-poets/hello-world:0.1.0 docker-intro/hello-world",
        "docker run --rm kubeflow-for-poets/hello-world:0.1.0",
        "docker ps --filter name=poets-nginx",
        "docker push localhost:5001/kubeflow-for-poets/hello-world:0.1.0",
    } <= shown
    assert all(c["status"] == 0 for c in tape.recording["commands"])
