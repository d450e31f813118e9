"""workarounds.uvicorn: each detail of uvicorn the model server relies on, still as it was.

Each test checks one detail with the installed uvicorn and, when an upgrade changed it, fails
naming the workaround (or the method of ``serving.connections._Bounded`` that uses the detail
directly) and what to change. The facts are read from a real uvicorn server on 127.0.0.1 (a
free port), started in this process for one request on one connection: its protocol, a
subclass of ``http_protocol()`` set up as ``_Bounded`` is, records what it sees through the
workarounds at each step.
"""

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import pytest
import uvicorn

from crypto_pipeline.serving.connections import _Bounded
from crypto_pipeline.workarounds.uvicorn import (
    ProtocolBase,
    after_startup,
    http_protocol,
    listening_sockets,
    open_connections,
    response_pending,
    serve_with,
)

STEPS = (
    "connection_made",
    "on_message_begin",
    "on_headers_complete",
    "on_message_complete",
    "on_response_complete",
    "connection_lost",
)
"""The methods ``_Bounded`` overrides, in the order uvicorn calls them for one request."""
ACCEPT_AT_ONCE = 37
"""The backlog given to ``serve_with``: a number no default of uvicorn or asyncio has."""
REQUEST = b"GET / HTTP/1.1\r\nHost: probe\r\n\r\n"
WAIT_S = 30.0
"""The longest any step of the probe waits: a stuck server fails the tests, not hangs them."""


def broken(workaround: str, fact: str, change: str) -> str:
    """The message of a failed check: which workaround, what no longer holds, what to do."""
    return (
        f"{workaround} relies on {fact}, which no longer holds in uvicorn "
        f"{uvicorn.__version__}: {change}"
    )


def served_by_the_protocol_set(facts: dict[str, Any]) -> None:
    """Fails, naming ``serve_with``, when no connection reached the protocol it set."""
    assert facts["steps"], broken(
        "workarounds.uvicorn.serve_with",
        "Config.load taking a class set as config.http as the protocol of each connection",
        "no connection reached the protocol it set, so this detail could not be checked: "
        "change serve_with first",
    )


def _read(read: Callable[[], Any]) -> Any:
    """What READ returns, or the error it raised, as text."""
    try:
        return read()
    except Exception as exc:  # an upgrade may have removed what it reads
        return f"{type(exc).__name__}: {exc}"


class _Recording(ProtocolBase):
    """Records, after each of ``_Bounded``'s overridden methods, what the workarounds see."""

    facts: dict[str, Any]

    def _record(self, step: str, **seen: Callable[[], Any]) -> None:
        self.facts["steps"].append(step)
        for name, read in seen.items():
            self.facts[f"{step}.{name}"] = _read(read)

    def connection_made(self, transport):
        self.given_transport = transport
        super().connection_made(transport)
        self._record(
            "connection_made",
            member=lambda: self in open_connections(self),
            transport=lambda: self.transport is transport,
            loop=lambda: self.loop is asyncio.get_running_loop(),
            pending=lambda: response_pending(self),
        )

    def on_message_begin(self):
        super().on_message_begin()
        self._record("on_message_begin", pending=lambda: response_pending(self))

    def on_headers_complete(self):
        super().on_headers_complete()
        self._record("on_headers_complete", pending=lambda: response_pending(self))

    def on_message_complete(self):
        super().on_message_complete()
        self._record("on_message_complete", pending=lambda: response_pending(self))

    def on_response_complete(self):
        super().on_response_complete()
        self._record("on_response_complete", open=lambda: not self.given_transport.is_closing())

    def connection_lost(self, exc):
        self.facts["connection_lost.member_before"] = _read(lambda: self in open_connections(self))
        self.facts["connection_lost.pending"] = _read(lambda: response_pending(self))
        super().connection_lost(exc)
        self._record("connection_lost", member=lambda: self in open_connections(self))


async def _app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


def _record_backlog(facts: dict[str, Any]) -> None:
    """Records the ``backlog`` the running loop's ``create_server`` is called with."""
    loop = asyncio.get_running_loop()
    create_server = loop.create_server

    async def recorded(*args, **kwargs):
        facts["backlog"] = kwargs.get("backlog")
        return await create_server(*args, **kwargs)

    loop.create_server = recorded


def _after_startup_recorder(server: uvicorn.Server, facts: dict[str, Any]) -> Callable[[], None]:
    """What ``after_startup`` runs here: records whether uvicorn had started, and what it served."""

    def then() -> None:
        facts["startup.started"] = server.started
        facts["startup.steps"] = list(facts["steps"])

    return then


