"""Kubeflow Pipelines' first sample, "[Sample] Basic - Condition", in KFP v2.

The 2019 series opened the Pipelines UI on this sample: flip a coin; on heads draw a
number from 0 to 9, on tails one from 10 to 19; then print whether it is above the middle.
Here it is with v2's ``dsl.If`` / ``dsl.Else`` (``dsl.Condition`` is their deprecated
name). Every random draw takes a seed, so a run can be repeated exactly.

    from crypto_workshop import coin_flip
    coin_flip.run_local(seed=7, pipeline_root="runs/coin-flip")
"""

import contextlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

from kfp import dsl

BASE_IMAGE = "python:3.11-slim-bookworm"
PIPELINE_NAME = "condition"


@dsl.component(base_image=BASE_IMAGE)
def flip_coin(seed: int) -> str:
    """Heads or tails."""
    import random

    return random.Random(seed).choice(["heads", "tails"])


@dsl.component(base_image=BASE_IMAGE)
def random_number(low: int, high: int, seed: int) -> int:
    """A whole number from ``low`` to ``high``, both included."""
    import random

    return random.Random(seed).randint(low, high)


@dsl.component(base_image=BASE_IMAGE)
def print_msg(msg: str) -> str:
    """Prints the message (it shows in the step's log) and returns it."""
    print(msg)
    return msg


@dsl.pipeline(
    name=PIPELINE_NAME,
    description='"[Sample] Basic - Condition": a coin flip decides which steps run.',
)
def condition_pipeline(seed: int = 7):
    """Flips a coin, draws a number on the side it chose, and says where the number fell."""
    flip = flip_coin(seed=seed)
    with dsl.If(flip.output == "heads", name="heads"):
        number = random_number(low=0, high=9, seed=seed)
        with dsl.If(number.output > 5, name="above 5"):
            print_msg(msg="heads and the number is above 5")
        with dsl.Else(name="5 or below"):
            print_msg(msg="heads and the number is 5 or below")
    with dsl.Else(name="tails"):
        number = random_number(low=10, high=19, seed=seed)
        with dsl.If(number.output > 15, name="above 15"):
            print_msg(msg="tails and the number is above 15")
        with dsl.Else(name="15 or below"):
            print_msg(msg="tails and the number is 15 or below")


@dataclass(frozen=True)
class LocalRun:
    """The steps that ran, each with its output, in the order they finished."""

    run_dir: Path
    outputs: dict[str, str | int]
    log: str


def run_local(seed: int, pipeline_root: str | os.PathLike[str]) -> LocalRun:
    """Runs the sample with kfp.local (subprocesses in this environment, no cluster).

    Args:
        seed: Decides the coin and the numbers.
        pipeline_root: Folder for the run folders.

    Returns:
        The run: only the branch the coin chose has outputs.
    """
    from kfp import local

    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    before = set(root.glob(f"{PIPELINE_NAME}-*"))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        condition_pipeline(seed=seed)
    (run_dir,) = set(root.glob(f"{PIPELINE_NAME}-*")) - before
    files = sorted(run_dir.rglob("executor_output.json"), key=lambda p: p.stat().st_mtime_ns)
    outputs = {
        str(p.parent.relative_to(run_dir)): json.loads(p.read_text())["parameterValues"]["Output"]
        for p in files
    }
    return LocalRun(run_dir, outputs, log.getvalue())


def compile_pipeline(path: str | os.PathLike[str]) -> Path:
    """Writes the sample's IR YAML (what you would upload to Kubeflow Pipelines)."""
    from kfp import compiler

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(condition_pipeline, os.fspath(path))
    return path
