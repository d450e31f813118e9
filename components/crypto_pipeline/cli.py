"""The ``crypto-pipeline`` command line: one subcommand per step, and ``run`` for all.

Every subcommand has ``--help``, exits non-zero on failure and prints errors that name
the problem and the fix. Options a step does not know are refused, except Apache Beam
pipeline options on ``transform`` and ``run`` (``--runner=DataflowRunner`` and so on).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from crypto_pipeline import __version__
from crypto_pipeline.config import (
    DATA_PVC,
    DEFAULT_REGISTRY,
    DEFAULT_TAG,
    RUNNERS,
    DeployConfig,
    IngestConfig,
    PipelineConfig,
    Split,
    TrainConfig,
    TransformConfig,
    TuneConfig,
    runtime_environment,
)
from crypto_pipeline.errors import ConfigError, Interrupted, PipelineError, storage_error
from crypto_pipeline.hyperparameters import SEARCH_SPACE
from crypto_pipeline.images import default_tag
from crypto_pipeline.paths import OutputKind, check_outputs, path_error
from crypto_pipeline.sample_data import SAMPLE_PATH, write_sample
from crypto_pipeline.schema import DATE_FORMATS, FORMATS, Header

_BEAM_HELP = (
    "Any other --option is passed to Apache Beam as a pipeline option, e.g. "
    "--runner=DataflowRunner --project=PROJECT --region=REGION "
    "--temp_location=gs://BUCKET/tmp, or --runner=FlinkRunner --flink_master=HOST:PORT. "
    "Without one, the local DirectRunner runs."
)


def _beam_args(extra: Sequence[str]) -> tuple[str, ...]:
    """Checks that leftover flags are Beam pipeline options, so typos don't vanish.

    Only the commands that run the Beam transform (``run``, ``transform``) take them; any
    other command refuses options it does not know (see ``main``).
    """
    if not extra:
        return ()
    from apache_beam.options.pipeline_options import PipelineOptions

    options = PipelineOptions(list(extra))
    unknown = set(options.get_all_options(retain_unknown_options=True)) - set(
        options.get_all_options()
    )
    strays = [a for a in extra if not a.startswith("-")]
    if unknown or strays:
        names = ", ".join(sorted({f"--{u}" for u in unknown} | set(strays)))
        raise ConfigError(
            f"unknown option(s): {names}",
            "check the spelling against --help; other --options must be Apache Beam "
            "pipeline options (e.g. --runner=DataflowRunner)",
        )
    return tuple(extra)


def _add_transform_options(parser: argparse.ArgumentParser) -> None:
    defaults = TransformConfig()
    parser.add_argument(
        "--coin",
        help=f"slug of the coin to keep (default: {defaults.coin}); a single-asset file "
        "(Yahoo Finance, CoinMarketCap exports: no coin column) needs it: it names the asset",
    )
    parser.add_argument(
        "--date-format",
        choices=DATE_FORMATS,
        default=defaults.date_format,
        help="how to read d/m/yyyy-style dates; auto decides from the file and refuses "
        "when it cannot (default: %(default)s)",
    )
    parser.add_argument(
        "--split",
        default=str(defaults.split),
        help="train,eval,test fractions, split by date (default: %(default)s)",
    )


def _coin(given: str | None, header: Callable[[], Header | None], source: str, how: str) -> str:
    """The coin to keep: as given, or the default for a file whose slug column names coins.

    A single-asset file does not say which coin it holds: it must be named, never guessed.
    ``header`` reads the file's header; it is called only when no coin is given.
    """
    if given is not None:
        return given
    found = header()
    if found is not None and found.single_asset:
        from crypto_pipeline.ingest import mask_credentials

        raise ConfigError(
            f"{mask_credentials(source)} is {found.describe_format()}: it has no coin "
            "column, so it does "
            "not say which coin it holds",
            f"name the asset, e.g. {how} (the name becomes the rows' slug)",
        )
    return TransformConfig().coin


def _readable_header(source: str, max_seconds: float = IngestConfig.max_seconds) -> Header | None:
    """A source's header, or ``None`` when it cannot be read from here (in ``max_seconds``).

    The ingest step (on this machine, or on the cluster) then reports why, in its own words.
    """
    from crypto_pipeline.ingest import source_header

    try:
        return source_header(source, max_seconds)
    except PipelineError:
        return None


def _transform_config(
    args: argparse.Namespace, source: str, header: Callable[[], Header | None]
) -> TransformConfig:
    split = Split.parse(args.split)  # flags first: they fail without reading anything
    return TransformConfig(
        coin=_coin(args.coin, header, source, "--coin bitcoin"),
        date_format=args.date_format,
        split=split,
        beam_args=args.beam_args,
    )


def _print_transform(stats: dict, output_dir: str) -> None:
    named = " (named by --coin)" if stats["coin_from"] != "slug column" else ""
    print(
        f"transformed {stats['rows_read']:,} rows of {stats['input']}\n"
        f"  format: {FORMATS[stats['format']]}\n"
        f"  kept {stats['rows_kept']:,} rows of {stats['coin']}{named}; rejected "
        f"{stats['rows_rejected']:,}; duplicate dates dropped {stats['duplicates']:,}; "
        f"other coins {stats['other_coins']:,}"
    )
    if stats["rejected_by_reason"]:
        reasons = ", ".join(f"{k} {v:,}" for k, v in stats["rejected_by_reason"].items())
        print(f"  rejected by reason: {reasons}")
    for name, split in stats["splits"].items():
        period = f"{split['first_date']} .. {split['last_date']}" if split["rows"] else "(empty)"
        print(f"  {name:<5} {split['rows']:>6,} rows  {period}")
    print(f"  wrote splits, rejects and stats.json to {output_dir} ({stats['seconds']:.1f} s)")


def _add_source_limits(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-source-mb",
        type=int,
        default=IngestConfig.max_mb,
        help="the most megabytes read from the source, after decompression; more is an "
        "error (default: %(default)s)",
    )
    parser.add_argument(
        "--max-source-seconds",
        type=float,
        default=IngestConfig.max_seconds,
        help="the longest the source may take to read, in seconds (default: %(default)s)",
    )


def _cmd_ingest(args: argparse.Namespace) -> None:
    from crypto_pipeline.ingest import ingest

    limits = IngestConfig(max_mb=args.max_source_mb, max_seconds=args.max_source_seconds)
    result = ingest(args.source, args.output_dir, limits.max_mb, limits.max_seconds)
    print(result.describe())


def _cmd_transform(args: argparse.Namespace) -> None:
    from crypto_pipeline.transform import read_header, transform

    config = _transform_config(args, args.input, lambda: read_header(args.input))
    stats = transform(args.input, args.output_dir, config)
    _print_transform(stats, args.output_dir)


def _add_model_options(parser: argparse.ArgumentParser, defaults: TuneConfig | TrainConfig) -> None:
    parser.add_argument(
        "--epochs",
        type=int,
        default=defaults.epochs,
        help="most epochs per model; early stopping ends most sooner (default: %(default)s)",
    )
    parser.add_argument(
        "--patience",
        type=int,
        default=defaults.patience,
        help="epochs without improvement on eval before stopping (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="default: %(default)s")


def _tune_config(args: argparse.Namespace) -> TuneConfig:
    return TuneConfig(
        trials=args.trials, epochs=args.epochs, patience=args.patience, seed=args.seed
    )


def _print_tune(result, output_dir: str) -> None:
    states = Counter(t["state"].lower() for t in result.trials)
    counted = ", ".join(f"{n} {state}" for state, n in states.items())
    print(
        f"tuned {len(result.trials)} trials ({counted});"
        f" best eval loss {result.best_value:.4g}\n  best params: {result.best_params.to_dict()}\n"
        f"  wrote best_params.json, trials.json and {', '.join(result.plots)} to {output_dir}"
    )


def _print_train(metrics: dict, output_dir: str) -> None:
    from crypto_pipeline.report import comparison_lines

    kept = (
        "kept the least-squares start: no epoch clearly beat it"
        if metrics["best_epoch"] == 0
        else f"kept epoch {metrics['best_epoch']}"
    )
    print(
        f"trained {metrics['epochs_run']} epochs ({kept}); test period "
        f"{metrics['test_first_date']} .. {metrics['test_last_date']} ({metrics['test_rows']} days)"
    )
    print("\n".join(comparison_lines(metrics)))
    print(
        f"  model RMSE = {metrics['rmse_vs_midpoint']:.3f} x midpoint, "
        f"{metrics['rmse_vs_least_squares']:.3f} x least squares\n"
        f"  wrote metrics.json, plots and the SavedModel (model/) to {output_dir}"
    )


def _cmd_tune(args: argparse.Namespace) -> None:
    config = _tune_config(args)  # flags first: they fail before TensorFlow loads
    from crypto_pipeline.tune import katib_experiment, tune

    if args.katib_manifest:  # the cluster's search: the manifest alone, no local search
        import yaml

        manifest = katib_experiment(
            config,
            data_dir=args.katib_data_dir,
            image=args.katib_image,
            namespace=args.katib_namespace,
            data_pvc=args.katib_data_claim,
        )
        Path(args.katib_manifest).parent.mkdir(parents=True, exist_ok=True)
        Path(args.katib_manifest).write_text(
            "# Generated by `crypto-pipeline tune --katib-manifest`: the search space of\n"
            "# crypto_pipeline.hyperparameters.SEARCH_SPACE as a Katib Experiment. Apply with\n"
            "# kubectl.\n" + yaml.safe_dump(manifest, sort_keys=False)
        )
        print(
            f"wrote the Katib Experiment to {args.katib_manifest} (namespace "
            f"{args.katib_namespace}); apply it with kubectl apply -f {args.katib_manifest}"
        )
        return
    missing = [
        f"--{n.replace('_', '-')}" for n in ("data_dir", "output_dir") if not getattr(args, n)
    ]
    if missing:
        raise ConfigError(
            f"tune needs {' and '.join(missing)}",
            "pass --data-dir (a transform output) and --output-dir, or --katib-manifest PATH "
            "to write the search as a Katib Experiment instead",
        )
    _print_tune(tune(args.data_dir, args.output_dir, config), args.output_dir)


def _cmd_train(args: argparse.Namespace) -> None:
    config = TrainConfig(epochs=args.epochs, patience=args.patience, seed=args.seed)
    from crypto_pipeline.train import read_params, train

    metrics = train(args.data_dir, read_params(args.params), args.output_dir, config)
    _print_train(metrics, args.output_dir)


def _cmd_trial(args: argparse.Namespace) -> None:
    from crypto_pipeline.hyperparameters import Params

    params = Params.from_dict({h.name: getattr(args, h.name) for h in SEARCH_SPACE})
    config = TuneConfig(trials=1, epochs=args.epochs, patience=args.patience, seed=args.seed)
    from crypto_pipeline.tune import OBJECTIVE_METRIC, trial

    best = trial(args.data_dir, params, config)
    print(f"kept {OBJECTIVE_METRIC}={best:.8g}")  # last: the objective Katib takes


def _cmd_run(args: argparse.Namespace) -> None:
    defaults = PipelineConfig()
    # flags first, by the rules that tune and train apply: they fail before the source is read
    tune = TuneConfig(
        trials=args.trials,
        epochs=defaults.tune.epochs if args.epochs is None else args.epochs,
        seed=args.seed,
    )
    train = TrainConfig(
        epochs=defaults.train.epochs if args.epochs is None else args.epochs, seed=args.seed
    )
    config = PipelineConfig(
        source_uri=args.source,
        pipeline_root=args.pipeline_root,
        ingest=IngestConfig(max_mb=args.max_source_mb, max_seconds=args.max_source_seconds),
        transform=_transform_config(
            args, args.source, lambda: _readable_header(args.source, args.max_source_seconds)
        ),
        tune=tune,
        train=train,
        runner=args.runner,
        registry=args.registry,
        tag=args.tag,
    )
    from crypto_pipeline.local_run import format_summary, run_config, run_root
    from crypto_pipeline.pipeline import PIPELINE_NAME

    where = (
        f"each step in its image ({config.registry}/<image>:{config.tag}, Docker)"
        if config.runner == "docker"
        else "each step in a subprocess"
    )
    print(
        f"running the {PIPELINE_NAME} pipeline locally (kfp.local, {where}), "
        f"artifacts in {run_root(config)}"
    )
    summary = run_config(config, enable_caching=not args.no_cache)
    print(format_summary(summary))
    print(f"summary    {summary['run_dir']}/summary.json ({summary['latest']} points at this run)")


def _cmd_compile(args: argparse.Namespace) -> None:
    from crypto_pipeline.compiled import compile_pipeline

    path = compile_pipeline(args.output, registry=args.registry, tag=args.tag)
    print(f"wrote {path} (images {args.registry}/<step>:{args.tag})")


def _cmd_submit(args: argparse.Namespace) -> None:
    import os

    from crypto_pipeline.ingest import mask_credentials
    from crypto_pipeline.submit import (
        COOKIE_ENV,
        parameter_arguments,
        pipeline_parameters,
        read_token,
        refused,
        submit,
        wait,
    )

    package = Path(args.package)
    if not package.exists():
        raise ConfigError(
            f"no compiled pipeline at {package}",
            "run `crypto-pipeline compile -o crypto_pipeline.yaml` first",
        )
    # typed and checked by the rules the other commands apply, before any host is contacted
    arguments = parameter_arguments(args.param, package)
    namespace = args.namespace or str(arguments.get("namespace", DeployConfig().namespace))
    parameters = pipeline_parameters(package)
    source = str(arguments.get("source_uri", PipelineConfig().source_uri))
    # the source is read within the run's own limits, as its ingest step will read it
    limits = IngestConfig(
        max_mb=arguments.get("max_source_mb", IngestConfig.max_mb),
        max_seconds=arguments.get("max_source_seconds", IngestConfig.max_seconds),
    )
    if "coin" in parameters and "coin" not in arguments:
        _coin(
            None,
            lambda: _readable_header(source, limits.max_seconds),
            source,
            "--param coin=bitcoin",
        )
    # KFP's cache keys on it: changed data re-runs.
    if "source_fingerprint" in parameters and "source_fingerprint" not in arguments:
        from crypto_pipeline.ingest import source_fingerprint

        arguments["source_fingerprint"] = source_fingerprint(
            source, limits.max_mb, limits.max_seconds
        )
    try:
        result = submit(
            package,
            args.host,
            args.experiment,
            arguments,
            namespace=namespace,
            token=read_token(args.token_file),
            cookies=os.environ.get(COOKIE_ENV) or None,
            allow_version_tag=args.allow_version_tag,
        )
    except PipelineError:
        raise
    except Exception as exc:  # the KFP client raises many types for an unreachable host
        host = mask_credentials(args.host)
        raise refused(exc, host) or PipelineError(
            f"could not submit to {host}: {type(exc).__name__}: {mask_credentials(str(exc))}",
            "check --host (e.g. http://localhost:8080 after `kubectl -n kubeflow port-forward "
            "svc/ml-pipeline-ui 8080:80` on KFP standalone; http://localhost:8080/pipeline "
            "through Kubeflow's ingress) and that Kubeflow Pipelines runs there",
        ) from None
    print(
        f"submitted run {result.run_id} to {mask_credentials(args.host)} "
        f"(namespace {namespace}, experiment {args.experiment}"
        + (
            f"; source fingerprint {arguments['source_fingerprint']})"
            if "source_fingerprint" in arguments
            else ")"
        ),
        flush=True,
    )
    if args.wait:
        print(f"run {result.run_id}: {wait(result, args.timeout)}")


def _cmd_deploy(args: argparse.Namespace) -> None:
    from crypto_pipeline.deploy import deploy

    config = DeployConfig(
        registry_uri=args.registry,
        storage_uri=args.storage_uri,
        namespace=args.namespace,
        service_account=args.service_account,
        image=args.image,
        target=args.target,
        ready_timeout=args.ready_timeout,
    )
    result = deploy(args.model, args.output_dir, config)
    registered = (
        f"registered version {result.version} at {result.version_uri}"
        if result.version
        else f"serving {result.version_uri} as it is (no --registry)"
    )
    print(
        f"{registered}\n  KServe reads {result.storage_uri}\n"
        f"  smoke request {result.smoke_request} -> {result.smoke_response}\n"
        f"  wrote {result.manifest_path}"
        + ("; applied it, and the cluster serves it" if result.applied else "")
    )


def _latest_summary(pipeline_root: str) -> dict:
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


def _latest_model(pipeline_root: str) -> Path:
    """The latest run's model: its model folder, else the version it registered.

    A run whose steps came from the cache points into the folder of the run that wrote
    them; when that folder was removed, the registered copy still serves.

    Raises:
        ConfigError: No finished run, a broken summary.json, or both copies gone.
    """
    summary = _latest_summary(pipeline_root)
    deployment = summary.get("deployment") if isinstance(summary.get("deployment"), dict) else {}
    version_uri = deployment.get("version_uri") if deployment.get("version") else None
    candidates = [summary["model_dir"]]
    if isinstance(version_uri, str) and "://" not in version_uri.removeprefix("file://"):
        candidates.append(version_uri.removeprefix("file://"))
    from crypto_pipeline.deploy import version_complete

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


def _cmd_serve(args: argparse.Namespace) -> None:
    from crypto_pipeline.serve import (
        MODEL_NAME,
        check_listen_address,
        client_url,
        require_saved_model,
        serve,
    )

    check_listen_address(args.host, args.port)
    model_dir = Path(args.model) if args.model else _latest_model(args.pipeline_root)
    model_dir = require_saved_model(model_dir)
    reach = "every interface" if args.host in ("0.0.0.0", "::") else f"{args.host} only"
    print(
        f"serving {model_dir} as '{MODEL_NAME}' on port {args.port}, {reach}\n"
        f"  try: crypto-pipeline predict --url {client_url(args.host, args.port)} "
        "--open 100 --high 104 --low 97",
        flush=True,
    )
    serve(model_dir, args.port, args.host)


def _cmd_predict(args: argparse.Namespace) -> None:
    from crypto_pipeline.schema import PRICE_MAX, PRICE_MIN
    from crypto_pipeline.serve import (
        RequestError,
        parse_instances,
        predict,
    )

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
        (close,) = predict(args.url, [[args.open, args.high, args.low]])
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


def _cmd_sample(args: argparse.Namespace) -> None:
    path = write_sample(Path(args.output))
    print(f"wrote the synthetic sample (not real market data) to {path}")


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

    p = sub.add_parser(
        "run",
        help="run the pipeline end to end into a new run folder",
        description="Runs the Kubeflow pipeline locally with kfp.local: ingest, transform, "
        "tune, train, deploy. Unchanged steps come from the cache. Writes summary.json in the "
        "run folder and points PIPELINE_ROOT/latest at it. " + _BEAM_HELP,
    )
    p.add_argument(
        "--source",
        default=PipelineConfig().source_uri,
        help="CSV to ingest: path, file://, http(s)://, gs:// or s3://; "
        "'sample' (the default) is the bundled synthetic sample",
    )
    _add_source_limits(p)
    p.add_argument(
        "--pipeline-root",
        default=PipelineConfig().pipeline_root,
        help="folder for run folders, artifacts, the cache and registered models "
        "(default: %(default)s)",
    )
    p.add_argument("--no-cache", action="store_true", help="run every step, even unchanged ones")
    _add_transform_options(p)
    p.add_argument("--trials", type=int, default=TuneConfig().trials, help="default: %(default)s")
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help=f"most epochs per model (default: {TuneConfig().epochs} per trial, "
        f"{TrainConfig().epochs} for the final model; early stopping ends most sooner)",
    )
    p.add_argument("--seed", type=int, default=TuneConfig().seed, help="default: %(default)s")
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
    p.set_defaults(func=_cmd_run, takes_beam_options=True)

    p = sub.add_parser(
        "ingest",
        help="step 1: copy a source CSV into an artifact folder",
        description="Copies the source into OUTPUT_DIR/crypto-markets.csv and records its "
        "sha256, size and row count in OUTPUT_DIR/ingest.json.",
    )
    p.add_argument("--source", required=True, help="path, file://, http(s)://, gs:// or s3:// URI")
    p.add_argument("--output-dir", required=True)
    _add_source_limits(p)
    p.set_defaults(func=_cmd_ingest)

    p = sub.add_parser(
        "transform",
        help="step 2: validate, filter and split the data with Apache Beam",
        description="Writes OUTPUT_DIR/{train,eval,test}-*.csv, rejects-*.csv and "
        "stats.json. " + _BEAM_HELP,
    )
    p.add_argument("--input", required=True, help="the crypto-markets.csv written by ingest")
    p.add_argument("--output-dir", required=True)
    _add_transform_options(p)
    p.set_defaults(func=_cmd_transform, takes_beam_options=True)

    p = sub.add_parser(
        "tune",
        help="step 3: search hyperparameters (Optuna; or write a Katib Experiment)",
        description="Searches locally and writes OUTPUT_DIR/best_params.json and "
        "trials.json; or, with --katib-manifest, writes the same search space as a Katib "
        "Experiment for a cluster instead (no local search).",
    )
    p.add_argument("--data-dir", help="a transform output folder (the local search)")
    p.add_argument("--output-dir", help="where the local search writes (the local search)")
    p.add_argument("--trials", type=int, default=TuneConfig().trials, help="default: %(default)s")
    _add_model_options(p, TuneConfig())
    p.add_argument("--katib-manifest", metavar="PATH", help="write the Katib Experiment YAML here")
    p.add_argument(
        "--katib-image",
        default=f"{DEFAULT_REGISTRY}/train:{default_tag()}",
        help="training image for Katib trials (default: %(default)s)",
    )
    p.add_argument(
        "--katib-data-dir",
        default="/data/transform",
        help="transform output as the trial containers see it: a bucket URI, or a path where "
        "the claim --katib-data-claim is mounted (default: %(default)s)",
    )
    p.add_argument(
        "--katib-namespace",
        default=DeployConfig().namespace,
        help="the Experiment's namespace: your profile's on a multi-user Kubeflow "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--katib-data-claim",
        default=DATA_PVC,
        help="the PersistentVolumeClaim in that namespace holding the transform output "
        "(scripts/cluster.sh upload-data; default: %(default)s)",
    )
    p.set_defaults(func=_cmd_tune)

    p = sub.add_parser(
        "train",
        help="step 4: train with the best params, compare with baselines, export",
        description="Writes OUTPUT_DIR/metrics.json, history.json, loss.png, "
        "test_predictions.png, residuals.png and the SavedModel in OUTPUT_DIR/model/.",
    )
    p.add_argument("--data-dir", required=True, help="a transform output folder")
    p.add_argument("--params", required=True, help="best_params.json from the tune step")
    p.add_argument("--output-dir", required=True)
    _add_model_options(p, TrainConfig())
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "trial",
        help="one Katib trial: train with given params, print eval_loss per epoch",
        description="Trains once with the hyperparameters given as flags and prints "
        "'eval_loss=<value>' after every epoch, for Katib's stdout metrics collector.",
    )
    p.add_argument("--data-dir", required=True, help="a transform output folder")
    _add_model_options(p, TuneConfig())
    for h in SEARCH_SPACE:
        kind = {"int": int, "float": float}.get(h.kind, int)
        p.add_argument(f"--{h.flag}", dest=h.name, type=kind, required=True, help=h.help)
    p.set_defaults(func=_cmd_trial)

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
    deploy_defaults = DeployConfig()
    p.add_argument(
        "--registry",
        default=deploy_defaults.registry_uri,
        help="folder (or file://) or bucket URI of versions, e.g. runs/models or "
        "gs://BUCKET/models "
        "(default: none, serve the model folder as it is)",
    )
    p.add_argument("--output-dir", required=True)
    p.add_argument("--storage-uri", default="", help="what the cluster reads (default: derived)")
    p.add_argument("--namespace", default=deploy_defaults.namespace, help="default: %(default)s")
    p.add_argument(
        "--service-account",
        default=deploy_defaults.service_account,
        help="the predictor's service account, which can read the storage (see cluster/)",
    )
    p.add_argument(
        "--image", default=f"{DEFAULT_REGISTRY}/serve:{default_tag()}", help="default: %(default)s"
    )
    p.add_argument("--target", choices=("local", "cluster"), default=deploy_defaults.target)
    p.add_argument(
        "--ready-timeout",
        type=int,
        default=deploy_defaults.ready_timeout,
        help="with --target cluster: seconds to wait until the model is served "
        "(default: %(default)s)",
    )
    p.set_defaults(func=_cmd_deploy)

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
    p.set_defaults(func=_cmd_compile)

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
        f"InferenceService go there (default: {DeployConfig().namespace}, KFP standalone's)",
    )
    p.add_argument(
        "--wait", action="store_true", help="wait for the run to end; fail unless it succeeds"
    )
    p.add_argument(
        "--allow-version-tag",
        action="store_true",
        help="submit a package whose images carry the reused version tag (0.1.0)",
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
        help="a pipeline parameter, e.g. source_uri=gs://… (repeatable); read as its type in "
        "the package and checked by the rule the other commands apply to the same setting",
    )
    p.set_defaults(func=_cmd_submit)

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
    from crypto_pipeline.serve import DEFAULT_HOST, DEFAULT_PORT

    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="1 to 65535 (default: %(default)s)"
    )

    p.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="the address to listen on (default: %(default)s, this machine only; "
        "0.0.0.0: every interface, e.g. in a container or pod)",
    )
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser(
        "predict",
        help="ask a running server for one day's close",
        description="Sends one instance to a V1 server and prints the predicted close.",
    )
    p.add_argument("--url", default=f"http://127.0.0.1:{DEFAULT_PORT}", help="default: %(default)s")
    for price in ("open", "high", "low"):
        p.add_argument(f"--{price}", type=float, required=True)
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser(
        "sample",
        help="regenerate the bundled synthetic sample",
        description="Writes the deterministic synthetic sample (not real market data).",
    )
    p.add_argument("--output", default=str(SAMPLE_PATH), help="default: the bundled file")
    p.set_defaults(func=_cmd_sample)
    return parser


_OUTPUTS: dict[str, tuple[tuple[str, str, OutputKind], ...]] = {
    "run": (("pipeline_root", "--pipeline-root", "folder"),),
    "ingest": (("output_dir", "--output-dir", "folder"),),
    "transform": (("output_dir", "--output-dir", "folder"),),
    "tune": (
        ("output_dir", "--output-dir", "folder"),
        ("katib_manifest", "--katib-manifest", "file"),
    ),
    "train": (("output_dir", "--output-dir", "folder"),),
    "deploy": (("output_dir", "--output-dir", "folder"),),
    "compile": (("output", "--output", "file"),),
    "sample": (("output", "--output", "file"),),
}
"""What each command writes: ``(attribute, flag, kind)``, checked before the command runs."""


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR, format="%(levelname)s %(message)s"
    )
    runtime_environment(verbose=args.verbose)
    try:
        if getattr(args, "takes_beam_options", False):
            args.beam_args = _beam_args(extra)
        elif extra:
            raise ConfigError(
                f"unknown option(s): {' '.join(extra)}",
                f"check the spelling against `crypto-pipeline {args.command} --help`",
            )
        check_outputs(args, _OUTPUTS.get(args.command, ()))
        args.func(args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except PipelineError as exc:
        print(f"error: {exc.problem}\n  fix: {exc.fix}", file=sys.stderr)
        return 130 if isinstance(exc, Interrupted) else 1
    except OSError as exc:  # a path the command was given, met during its work
        error = storage_error(exc) or path_error(exc)
        if error is None:
            raise
        print(f"error: {error.problem}\n  fix: {error.fix}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
