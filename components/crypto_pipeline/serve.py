"""Serving: a KServe ModelServer that answers KServe's V1 REST protocol.

It is the protocol KServe's TensorFlow runtime speaks on a cluster, so the same requests
work here and there::

    POST /v1/models/crypto:predict    (Content-Type: application/json)
    {"instances": [[open, high, low], ...]}                        -> {"predictions": [close, ...]}
    {"instances": [{"open": o, "high": h, "low": l}, ...]}         (accepted here; see README)

Readiness and health: ``GET /v1/models/crypto`` (``{"name": "crypto", "ready": true}``),
``GET /v1/models``, ``GET /`` (``{"status": "alive"}``), ``GET /v2/health/live`` and
``GET /v2/health/ready``, from KServe.

Where it listens: 127.0.0.1 (this machine only) unless ``host`` says otherwise;
``crypto-pipeline serve --host 0.0.0.0`` opens every interface, which the InferenceService
does because a pod is reached through its own interface.

Nothing else of KServe's app is open. ``GET /metrics`` stays: Prometheus text with request
counts and latencies, no request content, what a cluster's Prometheus scrapes. Every other
route is refused before KServe sees it: the model repository's ``load`` and ``unload``
answer 403 (one model, loaded at start, for the server's lifetime: restart the server to
serve another); ``/docs`` and ``/openapi.json`` answer 404 (they would list routes this
server refuses; the protocol is the one above), as do the V2 inference and metadata
routes and ``:explain``.

Every request is checked before the model sees it, and the server stays up:

- a body over ``MAX_BODY_BYTES`` (4 MiB) gets a 413 without being read when its
  Content-Length says so, or as soon as a chunked body passes the limit;
- a Content-Type other than ``application/json`` gets a 415 (a request without one is
  read as JSON, as KServe does);
- a body that is not JSON, or holds NaN or Infinity, gets a 400 that says where and what
  to send;
- a bad instance or value gets a 400 naming the instance and the problem. The price rules
  are the transform step's (``schema.price_problem`` and ``schema.price_range_problem``:
  finite, positive, low <= open <= high), and each price must be a normal float32, the
  model's input type (from 1.175494e-38 to 3.402823e+38);
- an unknown model name gets a 404.

- a body that opens more lists and objects than ``MAX_INSTANCES`` instances can (counted
  as it arrives) gets a 400 as soon as it passes, before it is parsed; an accepted body is
  parsed once, in a worker thread, as is the prediction: the event loop only moves bytes,
  so health and readiness answers never wait for prediction work.

Connections are bounded too: at most ``MAX_CONNECTIONS`` (fewer where the process may open
fewer files; a new one past the limit closes the one waiting longest for its request),
``HEADER_TIMEOUT_S`` for a request's headers (then a 408) and ``BODY_TIMEOUT_S`` for its
body (then the connection is closed).

Error messages quote at most 80 characters of any value they name. Each refused request
is one warning line in the server's log (method, path, client, status and message),
without a traceback or the body; the path is percent-encoded and every other character
that is not printable escaped, so no client can start a line or write a terminal escape.
A repeated connection event (the limit, a timeout, a failed accept) is one line per
``LOG_INTERVAL_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
import reprlib
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crypto_pipeline.errors import ConfigError
from crypto_pipeline.features import INPUTS
from crypto_pipeline.schema import (
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

MODEL_NAME = "crypto"
MAX_INSTANCES = 10_000
"""Most instances one request may carry; larger batches get a 400 telling to split them."""
MAX_BODY_BYTES = 4 * 1024 * 1024
"""Largest request body (4 MiB); a larger one gets a 413. ``MAX_INSTANCES`` instances
take about 0.6 MB as ``[open, high, low]`` lists of 17-digit prices and about 1.5 MB as
pretty-printed objects, so every request the server would accept fits."""
SHOWN_CHARS = 80
"""Most characters of a request's value that an error message quotes."""
DEFAULT_HOST = "127.0.0.1"
"""Where the server listens unless told otherwise: this machine only."""
DEFAULT_PORT = 8082
"""This machine's default port: 8080 is the Pipelines UI's port-forward, 8081 nginx's."""
MAX_CONNECTIONS = 1000
"""Most connections open at once; fewer where the process may open fewer files
(``connection_limits``). A new connection past the limit closes the one that has waited
longest for its request (idle or slow), or itself when every other one is being answered."""
HEADER_TIMEOUT_S = 5.0
"""Seconds a request's headers may take, from the connection's opening (or the request's
first byte on a kept-alive connection); then a 408 and the connection is closed."""
BODY_TIMEOUT_S = 30.0
"""Seconds a request's body may take after its headers (4 MiB at about 1.1 Mbit/s); then
the connection is closed."""
UNREAD_WAIT_S = 1.0
"""Seconds a request refused before its body arrived waits for its answer, its body
unread; the answer then closes the connection. The rest of the body is never read
(reading megabytes only to discard them is what a flood of refused bodies costs), and a
client that sends body after body gets at most one answer a second on each connection."""
DRAINED_BYTES = 2**16
"""Of a refused request's body, what is read (and dropped) to keep its connection open."""
MAX_HELD_BYTES = 64 * 2**20
"""Most bytes of request bodies the server holds at once, received and not yet answered
(16 bodies of 4 MiB): past that, a body longer than ``DRAINED_BYTES`` gets a 503. The
model alone takes about 720 MB of the pod's 1 GiB, so 1,000 connections of 4 MiB each
would not fit; shorter bodies are held within the connection limit."""
EVICT_AFTER_S = 2.0
"""When bodies fill ``MAX_HELD_BYTES``, a body held this long is evicted to make room."""
UNREAD_WAITING = 64
"""Most such requests waiting at once; past that, one is answered (and closed) at once."""
REFUSALS_LOGGED = 1000
"""Refused requests logged one by one in each ``LOG_INTERVAL_S``; past that, a flood of
them is one line per kind of refusal and interval, with its count."""
LOG_INTERVAL_S = 10.0
"""A repeated connection event (the limit reached, a timeout, a failed accept) is logged
once, then as one line per this many seconds with its count."""
PREDICT_THREADS = 2
"""Worker threads that parse, check and predict; the event loop only moves bytes, so
health answers never wait for prediction work."""
RESERVED_FILES = 100
"""Open files kept for the server itself (model, logs, sockets being accepted)."""

