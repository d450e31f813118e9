"""The "[Sample] Basic - Condition" pipeline: runs locally, the coin picks the branch."""

import random
import re

import pytest

from crypto_pipeline import __version__
from crypto_pipeline.compiled import compiled_tasks
from crypto_workshop import coin_flip


@pytest.mark.parametrize("seed", [1, 7])
def test_only_the_chosen_branch_runs(tmp_path, seed):
    run = coin_flip.run_local(seed, tmp_path)
    side = random.Random(seed).choice(["heads", "tails"])
    low, high, middle = (0, 9, 5) if side == "heads" else (10, 19, 15)
    number = random.Random(seed).randint(low, high)
    above = f"above {middle}" if number > middle else f"{middle} or below"
    assert list(run.outputs.values()) == [side, number, f"{side} and the number is {above}"]
    assert run.outputs["flip-coin"] == side
    assert run.run_dir.parent == tmp_path
    log = re.sub(r"\x1b\[[0-9;]*m", "", run.log)
    assert "Pipeline 'condition' finished with status SUCCESS" in log


def test_compiled_sample_keeps_its_conditions(tmp_path):
    path = coin_flip.compile_pipeline(tmp_path / "condition.yaml")
    rows = compiled_tasks(path)
    conditions = {row["runs if"] for row in rows if row["runs if"]}
    assert conditions == {
        "flip-coin-Output == 'heads'",
        "!(flip-coin-Output == 'heads')",
        "int(random-number-Output) > 5",
        "!(int(random-number-Output) > 5)",
        "int(random-number-2-Output) > 15",
        "!(int(random-number-2-Output) > 15)",
    }
    tasks = {row["task"]: row for row in rows}
    assert {name for name in tasks if name.startswith("print-msg")} == {
        "print-msg",
        "print-msg-2",
        "print-msg-3",
        "print-msg-4",
    }
    assert tasks["flip-coin"]["image"] == coin_flip.BASE_IMAGE
    assert tasks["flip-coin"]["inside"] == ""


def test_compiled_crypto_pipeline_tasks_and_images():
    from crypto_workshop.machine import project_root

    rows = compiled_tasks(project_root() / "crypto_pipeline.yaml")
    by_task = {row["task"]: row for row in rows}
    assert set(by_task) == {f"{s}-step" for s in ("ingest", "transform", "tune", "train", "deploy")}
    assert [row["task"] for row in rows] == [
        f"{s}-step" for s in ("ingest", "transform", "tune", "train", "deploy")
    ]
    assert by_task["train-step"]["after"] == "transform-step, tune-step"
    assert by_task["tune-step"]["image"].endswith(f"/train:{__version__}")
