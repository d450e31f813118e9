"""A finished local run's summary: ``summary.json``, its table, and the deployed version checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crypto_pipeline.errors import PipelineError
from crypto_pipeline.files import is_remote
from crypto_pipeline.local_cache import drop_cached
from crypto_pipeline.registry import version_complete
from crypto_pipeline.report import comparison_lines

if TYPE_CHECKING:
    from crypto_pipeline.local_run import LocalRun


def summarize(run: LocalRun, total_s: float) -> dict[str, Any]:
    """The run's ``summary.json``, read back from its artifacts.

    Args:
        run: A finished local run.
        total_s: Wall time of the whole run.
    """
    outputs = run.outputs
    stats = json.loads(Path(outputs["data"].path, "stats.json").read_text())
    metrics = json.loads(Path(outputs["model"].path, "metrics.json").read_text())
    deployment = json.loads(Path(outputs["deployment"].path, "deployment.json").read_text())
    model_path = Path(outputs["model"].path)
    return {
        "source_uri": outputs["raw"].metadata.get("source_uri"),
        "synthetic": outputs["raw"].metadata.get("synthetic"),
        "coin": stats["coin"],
        "rows": {
            "raw": stats["rows_read"],
            "valid": stats["rows_valid"],
            "rejected": stats["rows_rejected"],
            "duplicates": stats["duplicates"],
            **{name: split["rows"] for name, split in stats["splits"].items()},
        },
        "test_period": {
            "first_date": metrics["test_first_date"],
            "last_date": metrics["test_last_date"],
        },
        "best_params": metrics["params"],
        "metrics": {
            key: metrics[key] for key in ("test_rmse", "test_mae", "test_mape", "baselines")
        },
        "model_dir": str(model_path / "model"),
        "plots": [str(model_path / name) for name in metrics["plots"]],
        "deployment": {
            key: deployment[key]
            for key in ("version", "version_uri", "storage_uri", "manifest_path", "smoke_response")
        },
        "durations_s": {**run.durations_s, "total": round(total_s, 3)},
        "cache_hits": run.cache_hits,
        "run_dir": str(run.run_dir),
        "log": str(run.log_path),
        "artifacts": {name: artifact.path for name, artifact in outputs.items()},
    }


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as a table for the terminal or a notebook."""
    rows, metrics = summary["rows"], summary["metrics"]
    lines = [
        f"data       {summary['source_uri']}"
        + ("  (SYNTHETIC sample, not real market data)" if summary["synthetic"] else ""),
        f"rows       read {rows['raw']:,}; kept {rows['train'] + rows['eval'] + rows['test']:,} "
        f"of {summary['coin']} (train {rows['train']:,}, eval {rows['eval']:,}, "
        f"test {rows['test']:,}); rejected {rows['rejected']:,}; duplicates {rows['duplicates']:,}",
        "best       "
        + ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in summary["best_params"].items()
        ),
        f"test       {summary['test_period']['first_date']} .. "
        f"{summary['test_period']['last_date']}",
        *comparison_lines(metrics, indent=" " * 11),
    ]
    deployment = summary["deployment"]
    lines += [
        f"model      {summary['model_dir']}",
        f"plots      {', '.join(Path(p).name for p in summary['plots'])} "
        f"in {Path(summary['plots'][0]).parent}",
        "deployed   "
        + (
            f"version {deployment['version']} at {deployment['version_uri']}"
            if deployment["version"]
            else f"{deployment['version_uri']} as it is (no registry)"
        )
        + f"; smoke answer {deployment['smoke_response']['predictions']}",
        f"manifest   {deployment['manifest_path']}",
        "durations  " + ", ".join(f"{k} {v:.1f} s" for k, v in summary["durations_s"].items()),
        "cache      " + (", ".join(summary["cache_hits"]) or "no step") + " served from cache",
    ]
    return "\n".join(lines)


def check_deployed(summary: dict[str, Any], root: Path) -> None:
    """Checks that the model version the summary reports as deployed still exists.

    A deploy step served from the cache reports the version an earlier run registered;
    kfp.local's cache knows the step's artifacts, not the registry, so that version may
    have been deleted since. Its cache entry is then dropped, so that the next run
    deploys again.

    Raises:
        PipelineError: The version is gone from a local registry: which one, and that
            running again registers the model anew.
    """
    deployment = summary["deployment"]
    uri = deployment["version_uri"]
    if not deployment["version"] or is_remote(uri):
        return  # no registry, or a bucket: nothing here to look at
    if version_complete(uri):
        return
    drop_cached(root, summary["artifacts"]["deployment"])
    cached = "deploy" in summary["cache_hits"]
    raise PipelineError(
        f"the model the run reports as deployed, version {deployment['version']} at {uri}, "
        "no longer exists"
        + (" (the deploy step came from the cache of an earlier run)" if cached else ""),
        "run the same command again: the deploy step runs again and registers the model "
        f"{summary['model_dir']} anew (the other steps come from the cache)",
    )
