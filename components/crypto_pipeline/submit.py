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

import difflib
import json
import os
import shlex
import stat
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

from crypto_pipeline.config import DEFAULT_NAMESPACE, DEFAULT_TAG, PipelineConfig, Split
from crypto_pipeline.errors import ConfigError, PipelineError
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


def read_token(token_file: str | None = None, environ: dict[str, str] | None = None) -> str | None:
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
            (``0.1.0``), which is reused by every build.

    Returns:
        The run's ``RunPipelineResult`` (``.run_id``, ``.wait_for_run_completion``).

    Raises:
        ConfigError: The package is no compiled pipeline, names its images by the reused
            version tag, or is given a second, different namespace.
    """
    import kfp

    # One namespace, given once: the run's, and that of what the pipeline creates there
    # (a pipeline with a `namespace` parameter: the crypto pipeline's deploy step).
    arguments = dict(arguments or {})
    if "namespace" in pipeline_parameters(package_path):
        arguments.setdefault("namespace", namespace)
    if arguments.get("namespace", namespace) != namespace:
        raise ConfigError(
            f"the namespace {namespace} and the parameter namespace={arguments['namespace']} "
            "differ",
            "give the namespace once, with --namespace",
        )
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
        error = getattr(run, "error", None)
        detail = f": {error.message}" if getattr(error, "message", None) else ""
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


def _spec(package_path: str | os.PathLike[str]) -> dict[str, Any]:
    import yaml

    try:
        spec = yaml.safe_load(Path(package_path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"{package_path} is not a compiled pipeline: {type(exc).__name__}",
            "compile one with `crypto-pipeline compile -o crypto_pipeline.yaml`",
        ) from None
    if not isinstance(spec, dict) or "root" not in spec:
        raise ConfigError(
            f"{package_path} is not a compiled pipeline (no root DAG)",
            "compile one with `crypto-pipeline compile -o crypto_pipeline.yaml`",
        )
    return spec


def pipeline_parameters(package_path: str | os.PathLike[str]) -> set[str]:
    """The parameters a compiled pipeline takes."""
    return set(parameter_definitions(package_path))


def parameter_definitions(package_path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """A compiled pipeline's parameters, each with its ``parameterType`` and ``defaultValue``."""
    spec = _spec(package_path)
    return dict(spec["root"].get("inputDefinitions", {}).get("parameters", {}))


