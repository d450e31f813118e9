"""The ``crypto-pipeline`` command line: one subcommand per step, and ``run`` for all.

Every subcommand has ``--help``, exits non-zero on failure and prints errors that name
the problem and the fix. Options a step does not know are refused, except Apache Beam
pipeline options on ``transform`` and ``run`` (``--runner=DataflowRunner`` and so on).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from crypto_pipeline import __version__
from crypto_pipeline.config import PipelineConfig, Split, TransformConfig
from crypto_pipeline.errors import ConfigError, PipelineError
from crypto_pipeline.sample_data import SAMPLE_PATH, write_sample
from crypto_pipeline.schema import DATE_FORMATS

STEPS_TO_COME = ("tune", "train", "deploy")

_BEAM_HELP = (
    "Any other --option is passed to Apache Beam as a pipeline option, e.g. "
    "--runner=DataflowRunner --project=PROJECT --region=REGION "
    "--temp_location=gs://BUCKET/tmp, or --runner=FlinkRunner --flink_master=HOST:PORT. "
    "Without one, the local DirectRunner runs."
)


def _beam_args(extra: Sequence[str]) -> tuple[str, ...]:
    """Checks that leftover flags are Beam pipeline options, so typos don't vanish."""
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
        "--coin", default=defaults.coin, help="slug of the coin to keep (default: %(default)s)"
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


def _transform_config(args: argparse.Namespace, extra: Sequence[str]) -> TransformConfig:
    return TransformConfig(
        coin=args.coin,
        date_format=args.date_format,
        split=Split.parse(args.split),
        beam_args=_beam_args(extra),
    )


def _print_transform(stats: dict, output_dir: str) -> None:
    print(
        f"transformed {stats['rows_read']:,} rows of {stats['input']}\n"
        f"  kept {stats['rows_kept']:,} rows of {stats['coin']}; rejected "
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


def _cmd_ingest(args: argparse.Namespace, extra: Sequence[str]) -> None:
    from crypto_pipeline.ingest import ingest

    _beam_args_refused(extra)
    print(ingest(args.source, args.output_dir).describe())


def _cmd_transform(args: argparse.Namespace, extra: Sequence[str]) -> None:
    from crypto_pipeline.transform import transform

    config = _transform_config(args, extra)
    stats = transform(args.input, args.output_dir, config)
    _print_transform(stats, args.output_dir)


def _cmd_run(args: argparse.Namespace, extra: Sequence[str]) -> None:
    from crypto_pipeline.ingest import RAW_FILE_NAME, ingest
    from crypto_pipeline.transform import transform

    config = PipelineConfig(
        source_uri=args.source, runs_dir=args.runs_dir, transform=_transform_config(args, extra)
    )
    runs = Path(config.runs_dir)
    run_dir = runs / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    while run_dir.exists():  # two runs in one second
        run_dir = run_dir.with_name(run_dir.name + "x")
    durations: dict[str, float] = {}

    print(f"run folder: {run_dir}")
    print("[1/2] ingest")
    started = time.perf_counter()
    result = ingest(config.source_uri, run_dir / "ingest")
    durations["ingest"] = time.perf_counter() - started
    print(result.describe())

    print("[2/2] transform (Apache Beam)")
    started = time.perf_counter()
    stats = transform(run_dir / "ingest" / RAW_FILE_NAME, run_dir / "transform", config.transform)
    durations["transform"] = time.perf_counter() - started
    _print_transform(stats, str(run_dir / "transform"))

    latest = runs / "latest"
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(run_dir.name)
    summary = {
        "source_uri": config.source_uri,
        "synthetic": result.synthetic,
        "rows": {
            "raw": stats["rows_read"],
            "valid": stats["rows_valid"],
            "rejected": stats["rows_rejected"],
            "duplicates": stats["duplicates"],
            **{name: s["rows"] for name, s in stats["splits"].items()},
        },
        "durations_s": {k: round(v, 3) for k, v in durations.items()},
        "steps_to_come": list(STEPS_TO_COME),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"done in {sum(durations.values()):.1f} s; {latest} -> {run_dir.name}\n"
        f"steps still to come in this pipeline: {', '.join(STEPS_TO_COME)}"
    )


def _cmd_sample(args: argparse.Namespace, extra: Sequence[str]) -> None:
    _beam_args_refused(extra)
    path = write_sample(Path(args.output))
    print(f"wrote the synthetic sample (not real market data) to {path}")


def _beam_args_refused(extra: Sequence[str]) -> None:
    if extra:
        raise ConfigError(
            f"unknown option(s): {' '.join(extra)}", "check the spelling against --help"
        )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``crypto-pipeline`` and its subcommands."""
    parser = argparse.ArgumentParser(
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
        description="Runs every step into RUNS_DIR/<timestamp>/ and points RUNS_DIR/latest "
        "at it. " + _BEAM_HELP,
    )
    p.add_argument(
        "--source",
        default=PipelineConfig().source_uri,
        help="CSV to ingest: path, file://, http(s)://, gs:// or s3:// "
        "(default: the bundled synthetic sample)",
    )
    p.add_argument("--runs-dir", default=PipelineConfig().runs_dir, help="default: %(default)s")
    _add_transform_options(p)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "ingest",
        help="step 1: copy a source CSV into an artifact folder",
        description="Copies the source into OUTPUT_DIR/crypto-markets.csv and records its "
        "sha256, size and row count in OUTPUT_DIR/ingest.json.",
    )
    p.add_argument("--source", required=True, help="path, file://, http(s)://, gs:// or s3:// URI")
    p.add_argument("--output-dir", required=True)
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
    p.set_defaults(func=_cmd_transform)

    p = sub.add_parser(
        "sample",
        help="regenerate the bundled synthetic sample",
        description="Writes the deterministic synthetic sample (not real market data).",
    )
    p.add_argument("--output", default=str(SAMPLE_PATH), help="default: the bundled file")
    p.set_defaults(func=_cmd_sample)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR, format="%(levelname)s %(message)s"
    )
    if not args.verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        args.func(args, extra)
    except PipelineError as exc:
        print(f"error: {exc.problem}\n  fix: {exc.fix}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
