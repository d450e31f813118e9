"""Notebook 06's exercise: a step of your own in a pipeline, after the package's steps.

The learner writes a lightweight Python component that reads the transform step's
``data`` (the folder of the train, eval and test splits) and writes, as an output
artifact, how many days each split holds; and a ``@dsl.pipeline`` that runs the package's
ingest and transform components and then that step. The check compiles the pipeline with
kfp's compiler, reads the compiled tasks (the learner's step must take an artifact that
another task of the pipeline made), runs the pipeline with ``kfp.local``
(``SubprocessRunner``, in a temporary pipeline root, caching off) and opens what the step
wrote: the counts must be the ones the run's transform step reports in its stats. Then it
runs the learner's step alone on splits it makes itself (a folder like the transform's
output, other row counts, imported with ``dsl.importer``): the counts must be those too,
so a step that writes fixed numbers does not pass.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

from crypto_pipeline.splits import SPLITS
from crypto_workshop.exercises import Verdict, local_session, log_lines, verdict
from crypto_workshop.exercises.step_run import (
    KNOWN_ROWS,
    artifact_content,
    days_text,
    failure_in,
    run_alone,
    split_counts,
)

PACKAGE_STEPS = ("ingest-step", "transform-step")
"""The package's components the pipeline runs first (their names in the compiled file)."""
_TASK_FAILED = re.compile(r"Task '([\w-]+)' finished with status FAILURE")
RIGHT = "your step reads the transform step's splits and writes the days of each"


def _package_step(component_name: str) -> str:
    """``ingest-step`` for ``comp-ingest-step`` (or ``comp-ingest-step-2``); "" for others."""
    bare = re.sub(r"-\d+$", "", component_name.removeprefix("comp-"))
    return bare if bare in PACKAGE_STEPS else ""


def _what_it_is(pipeline: Any) -> str:
    """What is wrong with PIPELINE as a pipeline, or "" when it is one."""
    from kfp import dsl
    from kfp.dsl.base_component import BaseComponent
    from kfp.dsl.graph_component import GraphComponent

    if pipeline is None:
        return (
            "my_pipeline is None: write your component (`@dsl.component`) and a function "
            "with `@dsl.pipeline` above its def that calls ingest_op, transform_op and your "
            "component, then set my_pipeline to that function (without calling it)"
        )
    if isinstance(pipeline, dsl.PipelineTask):
        return (
            "my_pipeline is a task, the result of calling a component or pipeline: set it "
            "to the pipeline function itself (no parentheses)"
        )
    if isinstance(pipeline, GraphComponent):
        return ""
    if isinstance(pipeline, BaseComponent):
        return (
            f"my_pipeline is the component {pipeline.name}, not a pipeline: write a function "
            "with `@dsl.pipeline` that calls ingest_op, transform_op and then it, and set "
            "my_pipeline to that"
        )
    what = "a plain function" if callable(pipeline) else f"a {type(pipeline).__name__}"
    return (
        f"my_pipeline is {what}, not a pipeline: put `@dsl.pipeline` on the line above its "
        "def, run the cell again"
    )


def _compiled(pipeline: Any, path: Path) -> tuple[dict[str, Any] | None, str]:
    """The pipeline compiled to PATH and read back, or None and the compiler's reason."""
    import yaml
    from kfp import compiler

    try:
        compiler.Compiler().compile(pipeline_func=pipeline, package_path=str(path))
    except Exception as refused:  # the compiler's own reason is the lesson
        return None, f"kfp cannot compile it: {type(refused).__name__}: {refused}"
    return yaml.safe_load(path.read_text()), ""


def _steps_missing(kind: dict[str, str]) -> list[str]:
    """What the pipeline's tasks lack: an ingest, a transform, one step of the learner's."""
    own = [name for name, step in kind.items() if not step]
    missing = []
    if "ingest-step" not in kind.values():
        missing.append(
            "the pipeline runs no ingest step: start it with "
            'ingest_task = ingest_op(source_uri=source_uri, source_fingerprint="")'
        )
    if "transform-step" not in kind.values():
        missing.append(
            "the pipeline runs no transform step: add transform_task = "
            'transform_op(raw=ingest_task.outputs["raw"]) after the ingest'
        )
    if not own:
        missing.append(
            "the pipeline runs no step of your own: call your component in it, after "
            'the transform, with data=transform_task.outputs["data"]'
        )
    if len(own) > 1:
        missing.append(
            f"the pipeline runs {len(own)} steps of your own ({', '.join(own)}): keep one, "
            "the one that counts the days"
        )
    return missing