log = logging.getLogger(__name__)


class RequestError(ValueError):
    """A request the server refuses, with the reason a client can act on."""


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = SHOWN_CHARS
_REPR.maxlist = _REPR.maxdict = 4


def shorten(text: str, limit: int = SHOWN_CHARS) -> str:
    """``text`` cut to ``limit`` characters, the last one an ellipsis when it was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _shown(value: Any) -> str:
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
        raise RequestError(f"{where}: {_shown(value)} is not a number")
    float32_range = (
        f"outside the model's float32 range: send a price from {PRICE_MIN:.7g} to {PRICE_MAX:.7g}"
    )
    try:
        price = float(value)
    except OverflowError:
        raise RequestError(f"{where}: {_shown(value)} is {float32_range}") from None
    problem = price_problem(price)
    if problem == NON_FINITE:
        raise RequestError(f"{where}: {_shown(value)} is not finite")
    if problem == NON_POSITIVE_PRICE:
        raise RequestError(f"{where}: {_shown(value)} is not a positive price")
    if problem == PRICE_OUT_OF_RANGE:
        raise RequestError(f"{where}: {_shown(value)} is {float32_range}")
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
    rows = np.empty((len(instances), len(INPUTS)), dtype=np.float32)
    for i, instance in enumerate(instances):
        where = f"instances[{i}]"
        if isinstance(instance, dict):
            missing = [k for k in INPUTS if k not in instance]
            unknown = sorted(str(k) for k in set(instance) - set(INPUTS))
            if missing or unknown:
                parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
                    [f"unknown {_names(unknown)}"] if unknown else []
                )
                raise RequestError(
                    f"{where}: {'; '.join(parts)} (expected keys: {', '.join(INPUTS)})"
                )
            values: Sequence[Any] = [instance[k] for k in INPUTS]
        elif isinstance(instance, list):
            if len(instance) != len(INPUTS):
                raise RequestError(
                    f"{where}: {len(instance)} values, expected {len(INPUTS)} ({', '.join(INPUTS)})"
                )
            values = instance
        else:
            raise RequestError(
                f"{where}: expected [open, high, low] or an object with those keys, "
                f"got {type(instance).__name__}"
            )
        open_, high, low = (_price(v, f"{where}.{k}") for k, v in zip(INPUTS, values, strict=True))
        problem = price_range_problem(open_, high, low)
        if problem == HIGH_BELOW_LOW:
            raise RequestError(f"{where}: high {high!r} is below low {low!r}")
        if problem == OPEN_OUTSIDE_RANGE:
            raise RequestError(f"{where}: open {open_!r} is outside [low {low!r}, high {high!r}]")
        rows[i] = (open_, high, low)
    return rows


def _import_kserve():
    """Imports kserve without letting it read this process's command line.

    kserve parses ``sys.argv`` when it is imported (its own server flags, abbreviations
    allowed), which would take ``--model`` of ``crypto-pipeline serve`` for its
    ``--model_name``.
    """
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        import kserve
    finally:
        sys.argv = argv
    return kserve


def make_model(model_dir: str | os.PathLike[str], name: str = MODEL_NAME):
    """A loaded KServe model that serves the SavedModel in ``model_dir``."""
    kserve = _import_kserve()
    import tensorflow as tf

    class CryptoModel(kserve.Model):
        """Validates V1 requests and runs the exported model's serving signature.

        Parsing, checking and predicting run in ``PREDICT_THREADS`` worker threads, so the
        event loop (and with it every health answer) never waits for them.
        """

        def __init__(self):
            super().__init__(name)
            self._signature = None
            self._workers = ThreadPoolExecutor(PREDICT_THREADS, thread_name_prefix="predict")

        def load(self) -> bool:
            loaded = tf.saved_model.load(os.fspath(model_dir))
            self._loaded = loaded  # the signature needs its object alive
            self._signature = loaded.signatures["serving_default"]
            self.ready = True
            return self.ready

        async def _in_worker(self, work: Callable, *args):
            return await asyncio.get_running_loop().run_in_executor(self._workers, work, *args)

        async def preprocess(self, payload, headers=None):
            """The prices of a request: its body as bytes (parsed here, once) or decoded."""
            if isinstance(payload, bytes | bytearray):
                return await self._in_worker(parse_body, bytes(payload))
            return await self._in_worker(parse_instances, payload)

        def _closes(self, prices: np.ndarray) -> np.ndarray:
            output = self._signature(prices=tf.constant(prices))
            return next(iter(output.values())).numpy().ravel()

        async def predict(self, prices, headers=None):
            closes = await self._in_worker(self._closes, prices)
            for i, close in enumerate(closes):
                if not math.isfinite(close):
                    raise RequestError(
                        f"instances[{i}]: the model's prediction for these prices is not "
                        "finite: send prices nearer those the model was trained on"
                    )
            return {"predictions": [round(float(c), 6) for c in closes]}

    model = CryptoModel()
    model.load()
    return model


def require_saved_model(model_dir: str | os.PathLike[str]) -> Path:
    """``model_dir`` as a Path, once it is known to hold a SavedModel.

    Raises:
        ConfigError: It holds no ``saved_model.pb``.
    """
    model_dir = Path(model_dir)
    if not (model_dir / "saved_model.pb").is_file():
        raise ConfigError(
            f"no SavedModel in {model_dir} (saved_model.pb is missing)",
            "pass the model/ folder written by the train step or a registered version, "
            "e.g. --model runs/models/crypto/1 (run `make pipeline` first to train one)",
        )
    return model_dir


def check_listen_address(host: str, port: int) -> None:
    """Checks that the server can listen on ``host:port`` before the model is loaded.

    Raises:
        ConfigError: The port is not 1 to 65535, the host is not an address of this
            machine, or another program holds the port.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(
            f"--port {port} is not a TCP port",
            f"pass a port from 1 to 65535, e.g. --port {DEFAULT_PORT}",
        )
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            f"pass a free --port (another program may hold {port}; ports below 1024 need "
            "root) and a --host of this machine: 127.0.0.1 (this machine only, the default) "
            "or 0.0.0.0 (every interface)",
        ) from None


