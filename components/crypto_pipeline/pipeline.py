"""The Kubeflow Pipelines (v2) pipeline: the DAG of the five steps in ``steps``.

The same pipeline

- runs locally with ``kfp.local`` (``crypto_pipeline.local_run``): each step in a
  subprocess, or in its image with Docker;
- compiles to the IR YAML that Kubeflow Pipelines or Vertex AI Pipelines run
  (``crypto_pipeline.compiled``), each step in its image (``registry/<image>:<tag>``);
  ``crypto_pipeline.submit`` starts it on a KFP host.

Images (``config.STEP_IMAGES``): ingest -> ``ingest``, transform -> ``transform``, tune
and train -> ``train`` (they share TensorFlow), deploy -> ``serve``. They hold the package
and kfp, and no credentials. The parameters' defaults are those of ``PipelineConfig``.

Parameters: ``source_uri``, ``source_fingerprint`` and one struct per step (``ingest``,
``transform``, ``tune``, ``train``, ``deploy``: ``config.STEP_SETTINGS``), each the step's
settings as ``Settings.to_dict`` writes them; the step rebuilds them with ``from_dict``, so
every field of a step's settings reaches it, and a new field needs no change here.

``source_fingerprint`` says what the source held when the run started
(``fingerprint.source_fingerprint``; ``run`` and ``submit`` set it): caches key on the step's
parameters, so changed data at the same URI runs again instead of coming from the cache.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Model

from crypto_pipeline import steps
from crypto_pipeline.config import (
    DEFAULT_REGISTRY,
    DEFAULT_TAG,
    STEP_IMAGES,
    STEP_SETTINGS,
    PipelineConfig,
    step_image,
)

PIPELINE_NAME = "crypto-pipeline"
STEPS = tuple(STEP_IMAGES)


def pipeline_arguments(config: PipelineConfig) -> dict[str, Any]:
    """The pipeline's parameters as ``config`` sets them: the source and each step's settings.

    ``source_fingerprint`` is no setting: ``run`` and ``submit`` add it.
    """
    return {
        "source_uri": config.source_uri,
        **{step: getattr(config, step).to_dict() for step in STEP_SETTINGS},
    }


def build_pipeline(
    registry: str = DEFAULT_REGISTRY, tag: str = DEFAULT_TAG, cache_deploy: bool = True
) -> Callable:
    """The pipeline, its components set to run in ``registry/<image>:tag``.

    Args:
        registry: Container registry and path of the component images.
        tag: Image tag.
        cache_deploy: Whether the deploy step may come from the cache. The compiled
            pipeline never caches it: a cached deploy would report a model as served
            after its InferenceService was deleted or changed on the cluster.

    Returns:
        The ``@dsl.pipeline`` function (call it under ``kfp.local``, or compile it).
    """

    def component(func, step):
        return dsl.component(
            func, base_image=step_image(step, registry, tag), install_kfp_package=False
        )

    ingest_op = component(steps.ingest_step, "ingest")
    transform_op = component(steps.transform_step, "transform")
    tune_op = component(steps.tune_step, "tune")
    train_op = component(steps.train_step, "train")
    deploy_op = component(steps.deploy_step, "deploy")
    # The defaults, from the one settings object (deploy's image: the serve image here).
    d = pipeline_arguments(PipelineConfig(registry=registry, tag=tag))

    class Outputs(NamedTuple):
        raw: Dataset
        data: Dataset
        best_params: Artifact
        model: Model
        deployment: Artifact

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Kubeflow for Poets: ingest, transform (Beam), tune, train and deploy "
        "a Keras model that predicts the daily close of a crypto coin.",
    )
    def crypto_pipeline(
        source_uri: str = d["source_uri"],
        source_fingerprint: str = "",
        ingest: dict = d["ingest"],
        transform: dict = d["transform"],
        tune: dict = d["tune"],
        train: dict = d["train"],
        deploy: dict = d["deploy"],
    ) -> Outputs:
        ingest_task = ingest_op(
            source_uri=source_uri, source_fingerprint=source_fingerprint, config=ingest
        ).set_display_name("1 ingest")
        transform_task = transform_op(
            raw=ingest_task.outputs["raw"], config=transform
        ).set_display_name("2 transform (Beam)")
        tune_task = tune_op(data=transform_task.outputs["data"], config=tune).set_display_name(
            "3 tune"
        )
        train_task = train_op(
            data=transform_task.outputs["data"],
            best_params=tune_task.outputs["best_params"],
            config=train,
        ).set_display_name("4 train")
        deploy_task = deploy_op(model=train_task.outputs["model"], config=deploy).set_display_name(
            "5 deploy"
        )
        if not cache_deploy:
            deploy_task.set_caching_options(False)
        return Outputs(
            raw=ingest_task.outputs["raw"],
            data=transform_task.outputs["data"],
            best_params=tune_task.outputs["best_params"],
            model=train_task.outputs["model"],
            deployment=deploy_task.outputs["deployment"],
        )

    return crypto_pipeline
