"""The pipeline's five steps as Kubeflow Pipelines components: thin adapters.

Each reads its inputs, calls one package function, writes its outputs (KFP artifacts:
Dataset, Model, Metrics, HTML) and records what it did in their metadata. KFP ships each
function's source to its container, so imports live inside the functions.

Each step's settings arrive whole, as one struct parameter ``config`` (``Settings.to_dict``;
none: the settings' defaults), and the step rebuilds them with ``from_dict``, which checks
them by their own rules and takes numbers as a Kubeflow Pipelines backend hands them
(floats). Each step records them in its output's metadata (``config``).
"""

from typing import Optional  # kfp reads Optional[dict], not dict | None

from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output


def ingest_step(
    source_uri: str,
    source_fingerprint: str,
    raw: Output[Dataset],
    config: Optional[dict] = None,  # noqa: UP045
):
    """Step 1: copy the source CSV into the run's artifacts.

    It reads at most ``max_mb`` megabytes in at most ``max_seconds`` (``IngestConfig``,
    from ``config``). ``source_fingerprint`` (``fingerprint.source_fingerprint``) is what the
    source held when the run started: it changes when the data changes, so a cache never
    serves stale data.
    """
    from crypto_pipeline.errors import step_errors

    with step_errors("ingest", raw.path):
        import time

        from crypto_pipeline.config import IngestConfig
        from crypto_pipeline.ingest import ingest

        started = time.perf_counter()
        settings = IngestConfig.from_dict(config or {}, "ingest")
        result = ingest(source_uri, raw.path, settings.max_mb, settings.max_seconds)
        print(result.describe())
        raw.metadata.update(
            {
                "source_uri": result.source_uri,  # credentials masked
                "source_fingerprint": source_fingerprint,
                "sha256": result.sha256,
                "bytes": result.bytes,
                "rows": result.rows,
                "format": result.format,
                "synthetic": result.synthetic,
                "config": settings.to_dict(),
                "seconds": round(time.perf_counter() - started, 3),
            }
        )


def transform_step(
    raw: Input[Dataset],
    data: Output[Dataset],
    stats: Output[Metrics],
    config: Optional[dict] = None,  # noqa: UP045
):
    """Step 2: validate, filter and split with Apache Beam."""
    from crypto_pipeline.errors import step_errors

    with step_errors("transform", data.path):
        import json
        import time

        from crypto_pipeline.config import TransformConfig
        from crypto_pipeline.raw_file import RAW_FILE_NAME
        from crypto_pipeline.transform import beam_io, transform

        started = time.perf_counter()
        settings = TransformConfig.from_dict(config or {}, "transform")
        # DirectRunner: the pod's paths; Dataflow and the like: the artifacts' bucket URIs.
        source, target = beam_io(raw.path, raw.uri, data.path, data.uri, settings.beam_args)
        result = transform(f"{source.rstrip('/')}/{RAW_FILE_NAME}", target, settings)
        for key in ("rows_read", "rows_valid", "rows_rejected", "duplicates", "other_coins"):
            stats.log_metric(key, result[key])
        for name, part in result["splits"].items():
            stats.log_metric(f"{name}_rows", part["rows"])
        with open(stats.path, "w") as f:  # a file behind the artifact, as local caching expects
            json.dump(result, f, indent=2)
        data.metadata.update(
            {
                "coin": settings.coin,
                "config": settings.to_dict(),
                "splits": result["splits"],
                "seconds": round(time.perf_counter() - started, 3),
            }
        )


def tune_step(data: Input[Dataset], best_params: Output[Artifact], config: Optional[dict] = None):  # noqa: UP045
    """Step 3: search the hyperparameters with Optuna."""
    from crypto_pipeline.errors import step_errors

    with step_errors("tune", best_params.path):
        import time

        from crypto_pipeline.config import TuneConfig
        from crypto_pipeline.tune import tune

        started = time.perf_counter()
        settings = TuneConfig.from_dict(config or {}, "tune")
        result = tune(
            data.path,
            best_params.path,
            settings,
            progress_bar=False,
        )
        best_params.metadata.update(
            {
                "params": result.best_params.to_dict(),
                "best_eval_loss": result.best_value,
                "trials": len(result.trials),
                "plots": result.plots,
                "config": settings.to_dict(),
                "seconds": round(time.perf_counter() - started, 3),
            }
        )


def train_step(
    data: Input[Dataset],
    best_params: Input[Artifact],
    model: Output[Model],
    metrics: Output[Metrics],
    report: Output[HTML],
    config: Optional[dict] = None,  # noqa: UP045
):
    """Step 4: train with the best params; metrics beside the baselines; plots."""
    from crypto_pipeline.errors import step_errors

    with step_errors("train", model.path):
        import base64
        import json
        import os
        import time
        from pathlib import Path

        from crypto_pipeline.config import TrainConfig
        from crypto_pipeline.hyperparameters import BEST_PARAMS_NAME, read_params
        from crypto_pipeline.report import comparison_html
        from crypto_pipeline.train import train

        started = time.perf_counter()
        params = read_params(os.path.join(best_params.path, BEST_PARAMS_NAME))
        settings = TrainConfig.from_dict(config or {}, "train")
        result = train(data.path, params, model.path, settings)
        for key in ("test_rmse", "test_mae", "test_mape"):
            metrics.log_metric(key, result[key])
        for name, values in result["baselines"].items():
            metrics.log_metric(f"baseline_{name}_rmse", values["rmse"])
        with open(metrics.path, "w") as f:  # a file behind the artifact, as local caching expects
            json.dump(result, f, indent=2)
        images = "".join(
            '<p><img src="data:image/png;base64,'
            + base64.b64encode(Path(model.path, p).read_bytes()).decode()
            + '"></p>'
            for p in result["plots"]
        )
        with open(report.path, "w") as f:
            f.write(
                f"<h2>Test period {result['test_first_date']} to {result['test_last_date']}</h2>"
                + comparison_html(result)
                + images
            )
        model.metadata.update(
            {
                "saved_model": "model",
                "params": params.to_dict(),
                "config": settings.to_dict(),
                "seconds": round(time.perf_counter() - started, 3),
            }
        )


def deploy_step(
    model: Input[Model],
    deployment: Output[Artifact],
    config: Optional[dict] = None,  # noqa: UP045
) -> str:
    """Step 5: register the model, answer a smoke request, write (and apply) KServe's manifest."""
    from crypto_pipeline.errors import step_errors

    with step_errors("deploy", deployment.path):
        import os
        import time

        from crypto_pipeline.config import DeployConfig
        from crypto_pipeline.deploy import deploy

        started = time.perf_counter()
        settings = DeployConfig.from_dict(config or {}, "deploy")
        result = deploy(os.path.join(model.path, "model"), deployment.path, settings, model.uri)
        print(f"deployed {result.version_uri}; smoke answer: {result.smoke_response}")
        deployment.metadata.update(
            {
                "version": result.version,
                "version_uri": result.version_uri,
                "storage_uri": result.storage_uri,
                "smoke_response": result.smoke_response,
                "applied": result.applied,
                "config": settings.to_dict(),
                "seconds": round(time.perf_counter() - started, 3),
            }
        )
        return result.version_uri
