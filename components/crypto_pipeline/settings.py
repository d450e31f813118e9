"""A step's settings as a plain dict and back, checked field by field.

``config`` declares each step's settings as a dataclass of ``setting`` fields that derives
from ``Settings``; this module turns such an object into what a pipeline parameter carries
(a JSON object) and back, from JSON, from a Kubeflow Pipelines backend's struct (every
number a float) or from command-line text. A value type with a ``parse`` class method
(``config.Split``) travels as its text.
"""

from __future__ import annotations

import dataclasses
import difflib
import shlex
import typing
from collections.abc import Mapping
from dataclasses import field
from typing import Any, ClassVar, Self

from crypto_pipeline.errors import ConfigError


def setting(
    default: Any = dataclasses.MISSING, *, help: str, flag: str | None = "", **kw: Any
) -> Any:
    """A settings field whose ``help`` (and ``flag``, when not the field's name) the CLI shows.

    ``flag`` names the field's option of the step's command (``--max-source-mb``); ``""``
    derives it from the field's name; ``None``: the field has no flag of its own.
    """
    return field(default=default, metadata={"help": help, "flag": flag}, **kw)


class Settings:
    """One step's settings as a plain dict and back: what a pipeline parameter carries.

    ``to_dict`` gives JSON values (a ``Split`` as its text, a tuple as a list); ``from_dict``
    takes them back, and also what a Kubeflow Pipelines backend hands a component for a
    struct parameter (every number a float) or what a command line gives (text).
    """

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]
    """Each subclass is a dataclass: its fields are the settings."""

    @classmethod
    def flag(cls, name: str) -> str | None:
        """The option of field NAME in its step's command, dashes left out.

        ``max-source-mb`` for ``max_mb``; ``None`` where the field has no option.
        """
        flag = cls.__dataclass_fields__[name].metadata.get("flag", "")
        return None if flag is None else flag or name.replace("_", "-")

    def to_dict(self) -> dict[str, Any]:
        """The settings, field by field, as JSON values."""
        return {f.name: plain_value(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "") -> Self:
        """The settings that ``data`` gives, the defaults for the rest, checked by their rules.

        Args:
            data: Field names and values.
            where: How the user names these settings (``tune`` for ``--param tune.trials``);
                default: the class's name.

        Raises:
            ConfigError: A key names no field (close names in the fix), a value is not of its
                field's type, or the settings break their own rules.
        """
        where = where or cls.__name__
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"{where} is {type(data).__name__}, not an object of settings",
                f"pass an object like {cls().to_dict()}",
            )
        types = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        values = {}
        for key, value in data.items():
            if key not in types:
                close = difflib.get_close_matches(str(key), names, n=3, cutoff=0.6)
                hint = f"did you mean {' or '.join(close)}? " if close else ""
                raise ConfigError(
                    f"{where} has no setting {key!r}",
                    f"{hint}its settings are: {', '.join(names)}",
                )
            values[key] = field_value(types[key], value, f"{where}.{key}")
        return cls(**values)


def plain_value(value: Any) -> Any:
    """A setting's value as JSON holds it: a value type as its text, a tuple as a list."""
    if hasattr(type(value), "parse"):  # a value type read from its text (``Split``)
        return str(value)
    return list(value) if isinstance(value, tuple) else value


_KINDS = {int: "a whole number", float: "a number", str: "text"}


def field_value(kind: Any, value: Any, name: str) -> Any:
    """VALUE as a field of type KIND takes it: from JSON, a backend's struct, or text.

    Raises:
        ConfigError: VALUE cannot be read as KIND.
    """
    if typing.get_origin(kind) is typing.Literal:
        kind = str
    try:
        if isinstance(kind, type) and hasattr(kind, "parse"):  # ``Split``: from its text
            return value if isinstance(value, kind) else kind.parse(str(value))
        if typing.get_origin(kind) is tuple:
            return _words(value, name)
        if isinstance(value, str) and kind in (int, float):
            value = kind(value)
        if kind is int and isinstance(value, float) and value.is_integer():
            return int(value)  # a backend's struct holds every number as a float
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, kind) and not isinstance(value, bool):
            return value
    except ValueError:
        pass
    raise ConfigError(
        f"{name}={value!r} is not {_KINDS.get(kind, kind)}",
        f"give {name} {_KINDS.get(kind, kind)}",
    )


def _words(value: Any, name: str) -> tuple[str, ...]:
    """A list of words, or shell words in one text (``--runner=X --region=Y``)."""
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return tuple(value)
    if not isinstance(value, str):
        raise ValueError(value)
    try:
        return tuple(shlex.split(value))
    except ValueError as exc:
        raise ConfigError(
            f"{name} {value!r} are not shell words: {exc}",
            f"quote each option as a shell would, e.g. {name}='--runner=DataflowRunner "
            "--region=europe-west1'",
        ) from None
