"""Notebook 06's exercise: its check passes the solution, names what is missing on the
empty answer, and catches typical wrong answers (each one compiled, and run where it
gets that far), among them a step that writes the sample's counts without counting."""

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest
from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from crypto_pipeline import pipeline, steps
from crypto_pipeline.splits import SPLITS, split_path
from crypto_workshop.exercises import crypto, step_run

ROOT = Path(__file__).resolve().parents[2]
SOLUTION = ROOT / "notebooks" / "solutions" / "06-crypto-pipeline" / "days_per_split.py"
IMAGE = pipeline.step_image("transform")

ingest_op = dsl.component(steps.ingest_step, base_image=IMAGE, install_kfp_package=False)
transform_op = dsl.component(steps.transform_step, base_image=IMAGE, install_kfp_package=False)


@pytest.fixture(scope="module")
def solution():
    spec = importlib.util.spec_from_file_location("days_per_split", SOLUTION)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_solution_is_right(solution):
    found = crypto.check_pipeline(solution.my_pipeline)
    assert found.ok, str(found)
    assert str(found).startswith("Right: count-days read the transform step's data")
    assert "train 1,255, eval 268, test 270" in str(found)
    assert "the right counts for splits the check made (train 11, eval 4, test 6)" in str(found)


def test_the_empty_answer_says_what_to_write():
    said = str(crypto.check_pipeline(None))
    assert said.startswith("Not yet: my_pipeline is None")
    assert "@dsl.pipeline" in said and "ingest_op, transform_op" in said


def test_a_component_a_task_or_a_plain_function_is_not_a_pipeline(solution):
    assert "is the component count-days, not a pipeline" in str(
        crypto.check_pipeline(solution.count_days)
    )
    assert "a plain function, not a pipeline" in str(
        crypto.check_pipeline(solution.days_per_split.pipeline_func)
    )


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def days_of(coin: str, days: Output[Artifact]):
    import json

    with open(days.path, "w") as f:
        json.dump({"coin": coin}, f)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def lines_of(data: Input[Dataset], days: Output[Artifact]):
    """A typical slip: counting the lines of each file, its header line too."""
    import glob
    import json
    import os

    counts = {}
    for split in ("train", "eval", "test"):
        (path,) = glob.glob(os.path.join(data.path, f"{split}-*.csv"))
        with open(path) as f:
            counts[split] = sum(1 for _ in f)
    with open(days.path, "w") as f:
        json.dump(counts, f)


def test_a_step_that_takes_no_artifact_is_named():
    @dsl.pipeline(name="no-artifact")
    def no_artifact(source_uri: str = "sample", coin: str = "bitcoin"):
        raw = ingest_op(source_uri=source_uri, source_fingerprint="")
        transform_op(raw=raw.outputs["raw"])
        days_of(coin=coin)

    said = str(crypto.check_pipeline(no_artifact))
    assert said.startswith("Not yet: your step days-of takes no artifact from another step")
    assert 'data=transform_task.outputs["data"]' in said


def test_a_step_that_reads_the_raw_data_instead_of_the_splits_is_named():
    @dsl.pipeline(name="raw-data")
    def raw_data(source_uri: str = "sample", coin: str = "bitcoin"):
        raw = ingest_op(source_uri=source_uri, source_fingerprint="")
        transform_op(raw=raw.outputs["raw"])
        lines_of(data=raw.outputs["raw"])

    said = str(crypto.check_pipeline(raw_data))
    assert "your step lines-of reads ingest-step's raw: read the transform step's data" in said


def test_counts_that_include_the_header_lines_are_caught_after_the_run():
    @dsl.pipeline(name="with-headers")
    def with_headers(source_uri: str = "sample", coin: str = "bitcoin"):
        raw = ingest_op(source_uri=source_uri, source_fingerprint="")
        data = transform_op(raw=raw.outputs["raw"])
        lines_of(data=data.outputs["data"])

    said = str(crypto.check_pipeline(with_headers))
    assert said == (
        "Not yet: days says train 1,256, eval 269, test 271 days, one more in each split than "
        "its CSV file holds rows: count the rows without the header line."
    )


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def writes_the_sample_counts(data: Input[Dataset], days: Output[Artifact]):
    """The reviewer's wrong answer: the sample's counts, written without reading data."""
    import json

    with open(days.path, "w") as f:
        json.dump({"train": 1255, "eval": 268, "test": 270}, f)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def writes_no_counts(data: Input[Dataset], days: Output[Artifact]):
    import json

    with open(days.path, "w") as f:
        json.dump({"rows": 1793}, f)


