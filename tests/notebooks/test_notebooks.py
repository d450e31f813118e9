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


def kfp_decorated(node) -> bool:
    """Whether a function is a KFP component or pipeline (`@dsl.component`, `@dsl.pipeline`)."""
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if ast.unparse(target) in {"dsl.component", "dsl.pipeline", "dsl.container_component"}:
            return True
    return False


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_thin_no_functions_or_classes_but_kfp_components(path):
    """Logic lives in the package; a notebook defines only KFP components and pipelines."""
    for cell in code_cells(path):
        for node in ast.walk(ast.parse(python_of(cell))):
            if isinstance(node, ast.FunctionDef) and kfp_decorated(node):
                continue
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


def headings(cell) -> list[str]:
    """The `#`, `##` and `###` heading lines of a markdown cell (not those in code blocks)."""
    lines, fenced = [], False
    for line in cell.source.splitlines():
        fenced ^= line.startswith("```")
        if not fenced and re.match(r"#{1,3} \S", line):
            lines.append(line.strip())
    return lines


def sections(path) -> list[tuple[str, list]]:
    """The notebook cut at its `##` headings: each heading and the cells under it."""
    cut = []
    for cell in read(path).cells:
        found = headings(cell) if cell.cell_type == "markdown" else []
        top = [h for h in found if h.startswith("## ")]
        if top:
            cut.append((top[0], [cell]))
        elif cut:
            cut[-1][1].append(cell)
    return cut


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_opens_with_goals_and_before_you_begin_ends_with_exercises_and_clean_up(path):
    cells = read(path).cells
    opening = cells[0].source
    assert re.search(r"\*\*Duration:\*\* about \d+ minutes", opening), opening[:300]
    assert "**Learning goals:**" in opening
    names = [heading for heading, _ in sections(path)]
    assert names[0] == "## Before you begin", names
    assert names[-2:] == ["## Exercises", "## Clean up"], names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_heading_starts_its_own_slide(path):
    """One slide per `##` heading, a vertical slide per `###`; nothing else starts one."""
    for number, cell in enumerate(read(path).cells):
        kind = cell.metadata.get("slideshow", {}).get("slide_type", "-")
        found = headings(cell) if cell.cell_type == "markdown" else []
        where = f"{path.name} cell {number}: {cell.source[:70]!r}"
        if found:
            assert len(found) == 1, f"{where} holds {len(found)} headings: one cell each"
            assert cell.source.startswith(found[0]), f"{where}: the heading must come first"
            wanted = "subslide" if found[0].startswith("### ") else "slide"
            assert kind == wanted, f"{where}: slide type {kind!r}, wanted {wanted!r}"
        else:
            assert kind not in ("slide", "subslide"), f"{where}: a slide without a heading"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_each_exercise_has_a_check_that_says_what_is_missing_and_no_solution_in_view(path):
    """Write-it exercises: an answer cell, a check that names what is missing, no solution."""
    (exercises,) = [cells for heading, cells in sections(path) if heading == "## Exercises"]
    checks = [
        cell
        for cell in exercises
        if cell.cell_type == "code" and re.search(r"\bexercises\.\w+\.check_\w+\(", cell.source)
    ]
    assert checks, f"{path.name}: no exercise with a check (crypto_workshop.exercises)"
    for cell in checks:
        assert CHECK_TAG in cell.metadata.get("tags", []), cell.source
        said = "".join(o.get("text", "") for o in cell.outputs)
        assert said.startswith("Not yet: "), f"on the empty answer the check says {said!r}"
    text = "\n".join(cell.source for cell in exercises if cell.cell_type == "markdown")
    named = re.findall(r"notebooks/solutions/[\w./-]+", text)
    assert named, f"{path.name}: the exercises do not say where the solutions are"
    for solution in named:
        assert (ROOT / solution.rstrip(".")).exists(), solution
    for cell in read(path).cells:
        assert "solution" not in cell.metadata.get("tags", []), "a solution cell in view"