def client_url(host: str, port: int) -> str:
    """The URL a client on this machine uses for a server listening on ``host:port``."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _routes(name: str) -> dict[str, str]:
    """The routes the server answers, path to method."""
    return {
        "/": "GET",
        "/v1/models": "GET",
        f"/v1/models/{name}": "GET",
        f"/v1/models/{name}:predict": "POST",
        "/v2/health/live": "GET",
        "/v2/health/ready": "GET",
        "/metrics": "GET",
    }


_MODEL_PATH = re.compile(r"/v1/models/([^/]+?)(:predict|:explain)?")
_NON_FINITE_JSON = re.compile(r"-?(nan|inf(inity)?)\b", re.IGNORECASE)
_SEND = 'send a JSON object like {"instances": [[100, 104, 97]]}, Content-Type: application/json'


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
        return f"the body is empty: {_SEND}"
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
    return f"the body is not JSON ({shorten(exc.msg)} at {where}): {_SEND}"


def logged_path(path: str) -> str:
    """A request's path as the log shows it: percent-encoded, like uvicorn's access log.

    ``%0A`` stays ``%0A`` and ``%1B`` stays ``%1B``: a path cannot start a line or write
    a terminal escape in the log.
    """
    return urllib.parse.quote(shorten(path), safe="/:@!$&'()*+,;=-._~…")


def printable(text: str) -> str:
    r"""``text`` with each character that is not printable written as its escape.

    ``\n``, ``\x1b`` and ``\u202e`` stay as those letters: a client's text stays on its
    line in the log and writes no terminal escape.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class _Refused(Exception):
    """A request the guard answers itself: its status and message."""

    def __init__(self, status: int, message: str, more_body: bool = True):
        super().__init__(message)
        self.status = status
        self.message = message
        self.more_body = more_body
        """Whether some of the request's body is still to come."""


_UNPARSED = b"application/x-crypto-unparsed-json"
"""The Content-Type a prediction reaches KServe with: KServe hands a body of a type it does
not read as JSON to the model as bytes, so the model parses it once, in a worker thread."""


class _Held:
    """What the server holds of one request's body (``_Guard._hold``).

    Its bytes; past ``DRAINED_BYTES``, since when and the task reading it, which an
    eviction cancels while it waits for more of the body.
    """

    def __init__(self):
        self.bytes = 0
        self.since = 0.0
        self.task: asyncio.Task | None = None
        self.evicted = False


