"""diagrams: the notebooks' pictures are drawn, and the generated ones follow their source."""

import pytest
from PIL import Image

from crypto_pipeline import coin_flip, diagrams, workshop

ROOT = workshop.project_root()


def assert_png(path, min_width=400):
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width >= min_width and image.height >= 100
        darkest, lightest = image.convert("L").getextrema()
        assert lightest - darkest > 100, "a blank picture"


@pytest.mark.parametrize(
    "draw", [diagrams.vm_and_containers, diagrams.kubernetes_cluster, diagrams.kubeflow_parts]
)
def test_concept_diagrams_are_drawn(tmp_path, draw):
    assert_png(draw(tmp_path / "sub" / "picture.png"))


def test_depths_follow_what_each_task_waits_for():
    after = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "e": ["a", "d"]}
    assert diagrams._layers(after) == {"a": 0, "b": 1, "c": 1, "d": 2, "e": 3}


def test_the_pipeline_graph_is_drawn_from_the_compiled_files(tmp_path):
    assert_png(diagrams.pipeline_graph(ROOT / "crypto_pipeline.yaml", tmp_path / "crypto.png"))
    sample = coin_flip.compile_pipeline(tmp_path / "condition.yaml")  # branches side by side
    assert_png(diagrams.pipeline_graph(sample, tmp_path / "condition.png"))


def test_a_run_timeline_marks_cache_hits(tmp_path):
    summary = {
        "durations_s": {"ingest": 0.0, "transform": 0.0, "tune": 12.5, "total": 13.1},
        "cache_hits": ["ingest", "transform"],
        "run_dir": "runs/crypto-pipeline-20261130-101010",
    }
    assert_png(diagrams.run_timeline(summary, tmp_path / "run.png"))
