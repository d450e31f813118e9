"""diagrams: the notebooks' pictures are drawn, and the generated ones follow their source."""

import pytest
from PIL import Image

from crypto_workshop import coin_flip, diagrams, machine

ROOT = machine.project_root()


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


DRAW_EVERYTHING = """
import json, sys
from pathlib import Path

import matplotlib

before = matplotlib.get_backend()
from crypto_pipeline import plots
from crypto_workshop import diagrams
from crypto_pipeline.model import FitResult

out = Path(sys.argv[1])
drawn = [
    diagrams.vm_and_containers(out / "vm.png"),
    diagrams.run_timeline(
        {"durations_s": {"tune": 2.0, "total": 2.0}, "cache_hits": [], "run_dir": "runs/x"},
        out / "run.png",
    ),
]
trials = [
    {"number": 0, "state": "COMPLETE", "eval_loss": 0.09, "best_epoch": 0},
    {"number": 1, "state": "PRUNED", "eval_loss": None, "best_epoch": None},
    {"number": 2, "state": "COMPLETE", "eval_loss": 0.08, "best_epoch": 4},
]
drawn += [out / name for name in plots.plot_search(trials, out, 0.09, {"num_layers": 1.0})]
history = {"loss": [0.2, 0.15, 0.12], "val_loss": [0.1, 0.095, 0.097]}
kept_the_line = FitResult(None, history, 0, 0.09, 0.09, 2, 1.0)
drawn.append(out / plots.plot_loss(kept_the_line, out / "loss.png"))
after = matplotlib.get_backend()
print(json.dumps({"before": before, "after": after, "drawn": list(map(str, drawn))}))
"""


def test_drawing_leaves_the_notebook_backend_alone(tmp_path):
    """Jupyter's inline backend survives importing the modules that draw, and drawing.

    A module that called ``matplotlib.use("Agg")`` would leave a notebook's own
    ``plt.show()`` with nothing to show.
    """
    import json
    import os
    import subprocess
    import sys

    inline = "module://matplotlib_inline.backend_inline"
    run = subprocess.run(
        [sys.executable, "-c", DRAW_EVERYTHING, str(tmp_path)],
        env={**os.environ, "MPLBACKEND": inline, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(run.stdout.splitlines()[-1])
    assert result["before"] == result["after"] == inline
    assert len(result["drawn"]) == 5
    for path in result["drawn"]:
        assert_png(path)
