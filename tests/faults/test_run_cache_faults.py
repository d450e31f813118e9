"""Fault drills for `crypto-pipeline run`'s cache: a changed source and deleted step files
run again. Each runs the real command in a real process."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from run_drills import run, summary_of

from crypto_pipeline.sample_data import SAMPLE_PATH

pytestmark = pytest.mark.pipeline_run


def test_a_changed_source_at_the_same_path_runs_again(tmp_path):
    source = tmp_path / "prices.csv"
    shutil.copy(SAMPLE_PATH, source)
    first = summary_of(run(tmp_path / "runs", "--source", str(source)))
    lines = source.read_text().splitlines(keepends=True)
    source.write_text("".join(lines[:1001]))
    second = summary_of(run(tmp_path / "runs", "--source", str(source)))
    assert second["cache_hits"] == []
    assert second["rows"]["raw"] == 1000 != first["rows"]["raw"]
    assert summary_of(run(tmp_path / "runs", "--source", str(source)))["cache_hits"] == [
        "ingest",
        "transform",
        "tune",
        "train",
        "deploy",
    ]


def test_a_cached_step_whose_files_were_deleted_runs_again(tmp_path):
    root = tmp_path / "runs"
    first = summary_of(run(root))
    Path(first["model_dir"], "saved_model.pb").unlink()
    second = summary_of(run(root))
    assert second["cache_hits"] == ["ingest", "transform", "tune"]
    assert Path(second["model_dir"], "saved_model.pb").exists()
    assert second["metrics"] == first["metrics"]
    shutil.rmtree(Path(first["run_dir"]) / "transform-step" / "data")
    third = summary_of(run(root))
    assert third["cache_hits"] == ["ingest"]
