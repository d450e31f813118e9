"""The server: ``crypto-pipeline serve``, KServe's ModelServer with the guard in front.

It answers KServe's V1 REST protocol (see ``crypto_pipeline.serving``) on ``host:port``:
127.0.0.1 (this machine only) unless ``host`` says otherwise; ``crypto-pipeline serve
--host 0.0.0.0`` opens every interface, which the InferenceService does because a pod is
reached through its own interface. The address is checked before the model loads, and
KServe's REST server is set up with the guard (``guard.py``), bounded connections
(``connections.py``) and the one-line log (``logs.py``) before it binds.
"""

from __future__ import annotations

import os
import socket

from crypto_pipeline.errors import ConfigError
from crypto_pipeline.serving.connections import (
    Limits,
    bounded_http,
    connection_limits,
    queue_connections,
    raise_open_file_limit,
)
from crypto_pipeline.serving.guard import guard
from crypto_pipeline.serving.logs import log_to_stderr, loop_exception
from crypto_pipeline.serving.model import loaded_model, require_saved_model
from crypto_pipeline.workarounds.kserve import (
    configure_rest_server,
    import_kserve,
    loop_exception_handler,
    served_app,
)
from crypto_pipeline.workarounds.uvicorn import serve_with

DEFAULT_HOST = "127.0.0.1"
"""Where the server listens unless told otherwise: this machine only."""
DEFAULT_PORT = 8082
"""This machine's default port: 8080 is the Pipelines UI's port-forward, 8081 nginx's."""


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


def _model_server(kserve, host: str, port: int, limits: Limits):
    """KServe's ModelServer, listening on ``host`` (not KServe's fixed 0.0.0.0), with ``limits``."""
    server = kserve.ModelServer(http_port=port, enable_grpc=False, workers=1)

    def configure(config, uvicorn_server) -> None:
        config.host = host
        serve_with(config, bounded_http(limits), limits.accept_at_once)
        queue_connections(uvicorn_server, limits.queue)

    configure_rest_server(server, configure)
    loop_exception_handler(server, loop_exception)
    return server


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
    kserve = import_kserve()
    model = loaded_model(model_dir)
    guard(served_app(kserve))
    log_to_stderr()
    limits = connection_limits(raise_open_file_limit())
    _model_server(kserve, host, port, limits).start([model])
