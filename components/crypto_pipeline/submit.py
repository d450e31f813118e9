"""Submitting the compiled pipeline to Kubeflow Pipelines (``kfp.Client``).

Credentials come from the environment, never from the project:

- a bearer token: ``KF_PIPELINES_TOKEN`` (e.g. ``kubectl create token``), or a token file,
  ``--token-file`` or ``KF_PIPELINES_SA_TOKEN_PATH``, such as a projected service-account
  token with audience ``pipelines.kubeflow.org`` in a pod; kfp reads
  ``/var/run/secrets/kubeflow/pipelines/token`` by default inside a cluster;
- the namespace: on a multi-user Kubeflow, the user's profile namespace.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from crypto_pipeline.config import DEFAULT_NAMESPACE
from crypto_pipeline.errors import ConfigError
from crypto_pipeline.pipeline import PIPELINE_NAME

TOKEN_ENV = "KF_PIPELINES_TOKEN"
"""A bearer token for the KFP API (multi-user Kubeflow)."""
TOKEN_PATH_ENV = "KF_PIPELINES_SA_TOKEN_PATH"
"""A file holding the token (kfp's own variable: a projected service-account token)."""


def read_token(token_file: str | None = None, environ: dict[str, str] | None = None) -> str | None:
    """The bearer token for the KFP API: from ``token_file``, else the environment.

    Raises:
        ConfigError: The named token file cannot be read or is empty.
    """
    environ = os.environ if environ is None else environ
    path = token_file or environ.get(TOKEN_PATH_ENV)
    if path:
        try:
            token = Path(path).read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read the token file {path}: {exc.strerror}",
                f"pass --token-file with a readable file, or unset {TOKEN_PATH_ENV}",
            ) from None
        if not token:
            raise ConfigError(f"the token file {path} is empty", "write the token into it")
        return token
    return environ.get(TOKEN_ENV) or None


def submit(
    package_path: str | os.PathLike[str],
    host: str,
    experiment: str = "crypto",
    arguments: dict[str, Any] | None = None,
    run_name: str | None = None,
    namespace: str = DEFAULT_NAMESPACE,
    token: str | None = None,
):
    """Uploads a compiled pipeline to Kubeflow Pipelines and starts a run.

    Args:
        package_path: The compiled pipeline (``crypto_pipeline.yaml``).
        host: The KFP API, e.g. ``http://localhost:8080``.
        experiment: The experiment to run in (created when missing).
        arguments: Pipeline parameters.
        run_name: Default: ``crypto-pipeline-<time>``.
        namespace: The user's namespace on a multi-user Kubeflow (the experiment, and so
            the run, is created there); ``kubeflow`` on KFP standalone.
        token: A bearer token sent with every request (see ``read_token``).

    Returns:
        The run's ``RunPipelineResult`` (``.run_id``).
    """
    import kfp

    client = kfp.Client(host=host, namespace=namespace, existing_token=token)
    return client.create_run_from_pipeline_package(
        os.fspath(package_path),
        arguments=arguments or {},
        experiment_name=experiment,
        namespace=namespace,
        run_name=run_name or f"{PIPELINE_NAME}-{time.strftime('%Y%m%d-%H%M%S')}",
    )
