"""The serving commands: ``serve`` a model, ``predict`` with it.

``serve`` takes the latest run's model unless told which.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from crypto_pipeline.errors import ConfigError
from crypto_pipeline.files import is_remote, local_path


def latest_summary(pipeline_root: str) -> dict:
    """The latest run's summary.json under ``pipeline_root``, parsed and checked."""
    latest = Path(pipeline_root, "latest")
    summary = latest / "summary.json"
    again = "run the pipeline again (`make pipeline`), or pass --model DIR"
    if latest.is_symlink() and not latest.exists():
        raise ConfigError(
            f"no --model given, and {latest} points at {latest.readlink()}, which is gone",
            again,
        )
    if not summary.exists():
        raise ConfigError(
            f"no --model given and no finished run at {summary}",
            "run the pipeline first (make pipeline), or pass --model DIR",
        )
    try:
        found = json.loads(summary.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        found = None
    if not isinstance(found, dict) or not isinstance(found.get("model_dir"), str):
        raise ConfigError(f"{summary} is not a run's summary (unreadable or cut short)", again)
    return found


def latest_model(pipeline_root: str) -> Path:
    """The latest run's model: its model folder, else the version it registered.

    A run whose steps came from the cache points into the folder of the run that wrote
    them; when that folder was removed, the registered copy still serves.

    Raises:
        ConfigError: No finished run, a broken summary.json, or both copies gone.
    """
    summary = latest_summary(pipeline_root)
    found = summary.get("deployment")
    deployment = found if isinstance(found, dict) else {}
    version_uri = deployment.get("version_uri") if deployment.get("version") else None
    candidates = [summary["model_dir"]]
    if isinstance(version_uri, str) and not is_remote(version_uri):
        candidates.append(local_path(version_uri))
    from crypto_pipeline.registry import version_complete

    for candidate in candidates:
        if version_complete(candidate):
            return Path(candidate)
    raise ConfigError(
        f"the latest run's model is gone: {candidates[0]} holds no SavedModel (its run "
        "folder was removed)"
        + (f", nor does the version it registered, {candidates[1]}" if candidates[1:] else ""),
        "run the pipeline again (`make pipeline`): the steps whose outputs are gone run "
        "again; or pass --model with a model folder, e.g. a registered version "
        f"{Path(pipeline_root, 'models', 'crypto', '<n>')}",
    )


def serve(args: argparse.Namespace) -> None:
    """``serve``: a model over KServe's V1 protocol, by default the latest run's."""
    from crypto_pipeline.serving.client import client_url
    from crypto_pipeline.serving.model import MODEL_NAME, require_saved_model
    from crypto_pipeline.serving.server import check_listen_address
    from crypto_pipeline.serving.server import serve as serve_model

    check_listen_address(args.host, args.port)
    model_dir = Path(args.model) if args.model else latest_model(args.pipeline_root)
    model_dir = require_saved_model(model_dir)
    reach = "every interface" if args.host in ("0.0.0.0", "::") else f"{args.host} only"
    print(
        f"serving {model_dir} as '{MODEL_NAME}' on port {args.port}, {reach}\n"
        f"  try: crypto-pipeline predict --url {client_url(args.host, args.port)} "
        "--open 100 --high 104 --low 97",
        flush=True,
    )
    serve_model(model_dir, args.port, args.host)


def predict(args: argparse.Namespace) -> None:
    """``predict``: one day's close from a running server."""
    from crypto_pipeline.rows import PRICE_MAX, PRICE_MIN
    from crypto_pipeline.serving.client import predict as ask
    from crypto_pipeline.serving.request_rules import RequestError, parse_instances

    instance = {"open": args.open, "high": args.high, "low": args.low}
    try:
        parse_instances({"instances": [instance]})
    except RequestError as exc:
        raise ConfigError(
            str(exc).replace("instances[0].", "--").replace("instances[0]: ", ""),
            "pass finite, positive prices with --low <= --open <= --high, each from "
            f"{PRICE_MIN:.7g} to {PRICE_MAX:.7g} (the model's float32)",
        ) from None
    try:
        (close,) = ask(args.url, [[args.open, args.high, args.low]])
    except ConnectionError as exc:
        raise ConfigError(
            str(exc),
            "start a server with `make serve` (or crypto-pipeline serve --model DIR) and "
            "check --url",
        ) from None
    except RequestError as exc:
        raise ConfigError(
            str(exc), "check --url: it must name a KServe V1 server of this model"
        ) from None
    print(
        f"predicted close: {close:,.2f} (open {args.open:g}, high {args.high:g}, low {args.low:g})"
    )
