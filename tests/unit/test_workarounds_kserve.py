"""workarounds.kserve: each detail of kserve the model server relies on, still as it was.

Each test checks one workaround's upstream fact with the installed kserve and, when an
upgrade changed it, fails naming the workaround and what to change. The facts are read in
fresh processes: importing kserve reads the command line and the server's ``start`` sets
signal handlers, neither of which belongs in the test process.
"""

import json
import subprocess
import sys

import pytest

ARGV = ["probe", "--model", "from-the-command-line", "--http_port", "1234"]
"""A command line with ``crypto-pipeline serve``'s ``--model`` and one of kserve's flags."""

PLAIN_IMPORT = f"""
import json, sys
sys.argv = {ARGV!r}
import kserve
args = kserve.model_server.args
print(json.dumps({{"model_name": args.model_name, "http_port": args.http_port}}))
"""

PROBE = f"""
import asyncio, inspect, json, socket, sys
sys.argv = {ARGV!r}
from crypto_pipeline.workarounds.kserve import (
    configure_rest_server, import_kserve, loop_exception_handler, served_app,
)

kserve = import_kserve()
facts = {{
    "model_name": kserve.model_server.args.model_name,
    "http_port": kserve.model_server.args.http_port,
}}
from fastapi import FastAPI
from kserve.protocol.rest.server import RESTServer
facts["app_is_fastapi"] = isinstance(served_app(kserve), FastAPI)
facts["app_imported_by_rest_server"] = (
    "kserve.model_server:app" in inspect.getsource(RESTServer.create_application)
)


class Stop(Exception):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def model():
    probe = kserve.Model("probe")
    probe.ready = True
    return probe


def configure(config, uvicorn_server):
    import uvicorn

    facts["config_is_uvicorn"] = isinstance(config, uvicorn.Config)
    facts["server_is_uvicorn"] = isinstance(uvicorn_server, uvicorn.Server)
    facts["server_has_config"] = getattr(uvicorn_server, "config", None) is config
    facts["host"] = config.host
    with socket.socket() as s:  # nothing listens on the port yet
        s.bind(("0.0.0.0", config.port))
        facts["port_free"] = True
    for coroutine in server.servers:
        coroutine.close()
    raise Stop


server = kserve.ModelServer(http_port=free_port(), enable_grpc=False, workers=1)
configure_rest_server(server, configure)
try:
    server.start([model()])
except Stop:
    facts["configured"] = True


def handler(loop, context):
    pass


def served_with(server):
    async def record():  # stands in for the servers: what the loop holds as they run
        facts.setdefault("handlers", []).append(
            asyncio.get_running_loop().get_exception_handler()
        )
        for coroutine in server.servers:
            coroutine.close()

    server._serve = record
    asyncio.set_event_loop(asyncio.new_event_loop())  # asyncio.run() unset the last one
    return server


kept = served_with(kserve.ModelServer(http_port=free_port(), enable_grpc=False, workers=1))
loop_exception_handler(kept, handler)
kept.start([model()])
facts["workaround_handler_kept"] = facts["handlers"][-1] is handler
public = served_with(kserve.ModelServer(http_port=free_port(), enable_grpc=False, workers=1))
public.register_exception_handler(handler)
public.start([model()])
facts["public_handler_kept"] = facts.pop("handlers")[-1] is handler
print(json.dumps(facts))
"""


def run_python(code: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def facts() -> dict:
    """What kserve does with the workarounds applied, read in one fresh process."""
    return run_python(PROBE)


def test_import_kserve_keeps_the_command_line_from_kserve(facts):
    """``import_kserve``: kserve parses ``sys.argv`` when it is imported."""
    plain = run_python(PLAIN_IMPORT)
    assert plain == {"model_name": "from-the-command-line", "http_port": 1234}, (
        "import_kserve: kserve 0.21.0 parsed sys.argv when imported (kserve.model_server."
        f"args); this kserve does not ({plain}): import kserve directly and remove "
        "crypto_pipeline.workarounds.kserve.import_kserve"
    )
    assert facts["model_name"] != "from-the-command-line" and facts["http_port"] != 1234, (
        "import_kserve: kserve still read the command line through it "
        f"({facts['model_name']!r}, port {facts['http_port']}): this kserve reads sys.argv "
        "later than its import; change import_kserve to hide the command line then too"
    )


def test_served_app_is_the_app_kserve_serves(facts):
    """``served_app``: KServe's REST server serves ``kserve.model_server.app``."""
    assert facts["app_is_fastapi"] and facts["app_imported_by_rest_server"], (
        "served_app: kserve 0.21.0's RESTServer.create_application imported "
        "'kserve.model_server:app', a FastAPI app; this kserve builds its app elsewhere: "
        "change crypto_pipeline.workarounds.kserve.served_app to return the app it serves, "
        "or the guard is not in front of it"
    )


def test_configure_rest_server_runs_before_the_rest_server_binds(facts):
    """``configure_rest_server``: ``start`` builds ``_rest_server``, then ``setup_event_loop``."""
    expected = {
        "configured": True,
        "config_is_uvicorn": True,
        "server_is_uvicorn": True,
        "server_has_config": True,
        "host": "0.0.0.0",
        "port_free": True,
    }
    seen = {k: facts.get(k) for k in expected}
    assert seen == expected, (
        "configure_rest_server: kserve 0.21.0's ModelServer.start built self._rest_server "
        "(.config a uvicorn.Config with host 0.0.0.0, ._server its uvicorn.Server) and called "
        f"setup_event_loop before binding; this kserve differs ({seen}): change "
        "crypto_pipeline.workarounds.kserve.configure_rest_server to reach its uvicorn "
        "server before it binds (or use a public way to set the host and protocol)"
    )


def test_loop_exception_handler_is_the_serving_loops(facts):
    """``loop_exception_handler``: ``start`` runs ``asyncio.run(self._serve())``."""
    assert facts["workaround_handler_kept"], (
        "loop_exception_handler: kserve 0.21.0's ModelServer.start ran "
        "asyncio.run(self._serve()); this kserve does not run _serve: change "
        "crypto_pipeline.workarounds.kserve.loop_exception_handler to wrap what it runs"
    )
    assert not facts["public_handler_kept"], (
        "loop_exception_handler: this kserve keeps register_exception_handler's handler on "
        "the loop it serves on: call server.register_exception_handler(loop_exception) "
        "instead and remove crypto_pipeline.workarounds.kserve.loop_exception_handler"
    )
