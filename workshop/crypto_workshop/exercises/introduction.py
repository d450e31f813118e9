"""Notebook 01's exercise: the artifacts that flow between the pipeline's microservices.

The learner reads the compiled pipeline (``crypto_pipeline.yaml``) and writes, for each
task that reads another task's output, which input artifacts it reads and which task
writes each: ``{"transform-step": {"raw": "ingest-step"}, …}``. The check compares that
with the compiled file's ``root.dag.tasks.*.inputs.artifacts``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from crypto_pipeline.compiled import compiled_tasks
from crypto_workshop.exercises import Verdict, verdict


def artifact_flow(compiled_path: str | os.PathLike[str]) -> dict[str, dict[str, str]]:
    """Each task of a compiled pipeline that reads artifacts: ``{input: producing task}``.

    Only the pipeline's top-level tasks are read (the crypto pipeline has no groups).
    """
    import yaml

    spec = yaml.safe_load(Path(compiled_path).read_text())
    flow: dict[str, dict[str, str]] = {}
    for name, task in spec["root"]["dag"]["tasks"].items():
        artifacts = task.get("inputs", {}).get("artifacts", {})
        reads = {
            key: value["taskOutputArtifact"]["producerTask"]
            for key, value in artifacts.items()
            if "taskOutputArtifact" in value
        }
        if reads:
            flow[name] = reads
    return flow


def check_artifact_flow(
    answer: Any, compiled_path: str | os.PathLike[str] | None = None
) -> Verdict:
    """Whether ANSWER says which artifacts each task reads, and from which task.

    Args:
        answer: ``{task: {input artifact: task that wrote it}}``, for every task that
            reads an artifact.
        compiled_path: The compiled pipeline; by default the repository's
            ``crypto_pipeline.yaml``.
    """
    if compiled_path is None:
        from crypto_workshop import machine

        compiled_path = machine.project_root() / "crypto_pipeline.yaml"
    expected = artifact_flow(compiled_path)
    tasks = [row["task"] for row in compiled_tasks(compiled_path) if not row["inside"]]
    right = (
        "the data flows "
        + ", ".join(
            f"{producer} -> {task} ({name})"
            for task in tasks
            for name, producer in sorted(expected.get(task, {}).items())
        )
        + ": each step reads only files that earlier steps wrote, which is what lets "
        "each one run in its own container."
    )
    if not isinstance(answer, dict):
        return verdict(
            [
                f"my_artifacts must be a dict of dicts, not {type(answer).__name__}: "
                '{"task": {"input artifact": "task that wrote it"}, …}'
            ],
            right,
        )
    if not answer:
        return verdict(
            [
                f"my_artifacts is empty: {len(expected)} of the {len(tasks)} tasks read an "
                'artifact that another task wrote; add "task": {"input artifact": '
                '"task that wrote it"} for each'
            ],
            right,
        )
    missing = []
    for task, reads in answer.items():
        if task not in tasks:
            missing.append(f"{task!r} is no task of the pipeline (its tasks: {', '.join(tasks)})")
        elif task not in expected:
            if not reads:  # an empty entry says, rightly, that it reads none
                continue
            missing.append(
                f"{task} reads no artifact from another task (its inputs are parameters): "
                "leave it out"
            )
        elif not isinstance(reads, dict):
            missing.append(
                f"{task}'s entry must be a dict {{input artifact: task}}, "
                f"not {type(reads).__name__}"
            )
        else:
            wanted = expected[task]
            for name, producer in reads.items():
                if name not in wanted:
                    missing.append(
                        f"{task} has no input artifact {name!r} (look under its inputs > artifacts)"
                    )
                elif producer != wanted[name]:
                    missing.append(f"{task}'s {name!r} is not written by {producer!r}")
            left = sorted(set(wanted) - set(reads))
            if left:
                missing.append(
                    f"{task} reads {len(wanted)} artifact(s), your entry names "
                    f"{len(wanted) - len(left)} of them: add the other(s)"
                )
    for task in expected:
        if task not in answer:
            missing.append(f"{task} reads artifacts too: add its entry")
    return verdict(missing, right)