def _boolean(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise ValueError(text)
    return text.lower() == "true"


def _json(kind: type) -> Callable[[str], Any]:
    def read(text: str) -> Any:
        value = json.loads(text)
        if not isinstance(value, kind):
            raise ValueError(text)
        return value

    return read


PARAMETER_TYPES: dict[str, tuple[str, Callable[[str], Any]]] = {
    "NUMBER_INTEGER": ("a whole number", int),
    "NUMBER_DOUBLE": ("a number", float),
    "BOOLEAN": ("true or false", _boolean),
    "STRING": ("text", str),
    "LIST": ("a JSON list", _json(list)),
    "STRUCT": ("a JSON object", _json(dict)),
}
"""How ``--param`` text becomes a value of each type a compiled pipeline declares: what
the type is called, and the function that reads it (``ValueError`` when it cannot)."""


def _words(text: str) -> tuple[str, ...]:
    """``beam_args`` as the transform step reads it: shell words."""
    try:
        return tuple(shlex.split(text))
    except ValueError as exc:
        raise ConfigError(
            f"beam_args {_shown(text)!r} are not shell words: {exc}",
            "quote each Beam option as a shell would, e.g. "
            "--param beam_args='--runner=DataflowRunner --region=europe-west1'",
        ) from None


class Setting(NamedTuple):
    """The field of ``PipelineConfig`` a pipeline parameter carries."""

    section: str
    """The attribute of ``PipelineConfig`` that holds the field (``tune``); empty: the
    field is ``PipelineConfig``'s own."""
    field: str
    read: Callable[[Any], Any] = lambda value: value
    """The field's value from the parameter's (``Split.parse`` for ``split``)."""


SETTINGS: dict[str, tuple[Setting, ...]] = {
    "source_uri": (Setting("", "source_uri"),),
    "max_source_mb": (Setting("ingest", "max_mb"),),
    "max_source_seconds": (Setting("ingest", "max_seconds"),),
    "coin": (Setting("transform", "coin"),),
    "date_format": (Setting("transform", "date_format"),),
    "split": (Setting("transform", "split", Split.parse),),
    "beam_args": (Setting("transform", "beam_args", _words),),
    "trials": (Setting("tune", "trials"),),
    "tune_epochs": (Setting("tune", "epochs"),),
    "train_epochs": (Setting("train", "epochs"),),
    "seed": (Setting("tune", "seed"), Setting("train", "seed")),
    "registry_uri": (Setting("deploy", "registry_uri"),),
    "storage_uri": (Setting("deploy", "storage_uri"),),
    "namespace": (Setting("deploy", "namespace"),),
    "service_account": (Setting("deploy", "service_account"),),
    "serving_image": (Setting("deploy", "image"),),
    "deploy_target": (Setting("deploy", "target"),),
    "ready_timeout": (Setting("deploy", "ready_timeout"),),
}
"""The pipeline's parameters and the settings they carry: ``pipeline.pipeline_arguments``
read backwards (a test holds the two equal). ``source_fingerprint`` is no setting."""


def pipeline_config(
    arguments: Mapping[str, Any], config: PipelineConfig | None = None
) -> PipelineConfig:
    """``config`` (default: the defaults) with the settings that pipeline ``arguments`` give.

    Each setting is replaced in its dataclass, whose own rules check it: the rules that
    ``run``, ``tune``, ``train`` and the pipeline's steps apply. Arguments that carry no
    setting (``source_fingerprint``) change nothing.

    Raises:
        ConfigError: A value breaks its setting's rule.
    """
    config = config or PipelineConfig()
    for name, value in arguments.items():
        for setting in SETTINGS.get(name, ()):
            config = _with(config, setting, setting.read(value))
    return config


def _with(config: PipelineConfig, setting: Setting, value: Any) -> PipelineConfig:
    if not setting.section:
        return replace(config, **{setting.field: value})
    section = replace(getattr(config, setting.section), **{setting.field: value})
    return replace(config, **{setting.section: section})


def parameter_arguments(
    items: Iterable[str], package_path: str | os.PathLike[str]
) -> dict[str, Any]:
    """``--param KEY=VALUE`` items as the compiled pipeline's arguments, each checked.

    A value becomes the type the package declares for its parameter, then meets the rule
    of the setting it carries (``pipeline_config``). Nothing is contacted.

    Raises:
        ConfigError: An item is not KEY=VALUE, is given twice, names no parameter of the
            package, is not of its parameter's type or breaks its setting's rule; the
            error names the item and the rule. ``source_uri`` carries credentials.
    """
    definitions = parameter_definitions(package_path)
    arguments: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(
                f"--param {_shown(item)} is not KEY=VALUE",
                "pass e.g. --param source_uri=gs://bucket/crypto-markets.csv",
            )
        if key in arguments:
            raise ConfigError(
                f"--param {_shown(item)} gives {key} a second time",
                f"pass --param {key}=VALUE once",
            )
        if key not in definitions:
            raise _unknown(item, key, definitions, package_path)
        arguments[key] = _checked(item, key, text, definitions[key])
    _no_credentials(arguments.get("source_uri"))
    return arguments


def _no_credentials(source_uri: Any) -> None:
    """Refuses a source URL that may carry credentials: a run's parameters are no secret.

    That is a URL with anything ``mask_credentials`` masks: a user, or a parameter value.
    """
    from crypto_pipeline.ingest import mask_credentials

    if isinstance(source_uri, str) and mask_credentials(source_uri) != source_uri:
        raise ConfigError(
            f"--param source_uri={mask_credentials(source_uri)} may carry credentials (a "
            "user, a password or query values): Kubeflow "
            "Pipelines stores a run's parameters, shows them in its UI and puts them on the "
            "steps' command lines",
            "put the data where the pipeline's service account reads it without a secret "
            "in the URL (a bucket it may read through workload identity, or a URL inside "
            "the cluster), and pass that URI",
        )


def _checked(item: str, key: str, text: str, definition: dict[str, Any]) -> Any:
    """TEXT as KEY's type, checked by the rule of the setting KEY carries."""
    kind = definition.get("parameterType", "STRING")
    called, read = PARAMETER_TYPES.get(kind, ("text", str))
    example = _example(key, definition)
    try:
        value = read(text)
    except ValueError:
        raise ConfigError(
            f"--param {_shown(item)}: {key} is {called} ({kind} in the compiled pipeline)",
            f"pass {called}{example}",
        ) from None
    try:
        pipeline_config({key: value})
    except ConfigError as exc:
        raise ConfigError(
            f"--param {_shown(item)} breaks the rule of its setting: {exc.problem}",
            f"give {key} a value that rule allows{example}; as the rule puts it: {exc.fix}",
        ) from None
    return value


def _example(key: str, definition: dict[str, Any]) -> str:
    """``, e.g. --param KEY=<its default>`` when the package gives one."""
    if definition.get("defaultValue") in (None, ""):
        return ""
    default = definition["defaultValue"]
    if definition.get("parameterType") == "NUMBER_INTEGER":
        default = int(default)
    elif isinstance(default, bool):
        default = str(default).lower()
    elif isinstance(default, list | dict):
        default = json.dumps(default)
    return f", e.g. --param {key}={_shown(str(default))} (its default)"


def _unknown(
    item: str, key: str, definitions: dict[str, Any], package_path: str | os.PathLike[str]
) -> ConfigError:
    names = sorted(definitions)
    if not names:
        return ConfigError(
            f"--param {_shown(item)}: the pipeline in {package_path} takes no parameters",
            "leave --param out",
        )
    close = [n for n in names if key and (key in n or n in key)]
    close = close[:3] or difflib.get_close_matches(key, names, n=3, cutoff=0.7)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    return ConfigError(
        f"--param {_shown(item)}: the pipeline in {package_path} has no parameter {key!r}",
        f"{hint}its parameters are: {', '.join(names)}",
    )


def _shown(text: str) -> str:
    """TEXT as an error shows it: credentials in a URL masked, odd characters escaped."""
    from crypto_pipeline.ingest import mask_credentials

    text = mask_credentials(text)
    return text if text.isprintable() else repr(text)


def mutable_images(package_path: str | os.PathLike[str], mutable_tag: str) -> list[str]:
    """The images of a compiled pipeline that carry the reused version tag, not a content tag."""
    spec = _spec(package_path)
    executors = spec.get("deploymentSpec", {}).get("executors", {})
    images = {e.get("container", {}).get("image", "") for e in executors.values()}
    return sorted(i for i in images if i.endswith(f":{mutable_tag}"))
