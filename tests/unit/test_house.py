"""The house rules the package keeps, checked on its source: sizes, layers, one home each.

A module holds one job (at most 450 lines), a function does one thing (at most 80
lines), a step module does not lean on another step module, and the rules that must be
the same everywhere (local versus remote) have one home.
"""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "components" / "crypto_pipeline"
WORKSHOP = ROOT / "workshop" / "crypto_workshop"
MODULES = sorted([*PIPELINE.rglob("*.py"), *WORKSHOP.rglob("*.py")])
STEP_MODULES = ("ingest", "transform", "tune", "train", "deploy")
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _imported(tree: ast.AST) -> set[str]:
    """Every module a source imports, at its top or inside a function."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_the_packages_were_found():
    assert len(MODULES) > 40, MODULES


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_a_module_holds_one_job(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, (
        f"{_name(path)} has {lines} lines: cut it along its jobs into modules of at most "
        f"{MAX_MODULE_LINES}"
    )


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_a_function_does_one_thing(path):
    tree = ast.parse(path.read_text())
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines, line {node.lineno})"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{_name(path)}: split {', '.join(long)}"


@pytest.mark.parametrize("step", STEP_MODULES)
def test_a_step_module_imports_no_other_step_module(step):
    imported = _imported(ast.parse((PIPELINE / f"{step}.py").read_text()))
    others = {f"crypto_pipeline.{s}" for s in STEP_MODULES if s != step}
    assert not imported & others, (
        f"{step}.py imports {sorted(imported & others)}: move what both need to a shared home"
    )


def test_the_pipeline_never_imports_the_notebooks_helpers():
    for path in PIPELINE.rglob("*.py"):
        imported = _imported(ast.parse(path.read_text()))
        assert not any(n.split(".")[0] == "crypto_workshop" for n in imported), _name(path)


def test_no_mock_in_the_package():
    for path in PIPELINE.rglob("*.py"):
        imported = _imported(ast.parse(path.read_text()))
        assert not {"unittest.mock", "mock"} & imported, (
            f"{_name(path)} imports mock: lean on another project's internals only in "
            "crypto_pipeline/workarounds, by plain replacement that is undone"
        )


def test_the_local_run_reads_no_log_with_regular_expressions():
    local = [PIPELINE / "local_run.py", *PIPELINE.glob("local_*.py")]
    local.append(PIPELINE / "workarounds" / "kfp_local.py")
    for path in local:
        assert "re" not in _imported(ast.parse(path.read_text())), _name(path)


def test_local_or_remote_has_one_rule():
    for path in PIPELINE.rglob("*.py"):
        if path.name == "files.py":
            continue
        text = path.read_text()
        decides = r"""["']://["'] (not )?in\b|(startswith|removeprefix)\(\s*["'](file|local)://"""
        assert not re.search(decides, text, re.IGNORECASE), (
            f"{_name(path)} decides local versus remote itself: use files.is_remote"
        )
