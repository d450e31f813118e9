"""Notebook 05's exercise: the check compiles the learner's component and runs it, for real.

Each check runs the component three times through kfp.local (a subprocess per step, about
a second each): on one prices CSV, on another, and on the first again.
"""

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest
from kfp import dsl, local
from kfp.dsl import Dataset, Input, Metrics, Output
from kfp.local import config

from crypto_workshop.exercises.pipelines import check_component, prices_csv

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "05-kubeflow-pipelines.ipynb"
SOLUTION = ROOT / "notebooks" / "solutions" / "05-kubeflow-pipelines" / "daily_moves.py"
IMAGE = "python:3.11-slim-bookworm"


def solution():
    spec = importlib.util.spec_from_file_location("daily_moves_solution", SOLUTION)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dsl.component(base_image=IMAGE)
def returns_a_number(prices: Input[Dataset]) -> float:
    """A typical slip: the result returned as a parameter, no artifact."""
    return 1.0


@dsl.component(base_image=IMAGE)
def reads_a_wrong_column(prices: Input[Dataset], moves: Output[Dataset]):
    """Fails at run time: the prices have no column "price"."""
    import csv

    with open(prices.path) as f, open(moves.path, "w") as out:
        out.writelines(row["price"] for row in csv.DictReader(f))


@dsl.component(base_image=IMAGE)
def writes_nothing(prices: Input[Dataset], moves: Output[Dataset]):
    """Declares an output Dataset and never writes it."""
    print(prices.path)


@dsl.component(base_image=IMAGE)
def logs_a_metric(data: Input[Dataset], summary: Output[Metrics], top: int = 3):
    """Another right answer: Metrics instead of a Dataset, another input name, a default."""
    with open(data.path) as f:
        summary.log_metric("days", len(f.readlines()) - 1)


@dsl.component(base_image=IMAGE)
def never_reads_the_prices(prices: Input[Dataset], moves: Output[Dataset]):
    """Writes a file, the same whatever the prices: it never opens prices.path."""
    with open(moves.path, "w") as f:
        f.write("day,move_pct\n2,1.5\n")


@dsl.component(base_image=IMAGE)
def logs_a_fixed_metric(prices: Input[Dataset], summary: Output[Metrics]):
    """Logs a value it did not compute from the prices."""
    summary.log_metric("largest_move", 3.2)


@dsl.component(base_image=IMAGE)
def copies_the_header(prices: Input[Dataset], moves: Output[Dataset]):
    """Opens the prices, but writes only their header line: the same for any prices."""
    with open(prices.path) as f, open(moves.path, "w") as out:
        out.write(f.readline())


@dsl.component(base_image=IMAGE)
def logs_a_random_number(prices: Input[Dataset], summary: Output[Metrics]):
    """Differs from run to run, prices or not."""
    import random

    summary.log_metric("largest_move", random.random())


@dsl.component(base_image=IMAGE)
def fails_on_longer_prices(prices: Input[Dataset], moves: Output[Dataset]):
    """Right on the first prices CSV, fails on the other (longer) one."""
    with open(prices.path) as f:
        lines = f.readlines()
    if len(lines) > 11:
        raise ValueError(f"{len(lines) - 1} days: expected 10")
    with open(moves.path, "w") as out:
        out.writelines(lines)


def plain_function(prices, moves):
    """What the component is without @dsl.component."""


def test_the_solution_passes_and_says_what_it_wrote():
    found = check_component(solution().my_component)
    assert found.ok, str(found)
    assert str(found).startswith("Right: daily-moves reads the prices and writes moves")
    assert "(Dataset: 10 lines" in str(found)  # the header and 9 moves for 10 days
    assert "what it writes changes with the prices (10 days, then 14 days)" in str(found)


SAME_FOR_OTHER_PRICES = (
    "came out the same for two different prices CSVs (10 days, then 14 days with other "
    "closes): the output must come from the prices: open prices.path, read its rows (day, "
    "close) and compute from them"
)


