"""The ``crypto-pipeline`` command line's flags: one parser, a subparser per command.

The flags of each step's settings come from the fields of its dataclass
(``config.STEP_SETTINGS``): the name from the field (or its ``flag`` metadata), the type
from its annotation, the help and the default from the field. ``run`` takes every step's
settings: the ingest and transform flags as the steps name them, the others prefixed with
their step (``--tune-patience``, ``--deploy-target``).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import typing
from typing import Any, NoReturn

from crypto_pipeline import __version__, cli_commands, cli_serving
from crypto_pipeline.cli_settings import SHARED_RUN_FLAGS
from crypto_pipeline.config import (
    CHOICES,
    DATA_MOUNT,
    DATA_PVC,
    DEFAULT_NAMESPACE,
    DEFAULT_REGISTRY,
    DEFAULT_TAG,
    RUNNERS,
    SEARCH_ONLY,
    STEP_SETTINGS,
    PipelineConfig,
    step_image,
)
from crypto_pipeline.hyperparameters import SEARCH_SPACE
from crypto_pipeline.images import default_tag
from crypto_pipeline.sample_data import SAMPLE_PATH

BEAM_HELP = (
    "Any other --option is passed to Apache Beam as a pipeline option, e.g. "
    "--runner=DataflowRunner --project=PROJECT --region=REGION "
    "--temp_location=gs://BUCKET/tmp, or --runner=FlinkRunner --flink_master=HOST:PORT. "
    "Without one, the local DirectRunner runs."
)
RUN_PREFIXES = {
    "ingest": "",
    "transform": "",
    "tune": "tune-",
    "train": "train-",
    "deploy": "deploy-",
}
"""What ``run`` puts before each step's flags: none where the names are the step's alone."""
RUN_ALIASES = {"tune.trials": ("--trials",)}
"""Shorter names ``run`` also takes for a step's flag."""
_FLAG_FIXES = (
    (r"argument (\S+): invalid int value", "pass {} a whole number"),
    (r"argument (\S+): invalid float value", "pass {} a number"),
    (r"argument (\S+): invalid choice", "use one of the choices listed for {}"),
    (r"argument (\S+): expected one argument", "give {} a value"),
    (r"the following arguments are required: (.+)", "pass {}"),
)
"""argparse's messages, and what to pass instead: ``(pattern, fix with its flag)``."""


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose errors end like every other: ``error:`` and ``  fix:``.

    Its subparsers are of this class too (``add_subparsers`` takes the parser's class).
    """

    def error(self, message: str) -> NoReturn:
        """Prints the usage, the error and its fix; exits with status 2, as argparse does."""
        self.print_usage(sys.stderr)
        self.exit(2, f"error: {message}\n  fix: {self._fix(message)}\n")

    def _fix(self, message: str) -> str:
        """What to pass instead, for argparse's MESSAGE, and where the flags are listed."""
        help_text = f"see `{self.prog} --help`"
        for pattern, fix in _FLAG_FIXES:
            if found := re.match(pattern, message):
                return f"{fix.format(found[1])} ({help_text})"
        return help_text


def settings_flags(
    parser: argparse.ArgumentParser,
    step: str,
    prefix: str = "",
    skip: tuple[str, ...] = (),
    defaults: dict[str, Any] | None = None,
) -> None:
    """A flag for each field of STEP's settings (but those in SKIP), ``dest`` ``STEP.FIELD``.

    Defaults are ``None`` (the field's default then applies, as the help says) unless
    DEFAULTS gives one.
    """
    settings = STEP_SETTINGS[step]
    kinds = typing.get_type_hints(settings)
    for f in dataclasses.fields(settings):
        flag = settings.flag(f.name)
        if flag is None or f.name in skip:
            continue
        name = f"{step}.{f.name}"
        default = (defaults or {}).get(f.name)
        shown = getattr(settings(), f.name) if default is None else default
        parser.add_argument(
            f"--{prefix}{flag}",
            *(RUN_ALIASES.get(name, ()) if prefix else ()),
            dest=name,
            metavar=None if f.name in CHOICES else flag.upper().replace("-", "_"),
            type=kinds[f.name] if kinds[f.name] in (int, float) else str,
            choices=CHOICES.get(f.name),
            default=default,
            help=f"{f.metadata['help']} (default: {shown or 'none'})",
        )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``crypto-pipeline`` and its subcommands."""
    parser = _Parser(
        prog="crypto-pipeline",
        description="Kubeflow for Poets: predict Bitcoin's daily close with an ML pipeline "
        "that runs locally or on Kubeflow.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show library logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_run, _data_steps, _tune, _model_steps, _deploy, _cluster, _serving):
        add(sub)
    return parser


def _run(sub) -> None:
    p = sub.add_parser(
        "run",
        help="run the pipeline end to end into a new run folder",
        description="Runs the Kubeflow pipeline locally with kfp.local: ingest, transform, "
        "tune, train, deploy. Unchanged steps come from the cache. Writes summary.json in the "
        "run folder and points PIPELINE_ROOT/latest at it. " + BEAM_HELP,
    )
    p.add_argument(
        "--source",
        default=PipelineConfig().source_uri,
        help="CSV to ingest: path, file://, http(s)://, gs:// or s3://; "
        "'sample' (the default) is the bundled synthetic sample",
    )
    p.add_argument(
        "--pipeline-root",
        default=PipelineConfig().pipeline_root,
        help="folder for run folders, artifacts, the cache and registered models "
        "(default: %(default)s)",
    )
    p.add_argument("--no-cache", action="store_true", help="run every step, even unchanged ones")
    for step, prefix in RUN_PREFIXES.items():
        settings_flags(p, step, prefix)
    for name, steps in SHARED_RUN_FLAGS.items():
        shown = ", ".join(f"{getattr(STEP_SETTINGS[s](), name)} for {s}" for s in steps)
        p.add_argument(
            f"--{name}",
            type=int,
            help=f"{name} of {' and '.join(steps)}, unless --{RUN_PREFIXES[steps[0]]}{name} and "
            f"the like say otherwise (default: {shown})",
        )
    p.add_argument(
        "--runner",
        choices=RUNNERS,
        default=PipelineConfig().runner,
        help="subprocess: each step in this environment; docker: each step in its image "
        "(REGISTRY/<image>:TAG, built by scripts/build_images.sh), as the image's user, "
        "with artifacts under PIPELINE_ROOT/docker (default: %(default)s)",
    )
    p.add_argument("--registry", default=DEFAULT_REGISTRY, help="images (default: %(default)s)")
    p.add_argument("--tag", default=DEFAULT_TAG, help="image tag (default: %(default)s)")
    p.set_defaults(func=cli_commands.run, takes_beam_options=True)


def _data_steps(sub) -> None:
    p = sub.add_parser(
        "ingest",
        help="step 1: copy a source CSV into an artifact folder",
        description="Copies the source into OUTPUT_DIR/crypto-markets.csv and records its "
        "sha256, size and row count in OUTPUT_DIR/ingest.json.",
    )
    p.add_argument("--source", required=True, help="path, file://, http(s)://, gs:// or s3:// URI")
    p.add_argument("--output-dir", required=True)
    settings_flags(p, "ingest")
    p.set_defaults(func=cli_commands.ingest)

    p = sub.add_parser(
        "transform",
        help="step 2: validate, filter and split the data with Apache Beam",
        description="Writes OUTPUT_DIR/{train,eval,test}-*.csv, rejects-*.csv and "
        "stats.json. " + BEAM_HELP,
    )
    p.add_argument("--input", required=True, help="the crypto-markets.csv written by ingest")
    p.add_argument("--output-dir", required=True)
    settings_flags(p, "transform")
    p.set_defaults(func=cli_commands.transform, takes_beam_options=True)


def _tune(sub) -> None:
    p = sub.add_parser(
        "tune",
        help="step 3: search hyperparameters (Optuna; or write a Katib Experiment)",
        description="Searches locally and writes OUTPUT_DIR/best_params.json and "
        "trials.json; or, with --katib-manifest, writes the same search space as a Katib "
        "Experiment for a cluster instead (no local search).",
    )
    p.add_argument("--data-dir", help="a transform output folder (the local search)")
    p.add_argument("--output-dir", help="where the local search writes (the local search)")
    settings_flags(p, "tune")
    p.add_argument("--katib-manifest", metavar="PATH", help="write the Katib Experiment YAML here")
    p.add_argument(
        "--katib-image",
        default=step_image("tune", tag=default_tag()),
        help="training image for Katib trials (default: %(default)s)",
    )
    p.add_argument(
        "--katib-data-dir",
        default=DATA_MOUNT,
        help="transform output as the trial containers see it: a bucket URI, or a path where "
        "the claim --katib-data-claim is mounted (default: %(default)s)",
    )
    p.add_argument(
        "--katib-namespace",
        default=DEFAULT_NAMESPACE,
        help="the Experiment's namespace: your profile's on a multi-user Kubeflow "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--katib-data-claim",
        default=DATA_PVC,
        help="the PersistentVolumeClaim in that namespace holding the transform output "
        "(scripts/cluster.sh upload-data; default: %(default)s)",
    )
    p.set_defaults(func=cli_commands.tune)


def _model_steps(sub) -> None:
    p = sub.add_parser(
        "train",
        help="step 4: train with the best params, compare with baselines, export",
        description="Writes OUTPUT_DIR/metrics.json, history.json, loss.png, "
        "test_predictions.png, residuals.png and the SavedModel in OUTPUT_DIR/model/.",
    )
    p.add_argument("--data-dir", required=True, help="a transform output folder")
    p.add_argument("--params", required=True, help="best_params.json from the tune step")
    p.add_argument("--output-dir", required=True)
    settings_flags(p, "train")
    p.set_defaults(func=cli_commands.train)

    p = sub.add_parser(
        "trial",
        help="one Katib trial: train with given params, print eval_loss per epoch",
        description="Trains once with the hyperparameters given as flags and prints "
        "'eval_loss=<value>' after every epoch, for Katib's stdout metrics collector.",
    )
    p.add_argument("--data-dir", required=True, help="a transform output folder")
    settings_flags(p, "tune", skip=SEARCH_ONLY)
    for h in SEARCH_SPACE:
        kind = {"int": int, "float": float}.get(h.kind, int)
        p.add_argument(f"--{h.flag}", dest=h.name, type=kind, required=True, help=h.help)
    p.set_defaults(func=cli_commands.trial)


def _deploy(sub) -> None:
    p = sub.add_parser(
        "deploy",
        help="step 5: register a model version, smoke-test it, write/apply KServe's manifest",
        description="Answers a smoke request with the SavedModel; with --registry, a copy that "
        "answers becomes the next version, REGISTRY/crypto/<n>/ (a failed deploy registers "
        "nothing). Writes OUTPUT_DIR/inferenceservice.yaml, whose predictor "
        "is the serve image (a KServe custom predictor); --target cluster also applies it "
        "with the Kubernetes credentials of the environment.",
    )
    p.add_argument("--model", required=True, help="a SavedModel folder (train's model/)")
    p.add_argument("--output-dir", required=True)
    settings_flags(p, "deploy", defaults={"image": step_image("deploy", tag=default_tag())})
    p.set_defaults(func=cli_commands.deploy)


def _cluster(sub) -> None:
    p = sub.add_parser(
        "compile",
        help="write the pipeline as Kubeflow Pipelines IR YAML",
        description="Compiles the pipeline with its components set to run in "
        "REGISTRY/<step image>:TAG (the images scripts/ builds).",
    )
    p.add_argument("-o", "--output", default="crypto_pipeline.yaml", help="default: %(default)s")
    p.add_argument("--registry", default=DEFAULT_REGISTRY, help="default: %(default)s")
    p.add_argument(
        "--tag",
        default=default_tag(),
        help="image tag (default: %(default)s, this checkout's content tag, as "
        "scripts/build_images.sh tags the images)",
    )
    p.set_defaults(func=cli_commands.compile_package)
    _submit(sub)


def _submit(sub) -> None:
    p = sub.add_parser(
        "submit",
        help="upload a compiled pipeline to Kubeflow Pipelines and start a run",
        description="Creates a run of the compiled pipeline on a KFP host with kfp.Client. "
        "Hosts: http://localhost:8080 (KFP standalone, after `kubectl -n kubeflow "
        "port-forward svc/ml-pipeline-ui 8080:80`); http://localhost:8080/pipeline (a "
        "multi-user Kubeflow through its ingress gateway, signed in with the "
        "KF_PIPELINES_COOKIE or KF_PIPELINES_TOKEN environment variable); "
        "http://ml-pipeline.kubeflow:8888 (from a pod, with KF_PIPELINES_SA_TOKEN_PATH).",
    )
    p.add_argument("--host", required=True, help="the KFP API, e.g. http://localhost:8080")
    p.add_argument("--package", default="crypto_pipeline.yaml", help="default: %(default)s")
    p.add_argument("--experiment", default="crypto", help="default: %(default)s")
    p.add_argument(
        "--namespace",
        help="your profile namespace on a multi-user Kubeflow: the run and the "
        f"InferenceService go there (default: {DEFAULT_NAMESPACE}, "
        "KFP standalone's)",
    )
    p.add_argument(
        "--wait", action="store_true", help="wait for the run to end; fail unless it succeeds"
    )
    p.add_argument(
        "--allow-version-tag",
        action="store_true",
        help=f"submit a package whose images carry the reused version tag ({DEFAULT_TAG})",
    )
    p.add_argument(
        "--timeout", type=int, default=3600, help="with --wait: seconds (default: %(default)s)"
    )
    p.add_argument(
        "--token-file",
        help="a file with a bearer token for the KFP API (default: $KF_PIPELINES_SA_TOKEN_PATH, "
        "else the token in $KF_PIPELINES_TOKEN, else none)",
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a pipeline parameter, e.g. source_uri=gs://…, or one setting of a step, "
        "STEP.FIELD=VALUE, e.g. tune.patience=10 (repeatable); read as its type and checked "
        "by the rule the other commands apply to the same setting",
    )
    p.set_defaults(func=cli_commands.submit)


def _serving(sub) -> None:
    from crypto_pipeline.serving.server import DEFAULT_HOST, DEFAULT_PORT

    p = sub.add_parser(
        "serve",
        help="serve a trained model over KServe's V1 REST protocol",
        description="Starts a KServe ModelServer on HOST:PORT (127.0.0.1:8082 by default: "
        'this machine only): POST /v1/models/crypto:predict with {"instances": [[open, high, '
        'low], ...]} returns {"predictions": [close, ...]}. Bodies over 4 MiB, NaN, Infinity '
        "and prices outside float32 are refused; the model repository (load/unload) is off.",
    )
    p.add_argument("--model", help="a SavedModel folder (default: the latest run's model)")
    p.add_argument(
        "--pipeline-root",
        default=PipelineConfig().pipeline_root,
        help="where to look for the latest run (default: %(default)s)",
    )
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="1 to 65535 (default: %(default)s)"
    )
    p.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="the address to listen on (default: %(default)s, this machine only; "
        "0.0.0.0: every interface, e.g. in a container or pod)",
    )
    p.set_defaults(func=cli_serving.serve)

    p = sub.add_parser(
        "predict",
        help="ask a running server for one day's close",
        description="Sends one instance to a V1 server and prints the predicted close.",
    )
    p.add_argument("--url", default=f"http://127.0.0.1:{DEFAULT_PORT}", help="default: %(default)s")
    for price in ("open", "high", "low"):
        p.add_argument(f"--{price}", type=float, required=True)
    p.set_defaults(func=cli_serving.predict)

    p = sub.add_parser(
        "sample",
        help="regenerate the bundled synthetic sample",
        description="Writes the deterministic synthetic sample (not real market data).",
    )
    p.add_argument("--output", default=str(SAMPLE_PATH), help="default: the bundled file")
    p.set_defaults(func=cli_commands.sample)