def _record_sockets(server: uvicorn.Server, facts: dict[str, Any]) -> None:
    """Records the ports ``listening_sockets`` finds on the started server, and which listen."""
    sockets = _read(lambda: listening_sockets(server))
    facts["sockets"] = sockets
    facts["sockets.ports"] = _read(lambda: [s.getsockname()[1] for s in sockets])
    facts["sockets.listening"] = _read(
        lambda: [s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) for s in sockets]
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _one_request(port: int, facts: dict[str, Any]) -> None:
    """Sends one request on one connection, reads the answer, closes, waits for the server."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(REQUEST)
    head = await reader.readuntil(b"\r\n\r\n")
    facts["answer"] = (head.split(b" ", 2)[1] + b" " + await reader.readexactly(2)).decode()
    writer.close()
    await writer.wait_closed()
    while "connection_made" in facts["steps"] and "connection_lost" not in facts["steps"]:
        await asyncio.sleep(0.01)


async def _probe(facts: dict[str, Any]) -> None:
    """Serves one request with the recording protocol and records what uvicorn did."""
    protocol = type("Recording", (_Recording, http_protocol()), {"facts": facts})
    facts["port"] = _free_port()
    config = uvicorn.Config(
        _app,
        host="127.0.0.1",
        port=facts["port"],
        lifespan="off",
        log_config=None,
        timeout_graceful_shutdown=5,
    )
    serve_with(config, protocol, ACCEPT_AT_ONCE)
    server = uvicorn.Server(config)
    after_startup(server, _after_startup_recorder(server, facts))
    _record_backlog(facts)
    serving = asyncio.ensure_future(server.serve())
    try:
        while not server.started and not serving.done():
            await asyncio.sleep(0.01)
        facts["protocol_class"] = _read(lambda: config.http_protocol_class is protocol)
        _record_sockets(server, facts)
        await _one_request(facts["port"], facts)
    finally:
        server.should_exit = True
        await serving


@pytest.fixture(scope="module")
def facts() -> dict[str, Any]:
    """What one request to a real uvicorn server showed, read once for every test here."""
    seen: dict[str, Any] = {"steps": []}
    try:
        asyncio.run(asyncio.wait_for(_probe(seen), WAIT_S))
    except TimeoutError:
        seen["timed_out"] = True
    return seen


def test_http_protocol_is_the_one_httptools_names():
    """``http_protocol``: the class ``http="httptools"`` names, defining what is overridden."""
    config = uvicorn.Config(_app, http="httptools", lifespan="off", log_config=None)
    config.load()
    assert config.http_protocol_class is http_protocol(), broken(
        "workarounds.uvicorn.http_protocol",
        "uvicorn.protocols.http.httptools_impl.HttpToolsProtocol being the httptools protocol",
        f"it is {config.http_protocol_class!r} now: change http_protocol to return it",
    )
    missing = [name for name in STEPS if name not in vars(http_protocol())]
    assert not missing, broken(
        "serving.connections._Bounded",
        f"the httptools protocol defining {', '.join(STEPS)}",
        f"it has no {', '.join(missing)}: change those overrides of _Bounded to what this "
        "uvicorn calls at that point",
    )


def test_every_method_bounded_overrides_is_checked_here():
    overridden = {
        name for name, value in vars(_Bounded).items() if callable(value) and name[0] != "_"
    }
    assert overridden == set(STEPS), (
        f"serving.connections._Bounded overrides {sorted(overridden)}, this test checks "
        f"{sorted(STEPS)}: add what it overrides to STEPS and to _Recording here"
    )


def test_the_probe_finished(facts):
    assert not facts.get("timed_out"), (
        f"a real uvicorn server with the workarounds did not answer one request and close in "
        f"{WAIT_S:g} s (steps seen: {facts['steps']}): see the other failures here"
    )
    assert facts.get("answer") == "200 ok", facts


def test_serve_with_sets_the_protocol_and_the_backlog(facts):
    """``serve_with``: ``config.http`` a class, ``config.backlog`` given to asyncio."""
    assert facts.get("protocol_class") is True and facts["steps"][:1] == ["connection_made"], (
        broken(
            "workarounds.uvicorn.serve_with",
            "Config.load taking a class set as config.http as the protocol of each connection",
            f"the server used another ({facts.get('protocol_class')}, steps "
            f"{facts['steps']}): change serve_with to set the protocol as this uvicorn takes it",
        )
    )
    assert facts.get("backlog") == ACCEPT_AT_ONCE, broken(
        "workarounds.uvicorn.serve_with",
        "Server.startup passing config.backlog to loop.create_server(backlog=…)",
        f"create_server got backlog {facts.get('backlog')!r}, not {ACCEPT_AT_ONCE}: change "
        "serve_with to set the backlog as this uvicorn takes it",
    )


def test_after_startup_runs_once_listening_before_serving(facts):
    """``after_startup``: ``Server._serve`` awaits ``self.startup``, looked up on the server."""
    when = "before the server had started" if "startup.started" in facts else "never"
    assert facts.get("startup.started") is True, broken(
        "workarounds.uvicorn.after_startup",
        "Server._serve awaiting self.startup(sockets=…) looked up on the instance",
        f"the function it set ran {when}: change after_startup to run it once this uvicorn "
        "has bound, or connections.queue_connections leaves the listen queue short",
    )
    assert facts["startup.steps"] == [], broken(
        "workarounds.uvicorn.after_startup",
        "Server.startup returning before the first connection is served",
        f"connections were served first ({facts['startup.steps']}): change after_startup",
    )


def test_listening_sockets_are_the_ones_served(facts):
    """``listening_sockets``: ``server.servers``, the asyncio servers, and their sockets."""
    seen = {"ports": facts.get("sockets.ports"), "listening": facts.get("sockets.listening")}
    assert seen == {"ports": [facts["port"]], "listening": [1]}, broken(
        "workarounds.uvicorn.listening_sockets",
        "Server.startup keeping its asyncio servers in server.servers",
        f"on a server listening on port {facts['port']} it found {facts.get('sockets')!r} "
        f"({seen}): change listening_sockets to reach this uvicorn's listening sockets",
    )


def test_open_connections_holds_each_open_connection(facts):
    """``open_connections``: the set ``connection_made`` adds to, ``connection_lost`` empties."""
    served_by_the_protocol_set(facts)
    seen = {
        "after connection_made": facts.get("connection_made.member"),
        "before connection_lost": facts.get("connection_lost.member_before"),
        "after connection_lost": facts.get("connection_lost.member"),
    }
    expected = {
        "after connection_made": True,
        "before connection_lost": True,
        "after connection_lost": False,
    }
    assert seen == expected, broken(
        "workarounds.uvicorn.open_connections",
        "HttpToolsProtocol.connections, the server-wide set of open connections",
        f"a connection was in it {seen}: change open_connections to what this uvicorn counts "
        "its connections with, or connections._Bounded._make_room bounds nothing",
    )


def test_response_pending_follows_one_request(facts):
    """``response_pending``: ``cycle`` is the latest request's, ``response_complete`` its end."""
    served_by_the_protocol_set(facts)
    steps = (*STEPS[:4], "connection_lost")  # connection_lost: before uvicorn's, answered
    seen = {step: facts.get(f"{step}.pending") for step in steps}
    expected = {
        "connection_made": False,
        "on_message_begin": False,
        "on_headers_complete": True,
        "on_message_complete": True,
        "connection_lost": False,
    }
    assert seen == expected, broken(
        "workarounds.uvicorn.response_pending",
        "HttpToolsProtocol.cycle (None before a request) and cycle.response_complete",
        f"it answered {seen} in one request: change response_pending to what this uvicorn "
        "keeps of a request being answered",
    )


