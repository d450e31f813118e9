"""Where the model server leans on uvicorn's internals (uvicorn 0.54.0), each in one function.

uvicorn has no limit on connections, no time limit on a request's headers or body, and
listens with the backlog that asyncio also takes as the most connections to accept in one
turn; it has no public hook on a connection's opening, its request's parsing or its end, and
no public way to reach the sockets it listens on. ``crypto_pipeline.serving.connections``
adds the limits by subclassing uvicorn's httptools protocol and deepens the listen queue of
a started server. Each function below reaches one detail of uvicorn for it and says which.

The subclass (``connections._Bounded``) also uses, as any subclass does, what the protocol
class has: it overrides ``connection_made``, ``connection_lost``, ``on_message_begin``,
``on_headers_complete``, ``on_message_complete`` and ``on_response_complete`` and calls each
through ``super()`` (the httptools parser uvicorn builds for each connection calls the
``on_message_*`` and ``on_headers_complete`` callbacks on the protocol, and each request's
cycle calls ``on_response_complete`` once its response is written); it writes to and closes
``self.transport`` (the connection's asyncio transport, set by ``connection_made``) and
sets its timers on ``self.loop`` (the serving event loop). ``ProtocolBase`` is that class
for the type checker. ``tests/unit/test_workarounds_uvicorn.py`` checks each detail, those
used directly too, and names what to change when an upgrade breaks it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # uvicorn is imported where a server starts (``http_protocol``)
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as ProtocolBase
else:
    ProtocolBase = object


def http_protocol() -> type[asyncio.Protocol]:
    """The class of uvicorn's httptools HTTP protocol, one instance per connection.

    Relies on: ``uvicorn.protocols.http.httptools_impl.HttpToolsProtocol``, the class
    ``http="httptools"`` names, whose methods listed in this module's docstring a subclass
    overrides. Why: uvicorn has no public hook on a connection's opening, its request's
    headers and body, or its response's end, where the limits apply.
    """
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    return HttpToolsProtocol


def serve_with(config: Any, protocol: type[asyncio.Protocol], accept_at_once: int) -> None:
    """CONFIG, a ``uvicorn.Config`` not yet loaded, serves each connection with PROTOCOL.

    Its server accepts up to ACCEPT_AT_ONCE connections in one turn of the event loop.

    Relies on: ``Config.load`` taking a class set as ``config.http`` as the protocol class
    (``http_protocol_class``) when the server starts, ``Server.startup`` constructing it
    for each connection with keyword arguments (``config``, ``server_state``,
    ``app_state``, ``_loop``), and passing ``config.backlog`` to asyncio's
    ``create_server`` as its ``backlog``. Why: KServe builds the ``Config`` itself
    (``workarounds.kserve.configure_rest_server``); its attributes, set before the server
    starts, are the only way to choose the protocol and the backlog.
    """
    config.http = protocol
    config.backlog = accept_at_once


def after_startup(server: Any, then: Callable[[], None]) -> None:
    """THEN runs once the uvicorn SERVER listens, before it serves its first connection.

    Relies on: ``Server._serve`` awaiting ``self.startup(sockets=…)``, looked up on the
    instance, which creates the listening servers and returns before the serving loop
    runs. Why: uvicorn has no hook between binding and serving.
    """
    startup = server.startup

    async def startup_then(sockets=None):
        await startup(sockets=sockets)
        then()

    server.startup = startup_then


def listening_sockets(server: Any) -> list[socket.socket]:
    """The sockets a started uvicorn SERVER listens on.

    Relies on: ``Server.startup`` keeping the asyncio servers it creates in
    ``server.servers`` (a list of ``asyncio.Server``, whose ``sockets`` asyncio offers).
    Why: uvicorn reports its listening sockets nowhere, and their listen backlog is changed
    after they are bound (``connections.queue_connections``).
    """
    return [sock for listener in server.servers for sock in listener.sockets]


def open_connections(protocol: Any) -> Collection[Any]:
    """The connections open on PROTOCOL's server, one protocol object each, PROTOCOL too.

    Relies on: ``HttpToolsProtocol.connections``, the server-wide set
    (``ServerState.connections``) that ``connection_made`` adds the protocol to and
    ``connection_lost`` discards it from. Why: uvicorn counts its connections only for
    ``limit_concurrency``, which answers a 503 and leaves the connection open.
    """
    return protocol.connections


def response_pending(protocol: Any) -> bool:
    """Whether PROTOCOL's connection has a request whose response is not all written yet.

    Relies on: ``HttpToolsProtocol.cycle``, the ``RequestResponseCycle`` of the latest
    request (``None`` before the first, a new one when a request's headers are in), whose
    ``response_complete`` turns true once its response's last byte is sent. Why: uvicorn
    tells a protocol subclass nothing else about whether a request is being answered.
    """
    cycle = protocol.cycle
    return cycle is not None and not cycle.response_complete
