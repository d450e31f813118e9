"""One test per workaround in ``crypto_pipeline.workarounds.kfp_local``: each checks the detail
of kfp.local it relies on, and names the workaround and what to change when an upgrade of kfp
breaks it. The tests that run a pipeline run a tiny one in subprocesses (seconds)."""

import warnings
from pathlib import Path

import kfp
import pytest
from kfp import dsl, local
from kfp.dsl import Artifact, Model, Output

from crypto_pipeline.workarounds import kfp_local

SUBPROCESS = {"base_image": "python:3.11-slim-bookworm", "install_kfp_package": False}


def broken(workaround: str, fact: str, change: str) -> str:
    """The message of a failed check: which workaround, what no longer holds, what to do."""
    return (
        f"workarounds.kfp_local.{workaround} relies on {fact}, which no longer holds in kfp "
        f"{kfp.__version__}: {change}"
    )


@dsl.component(**SUBPROCESS)
def stamp(seed: int, out: Output[Artifact]):
    import uuid

    with open(out.path, "w") as f:
        f.write(f"{seed} {uuid.uuid4()}")


@dsl.component(**SUBPROCESS)
def fail(seed: int):
    raise ValueError(f"failed on purpose ({seed})")


@dsl.pipeline(name="stamped")
def stamped(seed: int = 1) -> Artifact:
    return stamp(seed=seed).outputs["out"]


@dsl.pipeline(name="stamped-then-failed")
def stamped_then_failed(seed: int = 1):
    fail(seed=seed).after(stamp(seed=seed))


def init(root: Path, caching: bool = True) -> None:
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(root),
        enable_caching=caching,
    )


def test_run_folder_named(tmp_path):
    init(tmp_path, caching=False)
    with kfp_local.run_folder_named("my-run"):
        uri = stamped().output.uri
    assert Path(uri).is_relative_to(tmp_path / "my-run"), broken(
        "run_folder_named",
        "pipeline_orchestrator naming the run folder with "
        "executor_input_utils.get_local_pipeline_resource_name",
        f"the run wrote {uri}; find where kfp.local now names a run's folder and replace that",
    )
    assert not Path(stamped().output.uri).is_relative_to(tmp_path / "my-run")  # restored


def test_cache_bypassed(tmp_path):
    init(tmp_path)
    first = stamped().output.uri
    assert stamped().output.uri == first  # from the cache
    with kfp_local.cache_bypassed():
        refreshed = stamped().output.uri
    assert refreshed != first, broken(
        "cache_bypassed",
        "task_executor asking LocalCache.get for a task's outputs",
        "the task came from the cache all the same; find what kfp.local now reads the cache "
        "with and answer 'nothing' there",
    )
    assert stamped().output.uri == refreshed, broken(
        "cache_bypassed",
        "task_executor storing a task's outputs with LocalCache.put even after a miss",
        "the next run did not take the refreshed outputs; find where kfp.local now writes "
        "its cache",
    )


def test_tasks_watched(tmp_path):
    init(tmp_path)
    calls: list[tuple] = []

    def run() -> list[tuple]:
        calls.clear()
        with (
            kfp_local.run_folder_named("watched"),
            kfp_local.tasks_watched(
                lambda task: calls.append(("started", task)),
                lambda task, ok: calls.append(("ended", task, ok)),
            ),
            pytest.raises(RuntimeError),
        ):
            stamped_then_failed()
        return list(calls)

    expected = [
        ("started", "stamp"),
        ("ended", "stamp", True),
        ("started", "fail"),
        ("ended", "fail", False),
    ]
    assert run() == expected, broken(
        "tasks_watched",
        "task_executor running each task through "
        "task_dispatcher.run_single_task_implementation(component_name=…) → (outputs, Status)",
        f"it heard {calls}; find the function kfp.local now runs a task with and wrap that",
    )
    assert (tmp_path / "watched" / "stamp").is_dir(), broken(
        "tasks_watched", "the task's name being its folder's name", "name the folder it passes"
    )
    assert run() == expected[2:], "a task served from the cache is neither started nor ended"


