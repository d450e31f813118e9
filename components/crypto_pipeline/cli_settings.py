"""The command line's settings: each step's dataclass built from the flags that name its fields.

``cli_parser`` gives every field of a step's settings a flag whose ``dest`` is
``STEP.FIELD`` and whose default is ``None``; the settings built here take the flags given
and the dataclass's defaults for the rest (``Settings.from_dict``), so each field's own
rule checks it, as in the pipeline's steps.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from crypto_pipeline.config import (
    STEP_SETTINGS,
    DeployConfig,
    IngestConfig,
    PipelineConfig,
    TrainConfig,
    TransformConfig,
    TuneConfig,
)
from crypto_pipeline.errors import ConfigError, PipelineError
from crypto_pipeline.schema import Header
from crypto_pipeline.settings import Settings

SHARED_RUN_FLAGS = {"epochs": ("tune", "train"), "seed": ("tune", "train")}
"""``run``'s flags that set a field of several steps (``--epochs``), unless a step's own
flag (``--tune-epochs``) sets it."""
S = TypeVar("S", bound=Settings)
"""One step's settings class (``config.STEP_SETTINGS``)."""


def beam_args(extra: Sequence[str]) -> tuple[str, ...]:
    """Checks that leftover flags are Beam pipeline options, so typos don't vanish.

    Only the commands that run the Beam transform (``run``, ``transform``) take them; any
    other command refuses options it does not know (see ``cli.main``).
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


def given(args: argparse.Namespace, step: str) -> dict[str, Any]:
    """The fields of STEP's settings that flags gave (``dest`` ``STEP.FIELD``)."""
    values = {}
    for f in dataclasses.fields(STEP_SETTINGS[step]):
        value = getattr(args, f"{step}.{f.name}", None)
        if value is not None:
            values[f.name] = value
    return values


def _step_of(kind: type[Settings]) -> str:
    """The step whose settings KIND holds (``ingest`` for ``IngestConfig``)."""
    return next(step for step, settings in STEP_SETTINGS.items() if settings is kind)


def step_settings(args: argparse.Namespace, kind: type[S], **values: Any) -> S:
    """The settings KIND of a step from its flags (and VALUES), checked by their rules."""
    step = _step_of(kind)
    return kind.from_dict({**given(args, step), **values}, step)


def coin(named: str | None, header: Callable[[], Header | None], source: str, how: str) -> str:
    """The coin to keep: as NAMED, or the default for a file whose slug column names coins.

    A single-asset file does not say which coin it holds: it must be named, never guessed.
    ``header`` reads the file's header; it is called only when no coin is named.
    """
    if named is not None:
        return named
    found = header()
    if found is not None and found.single_asset:
        from crypto_pipeline.urls import mask_credentials

        raise ConfigError(
            f"{mask_credentials(source)} is {found.describe_format()}: it has no coin "
            "column, so it does not say which coin it holds",
            f"name the asset, e.g. {how} (the name becomes the rows' slug)",
        )
    return TransformConfig().coin


def readable_header(source: str, max_seconds: float = IngestConfig.max_seconds) -> Header | None:
    """A source's header, or ``None`` when it cannot be read from here (in ``max_seconds``).

    The ingest step (on this machine, or on the cluster) then reports why, in its own words.
    """
    from crypto_pipeline.ingest import source_header

    try:
        return source_header(source, max_seconds)
    except PipelineError:
        return None


def transform_settings(
    args: argparse.Namespace, source: str, header: Callable[[], Header | None]
) -> TransformConfig:
    """The transform's settings; the coin from the file's header when no flag names it."""
    values = given(args, "transform")
    values["beam_args"] = args.beam_args
    checked = TransformConfig.from_dict(values, "transform")  # flags fail before any read
    named = coin(values.get("coin"), header, source, "--coin bitcoin")
    return TransformConfig.from_dict({**checked.to_dict(), "coin": named}, "transform")


def run_settings(args: argparse.Namespace) -> PipelineConfig:
    """``run``'s ``PipelineConfig``: every step's settings from its flags.

    The flags are checked first, by the rules the steps apply, before the source is read.
    """
    ingest = _run_step_settings(args, IngestConfig)
    tune = _run_step_settings(args, TuneConfig)
    train = _run_step_settings(args, TrainConfig)
    deploy = _run_step_settings(args, DeployConfig)
    transform = transform_settings(
        args, args.source, lambda: readable_header(args.source, ingest.max_seconds)
    )
    return PipelineConfig(
        source_uri=args.source,
        pipeline_root=args.pipeline_root,
        ingest=ingest,
        transform=transform,
        tune=tune,
        train=train,
        deploy=deploy,
        runner=args.runner,
        registry=args.registry,
        tag=args.tag,
    )


def _run_step_settings(args: argparse.Namespace, kind: type[S]) -> S:
    """``run``'s settings KIND of a step: its own flags, else the shared ones (``--epochs``)."""
    step = _step_of(kind)
    inherited = {
        name: getattr(args, name)
        for name, steps in SHARED_RUN_FLAGS.items()
        if step in steps and getattr(args, name) is not None
    }
    return kind.from_dict({**inherited, **given(args, step)}, step)
