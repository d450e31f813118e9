"""Connections: how many a server keeps open, and how long a request may take to arrive.

uvicorn itself has no limit on connections and no time limit on a request's headers or
body: a client that opens connections and sends nothing holds a file each, forever. Here a
server keeps at most ``MAX_CONNECTIONS`` (fewer where the process may open fewer files; a
new one past the limit closes the one waiting longest for its request), gives a request's
headers ``HEADER_TIMEOUT_S`` (then a 408) and its body ``BODY_TIMEOUT_S`` (then the
connection is closed). Each such event is logged once per ``LOG_INTERVAL_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from crypto_pipeline.serving.logs import _repeated
from crypto_pipeline.workarounds.uvicorn import (
    ProtocolBase,
    after_startup,
    http_protocol,
    listening_sockets,
    open_connections,
    response_pending,
)

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
RESERVED_FILES = 100
"""Open files kept for the server itself (model, logs, sockets being accepted)."""


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


def raise_open_file_limit() -> int:
    """Raises this process's limit of open files to its ceiling; returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft != resource.RLIM_INFINITY and soft < ceiling:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
            soft = ceiling
    return 65536 if soft == resource.RLIM_INFINITY else soft


class _Bounded(ProtocolBase):
    """One connection: closed when over the limit or too slow to send its request.

    Mixed into uvicorn's ``HttpToolsProtocol`` by ``bounded_http``, which sets ``limits``
    and ``waiting`` (the connections waiting for, or still receiving, a request,
    longest-waiting first). The details of uvicorn's protocol it relies on are listed in
    ``crypto_pipeline.workarounds.uvicorn``.
    """

    limits: Limits
    waiting: dict[_Bounded, None]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(  # type: ignore[override]  # as uvicorn: servers get a Transport
        self, transport: asyncio.Transport
    ) -> None:
        super().connection_made(transport)
        self._wait()
        self._start_timer(self.limits.header_timeout_s, self._headers_late)
        self._make_room()

    def _wait(self) -> None:
        self.waiting.pop(self, None)
        self.waiting[self] = None

    def _make_room(self) -> None:
        """Closes the connection waiting longest for its request when over the limit."""
        if len(open_connections(self)) <= self.limits.max_connections:
            return
        oldest = next(iter(self.waiting), self)
        self.waiting.pop(oldest, None)
        oldest.transport.close()
        _repeated(
            "limit",
            f"{self.limits.max_connections} connections open, the limit: closed the one "
            "waiting longest for its request (or the new one, when all were answered)",
        )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._timer is None:
            self._start_timer(self.limits.header_timeout_s, self._headers_late)
        if self not in self.waiting:
            self._wait()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._start_timer(self.limits.body_timeout_s, self._body_late)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._stop_timer()
        if response_pending(self):
            self.waiting.pop(self, None)  # being answered

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self not in self.waiting and not self.transport.is_closing():
            self._wait()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        self.waiting.pop(self, None)
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
        if not response_pending(self):
            self.transport.write(_late_answer(self.limits.header_timeout_s))
        self.transport.close()
        _repeated(
            "headers",
            f"closed a connection whose request headers took over "
            f"{self.limits.header_timeout_s:g} s",
        )

    def _body_late(self) -> None:
        self._timer = None
        if not self.transport.is_closing():
            self.transport.close()
            _repeated(
                "body",
                f"closed a connection whose request body took over "
                f"{self.limits.body_timeout_s:g} s",
            )


def bounded_http(limits: Limits):
    """The HTTP protocol of uvicorn (httptools) with ``limits`` on connections and read times."""
    return type("BoundedHttp", (_Bounded, http_protocol()), {"limits": limits, "waiting": {}})


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


def queue_connections(server, depth: int) -> None:
    """Has the kernel queue ``depth`` connections for the uvicorn ``server`` once it listens.

    asyncio listens with the backlog it also takes as the most connections to accept in
    one turn. A short queue drops a burst of connections (each client then waits a second
    to try again); a long turn accepts more connections than there are files for.
    """

    def deepen() -> None:
        for sock in listening_sockets(server):
            with socket.socket(fileno=os.dup(sock.fileno())) as same:
                same.listen(depth)

    after_startup(server, deepen)