def _data_input(task: str, spec: dict[str, Any], transforms: list[str]) -> tuple[str, str]:
    """The input of TASK that takes the transform's data ("" if none), or what is wrong."""
    inputs = spec.get("inputs", {})
    consumed = [
        (name, source["taskOutputArtifact"])
        for name, source in inputs.get("artifacts", {}).items()
        if "taskOutputArtifact" in source
    ]
    if not consumed:
        passed = ", ".join(inputs.get("parameters", {})) or "nothing"
        return "", (
            f"your step {task} takes no artifact from another step (it gets {passed}): give "
            "your component an input `data: Input[Dataset]` and pass it "
            'data=transform_task.outputs["data"]'
        )
    reads_data = [
        name
        for name, source in consumed
        if source.get("producerTask") in transforms and source.get("outputArtifactKey") == "data"
    ]
    if reads_data:
        return reads_data[0], ""
    got = ", ".join(
        f"{source.get('producerTask')}'s {source.get('outputArtifactKey')}"
        for _, source in consumed
    )
    return "", (
        f"your step {task} reads {got}: read the transform step's data instead "
        '(data=transform_task.outputs["data"]), the folder that holds the splits'
    )


def _unset_parameters(spec: dict[str, Any]) -> list[str]:
    """The pipeline's parameters that have no default value (the check passes none)."""
    parameters = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    return [
        name
        for name, parameter in parameters.items()
        if "defaultValue" not in parameter and not parameter.get("isOptional")
    ]


def _structure(spec: dict[str, Any]) -> tuple[list[str], str, str, str, dict[str, str]]:
    """What is missing from the compiled pipeline's tasks, and what the check needs next.

    Returns:
        What is missing; the learner's task; the transform task; the learner's input that
        takes the transform's data; the learner's output artifacts (name: type).
    """
    tasks = spec.get("root", {}).get("dag", {}).get("tasks", {})
    kind = {name: _package_step(t["componentRef"]["name"]) for name, t in tasks.items()}
    missing = _steps_missing(kind)
    if missing:
        return missing, "", "", "", {}
    transforms = [name for name, step in kind.items() if step == "transform-step"]
    (task,) = [name for name, step in kind.items() if not step]
    data_input, problem = _data_input(task, tasks[task], transforms)
    missing += [problem] if problem else []
    component = spec.get("components", {}).get(tasks[task]["componentRef"]["name"], {})
    artifacts = {
        name: out.get("artifactType", {}).get("schemaTitle", "")
        for name, out in component.get("outputDefinitions", {}).get("artifacts", {}).items()
    }
    if not artifacts:
        missing.append(
            f"your step {task} writes no artifact: give your component an output such as "
            "`days: Output[Artifact]` and write the counts into days.path as JSON"
        )
    if unset := _unset_parameters(spec):
        missing.append(
            f"give my_pipeline's parameters default values ({', '.join(unset)}): the check "
            'calls it without arguments, as in source_uri: str = "sample"'
        )
    return missing, task, transforms[0], data_input, artifacts


def _wrong_counts(name: str, counts: dict[str, float], kept: dict[str, float]) -> str:
    """What is wrong with counts that are not the ones the transform kept (not said)."""
    if all(counts[split] == kept[split] + 1 for split in SPLITS):
        return (
            f"{name} says {days_text(counts)} days, one more in each split than its CSV file "
            "holds rows: count the rows without the header line"
        )
    return (
        f"{name} says {days_text(counts)} days, but the transform step kept other counts: count "
        "the rows of each split's CSV file, without its header line"
    )


