"""Notebook 06's step of the learner's as kfp.local runs it: what it wrote, or why it failed.

What the exercise's check (``exercises.crypto``) reads of a run: why a task failed (the
last exception in kfp.local's log), what an output artifact holds (its file's JSON, else
its logged metadata) and the days per split in it. And a run of the learner's step alone,
on splits the check makes (``known_splits``: a folder laid out as the transform step
writes it, other row counts, imported with ``dsl.importer``), so that a step that writes
fixed numbers does not pass.
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
from pathlib import Path
from typing import Any

from crypto_pipeline.splits import SPLITS
from crypto_workshop.exercises import last_exception, local_session, log_lines

KNOWN_ROWS = {"train": 11, "eval": 4, "test": 6}
"""The rows of the splits the check makes for the learner's step alone (not the sample's)."""


def failure_in(log: str, task: str) -> str:
    """Why a task of the run failed, from kfp.local's log: its last exception."""
    lines = log_lines(log)
    begin = max(
        (i for i, line in enumerate(lines) if f"Executing task '{task}'" in line), default=0
    )
    return last_exception(lines[begin:]) or "kfp.local's log names no exception"


def split_counts(value: Any) -> dict[str, float] | None:
    """The days per split in what the step wrote, or None when it holds no such counts."""
    if not isinstance(value, dict) or not all(split in value for split in SPLITS):
        return None
    try:
        return {split: float(value[split]) for split in SPLITS}
    except (TypeError, ValueError):
        return None


def artifact_content(artifact: dict[str, Any], root: Path) -> tuple[Any, str]:
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


def days_text(counts: dict[str, float]) -> str:
    """The days per split as a learner reads them: ``train 1,000, eval 200, test 150``."""
    return ", ".join(f"{split} {counts[split]:,.0f}" for split in SPLITS)


def known_splits(folder: Path, rows: dict[str, int] | None = None) -> Path:
    """A transform output folder in FOLDER: one CSV per split, ROWS rows each, its stats.

    Laid out as the transform step writes it (``train-00000-of-00001.csv``, …, with the
    header and the columns of ``crypto-markets.csv``, and ``stats.json``), so that a step
    that reads the transform's ``data`` reads this folder the same way.
    """
    from crypto_pipeline.rows import MarketRow
    from crypto_pipeline.schema import COLUMNS

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


def step_alone(pipeline: Any, task: str, data_input: str) -> tuple[Any, dict[str, Any], list[str]]:
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


def run_alone(
    pipeline: Any, task: str, data_input: str, artifact: str, root: Path
) -> tuple[dict[str, float] | None, str]:
    """The learner's step run alone on the splits the check makes: its counts, or why not."""
    from kfp import dsl
    from kfp.dsl import Dataset

    try:
        component, arguments, missing = step_alone(pipeline, task, data_input)
    except Exception as raised:  # the pipeline function, run again, did not run as before
        missing = [f"the check could not run your step alone: {type(raised).__name__}: {raised}"]
    if missing:
        return None, missing[0]
    folder = known_splits(root / "known-splits")
    made = f"splits the check made ({days_text(KNOWN_ROWS)} rows, laid out as the transform's)"

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
            f"your step failed on {made}: {failure_in(log.getvalue(), component.name)} (make "
            "it count any splits: crypto_pipeline.splits.split_path(data.path, split) finds "
            "each split's file)"
        )
    outputs = json.loads(output.read_text())
    written = (outputs.get("artifacts", {}).get(artifact, {}).get("artifacts") or [{}])[0]
    value, _ = artifact_content(written, root)
    counts = split_counts(value)
    if counts is None:
        return None, (
            f"on {made}, your step's {artifact} holds {json.dumps(value)[:80]}: write the "
            "rows of each split"
        )
    return counts, ""
