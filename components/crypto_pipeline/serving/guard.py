"""The guard: ASGI middleware in front of KServe's app that checks each request first.

What it refuses never reaches KServe, and the server stays up:

- a route other than the served ones is refused: the model repository's ``load`` and
  ``unload`` answer 403, every other route (``/docs``, ``/openapi.json``, the V2
  inference and metadata routes, ``:explain``) 404, and an unknown model name 404;
- a body over ``MAX_BODY_BYTES`` gets a 413 without being read when its Content-Length
  says so, or as soon as a chunked body passes the limit;
- a Content-Type other than ``application/json`` gets a 415 (a request without one is
  read as JSON, as KServe does);
- a body that opens more lists and objects than ``MAX_INSTANCES`` instances can (counted
  as it arrives) gets a 400 as soon as it passes, before it is parsed;
- the bodies held at once are bounded (``MAX_HELD_BYTES``): past that a new body gets a
  503, or the body held longest is evicted after ``EVICT_AFTER_S``;
- a refused body longer than ``DRAINED_BYTES`` is not read: its answer waits
  ``UNREAD_WAIT_S`` and closes the connection.

A prediction reaches KServe with its body as it came, unparsed: the model parses and checks
it once, in a worker thread (``model.py``).
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from crypto_pipeline.serving.logs import _log_refusal, logged_path
from crypto_pipeline.serving.model import MODEL_NAME
from crypto_pipeline.serving.request_rules import (
    MAX_INSTANCES,
    SEND_JSON,
    RequestError,
    shorten,
    shown,
)

MAX_BODY_BYTES = 4 * 1024 * 1024
"""Largest request body (4 MiB); a larger one gets a 413. ``MAX_INSTANCES`` instances
take about 0.6 MB as ``[open, high, low]`` lists of 17-digit prices and about 1.5 MB as
pretty-printed objects, so every request the server would accept fits."""
UNREAD_WAIT_S = 1.0
"""Seconds a request refused before its body arrived waits for its answer, its body
unread; the answer then closes the connection. The rest of the body is never read
(reading megabytes only to discard them is what a flood of refused bodies costs), and a
client that sends body after body gets at most one answer a second on each connection."""
UNREAD_WAITING = 64
"""Most requests waiting ``UNREAD_WAIT_S`` for their refusal at once; past that, one is
answered (and closed) at once."""
DRAINED_BYTES = 2**16
"""Of a refused request's body, what is read (and dropped) to keep its connection open."""
MAX_HELD_BYTES = 64 * 2**20
"""Most bytes of request bodies the server holds at once, received and not yet answered
(16 bodies of 4 MiB): past that, a body longer than ``DRAINED_BYTES`` gets a 503. The
model alone takes about 720 MB of the pod's 1 GiB, so 1,000 connections of 4 MiB each
would not fit; shorter bodies are held within the connection limit."""
EVICT_AFTER_S = 2.0
"""When bodies fill ``MAX_HELD_BYTES``, a body held this long is evicted to make room."""


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

    Its bytes; the task reading it, which an eviction cancels while it waits for more of
    the body; past ``DRAINED_BYTES``, since when.
    """

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.bytes = 0
        self.since = 0.0
        self.task = task
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
                f"no model named {shown(model.group(1))}: this server serves "
                f"'{self.model_name}' (POST {self.predict_path})"
            )
        if path in self.routes:
            return 405, f"{method} {path} is not served: use {self.routes[path]} {path}"
        return 404, f"{method} {logged_path(path)} is not served: this server answers {served}"

    async def _predict(self, scope, receive, send):
        held = _Held(_running_task())
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
                f"Content-Type {shorten(media)} is not JSON: {SEND_JSON} "
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
        chunks: list[bytes] = []
        size = 0
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
                count = counts[i]
                if count is None:
                    if size <= limit:  # fewer bytes than the limit: nothing to count yet
                        continue
                    count = sum(c.count(mark) for c in chunks for mark in marks)
                for mark in marks:
                    count += chunk.count(mark)
                    if count > limit:
                        raise _Refused(400, refusal, more)
                counts[i] = count
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
            _running_task().uncancel()
            raise _Refused(503, self._evicted(), True) from None

    def _hold(self, held: _Held, size: int, more: bool) -> None:
        """Makes room for SIZE more bytes of a body past ``DRAINED_BYTES``, or refuses it.

        Past ``MAX_HELD_BYTES``, the body held longest is evicted (its request gets a 503)
        when it has been held over ``EVICT_AFTER_S``: a client that sends most of a body
        and stalls holds the server's room only so long. Otherwise this body gets the 503.
        """
        if held not in self.holders:
            held.since = time.monotonic()
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


def _running_task() -> asyncio.Task[Any]:
    """The task running the caller: the server runs each request in one."""
    task = asyncio.current_task()
    assert task is not None, "called outside a task"
    return task


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


async def _request_refused(request, exc: RequestError):
    """KServe's app's handler for the model's refusals: a 400 and one log line."""
    from starlette.responses import JSONResponse

    _log_refusal(request.scope, 400, str(exc))
    return JSONResponse({"error": str(exc)}, status_code=400)


def guard(app, model_name: str = MODEL_NAME) -> None:
    """Puts the checks in front of KServe's FastAPI ``app``; call it before the server starts."""
    app.add_middleware(_Guard, model_name=model_name)
    app.add_exception_handler(RequestError, _request_refused)
