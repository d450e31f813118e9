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

import datetime as dt
import inspect
import json
import re
import tempfile
from pathlib import Path
from typing import Any

from crypto_pipeline.exercises import (
    Verdict,
    last_exception,
    local_session,
    log_lines,
    verdict,
)
from crypto_pipeline.splits import SPLITS

PACKAGE_STEPS = ("ingest-step", "transform-step")
"""The package's components the pipeline runs first (their names in the compiled file)."""
_TASK_FAILED = re.compile(r"Task '([\w-]+)' finished with status FAILURE")
RIGHT = "your step reads the transform step's splits and writes the days of each"
KNOWN_ROWS = {"train": 11, "eval": 4, "test": 6}
"""The rows of the splits the check makes for the learner's step alone (not the sample's)."""


def _package_step(component_name: str) -> str:
    """``ingest-step`` for ``comp-ingest-step`` (or ``comp-ingest-step-2``); "" for others."""
    bare = re.sub(r"-\d+$", "", component_name.removeprefix("comp-"))
    return bare if bare in PACKAGE_STEPS else ""


def _failure(log: str, task: str) -> str:
    """Why a task of the run failed, from kfp.local's log: its last exception."""
    lines = log_lines(log)
    begin = max(
        (i for i, line in enumerate(lines) if f"Executing task '{task}'" in line), default=0
    )
    return last_exception(lines[begin:]) or "kfp.local's log names no exception"


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