HARNESS = re.compile(r"\bassert\b|\bTape\b|\bwhy_not\b|\btape=|\bruntime_environment\b")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_test_harness_in_the_learner_s_cells(path):
    """Learners see commands and calls; checks sit in cells tagged `check`, folded away."""
    for cell in code_cells(path):
        if "check" in cell.metadata.get("tags", []):
            assert cell.metadata.get("jupyter", {}).get("source_hidden"), "a check starts folded"
            continue
        found = HARNESS.findall(cell.source)
        assert not found, f"{path.name}: {found} in a learner's cell:\n{cell.source}"


def speaker_notes():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import build_site
    finally:
        sys.path.pop(0)
    return build_site


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_speaker_notes_for_every_slide_with_minutes_that_add_up(path):
    build_site = speaker_notes()
    notebook = build_site.with_notes(read(path), path.stem)  # exits naming a missing note
    notes = [c.source for c in notebook.cells if build_site.slide_type(c) == "notes"]
    minutes = [re.match(r"\*(\d+(?:\.\d+)?) min\.\*", note) for note in notes]
    assert all(minutes), [n[:60] for n, m in zip(notes, minutes, strict=True) if not m]
    total = sum(float(m.group(1)) for m in minutes)
    (stated,) = re.findall(r"\*\*Duration:\*\* about (\d+) minutes", read(path).cells[0].source)
    assert 0.75 * int(stated) <= total <= 1.25 * int(stated), f"{total} min for {stated} stated"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_shows_a_picture(path):
    sources = [c.source for c in code_cells(path)]
    assert any("diagrams." in s and "Image(" in s for s in sources), f"{path.name}: no picture"


RECORDED = re.compile(
    r"^\[recorded on \d{4}-\d{2}-\d{2}, Docker Engine \S+ \(BuildKit\), not this machine(: .*)?\]$"
)


def test_recorded_outputs_are_labelled_before_they_show(executed_notebooks):
    """Offline, a Docker command shows the output recorded where it ran, under a label that
    says so first; beside a live engine, every command runs for real."""
    labels, engine = 0, False
    for path in NOTEBOOKS:
        for cell in code_cells(executed_notebooks / path.name):
            text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
            engine |= path.name == "02-docker.ipynb" and "Docker engine: available" in text
            lines = text.splitlines()
            for number, line in enumerate(lines):
                if line.startswith("[recorded"):
                    assert RECORDED.match(line), line
                    assert lines[number + 1].startswith("$ "), "the label comes before"
                    labels += 1
                elif "recorded on" in line:
                    raise AssertionError(f"{path.name}: a label after its block: {line}")
    if engine:  # where an engine answered, notebook 02 ran every Docker command for real
        assert labels == 0, "a Docker command replayed its recording beside a live engine"
    else:
        assert labels >= 10, "notebook 02 shows its recorded Docker outputs"


def test_the_recording_says_who_made_it_with_what_and_covers_notebook_02s_commands():
    from crypto_workshop.tape import Tape

    tape = Tape(ROOT / "notebooks" / "recorded" / "02-docker.json")
    assert tape.recording["recorded_by"] == "make test-containers"
    assert re.fullmatch(r"Docker Engine \S+ \(BuildKit\)", tape.recording["tools"])
    shown = {c["command"] for c in tape.recording["commands"]}
    assert {
        "docker build -t kubeflow-for-poets/hello-world:0.1.0 docker-intro/hello-world",
        "docker run --rm kubeflow-for-poets/hello-world:0.1.0",
        "docker ps --filter name=poets-nginx",
        "docker push localhost:5001/kubeflow-for-poets/hello-world:0.1.0",
    } <= shown
    assert all(c["status"] == 0 for c in tape.recording["commands"])
    outputs = "\n".join(c["output"] for c in tape.recording["commands"])
    assert "DEPRECATED" not in outputs, "recorded with the legacy builder, not BuildKit"


