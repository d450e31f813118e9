"""One answer to notebook 06's exercise: a step of your own after the package's steps.

``count_days`` reads the transform step's ``data`` (one CSV file per split) and writes
the days of each split as JSON; ``days_per_split`` runs the package's ingest and
transform components, then it. Copy both into the answer cell (``ingest_op`` and
``transform_op`` are made in the notebook as here), and set ``my_pipeline`` to the
pipeline, without calling it.
"""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from crypto_pipeline import pipeline, steps

# The package's components, made as build_pipeline makes them (the notebook does the same).
ingest_op = dsl.component(
    steps.ingest_step, base_image=pipeline.step_image("ingest"), install_kfp_package=False
)
transform_op = dsl.component(
    steps.transform_step, base_image=pipeline.step_image("transform"), install_kfp_package=False
)


@dsl.component(base_image=pipeline.step_image("transform"), install_kfp_package=False)
def count_days(data: Input[Dataset], days: Output[Artifact]):
    """The days in each split of the transform's output: {"train": …, "eval": …, "test": …}."""
    import json

    import pandas as pd

    from crypto_pipeline.splits import SPLITS, split_path

    counts = {split: len(pd.read_csv(split_path(data.path, split))) for split in SPLITS}
    print(counts)
    with open(days.path, "w") as f:
        json.dump(counts, f)


@dsl.pipeline(name="days-per-split")
def days_per_split(source_uri: str = "sample"):
    """Ingest and transform, as the crypto pipeline does; then count the days per split.

    Without ``config``, each step runs with its settings' defaults (the transform: bitcoin).
    """
    ingest_task = ingest_op(source_uri=source_uri, source_fingerprint="")
    transform_task = transform_op(raw=ingest_task.outputs["raw"])
    count_days(data=transform_task.outputs["data"])


my_pipeline = days_per_split
