"""Notebook 05's exercise: a pipeline step that reads the prices and writes an artifact.

The learner writes a lightweight Python component (``@dsl.component``) that takes the
prices CSV of the notebook's ``make_prices`` as an ``Input[Dataset]`` and writes an output
artifact of its own (a ``Dataset`` it fills, or ``Metrics`` it logs). The check reads the
component's interface, puts it in a pipeline after a prices Dataset (``dsl.importer`` of
a CSV with ``make_prices``'s columns), compiles that pipeline with kfp's compiler, runs it
with ``kfp.local`` (``SubprocessRunner``, in a temporary pipeline root) and opens what the
step wrote. The step runs three times: on one prices CSV, on another (other days, other
closes), and on the first again. What it writes must change with the prices and not
between two runs on the same ones: so it comes from the prices, and from nothing else.
"""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path
from typing import Any

from crypto_workshop.exercises import (
    Verdict,
    last_exception,
    local_session,
    log_lines,
    verdict,
)

PRICES_COLUMNS = ("day", "close")
"""The columns of the CSV that the notebook's ``make_prices`` writes, and the check feeds."""
METRICS_TYPES = (
    "system.Metrics",
    "system.ClassificationMetrics",
    "system.SlicedClassificationMetrics",
)
"""Artifact types whose content is their metadata (logged values), not a file."""
PRICES_RUNS = ((10, 7), (14, 11))
"""The two prices CSVs the component runs on: (days, seed), other lengths, other closes."""
RUN_ORDER = (0, 1, 0)
"""Which CSV each run reads: the first, the other, the first again (the same output)."""


def prices_csv(days: int = 10, seed: int = 7) -> str:
    """A prices CSV like the one ``make_prices`` writes: a header, then one row a day."""
    rng = random.Random(seed)
    close, rows = 100.0, [",".join(PRICES_COLUMNS)]
    for day in range(1, days + 1):
        close *= 1 + rng.gauss(0, 0.02)
        rows.append(f"{day},{close:.2f}")
    return "\n".join(rows) + "\n"


def _kind(spec_type: str) -> str:
    """``Dataset`` for ``system.Dataset@0.0.1``; a parameter's type as it is."""
    return spec_type.split("@")[0].removeprefix("system.")


def _failure(log: str) -> str:
    """Why the step failed, from kfp.local's log (its last exception), and the fix."""
    lines = log_lines(log)
    raised = last_exception(lines)
    if raised:
        return (
            f"the run failed: {raised} "
            "(kfp.local ran the function's body on a prices CSV; fix the body, run both "
            "cells again)"
        )
    refused = [line.strip() for line in lines if line.strip().startswith("ERROR: ")]
    if refused:  # pip, installing packages_to_install before the function ran
        return (
            f"the run failed before the function ran: pip says {refused[-1][7:]} (the check "
            "installs nothing: use only packages this environment has)"
        )
    return (
        "the run failed, and kfp.local's log names no exception: call the component alone "
        "to see its output"
    )


def _contents(path: Path) -> dict[str, bytes]:
    """The bytes of a file (under ""), or of each file under a folder (by its path there)."""
    if path.is_file():
        return {"": path.read_bytes()}
    if path.is_dir():
        return {
            p.relative_to(path).as_posix(): p.read_bytes() for p in path.rglob("*") if p.is_file()
        }
    return {}


