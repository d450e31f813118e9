"""A compiled pipeline's parameters, and ``submit --param KEY=VALUE`` items as its arguments.

Each step's settings travel as one struct parameter (``pipeline.pipeline_arguments``);
``--param`` sets one of them as ``STEP.FIELD=VALUE`` (``tune.patience=30``), typed and
checked by the rules of the step's settings (``settings.Settings.from_dict``), and a
parameter of its own as ``KEY=VALUE`` (``source_uri=gs://…``).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from crypto_pipeline.config import STEP_SETTINGS
from crypto_pipeline.errors import ConfigError
from crypto_pipeline.settings import field_value, plain_value


def package_spec(package_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The compiled pipeline's IR, read and checked for a root DAG."""
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
    spec = package_spec(package_path)
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


def complete_arguments(
    arguments: Mapping[str, Any], definitions: Mapping[str, dict[str, Any]]
) -> dict[str, Any]:
    """ARGUMENTS with each step's settings whole, the package's defaults for those not given.

    A struct parameter replaces its default whole, so each step's settings go complete.
    """
    complete = dict(arguments)
    for step, given in arguments.items():
        if step in STEP_SETTINGS and isinstance(given, dict):
            default = definitions.get(step, {}).get("defaultValue") or {}
            complete[step] = STEP_SETTINGS[step].from_dict({**default, **given}, step).to_dict()
    return complete


def parameter_arguments(
    items: Iterable[str], package_path: str | os.PathLike[str]
) -> dict[str, Any]:
    """``--param KEY=VALUE`` items as the compiled pipeline's arguments, each checked.

    KEY is a parameter (``source_uri``) or one setting of a step, ``STEP.FIELD``
    (``tune.patience``): the step's settings go as one struct parameter, holding the
    settings given (``complete_arguments`` adds the rest). A value becomes its parameter's
    type in the package, or its field's type, then meets the rules of its settings.
    Nothing is contacted.

    Raises:
        ConfigError: An item is not KEY=VALUE, is given twice, names no parameter or
            setting, is not of its type or breaks its setting's rule; the error names the
            item and the rule. ``source_uri`` carries credentials.
    """
    definitions = parameter_definitions(package_path)
    names = _names(definitions)
    arguments: dict[str, Any] = {}
    given: set[str] = set()
    for item in items:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(
                f"--param {_shown(item)} is not KEY=VALUE",
                "pass e.g. --param source_uri=gs://bucket/crypto-markets.csv",
            )
        if key in given:
            raise ConfigError(
                f"--param {_shown(item)} gives {key} a second time",
                f"pass --param {key}=VALUE once",
            )
        if key not in names:
            raise _unknown(item, key, names, package_path)
        given.add(key)
        step, _, name = key.partition(".")
        if name:
            arguments.setdefault(step, {})[name] = _setting(item, key, text, definitions)
        else:
            arguments[key] = _checked(item, key, text, definitions[key])
    _no_credentials(arguments.get("source_uri"))
    return arguments


def _names(definitions: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """What ``--param`` takes, with its field's type (``None``: the parameter's own).

    That is each parameter that holds no step's settings, and each ``STEP.FIELD`` of the
    steps' settings the package takes.
    """
    names: dict[str, Any] = {}
    for name in definitions:
        if name not in STEP_SETTINGS:
            names[name] = None
            continue
        kinds = typing.get_type_hints(STEP_SETTINGS[name])
        for f in dataclasses.fields(STEP_SETTINGS[name]):
            names[f"{name}.{f.name}"] = kinds[f.name]
    return names


def _setting(item: str, key: str, text: str, definitions: Mapping[str, Any]) -> Any:
    """TEXT as the setting KEY (``STEP.FIELD``), checked by the rules of the step's settings.

    The error shows no credentials: a value's URL is masked (``_shown``).
    """
    step, _, name = key.partition(".")
    settings = STEP_SETTINGS[step]
    default = plain_value(getattr(settings(), name))
    default = " ".join(default) if isinstance(default, list) else str(default)
    example = f", e.g. --param {key}={_shown(default)} (its default)" if default else ""
    try:
        value = field_value(_names(definitions)[key], text, key)
        settings.from_dict({name: value}, step)
    except ConfigError as exc:
        if exc.problem.startswith(f"{key}="):  # not of the field's type
            problem, fix = f": {exc.problem}", exc.fix + example
        else:
            problem = f" breaks the rule of its setting: {exc.problem}"
            fix = f"give {key} a value that rule allows{example}; as the rule puts it: {exc.fix}"
        raise ConfigError(f"--param {_shown(item)}{_shown(problem)}", _shown(fix)) from None
    return plain_value(value)


def _no_credentials(source_uri: Any) -> None:
    """Refuses a source URL that may carry credentials: a run's parameters are no secret.

    That is a URL with anything ``mask_credentials`` masks: a user, or a parameter value.
    """
    from crypto_pipeline.urls import mask_credentials

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
    """TEXT as the type the package declares for parameter KEY."""
    kind = definition.get("parameterType", "STRING")
    called, read = PARAMETER_TYPES.get(kind, ("text", str))
    try:
        return read(text)
    except ValueError:
        raise ConfigError(
            f"--param {_shown(item)}: {key} is {called} ({kind} in the compiled pipeline)",
            f"pass {called}{_example(key, definition)}",
        ) from None


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
    item: str, key: str, definitions: Mapping[str, Any], package_path: str | os.PathLike[str]
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
        f"{hint}its parameters are: {', '.join(names)} (STEP.FIELD: one setting of a step)",
    )


def _shown(text: str) -> str:
    """TEXT as an error shows it: credentials in a URL masked, odd characters escaped."""
    from crypto_pipeline.urls import mask_credentials

    text = mask_credentials(text)
    return text if text.isprintable() else repr(text)