def test_overridden_methods_are_called_in_order_through_super(facts):
    """``_Bounded``'s overrides: each called once per request, in order, and super() works."""
    served_by_the_protocol_set(facts)
    assert facts["steps"] == list(STEPS), broken(
        "serving.connections._Bounded",
        f"uvicorn calling {', '.join(STEPS)} in that order for one request on a connection",
        f"it called {facts['steps']}: change the overrides of _Bounded (and STEPS here) to "
        "what this uvicorn calls",
    )
    assert facts.get("on_response_complete.open") is True, broken(
        "serving.connections._Bounded.on_response_complete",
        "on_response_complete running while a kept-alive connection is still open",
        f"the transport was closing ({facts.get('on_response_complete.open')!r}): change how "
        "_Bounded learns that a response is written",
    )


def test_transport_and_loop_are_the_connections(facts):
    """``_Bounded`` uses ``self.transport`` (write, close) and ``self.loop`` (its timers)."""
    served_by_the_protocol_set(facts)
    seen = {"transport": facts.get("connection_made.transport")}
    seen["loop"] = facts.get("connection_made.loop")
    assert seen == {"transport": True, "loop": True}, broken(
        "serving.connections._Bounded (_make_room, _headers_late, _body_late, _start_timer)",
        "self.transport being the connection's transport after connection_made and "
        "self.loop the serving event loop",
        f"they are not ({seen}): change _Bounded to reach them as this uvicorn keeps them",
    )