def _interface(component: Any) -> tuple[list[str], str, dict[str, str]]:
    """What is missing from the component's interface; its Dataset input; its artifacts."""
    spec = component.component_spec
    inputs, outputs = spec.inputs or {}, spec.outputs or {}
    missing = []
    datasets = [
        name for name, s in inputs.items() if _kind(s.type) == "Dataset" and not s.is_artifact_list
    ]
    if not datasets:
        missing.append(
            "give it an input for the prices, typed `prices: Input[Dataset]`: the check "
            "passes it the CSV that make_prices writes"
        )
    elif len(datasets) > 1:
        missing.append(
            f"it takes {len(datasets)} Dataset inputs ({', '.join(datasets)}): keep one, the prices"
        )
    others = [name for name, s in inputs.items() if name not in datasets and not s.optional]
    if others:
        missing.append(
            f"give its other inputs ({', '.join(others)}) default values: the pipeline "
            "passes it only the prices"
        )
    artifacts = {name: _kind(s.type) for name, s in outputs.items() if s.type.startswith("system.")}
    if not artifacts:
        fix = (
            "give it an output artifact, a parameter such as `moves: Output[Dataset]` (a "
            "file it writes at moves.path) or `summary: Output[Metrics]` (values it logs "
            "with summary.log_metric)"
        )
        if outputs:
            returned = ", ".join(f"{n} ({_kind(s.type)})" for n, s in outputs.items())
            fix += f"; what it returns ({returned}) is a parameter, not an artifact"
        missing.append(fix)
    return missing, datasets[0] if len(datasets) == 1 else "", artifacts


def _what_it_wrote(
    name: str, kind: str, step_dir: Path, executor_output: dict[str, Any]
) -> tuple[str, str, object]:
    """What is missing about one output artifact ("" if nothing), what it holds, its content.

    The content (its file's bytes, or a Metrics artifact's values) is what the check
    compares between runs.
    """
    artifact = (executor_output.get("artifacts", {}).get(name, {}).get("artifacts") or [{}])[0]
    if f"system.{kind}" in METRICS_TYPES:
        metadata = {
            k: v for k, v in (artifact.get("metadata") or {}).items() if k != "display_name"
        }
        if not metadata:
            return (
                f"{name} (Metrics) holds no value: log at least one with "
                f'{name}.log_metric("a_name", a_number)',
                "",
                None,
            )
        held = ", ".join(f"{k}={v}" for k, v in sorted(metadata.items()))
        return "", f"{name} ({kind}: {held})", json.dumps(metadata, sort_keys=True)
    path = Path(artifact.get("uri") or step_dir / name)
    contents = _contents(path)
    size = sum(len(b) for b in contents.values())
    if size == 0:
        where = "is empty" if path.exists() else "has no file"
        return (
            f"{name} ({kind}) {where} after the run: open {name}.path for writing in the "
            "function's body and write the result into it",
            "",
            None,
        )
    if path.is_file():
        lines = contents[""].count(b"\n")
        return "", f"{name} ({kind}: {lines} lines, {size} bytes)", contents
    return "", f"{name} ({kind}: a folder of {size} bytes)", contents


def _depends(found: list[dict[str, tuple[str, str, object]]], dataset_input: str) -> list[str]:
    """What is missing for the outputs to come from the prices (FOUND: each run's outputs)."""
    first, other, again = ({name: held[2] for name, held in run.items()} for run in found)
    if first == other:
        (days, _), (other_days, _) = PRICES_RUNS
        return [
            f"{', '.join(first)} came out the same for two different prices CSVs ({days} "
            f"days, then {other_days} days with other closes): the output must come from the "
            f"prices: open {dataset_input}.path, read its rows (day, close) and compute from "
            "them"
        ]
    changed = [name for name in first if first[name] != again[name]]
    if changed:
        return [
            f"{', '.join(changed)} came out different in two runs on the same prices: write "
            "only what the prices give (no random numbers, no clock times)"
        ]
    return []


def _what_it_is(component: Any) -> str:
    """What is wrong with COMPONENT as a lightweight Python component, or "" when it is one."""
    from kfp import dsl
    from kfp.dsl.base_component import BaseComponent
    from kfp.dsl.python_component import PythonComponent

    if component is None:
        return (
            "my_component is None: write a function with `@dsl.component` above its def, "
            "then set my_component to it (my_component = daily_moves, without calling it)"
        )
    if isinstance(component, dsl.PipelineTask):
        return (
            "my_component is a task, the result of calling the component: set it to the "
            "component itself (my_component = daily_moves, no parentheses)"
        )
    if not isinstance(component, BaseComponent):
        what = "a plain function" if callable(component) else f"a {type(component).__name__}"
        return (
            f"my_component is {what}, not a component: put `@dsl.component` on the line "
            "above its def, run the cell again"
        )
    if not isinstance(component, PythonComponent):
        return (
            f"{component.name} is not a lightweight Python component (a pipeline or a "
            "container component): write a function decorated with `@dsl.component`"
        )
    return ""