class _Guard:
    """ASGI middleware in front of KServe's app: routes, body size, Content-Type, counts.

    What it refuses never reaches KServe. A prediction reaches KServe with the body as it
    came, unparsed: the model parses and checks it once, off the event loop.
    """

    def __init__(self, app, model_name: str = MODEL_NAME, max_body: int = MAX_BODY_BYTES):
        self.app = app
        self.model_name = model_name
        self.max_body = max_body
        self.max_brackets = MAX_INSTANCES + 2
        self.max_separators = 8 * MAX_INSTANCES + 64
        """Commas and colons: 10,000 instances of three named prices use under 60,000;
        a body of a few objects with hundreds of thousands of keys is refused unparsed."""
        self.counted = (  # what _read_body counts as the body arrives: marks, limit, refusal
            (
                (b"[", b"{"),
                self.max_brackets,
                f"the body holds more than the limit of {MAX_INSTANCES:,} instances (it "
                f"opens over {self.max_brackets:,} lists and objects): send them in "
                "smaller batches",
            ),
            (
                (b",", b":"),
                self.max_separators,
                f"the body holds more values and keys than {MAX_INSTANCES:,} instances "
                f"of three prices can (over {self.max_separators:,} commas and "
                "colons): send each instance as its three prices, in smaller batches",
            ),
        )
        self.routes = _routes(model_name)
        self.predict_path = f"/v1/models/{model_name}:predict"
        self.unread_waiting = 0
        self.held = 0
        """Bytes of request bodies received and not yet answered, all requests together."""
        self.holders: dict[_Held, None] = {}
        """The requests whose bodies passed ``DRAINED_BYTES``, longest held first."""

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        method, path = scope["method"], scope["path"]
        if self.routes.get(path) == method:
            if path == self.predict_path:
                return await self._predict(scope, receive, send)
            if not _has_body(scope):
                return await self.app(scope, receive, send)
            if await _drained(scope, receive):  # read and dropped: the route takes no body
                return await self.app(scope, _replayed(b"", receive), send)
            message = f"{method} {path} takes no body: send the request without one"
            return await self._refuse_unread(scope, send, 413, message)
        if _has_body(scope) and not await _drained(scope, receive):
            return await self._refuse_unread(scope, send, *self._refusal(method, path))
        await refuse(scope, send, *self._refusal(method, path))

    async def _refuse_unread(self, scope, send, status: int, message: str) -> None:
        """Refuses a request with a long body, unread, and closes its connection.

        The body is longer than ``DRAINED_BYTES``; uvicorn stops reading at the 64 KiB it
        holds for the app. The answer waits ``UNREAD_WAIT_S`` (unless ``UNREAD_WAITING``
        already wait), so a client that sends refused bodies in a loop sends one a second.
        """
        if self.unread_waiting < UNREAD_WAITING:
            self.unread_waiting += 1
            try:
                await asyncio.sleep(UNREAD_WAIT_S)
            finally:
                self.unread_waiting -= 1
        await refuse(scope, send, status, message, close=True)

    def _refusal(self, method: str, path: str) -> tuple[int, str]:
        served = ", ".join(f"{m} {p}" for p, m in self.routes.items())
        if path.startswith("/v2/repository/"):
            return 403, (
                "the model repository (load, unload) is turned off: this server serves the "
                "model it started with; restart `crypto-pipeline serve --model DIR` to serve "
                "another"
            )
        model = _MODEL_PATH.fullmatch(path)
        if model and model.group(1) != self.model_name and model.group(2) != ":explain":
            return 404, (
                f"no model named {_shown(model.group(1))}: this server serves "
                f"'{self.model_name}' (POST {self.predict_path})"
            )
        if path in self.routes:
            return 405, f"{method} {path} is not served: use {self.routes[path]} {path}"
        return 404, f"{method} {logged_path(path)} is not served: this server answers {served}"

    async def _predict(self, scope, receive, send):
        held = _Held()
        try:
            return await self._hand_on(scope, receive, send, held)
        finally:
            self.held -= held.bytes

    async def _hand_on(self, scope, receive, send, held: _Held):
        """Reads and checks the body, then hands it to KServe as it came."""
        try:
            self._check_headers(scope)
            body = await self._read_body(receive, held)
        except _Refused as refusal:
            if refusal.status == 503 and held.evicted:  # its bytes are wanted now
                return await refuse(scope, send, refusal.status, refusal.message, close=True)
            if not refusal.more_body or await _drained(scope, receive):
                return await refuse(scope, send, refusal.status, refusal.message)
            return await self._refuse_unread(scope, send, refusal.status, refusal.message)
        if body is None:  # the client went away
            return None
        # KServe hands the body to the model unparsed for a type it does not read as JSON;
        # CloudEvent headers would make it parse the body itself.
        scope = dict(scope)
        scope["headers"] = [
            (k, v)
            for k, v in scope["headers"]
            if k.lower() != b"content-type" and not k.lower().startswith(b"ce-")
        ]
        scope["headers"].append((b"content-type", _UNPARSED))
        return await self.app(scope, _replayed(body, receive), send)

    def _check_headers(self, scope) -> None:
        """Refuses a body announced over the limit and a Content-Type other than JSON."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body:
            raise _Refused(413, self._too_large(int(length)))
        media = headers.get("content-type", "").split(";")[0].strip().lower()
        if media and media != "application/json":
            raise _Refused(
                415,
                f"Content-Type {shorten(media)} is not JSON: {_SEND} "
                "(curl: -H 'Content-Type: application/json')",
            )

    async def _read_body(self, receive, held: _Held) -> bytes | None:
        """The body, or None when the client went away; ``held`` counts its bytes.

        Counts ``[`` and ``{`` as the body arrives: a request of ``MAX_INSTANCES``
        instances opens at most ``MAX_INSTANCES + 2`` lists and objects, so a body past
        that is refused as soon as it passes, before the rest is read or anything parsed.
        Commas and colons are counted the same way (``max_separators``), so few objects
        with very many keys or values are refused too.
        """
        try:
            return await self._read_counted(receive, held)
        finally:  # evicted only while its body arrives
            self.holders.pop(held, None)

    async def _read_counted(self, receive, held: _Held) -> bytes | None:
        chunks, size = [], 0
        counts: list[int | None] = [None] * len(self.counted)  # None: not counted yet
        while True:
            message = await self._receive(receive, held)
            if message["type"] == "http.disconnect":
                return None
            chunk, more = message.get("body", b""), message.get("more_body", False)
            size += len(chunk)
            if size > self.max_body:
                raise _Refused(413, self._too_large(None), more)
            if size > DRAINED_BYTES:
                self._hold(held, len(chunk), more)
            held.bytes += len(chunk)
            self.held += len(chunk)
            for i, (marks, limit, refusal) in enumerate(self.counted):
                if counts[i] is None:
                    if size <= limit:  # fewer bytes than the limit: nothing to count yet
                        continue
                    counts[i] = sum(c.count(mark) for c in chunks for mark in marks)
                for mark in marks:
                    counts[i] += chunk.count(mark)
                    if counts[i] > limit:
                        raise _Refused(400, refusal, more)
            chunks.append(chunk)
            if not more:
                return b"".join(chunks)

    async def _receive(self, receive, held: _Held):
        """RECEIVE's next message; a 503 when the body was evicted while waiting for it."""
        try:
            return await receive()
        except asyncio.CancelledError:
            if not held.evicted:
                raise
            asyncio.current_task().uncancel()
            raise _Refused(503, self._evicted(), True) from None

    def _hold(self, held: _Held, size: int, more: bool) -> None:
        """Makes room for SIZE more bytes of a body past ``DRAINED_BYTES``, or refuses it.

        Past ``MAX_HELD_BYTES``, the body held longest is evicted (its request gets a 503)
        when it has been held over ``EVICT_AFTER_S``: a client that sends most of a body
        and stalls holds the server's room only so long. Otherwise this body gets the 503.
        """
        if held not in self.holders:
            held.task, held.since = asyncio.current_task(), time.monotonic()
            self.holders[held] = None
        if self.held + size <= MAX_HELD_BYTES:
            return
        oldest = next((h for h in self.holders if h is not held), None)
        if oldest is None or time.monotonic() - oldest.since < EVICT_AFTER_S:
            raise _Refused(503, self._busy(), more)
        self.holders.pop(oldest)
        oldest.evicted = True
        oldest.task.cancel()

    def _evicted(self) -> str:
        return (
            f"the body took over {EVICT_AFTER_S:g} s while others waited for the server's "
            f"{MAX_HELD_BYTES / 2**20:g} MiB of room for bodies: send it at once, or in "
            "smaller batches"
        )

    def _busy(self) -> str:
        return (
            f"the server holds {self.held / 2**20:.0f} MiB of request bodies, its limit of "
            f"{MAX_HELD_BYTES / 2**20:g} MiB: send this body again in a moment, or smaller "
            "batches"
        )

    def _too_large(self, size: int | None) -> str:
        shown = "" if size is None else f"{size:,} bytes, "
        return (
            f"the body is {shown}over the limit of {self.max_body:,} bytes "
            f"({self.max_body / 2**20:g} MiB): send at most {MAX_INSTANCES:,} instances "
            "a request, and larger batches in several requests"
        )


def _replayed(body: bytes, receive):
    """An ASGI ``receive`` that gives BODY, read already, then what RECEIVE gives."""
    handed_on = False

    async def replay():
        nonlocal handed_on
        if handed_on:
            return await receive()
        handed_on = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _drained(scope, receive, limit: int = DRAINED_BYTES) -> bool:
    """Reads and drops the rest of a refused request's body, up to ``limit`` bytes.

    Returns whether it ended (or the client went away) within them.
    """
    for name, value in scope["headers"]:
        announced = name.lower() == b"content-length" and value.strip().isdigit()
        if announced and int(value) > limit:
            return False
    while limit >= 0:
        message = await receive()
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            return True
        limit -= len(message.get("body", b""))
    return False


def _has_body(scope) -> bool:
    """Whether the request announces a body (a Content-Length over 0, or chunks)."""
    for name, value in scope["headers"]:
        name = name.lower()
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip(b" 0")):
            return True
    return False


async def refuse(scope, send, status: int, message: str, close: bool = False) -> None:
    """Answers ``{"error": message}`` with ``status`` and logs one line about it.

    ``close``: the answer closes the connection (its request's body was not read).
    """
    import orjson

    _log_refusal(scope, status, message)
    body = orjson.dumps({"error": message})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")


def _log_refusal(scope, status: int, message: str) -> None:
    """One line per refusal, up to ``REFUSALS_LOGGED`` an interval; then one per kind."""
    client = scope.get("client")
    method, path = scope.get("method", "?"), logged_path(scope.get("path", "?"))
    shown = shorten(message, 4 * SHOWN_CHARS)
    if _refusals_logged.spend():
        where = f"{client[0]}:{client[1]}" if client else "?"
        log.warning("refused %s %s from %s: %d %s", method, path, where, status, printable(shown))
    else:  # one line per kind, not per path or message: a flood varies them at will
        known = method if method in _METHODS else "other"
        route = "predictions" if path.endswith(":predict") else "other paths"
        kind = f"refused {known} requests to {route}: {status}"
        budget = _refusals_logged
        _repeated(
            kind,
            f"{kind} (past {budget.per_interval:,} refusals logged one by one in "
            f"{budget.interval_s:g} s; the first: {path})",
        )


async def _request_refused(request, exc: RequestError):
    """KServe's app's handler for the model's refusals: a 400 and one log line."""
    from starlette.responses import JSONResponse

    _log_refusal(request.scope, 400, str(exc))
    return JSONResponse({"error": str(exc)}, status_code=400)


def guard(app, model_name: str = MODEL_NAME) -> None:
    """Puts the checks in front of KServe's FastAPI ``app``; call it before the server starts."""
    app.add_middleware(_Guard, model_name=model_name)
    app.add_exception_handler(RequestError, _request_refused)


@dataclass(frozen=True)
class Limits:
    """What one server allows its clients: connections, and time to send a request."""

    max_connections: int = MAX_CONNECTIONS
    accept_at_once: int = 2048
    """Most connections the event loop accepts in one turn (asyncio's ``backlog``)."""
    queue: int = 2048
    """Connections the kernel queues until they are accepted (the listen backlog)."""
    header_timeout_s: float = HEADER_TIMEOUT_S
    body_timeout_s: float = BODY_TIMEOUT_S


def connection_limits(open_files: int) -> Limits:
    """The limits for a process that may open ``open_files`` files.

    Each connection takes a file, and so does each connection accepted but not yet
    counted: the event loop accepts up to ``accept_at_once`` in a turn, and a connection
    reaches the count a few turns later. Both fit in what is left after
    ``RESERVED_FILES``, so accepting never fails for want of a file. The connections the
    kernel queues take no file of the process.
    """
    room = max(open_files - RESERVED_FILES, 64)
    at_once = max(min(2048, room // 16), 4)
    connections = max(min(MAX_CONNECTIONS, room - 4 * at_once), 8)
    return Limits(max_connections=connections, accept_at_once=at_once)


def _raise_open_file_limit() -> int:
    """Raises this process's limit of open files to its ceiling; returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft != resource.RLIM_INFINITY and soft < ceiling:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
            soft = ceiling
    return 65536 if soft == resource.RLIM_INFINITY else soft


class _Repeated:
    """Logs an event at once, then its repeats as one line per ``LOG_INTERVAL_S``.

    A flood of the same event (a connection over the limit, a timeout, a failed accept)
    is then a few lines a minute, not a line per event. Call it from the event loop.
    """

    def __init__(self, interval_s: float = LOG_INTERVAL_S):
        self.interval_s = interval_s
        self._repeats: dict[str, int] = {}  # kind -> repeats since its last line

    def __call__(self, kind: str, line: str) -> None:
        if kind in self._repeats:
            self._repeats[kind] += 1
            return
        log.warning("%s", printable(line))
        self._repeats[kind] = 0
        asyncio.get_running_loop().call_later(self.interval_s, self._flush, kind, line)

    def _flush(self, kind: str, line: str) -> None:
        repeats = self._repeats.pop(kind, 0)
        if repeats:
            log.warning("%s (%d more times in %g s)", printable(line), repeats, self.interval_s)
            self._repeats[kind] = 0
            asyncio.get_running_loop().call_later(self.interval_s, self._flush, kind, line)


_repeated = _Repeated()


class _Budget:
    """``per_interval`` uses every ``interval_s``: ``spend()`` says whether one is left."""

    def __init__(self, per_interval: int, interval_s: float = LOG_INTERVAL_S):
        self.per_interval = per_interval
        self.interval_s = interval_s
        self._start = -math.inf
        self._spent = 0

    def spend(self) -> bool:
        now = time.monotonic()
        if now - self._start >= self.interval_s:
            self._start, self._spent = now, 0
        self._spent += 1
        return self._spent <= self.per_interval


_refusals_logged = _Budget(REFUSALS_LOGGED)


def _loop_exception(loop, context) -> None:
    """The event loop's error handler: one line per kind of error and interval, no traceback.

    Accepting a connection without a free file fails once per queued connection, each
    time the loop looks: logged one by one, that is megabytes a second.
    """
    exc = context.get("exception")
    message = context.get("message", "event loop error")
    detail = f": {type(exc).__name__}: {shorten(str(exc), 4 * SHOWN_CHARS)}" if exc else ""
    _repeated(f"loop {message} {type(exc).__name__}", f"{message}{detail}")


def bounded_http(limits: Limits):
    """The HTTP protocol of uvicorn (httptools) with ``limits`` on connections and read times.

    uvicorn itself has no limit on connections and no time limit on a request's headers
    or body: a client that opens connections and sends nothing holds a file each, forever.
    """
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    waiting: dict[Any, None] = {}
    """The connections waiting for (or still receiving) a request, longest-waiting first."""

    class BoundedHttp(HttpToolsProtocol):
        """One connection: closed when over the limit or too slow to send its request."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._wait()
            self._start_timer(limits.header_timeout_s, self._headers_late)
            self._make_room()

        def _wait(self) -> None:
            waiting.pop(self, None)
            waiting[self] = None

        def _make_room(self) -> None:
            """Closes the connection waiting longest for its request when over the limit."""
            if len(self.connections) <= limits.max_connections:
                return
            oldest = next(iter(waiting), self)
            waiting.pop(oldest, None)
            oldest.transport.close()
            _repeated(
                "limit",
                f"{limits.max_connections} connections open, the limit: closed the one "
                "waiting longest for its request (or the new one, when all were answered)",
            )

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._timer is None:
                self._start_timer(limits.header_timeout_s, self._headers_late)
            if self not in waiting:
                self._wait()

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self._start_timer(limits.body_timeout_s, self._body_late)

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._stop_timer()
            if self.cycle is not None and not self.cycle.response_complete:
                waiting.pop(self, None)  # being answered

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self not in waiting and not self.transport.is_closing():
                self._wait()

        def connection_lost(self, exc) -> None:
            self._stop_timer()
            waiting.pop(self, None)
            super().connection_lost(exc)

        def _start_timer(self, seconds: float, then: Callable[[], None]) -> None:
            self._stop_timer()
            self._timer = self.loop.call_later(seconds, then)

        def _stop_timer(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _headers_late(self) -> None:
            self._timer = None
            if self.transport.is_closing():
                return
            if self.cycle is None or self.cycle.response_complete:
                self.transport.write(_late_answer(limits.header_timeout_s))
            self.transport.close()
            _repeated(
                "headers",
                f"closed a connection whose request headers took over "
                f"{limits.header_timeout_s:g} s",
            )

        def _body_late(self) -> None:
            self._timer = None
            if not self.transport.is_closing():
                self.transport.close()
                _repeated(
                    "body",
                    f"closed a connection whose request body took over {limits.body_timeout_s:g} s",
                )

    return BoundedHttp


def _late_answer(seconds: float) -> bytes:
    """A 408 for a request whose headers did not arrive in ``seconds``."""
    import orjson

    body = orjson.dumps(
        {"error": f"the request's headers did not arrive within {seconds:g} s: send them at once"}
    )
    return (
        b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


def _queue_connections(server, depth: int) -> None:
    """Has the kernel queue ``depth`` connections for the uvicorn ``server`` once it listens.

    asyncio listens with the backlog it also takes as the most connections to accept in
    one turn. A short queue drops a burst of connections (each client then waits a second
    to try again); a long turn accepts more connections than there are files for.
    """
    startup = server.startup

    async def startup_then_deepen(sockets=None):
        await startup(sockets=sockets)
        for listener in server.servers:
            for sock in listener.sockets:
                with socket.socket(fileno=os.dup(sock.fileno())) as same:
                    same.listen(depth)

    server.startup = startup_then_deepen


def _model_server(kserve, host: str, port: int, limits: Limits):
    """KServe's ModelServer, listening on ``host`` (not KServe's fixed 0.0.0.0), with ``limits``."""

    class ModelServer(kserve.ModelServer):
        def setup_event_loop(self):
            # start() builds its uvicorn server with host 0.0.0.0 and calls this before
            # that server binds: the one moment to set the address and the protocol.
            rest = getattr(self, "_rest_server", None)
            if rest is None or not hasattr(rest, "config"):
                raise RuntimeError(
                    "this kserve version builds its REST server differently: "
                    "crypto_pipeline.serve cannot set the address to listen on"
                )
            rest.config.host = host
            rest.config.http = bounded_http(limits)
            rest.config.backlog = limits.accept_at_once
            _queue_connections(rest._server, limits.queue)
            super().setup_event_loop()

        async def _serve(self):
            # KServe sets its error handler on a loop that asyncio.run() then replaces.
            asyncio.get_running_loop().set_exception_handler(_loop_exception)
            await super()._serve()

    return ModelServer(http_port=port, enable_grpc=False, workers=1)


class _OneLineFormatter(logging.Formatter):
    """Every record on one line: what is not printable is written as its escape."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))


def _log_to_stderr() -> None:
    """Shows the refusal lines, whatever the root logger's level."""
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(_OneLineFormatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def _load(model_dir: Path):
    """``make_model(model_dir)``, or a ConfigError when the SavedModel does not load."""
    _import_kserve()
    import tensorflow  # noqa: F401  (a failed import is not the model's fault)

    try:
        return make_model(model_dir)
    except Exception as exc:  # TensorFlow raises many kinds for a damaged SavedModel
        first_line = (str(exc).strip().splitlines() or [""])[0]
        reason = shorten(printable(first_line), 200)
        raise ConfigError(
            f"the model in {model_dir} does not load, it is corrupt or truncated "
            f"({type(exc).__name__}: {reason})",
            "serve a complete model folder: train it again (`make pipeline`) or pass a "
            "registered version, e.g. --model runs/models/crypto/1",
        ) from None


def serve(
    model_dir: str | os.PathLike[str], port: int = DEFAULT_PORT, host: str = DEFAULT_HOST
) -> None:
    """Serves the model on ``host:port`` until interrupted (KServe handles SIGINT/SIGTERM).

    Args:
        model_dir: The SavedModel folder.
        port: The TCP port, 1 to 65535.
        host: The address to listen on: 127.0.0.1 (this machine only) or 0.0.0.0 (every
            interface, as in a pod).

    Raises:
        ConfigError: The address cannot be listened on, or ``model_dir`` holds no SavedModel
            or one that does not load.
    """
    import warnings

    check_listen_address(host, port)
    model_dir = require_saved_model(model_dir)
    # kserve's own use of a FastAPI class that FastAPI now deprecates: not the user's concern.
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
    kserve = _import_kserve()
    model = _load(model_dir)
    guard(kserve.model_server.app)
    _log_to_stderr()
    limits = connection_limits(_raise_open_file_limit())
    _model_server(kserve, host, port, limits).start([model])


@contextlib.contextmanager
def running_server(
    model_dir: str | os.PathLike[str],
    port: int | None = None,
    timeout_s: float = 120.0,
    host: str = DEFAULT_HOST,
    log_path: str | os.PathLike[str] | None = None,
) -> Iterator[str]:
    """Runs ``crypto-pipeline serve`` in a subprocess until the block ends.

    Waits until the model reports ready, yields the server's base URL, and stops the
    server afterwards. Used by the notebooks, the tests and the serving benchmark.

    Args:
        model_dir: The SavedModel folder to serve.
        port: The port (default: a free one).
        timeout_s: Seconds to wait for the model to become ready.
        host: The address to listen on (default: 127.0.0.1, this machine only).
        log_path: A file for the server's output (default: a temporary file, quoted when
            the server fails to start).

    Raises:
        ConfigError: ``model_dir`` holds no SavedModel.
        RuntimeError: The server exited or was not ready in time (its log is quoted).
    """
    import requests

    require_saved_model(model_dir)
    if port is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    base = client_url(host, port)
    command = [sys.executable, "-m", "crypto_pipeline.cli", "serve", "--model"]
    with (
        open(log_path, "w+") if log_path else tempfile.TemporaryFile("w+")  # noqa: SIM115
    ) as output:
        process = subprocess.Popen(
            [*command, os.fspath(model_dir), "--port", str(port), "--host", host],
            stdout=output,
            stderr=output,
        )
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if process.poll() is not None:
                    output.seek(0)
                    raise RuntimeError(
                        f"the server exited ({process.returncode}):\n{output.read()}"
                    )
                try:
                    if requests.get(f"{base}/v1/models/{MODEL_NAME}", timeout=1).json()["ready"]:
                        break
                except (requests.ConnectionError, ValueError, KeyError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the server was not ready in {timeout_s:.0f} s")
                time.sleep(0.2)
            yield base
        finally:
            process.terminate()
            process.wait(timeout=30)


def predict(url: str, instances: list[list[float]], timeout_s: float = 10.0) -> list[float]:
    """Sends instances to a V1 server and returns the predicted closes.

    Args:
        url: The server (``http://localhost:8082``) or the full ``…:predict`` URL.
        instances: ``[[open, high, low], ...]``.
        timeout_s: Seconds to wait for the answer.

    Raises:
        RequestError: The instances hold NaN or Infinity (JSON cannot carry them), the
            server refused the request (its message is kept), or its answer is not a V1
            answer.
        ConnectionError: No server answered at ``url`` in time.
    """
    import requests

    if not url.rstrip("/").endswith(":predict"):
        url = f"{url.rstrip('/')}/v1/models/{MODEL_NAME}:predict"
    try:
        response = requests.post(url, json={"instances": instances}, timeout=timeout_s)
    except requests.exceptions.InvalidJSONError:
        raise RequestError(
            "the instances hold NaN or Infinity, which JSON cannot carry: send finite prices"
        ) from None
    except requests.RequestException as exc:
        raise ConnectionError(
            f"no server answered at {url}: {shorten(str(exc), 4 * SHOWN_CHARS)}"
        ) from None
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if response.status_code >= 400:
        message = answer.get("error") if isinstance(answer, dict) else None
        message = str(message) if message is not None else response.text
        raise RequestError(
            f"the server answered {response.status_code}: {shorten(message, 4 * SHOWN_CHARS)}"
        )
    if answer is None:
        raise RequestError(f"the answer is not JSON: {shorten(response.text)}")
    return closes(answer)


def closes(answer: Any) -> list[float]:
    """The predicted closes of a V1 answer, one number per instance.

    The project's server answers ``{"predictions": [close, ...]}``; TensorFlow Serving
    (KServe's ``tensorflow`` runtime) answers ``[[close], ...]`` for the same model.

    Raises:
        RequestError: The answer is not a list of predictions.
    """
    predictions = answer.get("predictions") if isinstance(answer, dict) else None
    if not isinstance(predictions, list):
        raise RequestError(f'the answer has no "predictions" list: {_shown(answer)}')
    values = []
    for p in predictions:
        if isinstance(p, list) and len(p) == 1:
            p = p[0]
        if isinstance(p, bool) or not isinstance(p, int | float):
            raise RequestError(f"the answer holds {_shown(p)} where a predicted close belongs")
        values.append(float(p))
    return values
