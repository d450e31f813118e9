"""Submitting the compiled pipeline to Kubeflow Pipelines (``kfp.Client``).

Credentials come from the environment, never from the project. The routes to the API
(``ROUTES``; the README shows each):

- ``standalone``: KFP standalone has no sign-in: ``kubectl -n kubeflow port-forward
  svc/ml-pipeline-ui 8080:80``, host ``http://localhost:8080``, no token.
- ``in-cluster``: from a pod in the profile's namespace (a Kubeflow notebook), the API
  Service ``http://ml-pipeline.kubeflow:8888`` with a projected service-account token whose
  audience is ``pipelines.kubeflow.org``: Kubeflow's ``access-ml-pipeline`` PodDefault
  mounts it and sets ``KF_PIPELINES_SA_TOKEN_PATH``, which ``read_token`` reads.
- ``ingress``: from a laptop to a multi-user Kubeflow, through the Istio ingress gateway
  (``kubectl -n istio-system port-forward svc/istio-ingressgateway 8080:80``), host
  ``http://localhost:8080/pipeline``. Kubeflow 26.03's default sign-in (oauth2-proxy's
  ``m2m-dex-only`` overlay) accepts Dex's sessions there, not Kubernetes tokens: pass the
  browser's session cookie in ``KF_PIPELINES_COOKIE``; a cluster whose admin installed the
  ``m2m-dex-and-kind`` overlay also accepts ``kubectl -n NAMESPACE create token
  default-editor`` in ``KF_PIPELINES_TOKEN``.

The namespace is given once: on a multi-user Kubeflow, the user's profile namespace. The
run, its experiment and the objects the pipeline creates (the InferenceService) all go
there.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Mapping
from typing import Any

from crypto_pipeline.config import DEFAULT_NAMESPACE, DEFAULT_TAG
from crypto_pipeline.errors import ConfigError, PipelineError
from crypto_pipeline.package_params import complete_arguments, package_spec, parameter_definitions
from crypto_pipeline.pipeline import PIPELINE_NAME

TOKEN_ENV = "KF_PIPELINES_TOKEN"
"""A bearer token for the KFP API (multi-user Kubeflow)."""
TOKEN_PATH_ENV = "KF_PIPELINES_SA_TOKEN_PATH"
"""A file holding the token (kfp's own variable: a projected service-account token)."""
COOKIE_ENV = "KF_PIPELINES_COOKIE"
"""A signed-in browser's cookies for Kubeflow's ingress (``oauth2_proxy_kubeflow=…``)."""
TOKEN_AUDIENCE = "pipelines.kubeflow.org"
"""The audience KFP's API server requires of a service-account token."""
ROUTES = {
    "standalone": {
        "port_forward": "kubectl -n kubeflow port-forward svc/ml-pipeline-ui 8080:80",
        "host": "http://localhost:8080",
        "credential": "none",
    },
    "in-cluster": {
        "port_forward": "",
        "host": "http://ml-pipeline.kubeflow:8888",
        "credential": f"{TOKEN_PATH_ENV} (a projected token, audience {TOKEN_AUDIENCE})",
    },
    "ingress": {
        "port_forward": "kubectl -n istio-system port-forward svc/istio-ingressgateway 8080:80",
        "host": "http://localhost:8080/pipeline",
        "credential": f"{COOKIE_ENV} (m2m-dex-only), or {TOKEN_ENV} (m2m-dex-and-kind)",
    },
}
"""How to reach the KFP API: the command that opens the way, the host, the credential."""
FINAL_STATES = ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELED")


MAX_TOKEN_BYTES = 64 << 10
"""The most a token file may hold: a service-account token is a few kB."""


def read_token(
    token_file: str | None = None, environ: Mapping[str, str] | None = None
) -> str | None:
    """The bearer token for the KFP API: from ``token_file``, else the environment.

    The file must be a regular file of at most ``MAX_TOKEN_BYTES``: a FIFO or a device
    (``/dev/zero``) is refused without waiting on it, a larger file without reading it all.

    Raises:
        ConfigError: The token file is missing, unreadable, not a regular file, too large,
            not text or empty; the error names it and where it was given.
    """
    environ = os.environ if environ is None else environ
    if token_file:
        return _token_from(
            token_file, f"the token file {token_file} (--token-file)", "--token-file"
        )
    if environ.get(TOKEN_PATH_ENV):
        path = environ[TOKEN_PATH_ENV]
        return _token_from(path, f"the token file {path} ({TOKEN_PATH_ENV})", TOKEN_PATH_ENV)
    return environ.get(TOKEN_ENV) or None


def _token_from(path: str, named: str, given_by: str) -> str:
    """The token in PATH, read without blocking and at most ``MAX_TOKEN_BYTES + 1`` bytes."""
    fix = (
        f"point {given_by} at the file that holds the token (in a pod, the projected "
        f"service-account token of audience {TOKEN_AUDIENCE}), or leave it out"
    )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens without a writer
    except OSError as exc:
        raise ConfigError(f"cannot read {named}: {exc.strerror}", fix) from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError(f"{named} is not a regular file (a FIFO, device or socket)", fix)
        try:
            data = f.read(MAX_TOKEN_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"cannot read {named}: {exc.strerror}", fix) from None
    if len(data) > MAX_TOKEN_BYTES:
        raise ConfigError(
            f"{named} holds more than {MAX_TOKEN_BYTES // 1024} KiB: not a token", fix
        )
    try:
        token = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{named} is not text: not a token", fix) from None
    if not token:
        raise ConfigError(f"{named} is empty", f"write the token into it, or {fix}")
    if any(ch.isspace() or not ch.isprintable() for ch in token):
        raise ConfigError(  # a header cannot carry it, and its text must not be shown
            f"{named} holds more than one word (spaces, line breaks or control characters): "
            "not a token",
            fix,
        )
    return token


def submit(
    package_path: str | os.PathLike[str],
    host: str,
    experiment: str = "crypto",
    arguments: dict[str, Any] | None = None,
    run_name: str | None = None,
    namespace: str = DEFAULT_NAMESPACE,
    token: str | None = None,
    cookies: str | None = None,
    allow_version_tag: bool = False,
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
        cookies: A ``Cookie`` header sent with every request (``KF_PIPELINES_COOKIE``).
        allow_version_tag: Submit a package whose images carry the bare version tag
            (``crypto_pipeline.__version__``), which is reused by every build.

    Returns:
        The run's ``RunPipelineResult`` (``.run_id``, ``.wait_for_run_completion``).

    Raises:
        ConfigError: The package is no compiled pipeline, names its images by the reused
            version tag, or is given a second, different namespace.
    """
    import kfp

    # One namespace, given once: the run's, and that of what the pipeline creates there
    # (a pipeline with a `deploy` parameter: the crypto pipeline's deploy step).
    arguments = {k: dict(v) if isinstance(v, dict) else v for k, v in (arguments or {}).items()}
    definitions = parameter_definitions(package_path)
    if "deploy" in definitions:
        deploy = arguments.setdefault("deploy", {})
        if deploy.setdefault("namespace", namespace) != namespace:
            raise ConfigError(
                f"the namespace {namespace} and the parameter deploy.namespace="
                f"{deploy['namespace']} differ",
                "give the namespace once, with --namespace",
            )
    arguments = complete_arguments(arguments, definitions)
    reused = mutable_images(package_path, DEFAULT_TAG)
    if reused and not allow_version_tag:
        raise ConfigError(
            f"{package_path} names its images by the reused tag {DEFAULT_TAG} ({reused[0]}, "
            "…): every build reuses it, so nodes keep whichever image they pulled first and "
            "KFP's cache serves steps of old code",
            "build and push the images (scripts/build_images.sh --push), compile with their "
            "content tag (`crypto-pipeline compile -o build/crypto_pipeline.yaml`: its "
            "default in a checkout) and submit that; --allow-version-tag submits it anyway",
        )

    client = kfp.Client(host=host, namespace=namespace, existing_token=token, cookies=cookies)
    return client.create_run_from_pipeline_package(
        os.fspath(package_path),
        arguments=arguments,
        experiment_name=experiment,
        namespace=namespace,
        run_name=run_name or f"{PIPELINE_NAME}-{time.strftime('%Y%m%d-%H%M%S')}",
    )


def wait(result, timeout: int) -> str:
    """Waits for a submitted run to end.

    Returns:
        ``SUCCEEDED``.

    Raises:
        PipelineError: The run ended in another state, or did not end within ``timeout``.
    """
    try:
        run = result.wait_for_run_completion(timeout=timeout)
    except TimeoutError:
        raise PipelineError(
            f"run {result.run_id} has not ended after {timeout} s",
            "follow it in the KFP UI (Runs), or wait longer with --timeout",
        ) from None
    state = str(getattr(run, "state", "") or "UNKNOWN")
    if state != "SUCCEEDED":
        message = getattr(getattr(run, "error", None), "message", None)
        detail = f": {message}" if message else ""
        raise PipelineError(
            f"run {result.run_id} ended {state}{detail}",
            "open the run in the KFP UI: each failed step's log ends with its error and fix",
        )
    return state


def refused(exc: Exception, host: str) -> PipelineError | None:
    """The KFP API's (or Kubeflow's sign-in's) refusal, with the route that works."""
    status = getattr(exc, "status", None)
    body = str(getattr(exc, "body", "") or "")
    if status in (302, 401, 403) or "oauth2" in body.lower() or "/dex/" in body:
        return PipelineError(
            f"{host} refused the request ({status or type(exc).__name__}): not signed in, or "
            "the credential is not one it accepts",
            "through Kubeflow's ingress (host …/pipeline) with the default m2m-dex-only "
            f"sign-in, set {COOKIE_ENV} to your browser's oauth2_proxy_kubeflow cookie "
            "(Kubernetes tokens are refused there unless the m2m-dex-and-kind overlay is "
            f"installed); inside the cluster use http://ml-pipeline.kubeflow:8888 with a "
            f"token of audience {TOKEN_AUDIENCE} ({TOKEN_PATH_ENV}); check --namespace is "
            "your profile's",
        )
    return None


def mutable_images(package_path: str | os.PathLike[str], mutable_tag: str) -> list[str]:
    """The images of a compiled pipeline that carry the reused version tag, not a content tag."""
    spec = package_spec(package_path)
    executors = spec.get("deploymentSpec", {}).get("executors", {})
    images = {e.get("container", {}).get("image", "") for e in executors.values()}
    return sorted(i for i in images if i.endswith(f":{mutable_tag}"))