def _run_on_prices(
    component: Any, dataset_input: str, artifacts: dict[str, str]
) -> tuple[list[dict[str, tuple[str, str, object]]], str]:
    """Runs COMPONENT on each prices CSV of RUN_ORDER: what each run wrote, or why it did not.

    Returns:
        For each run, what ``_what_it_wrote`` says of each output artifact; or an empty
        list and what stopped the runs.
    """
    from kfp import compiler, dsl
    from kfp.dsl import Dataset

    with tempfile.TemporaryDirectory(prefix="kfp-exercise-") as tmp:
        root = Path(tmp)
        csvs = []
        for number, (days, seed) in enumerate(PRICES_RUNS):
            csvs.append(root / f"prices-{number}.csv")
            csvs[-1].write_text(prices_csv(days=days, seed=seed))
        tasks: list[str] = []

        @dsl.pipeline(name="exercise-05")
        def with_prices():
            """The component on the first prices, on other prices, then on the first again."""
            imported = [
                dsl.importer(artifact_uri=str(csv), artifact_class=Dataset).output for csv in csvs
            ]
            for which in RUN_ORDER:
                tasks.append(component(**{dataset_input: imported[which]}).name)

        try:
            compiler.Compiler().compile(
                pipeline_func=with_prices, package_path=str(root / "exercise-05.yaml")
            )
        except Exception as refused:  # the compiler's own reason is the lesson
            return [], (
                f"kfp cannot compile a pipeline with it: {type(refused).__name__}: {refused}"
            )
        with local_session(root) as log:
            with_prices()
        runs = sorted((root / "pipeline-root").glob("exercise-05-*"))
        steps = [runs[-1] / task if runs else root for task in tasks[-len(RUN_ORDER) :]]
        if not all((step / "executor_output.json").is_file() for step in steps):
            return [], _failure(log.getvalue())  # a step failed before its outputs
        found = []
        for step in steps:
            executor_output = json.loads((step / "executor_output.json").read_text())
            found.append(
                {
                    name: _what_it_wrote(name, kind, step, executor_output)
                    for name, kind in artifacts.items()
                }
            )
    return found, ""


def check_component(component: Any) -> Verdict:
    """Whether COMPONENT reads the prices Dataset and writes an output artifact, for real.

    The component runs in a pipeline after prices CSVs (``dsl.importer``): on one, on
    another with other days and closes, and on the first again. The pipeline is compiled,
    run with ``kfp.local`` in a temporary folder (a few seconds), and each output artifact
    is opened: a file artifact must hold bytes, a Metrics artifact at least one value, and
    the outputs must differ between the two CSVs and match between the two runs on the
    same one. The caller's own ``kfp.local`` session is left as it was.

    Args:
        component: What the learner wrote: a function decorated with ``@dsl.component``.
    """
    right = "it reads the prices and writes an artifact"  # said in full once it ran
    problem = _what_it_is(component)
    if problem:
        return verdict([problem], right)
    missing, dataset_input, artifacts = _interface(component)
    if missing:
        return verdict(missing, right)
    found, problem = _run_on_prices(component, dataset_input, artifacts)
    if problem:
        return verdict([problem], right)
    missing = [problem for problem, _, _ in found[0].values() if problem]
    if not missing:  # the same, on the other prices
        missing += [
            f"{problem} (on a prices CSV of {PRICES_RUNS[RUN_ORDER[1]][0]} days)"
            for problem, _, _ in found[1].values()
            if problem
        ]
    if not missing:
        missing += _depends(found, dataset_input)
    wrote = ", ".join(held for _, held, _ in found[0].values() if held)
    return verdict(
        missing,
        f"{component.name} reads the prices and writes {wrote}; what it writes changes "
        f"with the prices ({PRICES_RUNS[0][0]} days, then {PRICES_RUNS[1][0]} days) and not "
        "between two runs on the same ones; kfp compiled it in a pipeline and kfp.local ran it",
    )