def executed_cells(executed_notebooks, path):
    return code_cells(executed_notebooks / path.name)


DRAWS = re.compile(r"\bplt\.show\(|\bdisplay\(Image\(|\.plot(?:\.\w+)?\(")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_cell_that_draws_shows_a_picture(executed_notebooks, path):
    """A cell that draws leaves a picture in the executed copy (not a backend's silence)."""
    drawing = [c for c in executed_cells(executed_notebooks, path) if DRAWS.search(c.source)]
    for cell in drawing:
        pictures = [o for o in cell.outputs if "image/png" in o.get("data", {})]
        assert pictures, f"{path.name}: no picture from\n{cell.source}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_check_cells_print_nothing(executed_notebooks, path):
    for cell in executed_cells(executed_notebooks, path):
        if "check" in cell.metadata.get("tags", []):
            assert not cell.outputs, f"{path.name}: a check printed\n{cell.outputs}"


def fenced_blocks(text: str) -> list[str]:
    return re.findall(r"^```(?:bash|sh|console)\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def shown_commands(executed_notebooks) -> list[tuple[str, str]]:
    """Every command the series shows to be typed: its ```bash blocks (notebooks, speaker
    notes, README) and the `$ command` and `+ command` lines the executed notebooks print."""
    shown = []
    for path in NOTEBOOKS:
        for cell in read(path).cells:
            if cell.cell_type == "markdown":
                shown += [(path.name, block) for block in fenced_blocks(cell.source)]
        for cell in executed_cells(executed_notebooks, path):
            for output in cell.outputs:
                for line in output.get("text", "").splitlines():
                    if line.startswith(("$ ", "+ ")):
                        shown.append((f"{path.name} output", line[2:]))
    for notes in sorted((ROOT / "notebooks" / "speaker-notes").glob("*.md")):
        shown += [(notes.name, block) for block in fenced_blocks(notes.read_text())]
    shown += [("README.md", block) for block in fenced_blocks((ROOT / "README.md").read_text())]
    return shown


def unquoted(word: str) -> str:
    """A shell word without its quoted parts (what the shell would expand)."""
    return re.sub(r"'[^']*'|\"(?:[^\"\\\\]|\\\\.)*\"|\\\\.", "", word)


def test_every_shown_command_pastes_into_bash_and_zsh(executed_notebooks, tmp_path):
    """bash -n and zsh -n parse it; no unquoted `?`, `*` or `[` for zsh to glob (its
    `nomatch` stops a command such as `kubectl apply -k URL?ref=2.16.1`); no `#` comment,
    which interactive zsh (macOS's shell) reads as a word."""
    import shlex

    shells = [["bash", "-n"]] + ([["zsh", "-f", "-n"]] if shutil.which("zsh") else [])
    problems = []
    shown = shown_commands(executed_notebooks)
    assert len(shown) > 40, len(shown)
    for number, (where, text) in enumerate(shown):
        script = tmp_path / f"{number}.sh"
        script.write_text(text + "\n")
        for shell in shells:
            result = subprocess.run([*shell, script], capture_output=True, text=True)
            if result.returncode:
                problems.append(f"{where}: {shell[0]} -n: {result.stderr.strip()}\n{text}")
        lexer = shlex.shlex(text, posix=False, punctuation_chars=True)
        lexer.commenters = ""
        lexer.wordchars += "?*[]{}#=:/.,@%+-~$"
        for word in lexer:
            bare = unquoted(word)
            if bare.startswith("#"):
                problems.append(f"{where}: a `#` comment (say it in the prose):\n{text}")
                break
            if re.search(r"[?*]|\[(?!\]?$)", bare) and word not in ("[", "]", "[[", "]]"):
                problems.append(f"{where}: {word!r} is globbed by zsh: quote it\n{text}")
    assert not problems, "\n\n".join(problems)