def _structure(spec: dict[str, Any]) -> tuple[list[str], str, str, str, dict[str, str]]:
    """What is missing from the compiled pipeline's tasks, and what the check needs next.

    Returns:
        What is missing; the learner's task; the transform task; the learner's input that
        takes the transform's data; the learner's output artifacts (name: type).
    """
    tasks = spec.get("root", {}).get("dag", {}).get("tasks", {})
    components = spec.get("components", {})
    kind = {name: _package_step(t["componentRef"]["name"]) for name, t in tasks.items()}
    transforms = [name for name, step in kind.items() if step == "transform-step"]
    ingests = [name for name, step in kind.items() if step == "ingest-step"]
    own = [name for name, step in kind.items() if not step]
    missing = []
    if not ingests:
        missing.append(
            "the pipeline runs no ingest step: start it with "
            'ingest_task = ingest_op(source_uri=source_uri, source_fingerprint="")'
        )
    if not transforms:
        missing.append(
            "the pipeline runs no transform step: add transform_task = "
            'transform_op(raw=ingest_task.outputs["raw"], coin=coin, …) after the ingest'
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
    if missing:
        return missing, "", "", "", {}
    (task,) = own
    consumed = [
        (name, source["taskOutputArtifact"])
        for name, source in tasks[task].get("inputs", {}).get("artifacts", {}).items()
        if "taskOutputArtifact" in source
    ]
    if not consumed:
        passed = ", ".join(tasks[task].get("inputs", {}).get("parameters", {})) or "nothing"
        missing.append(
            f"your step {task} takes no artifact from another step (it gets {passed}): give "
            "your component an input `data: Input[Dataset]` and pass it "
            'data=transform_task.outputs["data"]'
        )
    reads_data = [
        name
        for name, source in consumed
        if source.get("producerTask") in transforms and source.get("outputArtifactKey") == "data"
    ]
    if consumed and not reads_data:
        got = ", ".join(
            f"{source.get('producerTask')}'s {source.get('outputArtifactKey')}"
            for _, source in consumed
        )
        missing.append(
            f"your step {task} reads {got}: read the transform step's data instead "
            '(data=transform_task.outputs["data"]), the folder that holds the splits'
        )
    component = components.get(tasks[task]["componentRef"]["name"], {})
    artifacts = {
        name: out.get("artifactType", {}).get("schemaTitle", "")
        for name, out in component.get("outputDefinitions", {}).get("artifacts", {}).items()
    }
    if not artifacts:
        missing.append(
            f"your step {task} writes no artifact: give your component an output such as "
            "`days: Output[Artifact]` and write the counts into days.path as JSON"
        )
    unset = [
        name
        for name, parameter in spec.get("root", {})
        .get("inputDefinitions", {})
        .get("parameters", {})
        .items()
        if "defaultValue" not in parameter and not parameter.get("isOptional")
    ]
    if unset:
        missing.append(
            f"give my_pipeline's parameters default values ({', '.join(unset)}): the check "
            'calls it without arguments, as in source_uri: str = "sample"'
        )
    return missing, task, transforms[0], (reads_data or [""])[0], artifacts


def _counts(value: Any) -> dict[str, float] | None:
    """The days per split in what the step wrote, or None when it holds no such counts."""
    if not isinstance(value, dict) or not all(split in value for split in SPLITS):
        return None
    try:
        return {split: float(value[split]) for split in SPLITS}
    except (TypeError, ValueError):
        return None


def _written(artifact: dict[str, Any], root: Path) -> tuple[Any, str]:
    """What one output artifact holds: its file's JSON, else its logged metadata.

    Returns:
        What it holds, and a word on its file ("" when the file held JSON).
    """
    metadata = {k: v for k, v in (artifact.get("metadata") or {}).items() if k != "display_name"}
    path = Path(artifact.get("uri") or "")
    if not path.is_absolute() or root not in path.parents:
        return metadata, "has no file"
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        path = files[0] if len(files) == 1 else path
    if not path.is_file() or path.stat().st_size == 0:
        return metadata, "is empty" if path.exists() else "has no file"
    try:
        return json.loads(path.read_text()), ""
    except (ValueError, UnicodeDecodeError):
        return metadata, "holds no JSON"


def _days(counts: dict[str, float]) -> str:
    return ", ".join(f"{split} {counts[split]:,.0f}" for split in SPLITS)


def known_splits(folder: Path, rows: dict[str, int] | None = None) -> Path:
    """A transform output folder in FOLDER: one CSV per split, ROWS rows each, its stats.

    Laid out as the transform step writes it (``train-00000-of-00001.csv``, …, with the
    header and the columns of ``crypto-markets.csv``, and ``stats.json``), so that a step
    that reads the transform's ``data`` reads this folder the same way.
    """
    from crypto_pipeline.schema import COLUMNS, MarketRow

    rows = rows or KNOWN_ROWS
    folder.mkdir(parents=True, exist_ok=True)
    day, close, splits = dt.date(2017, 1, 1), 1000.0, {}
    for split in SPLITS:
        name = f"{split}-00000-of-00001.csv"
        lines, first = [",".join(COLUMNS)], day
        for _ in range(rows[split]):
            opened, close = close, round(close * (1.01 if day.day % 3 else 0.98), 2)
            high, low = max(opened, close) + 5, min(opened, close) - 5
            row = MarketRow(
                "bitcoin", "BTC", "Bitcoin", day, 1.0, opened, high, low, close,
                1e9, 1.6e10, round((close - low) / (high - low), 4), high - low,
            )  # fmt: skip
            lines.append(",".join(row.to_csv_fields()))
            day += dt.timedelta(days=1)
        (folder / name).write_text("\n".join(lines) + "\n")
        last = day - dt.timedelta(days=1)
        splits[split] = {
            "rows": rows[split],
            "first_date": first.isoformat(),
            "last_date": last.isoformat(),
            "file": name,
        }
    stats = {"coin": "bitcoin", "rows_kept": sum(rows.values()), "splits": splits}
    (folder / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    return folder


def _own_task(pipeline: Any, task: str) -> Any:
    """The learner's task, as the pipeline function makes it (its component and arguments)."""
    from kfp.dsl import pipeline_channel, pipeline_context

    spec = pipeline.component_spec
    channels = [
        pipeline_channel.create_pipeline_channel(
            name=name,
            channel_type=spec.inputs[name].type,
            is_artifact_list=spec.inputs[name].is_artifact_list,
        )
        for name in inspect.signature(pipeline.pipeline_func).parameters
    ]
    with pipeline_context.Pipeline(spec.name) as traced:  # as @dsl.pipeline traces it
        pipeline.pipeline_func(*channels)
    return traced.tasks.get(task)


def _alone(pipeline: Any, task: str, data_input: str) -> tuple[Any, dict[str, Any], list[str]]:
    """The learner's component and its arguments besides the data, or what stops a run alone."""
    from google.protobuf import json_format
    from kfp import components
    from kfp.dsl import pipeline_channel

    own = _own_task(pipeline, task)
    if own is None:  # the pipeline function made other tasks this time
        return None, {}, [f"the check could not find your step {task} again in my_pipeline"]
    defaults = {name: s.default for name, s in (pipeline.component_spec.inputs or {}).items()}
    arguments, from_steps = {}, []
    for name, value in own.inputs.items():
        if name == data_input:
            continue
        if not isinstance(value, pipeline_channel.PipelineChannel):
            arguments[name] = value
        elif value.task_name is None:  # one of the pipeline's parameters: its default
            arguments[name] = defaults.get(value.name)
        else:
            from_steps.append(f"{name} (from {value.task_name})")
    missing = []
    if from_steps:
        missing.append(
            f"your step {task} also takes {', '.join(from_steps)}: give it only the "
            "transform's data (and plain values), so that it counts the days of any splits"
        )
    # The component again, from the spec its task carries, as kfp loads a compiled one.
    spec = json_format.MessageToJson(own.component_spec.to_pipeline_spec())
    return components.load_component_from_text(spec), arguments, missing


def _run_alone(
    pipeline: Any, task: str, data_input: str, artifact: str, root: Path
) -> tuple[dict[str, float] | None, str]:
    """The learner's step run alone on the splits the check makes: its counts, or why not."""
    from kfp import dsl
    from kfp.dsl import Dataset

    try:
        component, arguments, missing = _alone(pipeline, task, data_input)
    except Exception as raised:  # the pipeline function, run again, did not run as before
        missing = [f"the check could not run your step alone: {type(raised).__name__}: {raised}"]
    if missing:
        return None, missing[0]
    folder = known_splits(root / "known-splits")
    made = f"splits the check made ({_days(KNOWN_ROWS)} rows, laid out as the transform's)"

    def on_known_splits():
        """The learner's step, on a transform output folder the check made."""
        imported = dsl.importer(artifact_uri=str(folder), artifact_class=Dataset)
        component(**{data_input: imported.output}, **arguments)

    with local_session(root) as log:
        try:
            dsl.pipeline(name="exercise-06-known-splits")(on_known_splits)()
        except Exception as raised:  # kfp refused to make or start it
            return None, (
                f"kfp.local could not run your step on {made}: {type(raised).__name__}: {raised}"
            )
    runs = sorted((root / "pipeline-root").glob("exercise-06-known-splits-*"))
    output = runs[-1] / component.name / "executor_output.json" if runs else root / "none"
    if not output.is_file():
        return None, (
            f"your step failed on {made}: {_failure(log.getvalue(), component.name)} (make "
            "it count any splits: crypto_pipeline.splits.split_path(data.path, split) finds "
            "each split's file)"
        )
    outputs = json.loads(output.read_text())
    written = (outputs.get("artifacts", {}).get(artifact, {}).get("artifacts") or [{}])[0]
    value, _ = _written(written, root)
    counts = _counts(value)
    if counts is None:
        return None, (
            f"on {made}, your step's {artifact} holds {json.dumps(value)[:80]}: write the "
            "rows of each split"
        )
    return counts, ""


def _wrong_counts(name: str, counts: dict[str, float], kept: dict[str, float]) -> str:
    """What is wrong with counts that are not the ones the transform kept (not said)."""
    if all(counts[split] == kept[split] + 1 for split in SPLITS):
        return (
            f"{name} says {_days(counts)} days, one more in each split than its CSV file "
            "holds rows: count the rows without the header line"
        )
    return (
        f"{name} says {_days(counts)} days, but the transform step kept other counts: count "
        "the rows of each split's CSV file, without its header line"
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
        with local_session(root) as log:
            try:
                pipeline()
            except Exception as raised:  # kfp.local refused to start it
                return verdict(
                    [f"kfp.local could not run it: {type(raised).__name__}: {raised}"], RIGHT
                )
        runs = sorted(p for p in (root / "pipeline-root").iterdir() if p.is_dir())
        run = runs[0] if len(runs) == 1 else root / "pipeline-root"
        failed = _TASK_FAILED.findall("\n".join(log_lines(log.getvalue())))
        if failed or not (run / task / "executor_output.json").is_file():
            where = failed[0] if failed else task
            return verdict(
                [
                    f"the run failed in {where}: {_failure(log.getvalue(), where)} (fix it, "
                    "run the cells again)"
                ],
                RIGHT,
            )
        stats = json.loads((run / transform / "data" / "stats.json").read_text())
        kept = {split: float(stats["splits"][split]["rows"]) for split in SPLITS}
        outputs = json.loads((run / task / "executor_output.json").read_text())
        found = []
        for name in artifacts:
            artifact = (outputs.get("artifacts", {}).get(name, {}).get("artifacts") or [{}])[0]
            found.append((name, *_written(artifact, root)))
        counted = [(name, counts) for name, value, _ in found if (counts := _counts(value))]
        if not counted:
            said = "; ".join(
                f"{name} {word}" if word else f"{name} holds {json.dumps(value)[:80]}"
                for name, value, word in found
            )
            return verdict(
                [
                    f"your step's output has no days per split ({said}): write a JSON object "
                    'such as {"train": …, "eval": …, "test": …} into its path (json.dump), '
                    "each split's number of rows"
                ],
                RIGHT,
            )
        name, counts = counted[0]
        if counts != kept:
            return verdict([_wrong_counts(name, counts, kept)], RIGHT)
        known = {split: float(rows) for split, rows in KNOWN_ROWS.items()}
        alone, why_not = _run_alone(pipeline, task, data_input, name, root / "alone")
    if alone is None:
        return verdict([why_not], RIGHT)
    if alone != known:
        made = f"splits the check made, of {_days(known)} rows"
        if alone == counts:
            return verdict(
                [
                    f"on {made}, {name} says the same days as for the sample's splits: your "
                    "step must count the rows of the files in data.path, not write fixed numbers"
                ],
                RIGHT,
            )
        return verdict(
            [
                f"on {made}, {name} says {_days(alone)} days: count the rows of each split's "
                "CSV file in data.path, without its header line"
            ],
            RIGHT,
        )
    return verdict(
        [],
        f"{task} read the transform step's data and wrote the days per split into its "
        f"artifact {name} ({_days(counts)}), the counts the transform kept, and the right "
        f"counts for splits the check made ({_days(known)}); kfp compiled the pipeline and "
        "kfp.local ran it",
    )