def test_uncoloured_log():
    from kfp.local import logging_utils, status

    with kfp_local.uncoloured_log():
        shown = [
            logging_utils.format_task_name("ingest-step"),
            logging_utils.format_status(status.Status.FAILURE),
            logging_utils.format_pipeline_name("crypto-pipeline"),
        ]
    assert shown == ["'ingest-step'", "FAILURE", "'crypto-pipeline'"], broken(
        "uncoloured_log",
        "logging_utils.Color holding the colour codes that color_text reads at each call",
        f"it still wrote {shown!r}; find where kfp.local's colours now come from and blank them",
    )
    assert "\x1b[" in logging_utils.format_task_name("x")  # restored after the block


def test_task_folder(tmp_path):
    from kfp.local import executor_input_utils

    from crypto_pipeline.pipeline import STEPS, build_pipeline

    components = build_pipeline().pipeline_spec.components
    for step in STEPS:
        name = f"comp-{step}-step"
        assert name in components, f"the {step} step's component is not {name}: {components}"
        kfp_path = executor_input_utils.construct_local_task_root(
            str(tmp_path),
            "run",
            executor_input_utils.get_local_task_resource_name(name),
        )
        assert Path(kfp_path) == kfp_local.task_folder(tmp_path / "run", step), broken(
            "task_folder",
            "a task's folder being <pipeline root>/<run folder>/<component name without comp->",
            f"kfp.local puts the {step} step's outputs in {kfp_path}; make task_folder name it",
        )


def test_cache_entries(tmp_path):
    from kfp.local import cache

    init(tmp_path)
    try:
        local_cache = cache.get_local_cache()
        local_cache.put("a-key", {"model": Model(uri=str(tmp_path / "m"), metadata={"v": 3})})
        entries = list(kfp_local.cache_entries(tmp_path))
    finally:
        cache.reset_local_cache_singleton()
    assert [(entry.name, list(outputs)) for entry, outputs in entries] == [
        ("a-key.json", ["model"])
    ], broken(
        "cache_entries",
        f"kfp.local's cache being one <key>.json per entry in <pipeline root>/"
        f"{kfp_local.CACHE_FOLDER}, holding the outputs by name",
        f"it found {entries} after a put into {local_cache.cache_root}; read the cache where "
        "and as kfp.local now writes it",
    )


def test_cached_artifacts():
    from kfp.local import cache

    one = cache.LocalCache._serialize_output(
        Model(uri="/runs/r/train-step/model", metadata={"v": 3})
    )
    many = cache.LocalCache._serialize_output([Artifact(uri="/a"), Artifact(uri="/b")])
    found = [kfp_local.cached_artifacts(one), kfp_local.cached_artifacts(many)]
    assert found == [
        [{"uri": "/runs/r/train-step/model", "metadata": {"v": 3}}],
        [{"uri": "/a", "metadata": {}}, {"uri": "/b", "metadata": {}}],
    ], broken(
        "cached_artifacts",
        "LocalCache writing an artifact as {'__kfp_artifact__': True, 'uri', 'metadata'} and a "
        "list as {'__kfp_artifact_list__': True, 'artifacts': [...]}",
        f"it read {found} from {one} and {many}; decode the new form there",
    )
    assert kfp_local.cached_artifacts(7) == []


@dsl.component(base_image="ghcr.io/example/stamp:1", install_kfp_package=False)
def stamp_in_its_image(seed: int, out: Output[Artifact]):
    with open(out.path, "w") as f:
        f.write(str(seed))


@dsl.pipeline(name="named-stamp")
def named_stamp(seed: int = 1):
    stamp_in_its_image(seed=seed).set_display_name("stamp it")


def test_expected_warnings_ignored(tmp_path):
    init(tmp_path, caching=False)
    with warnings.catch_warnings(record=True) as plain:
        warnings.simplefilter("always")
        named_stamp()
    assert len(plain) >= 2, f"kfp.local no longer warns of a display name and an image: {plain}"
    with warnings.catch_warnings(record=True) as left:
        warnings.simplefilter("always")
        with kfp_local.expected_warnings_ignored():
            named_stamp()
    assert left == [], broken(
        "expected_warnings_ignored",
        "the texts 'have no effect in the current local runner' and 'non-Python base image' "
        "of kfp.local's warnings",
        f"it let through {[str(w.message) for w in left]}; match the new texts",
    )