@pytest.mark.parametrize(
    ("answer", "named"),
    [
        (never_reads_the_prices, f"moves {SAME_FOR_OTHER_PRICES}"),
        (logs_a_fixed_metric, f"summary {SAME_FOR_OTHER_PRICES}"),
        (copies_the_header, f"moves {SAME_FOR_OTHER_PRICES}"),
        (
            logs_a_random_number,
            "summary came out different in two runs on the same prices: write only what the "
            "prices give (no random numbers, no clock times)",
        ),
        (fails_on_longer_prices, "the run failed: ValueError: 14 days: expected 10"),
    ],
    ids=["never reads them", "a fixed metric", "the header only", "random", "one length only"],
)
def test_an_output_that_does_not_come_from_the_prices_is_caught(answer, named):
    """Writing something is not enough: it must change with the prices, and only with them."""
    found = check_component(answer)
    assert not found.ok, str(found)
    assert named in str(found), str(found)
    assert "reads the prices" not in str(found)


def test_the_empty_answer_says_what_is_missing():
    found = check_component(None)
    assert not found.ok
    assert str(found).startswith("Not yet: my_component is None")
    assert "@dsl.component" in str(found)


@pytest.mark.parametrize(
    ("answer", "names"),
    [
        (plain_function, ["a plain function", "@dsl.component"]),
        (returns_a_number, ["Output[Dataset]", "is a parameter, not an artifact"]),
        (reads_a_wrong_column, ["the run failed: KeyError: 'price'"]),
        (writes_nothing, ["moves (Dataset) has no file after the run"]),
    ],
    ids=["plain function", "no artifact", "fails at run time", "writes nothing"],
)
def test_typical_wrong_answers_are_named(answer, names):
    found = check_component(answer)
    assert not found.ok
    for name in names:
        assert name in str(found), str(found)


@dsl.component(base_image=IMAGE)
def says_hello() -> str:
    """A component with no inputs: calling it under kfp.local runs it, and gives a task."""
    return "hello"


def test_a_task_instead_of_the_component_is_named(tmp_path):
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path))
    task = says_hello()  # as `my_component = daily_moves(...)` would be: called, not named
    found = check_component(task)
    assert not found.ok
    assert "is a task" in str(found)


def test_metrics_with_another_input_name_pass():
    found = check_component(logs_a_metric)
    assert found.ok, str(found)
    assert "summary (Metrics: days=10)" in str(found)


def test_the_learners_own_kfp_local_session_is_left_as_it_was(tmp_path):
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path))
    before = config.LocalExecutionConfig.instance
    check_component(solution().my_component)
    assert config.LocalExecutionConfig.instance is before
    assert config.LocalExecutionConfig.instance.pipeline_root == str(tmp_path)


def test_the_check_feeds_the_columns_make_prices_writes():
    """The check's CSV and the notebook's make_prices must agree (header, days, rounding)."""
    source = "\n".join(c.source for c in nbformat.read(NOTEBOOK, 4).cells if c.cell_type == "code")
    assert 'writer.writerow(["day", "close"])' in source
    lines = prices_csv(days=10).splitlines()
    assert lines[0] == "day,close" and len(lines) == 11
    assert re.fullmatch(r"10,\d+\.\d\d", lines[-1])


def test_the_notebook_holds_the_empty_answer_and_the_check():
    cells = nbformat.read(NOTEBOOK, 4).cells
    (answer,) = [c for c in cells if c.source.startswith("my_component = None")]
    (check,) = [c for c in cells if "check_component(my_component)" in c.source]
    assert cells.index(check) == cells.index(answer) + 1
    assert "nbval-check-output" in check.metadata.get("tags", [])
    shown = "".join(o.get("text", "") for o in check.outputs)
    assert shown.startswith("Not yet: my_component is None")
    task = cells[cells.index(answer) - 1].source
    assert "notebooks/solutions/05-kubeflow-pipelines/daily_moves.py" in task
    assert SOLUTION.is_file()
