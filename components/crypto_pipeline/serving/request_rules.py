"""The request rules: what a V1 request's body and instances may hold, and why not.

``parse_body`` reads a body once (orjson) and ``parse_instances`` checks it: one JSON object
with ``"instances"``, 1 to ``MAX_INSTANCES`` of them, each ``[open, high, low]`` or an
object with those keys. The price rules are the transform step's
(``rows.price_problem`` and ``rows.price_range_problem``: finite, positive,
low <= open <= high), and each price must be a normal float32, the model's input type
(from 1.175494e-38 to 3.402823e+38). A refusal is a ``RequestError`` naming the instance
and the problem; it quotes at most ``SHOWN_CHARS`` characters of any value.
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from crypto_pipeline.features import INPUTS
from crypto_pipeline.rows import (
    HIGH_BELOW_LOW,
    NON_FINITE,
    NON_POSITIVE_PRICE,
    OPEN_OUTSIDE_RANGE,
    PRICE_MAX,
    PRICE_MIN,
    PRICE_OUT_OF_RANGE,
    price_problem,
    price_range_problem,
)

MAX_INSTANCES = 10_000
"""Most instances one request may carry; larger batches get a 400 telling to split them."""
SHOWN_CHARS = 80
"""Most characters of a request's value that an error message quotes."""
SEND_JSON = (
    'send a JSON object like {"instances": [[100, 104, 97]]}, Content-Type: application/json'
)
"""What a refused body should have been, as its error message says."""


class RequestError(ValueError):
    """A request the server refuses, with the reason a client can act on."""


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = SHOWN_CHARS
_REPR.maxlist = _REPR.maxdict = 4
_NON_FINITE_JSON = re.compile(r"-?(nan|inf(inity)?)\b", re.IGNORECASE)


def shorten(text: str, limit: int = SHOWN_CHARS) -> str:
    """``text`` cut to ``limit`` characters, the last one an ellipsis when it was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shown(value: Any) -> str:
    """A request's value as an error message quotes it: its repr, at most 80 characters."""
    try:
        return shorten(_REPR.repr(value))
    except ValueError:  # an int past Python's digit limit for str()
        return f"an {type(value).__name__} too long to show"


def _names(names: Sequence[Any]) -> str:
    return shorten(", ".join(str(n) for n in names[:10]))


def _price(value: Any, where: str) -> float:
    """One price of a request, checked by the transform step's rule and as a float32."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError(f"{where}: {shown(value)} is not a number")
    float32_range = (
        f"outside the model's float32 range: send a price from {PRICE_MIN:.7g} to {PRICE_MAX:.7g}"
    )
    try:
        price = float(value)
    except OverflowError:
        raise RequestError(f"{where}: {shown(value)} is {float32_range}") from None
    problem = price_problem(price)
    if problem == NON_FINITE:
        raise RequestError(f"{where}: {shown(value)} is not finite")
    if problem == NON_POSITIVE_PRICE:
        raise RequestError(f"{where}: {shown(value)} is not a positive price")
    if problem == PRICE_OUT_OF_RANGE:
        raise RequestError(f"{where}: {shown(value)} is {float32_range}")
    return price


def parse_instances(payload: Any, limit: int = MAX_INSTANCES) -> np.ndarray:
    """Checks a V1 request body and returns its prices as a float32 ``(n, 3)`` array.

    Args:
        payload: The decoded JSON body.
        limit: Most instances accepted.

    Returns:
        One row of ``[open, high, low]`` per instance.

    Raises:
        RequestError: The body, an instance or a value is not acceptable; the message
            names which and why.
    """
    instances = _instances(payload, limit)
    rows = np.empty((len(instances), len(INPUTS)), dtype=np.float32)
    for i, instance in enumerate(instances):
        rows[i] = _prices(instance, f"instances[{i}]")
    return rows


def _instances(payload: Any, limit: int) -> list[Any]:
    """The body's ``"instances"``: a list of 1 to ``limit``, the body's only field."""
    if not isinstance(payload, dict) or "instances" not in payload:
        raise RequestError('the body must be a JSON object with "instances": [...]')
    extra = sorted(str(k) for k in set(payload) - {"instances"})
    if extra:
        raise RequestError(f"unknown field(s) in the body: {_names(extra)}")
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise RequestError('"instances" must be a list')
    if not instances:
        raise RequestError('"instances" is empty: send at least one [open, high, low]')
    if len(instances) > limit:
        raise RequestError(
            f"{len(instances)} instances is more than the limit of {limit}: "
            "send them in smaller batches"
        )
    return instances


def _values(instance: Any, where: str) -> Sequence[Any]:
    """An instance's three values, in ``INPUTS`` order, from a list or an object."""
    if isinstance(instance, dict):
        missing = [k for k in INPUTS if k not in instance]
        unknown = sorted(str(k) for k in set(instance) - set(INPUTS))
        if missing or unknown:
            parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
                [f"unknown {_names(unknown)}"] if unknown else []
            )
            raise RequestError(f"{where}: {'; '.join(parts)} (expected keys: {', '.join(INPUTS)})")
        return [instance[k] for k in INPUTS]
    if isinstance(instance, list):
        if len(instance) != len(INPUTS):
            raise RequestError(
                f"{where}: {len(instance)} values, expected {len(INPUTS)} ({', '.join(INPUTS)})"
            )
        return instance
    raise RequestError(
        f"{where}: expected [open, high, low] or an object with those keys, "
        f"got {type(instance).__name__}"
    )


def _prices(instance: Any, where: str) -> tuple[float, float, float]:
    """An instance's ``(open, high, low)``, each price and their order checked."""
    values = _values(instance, where)
    open_, high, low = (_price(v, f"{where}.{k}") for k, v in zip(INPUTS, values, strict=True))
    problem = price_range_problem(open_, high, low)
    if problem == HIGH_BELOW_LOW:
        raise RequestError(f"{where}: high {high!r} is below low {low!r}")
    if problem == OPEN_OUTSIDE_RANGE:
        raise RequestError(f"{where}: open {open_!r} is outside [low {low!r}, high {high!r}]")
    return open_, high, low


def parse_body(body: bytes, limit: int = MAX_INSTANCES) -> np.ndarray:
    """Parses a V1 request body, once, and checks it (``parse_instances``).

    Raises:
        RequestError: The body is not JSON, holds NaN or Infinity, or is not an
            acceptable request; the message says where and what to send.
    """
    import orjson

    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(_json_problem(body, exc)) from None
    return parse_instances(payload, limit)


def _json_problem(body: bytes, exc) -> str:
    """Why ``body`` is not acceptable JSON, from orjson's ``JSONDecodeError``."""
    if not body.strip():
        return f"the body is empty: {SEND_JSON}"
    where = f"line {exc.lineno} column {exc.colno}"
    text = body.decode("utf-8", "replace")
    start = exc.pos - 1 if text[exc.pos - 1 : exc.pos] == "-" else exc.pos
    token = _NON_FINITE_JSON.match(text, max(start, 0))
    if token or "infinity when parsed" in exc.msg:
        shown = f"{token.group(0)} " if token else "a number too large for a double "
        return (
            f"the body holds {shown}at {where}: JSON has no NaN or Infinity; "
            "send finite numbers (each price positive, at most 3.402823e+38)"
        )
    return f"the body is not JSON ({shorten(exc.msg)} at {where}): {SEND_JSON}"
