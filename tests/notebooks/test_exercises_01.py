"""Notebook 01's exercise: the artifacts between the pipeline's tasks, read from the
compiled file. Its check passes the solution, names what is missing on an empty answer,
and catches the usual wrong answers."""

import copy
import runpy
from pathlib import Path

import nbformat
import pytest

from crypto_workshop.exercises import introduction

ROOT = Path(__file__).resolve().parents[2]
SOLUTION = ROOT / "notebooks" / "solutions" / "01-introduction" / "artifacts.py"
NOTEBOOK = ROOT / "notebooks" / "01-introduction.ipynb"


@pytest.fixture(scope="module")
def solution():
    return runpy.run_path(str(SOLUTION))["my_artifacts"]


def test_the_solution_is_right(solution):
    found = introduction.check_artifact_flow(solution)
    assert found.ok, found
    assert str(found).startswith("Right: ")
    assert "tune-step -> train-step (best_params)" in str(found)


def test_the_solution_is_what_the_compiled_file_says(solution):
    assert solution == introduction.artifact_flow(ROOT / "crypto_pipeline.yaml")


def test_the_empty_answer_says_what_to_write():
    found = introduction.check_artifact_flow({})
    assert not found.ok
    assert str(found).startswith("Not yet: my_artifacts is empty")
    assert "4 of the 5 tasks" in str(found)


@pytest.mark.parametrize("answer", [None, "transform-step", ["ingest-step"]])
def test_an_answer_of_another_type_is_named_not_raised(answer):
    found = introduction.check_artifact_flow(answer)
    assert not found.ok and "must be a dict" in str(found)


def test_the_tasks_it_waits_for_are_not_the_artifacts_it_reads(solution):
    """The usual mistake: train-step waits for tune-step, so both artifacts from it."""
    wrong = copy.deepcopy(solution)
    wrong["train-step"] = {"data": "tune-step", "best_params": "tune-step"}
    found = introduction.check_artifact_flow(wrong)
    assert not found.ok
    assert "train-step's 'data' is not written by 'tune-step'" in str(found)
    assert "best_params" not in str(found)  # the right entry is not named


def test_a_missing_task_an_extra_input_and_an_unknown_task_are_each_named(solution):
    wrong = copy.deepcopy(solution)
    del wrong["tune-step"]
    wrong["train-step"] = {"data": "transform-step"}
    wrong["deploy-step"]["metrics"] = "train-step"
    wrong["evaluate-step"] = {"model": "train-step"}
    found = str(introduction.check_artifact_flow(wrong))
    assert "tune-step reads artifacts too" in found
    assert "train-step reads 2 artifact(s), your entry names 1" in found
    assert "deploy-step has no input artifact 'metrics'" in found
    assert "'evaluate-step' is no task of the pipeline" in found


def test_ingest_reads_no_artifact(solution):
    assert introduction.check_artifact_flow({**solution, "ingest-step": {}}).ok
    found = introduction.check_artifact_flow({**solution, "ingest-step": {"source": "x"}})
    assert "ingest-step reads no artifact" in str(found)


def test_the_notebook_holds_the_empty_answer_and_the_check():
    """The answer cell is empty, the check right after it says what is missing (nbval
    compares that output), and the task names the solution's file."""
    cells = nbformat.read(NOTEBOOK, as_version=4).cells
    (answer,) = [c for c in cells if c.source.startswith("my_artifacts = ")]
    call = "exercises.introduction.check_artifact_flow(my_artifacts)"
    (check,) = [c for c in cells if call in c.source]
    assert cells.index(check) == cells.index(answer) + 1
    assert "nbval-check-output" in check.metadata.get("tags", [])
    given = {}
    exec(answer.source, given)  # the empty answer, as the learner finds it
    found = introduction.check_artifact_flow(given["my_artifacts"])
    assert not found.ok
    shown = "".join(o.get("text", "") for o in check.outputs)
    assert shown == f"{found}\n"
    task = cells[cells.index(answer) - 1].source
    assert str(SOLUTION.relative_to(ROOT)) in task