def _counted_in_run(
    pipeline: Any, root: Path, task: str, transform: str, artifacts: dict[str, str]
) -> tuple[str, dict[str, float], str]:
    """Runs PIPELINE with kfp.local in ROOT: the artifact with the days and its counts.

    Returns:
        The learner's artifact that holds the days per split and its counts, when they are
        the ones the run's transform step kept; else what is wrong, as the third item.
    """
    with local_session(root) as log:
        try:
            pipeline()
        except Exception as raised:  # kfp.local refused to start it
            return "", {}, f"kfp.local could not run it: {type(raised).__name__}: {raised}"
    runs = sorted(p for p in (root / "pipeline-root").iterdir() if p.is_dir())
    run = runs[0] if len(runs) == 1 else root / "pipeline-root"
    failed = _TASK_FAILED.findall("\n".join(log_lines(log.getvalue())))
    if failed or not (run / task / "executor_output.json").is_file():
        where = failed[0] if failed else task
        return (
            "",
            {},
            (
                f"the run failed in {where}: {failure_in(log.getvalue(), where)} (fix it, "
                "run the cells again)"
            ),
        )
    stats = json.loads((run / transform / "data" / "stats.json").read_text())
    kept = {split: float(stats["splits"][split]["rows"]) for split in SPLITS}
    outputs = json.loads((run / task / "executor_output.json").read_text())
    found = []
    for name in artifacts:
        artifact = (outputs.get("artifacts", {}).get(name, {}).get("artifacts") or [{}])[0]
        found.append((name, *artifact_content(artifact, root)))
    counted = [(name, counts) for name, value, _ in found if (counts := split_counts(value))]
    if not counted:
        said = "; ".join(
            f"{name} {word}" if word else f"{name} holds {json.dumps(value)[:80]}"
            for name, value, word in found
        )
        return (
            "",
            {},
            (
                f"your step's output has no days per split ({said}): write a JSON object "
                'such as {"train": …, "eval": …, "test": …} into its path (json.dump), '
                "each split's number of rows"
            ),
        )
    name, counts = counted[0]
    if counts != kept:
        return "", {}, _wrong_counts(name, counts, kept)
    return name, counts, ""


def _wrong_alone(name: str, alone: dict[str, float], counts: dict[str, float]) -> str:
    """What is wrong with the step's counts on the splits the check made (not said)."""
    made = f"splits the check made, of {days_text(KNOWN_ROWS)} rows"
    if alone == counts:
        return (
            f"on {made}, {name} says the same days as for the sample's splits: your "
            "step must count the rows of the files in data.path, not write fixed numbers"
        )
    return (
        f"on {made}, {name} says {days_text(alone)} days: count the rows of each split's "
        "CSV file in data.path, without its header line"
    )


def check_pipeline(pipeline: Any) -> Verdict:
    """Whether PIPELINE runs ingest, transform and a step that writes the days per split.

    The pipeline is compiled with kfp's compiler and its compiled tasks read: it must run
    the package's ingest and transform steps and one step of the learner's, which takes
    the transform's ``data`` artifact and has an output artifact. Then it runs with
    ``kfp.local`` in a temporary folder (its parameters' defaults; caching off), and the
    step's output is opened: a JSON object (or logged metrics) with the days of ``train``,
    ``eval`` and ``test``, equal to what the run's transform step reports. Last, the
    learner's step runs alone on splits the check makes (``known_splits``, other row
    counts, imported with ``dsl.importer``): it must count those too. The caller's own
    ``kfp.local`` session is left as it was.

    Args:
        pipeline: What the learner wrote: a function decorated with ``@dsl.pipeline``.
    """
    problem = _what_it_is(pipeline)
    if problem:
        return verdict([problem], RIGHT)
    with tempfile.TemporaryDirectory(prefix="kfp-exercise-") as tmp:
        root = Path(tmp)
        spec, refused = _compiled(pipeline, root / "my_pipeline.yaml")
        if spec is None:
            return verdict([refused], RIGHT)
        missing, task, transform, data_input, artifacts = _structure(spec)
        if missing:
            return verdict(missing, RIGHT)
        name, counts, problem = _counted_in_run(pipeline, root, task, transform, artifacts)
        if problem:
            return verdict([problem], RIGHT)
        alone, why_not = run_alone(pipeline, task, data_input, name, root / "alone")
    if alone is None:
        return verdict([why_not], RIGHT)
    known = {split: float(rows) for split, rows in KNOWN_ROWS.items()}
    if alone != known:
        return verdict([_wrong_alone(name, alone, counts)], RIGHT)
    return verdict(
        [],
        f"{task} read the transform step's data and wrote the days per split into its "
        f"artifact {name} ({days_text(counts)}), the counts the transform kept, and the right "
        f"counts for splits the check made ({days_text(known)}); kfp compiled the pipeline and "
        "kfp.local ran it",
    )