def with_step(step):
    @dsl.pipeline(name="with-step")
    def with_it(source_uri: str = "sample", coin: str = "bitcoin"):
        raw = ingest_op(source_uri=source_uri, source_fingerprint="")
        data = transform_op(raw=raw.outputs["raw"])
        step(data=data.outputs["data"])

    return with_it


def test_fixed_counts_are_caught_on_splits_the_check_makes():
    """Right for the sample, but not counted: the step runs again on other splits."""
    said = str(crypto.check_pipeline(with_step(writes_the_sample_counts)))
    assert said == (
        "Not yet: on splits the check made, of train 11, eval 4, test 6 rows, days says the "
        "same days as for the sample's splits: your step must count the rows of the files in "
        "data.path, not write fixed numbers."
    )


def test_no_not_yet_gives_the_samples_counts_away():
    said = str(crypto.check_pipeline(with_step(writes_no_counts)))
    assert said.startswith('Not yet: your step\'s output has no days per split (days holds {"rows"')
    assert '{"train": …, "eval": …, "test": …}' in said
    for count in ("1255", "1,255", "268", "270"):
        assert count not in said, said


def test_the_splits_the_check_makes_read_as_the_transform_s(tmp_path):
    folder = step_run.known_splits(tmp_path / "data")
    rows = {split: len(pd.read_csv(split_path(folder, split))) for split in SPLITS}
    assert rows == step_run.KNOWN_ROWS
    stats = json.loads((folder / "stats.json").read_text())
    assert {s: stats["splits"][s]["rows"] for s in SPLITS} == step_run.KNOWN_ROWS
    assert sorted(p.name for p in folder.iterdir()) == [
        "eval-00000-of-00001.csv",
        "stats.json",
        "test-00000-of-00001.csv",
        "train-00000-of-00001.csv",
    ]
    header = split_path(folder, "train").read_text().splitlines()[0]
    assert header.split(",")[:5] == ["slug", "symbol", "name", "date", "ranknow"]


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def counts_with_the_raw_data(data: Input[Dataset], raw: Input[Dataset], days: Output[Artifact]):
    pass


def test_a_step_that_needs_more_than_the_data_is_told_why_it_cannot_run_alone(solution):
    @dsl.pipeline(name="more-than-data")
    def more_than_data(source_uri: str = "sample", coin: str = "bitcoin"):
        raw = ingest_op(source_uri=source_uri, source_fingerprint="")
        data = transform_op(raw=raw.outputs["raw"])
        counts_with_the_raw_data(data=data.outputs["data"], raw=raw.outputs["raw"])

    _, _, missing = step_run.step_alone(more_than_data, "counts-with-the-raw-data", "data")
    assert missing == [
        "your step counts-with-the-raw-data also takes raw (from ingest-step): give it only "
        "the transform's data (and plain values), so that it counts the days of any splits"
    ]
    component, arguments, missing = step_run.step_alone(solution.my_pipeline, "count-days", "data")
    assert (component.name, arguments, missing) == ("count-days", {}, [])


def test_a_pipeline_that_needs_arguments_is_told_to_give_defaults(solution):
    @dsl.pipeline(name="no-defaults")
    def no_defaults(source_uri: str, coin: str = "bitcoin"):
        raw = ingest_op(source_uri=source_uri, source_fingerprint="")
        data = transform_op(raw=raw.outputs["raw"])
        solution.count_days(data=data.outputs["data"])

    said = str(crypto.check_pipeline(no_defaults))
    assert said.startswith("Not yet: give my_pipeline's parameters default values (source_uri)")


def test_a_pipeline_without_the_package_steps_or_its_own_says_which_are_missing():
    @dsl.pipeline(name="ingest-only")
    def ingest_only(source_uri: str = "sample"):
        ingest_op(source_uri=source_uri, source_fingerprint="")

    said = str(crypto.check_pipeline(ingest_only))
    assert "the pipeline runs no transform step" in said
    assert "the pipeline runs no step of your own" in said
    assert "no ingest step" not in said
