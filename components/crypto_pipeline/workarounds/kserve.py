"""Where the model server leans on KServe's internals (kserve 0.21.0), each in one function.

KServe's ``ModelServer`` offers ``start(models)`` and its port; it has no public way to
import it without its reading the process's command line, to choose the address it listens
on or its HTTP protocol, or to set an event loop error handler that stays set (its
``register_exception_handler`` sets one on a loop that ``asyncio.run`` then replaces). Each
function below does one of these through a detail of kserve that may change in an upgrade,
and says which detail. ``tests/unit/test_workarounds_kserve.py`` checks each detail and
names the function to change when an upgrade breaks it.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any


def import_kserve():
    """The ``kserve`` module, imported without letting it read this process's command line.

    Relies on: ``kserve.model_server`` parsing ``sys.argv`` when it is imported
    (``args, _ = parser.parse_known_args()`` at module level, abbreviations allowed), and
    on nothing reading ``sys.argv`` after that. Why: it would take ``--model`` of
    ``crypto-pipeline serve`` for its own ``--model_name``, and any of its flags on the
    project's command line for its own.
    """
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        import kserve
    finally:
        sys.argv = argv
    return kserve


def served_app(kserve) -> Any:
    """The FastAPI app KServe's REST server serves, for middleware added before it starts.

    Relies on: ``RESTServer.create_application`` importing ``kserve.model_server:app``, the
    module's one ``FastAPI`` object, when the server starts. Why: KServe has no public way
    to add a middleware or an exception handler to the app it builds.
    """
    return kserve.model_server.app


def configure_rest_server(server, configure: Callable[[Any, Any], None]) -> None:
    """CONFIGURE(config, uvicorn_server) runs in ``server.start()`` before the server binds.

    CONFIGURE gets the uvicorn ``Config`` and ``Server`` of KServe's REST server and may
    change them (the address, the HTTP protocol, the backlog, the start-up).

    Relies on: ``ModelServer.start`` building its uvicorn server as ``self._rest_server``
    (a ``RESTServer`` whose ``config`` is a ``uvicorn.Config`` and ``_server`` the
    ``uvicorn.Server``) and then calling ``self.setup_event_loop()`` before anything binds,
    with one worker. Why: KServe listens on 0.0.0.0 with uvicorn's own protocol and backlog,
    fixed; this server listens on the host it is given, with bounded connections.

    Raises:
        RuntimeError: The REST server is not where this kserve version was known to keep it.
    """
    setup = server.setup_event_loop

    def configure_then_setup():
        rest = getattr(server, "_rest_server", None)
        if rest is None or not hasattr(rest, "config") or not hasattr(rest, "_server"):
            raise RuntimeError(
                "this kserve version builds its REST server differently: "
                "crypto_pipeline.workarounds.kserve.configure_rest_server cannot set the "
                "address to listen on"
            )
        configure(rest.config, rest._server)
        setup()

    server.setup_event_loop = configure_then_setup


def loop_exception_handler(server, handler: Callable[[Any, dict], None]) -> None:
    """HANDLER is the error handler of the event loop ``server.start()`` serves on.

    Relies on: ``ModelServer.start`` ending with ``asyncio.run(self._serve())``, the
    coroutine that runs every server, looked up on the instance. Why: KServe sets its error
    handler (its own, or ``register_exception_handler``'s) in ``setup_event_loop`` on
    ``asyncio.get_event_loop()``, a loop that ``asyncio.run`` then replaces with a new one.
    """
    serve = server._serve

    async def serve_with_handler():
        asyncio.get_running_loop().set_exception_handler(handler)
        await serve()

    server._serve = serve_with_handler
