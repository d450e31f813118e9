"""The ``crypto-pipeline`` command line: one subcommand per step, and ``run`` for all.

Every subcommand has ``--help``, exits non-zero on failure and prints errors that name
the problem and the fix. Options a step does not know are refused, except Apache Beam
pipeline options on ``transform`` and ``run`` (``--runner=DataflowRunner`` and so on).

Where what is: ``cli_parser`` (the flags; each step's settings' flags come from its
dataclass's fields), ``cli_settings`` (the settings built from the flags),
``cli_commands`` (the pipeline's commands and what they print) and ``cli_serving``
(``serve``, ``predict``, ``sample``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from crypto_pipeline.cli_parser import build_parser
from crypto_pipeline.cli_settings import beam_args
from crypto_pipeline.config import runtime_environment
from crypto_pipeline.errors import ConfigError, Interrupted, PipelineError, storage_error
from crypto_pipeline.paths import OutputKind, check_outputs, path_error

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
            args.beam_args = beam_args(extra)
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
