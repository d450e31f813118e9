"""The client side: run a server in a subprocess, send it instances, read its answer.

``running_server`` starts ``crypto-pipeline serve`` and waits until the model is ready (the
notebooks, the tests and the serving benchmark use it); ``predict`` sends instances to any
V1 server and ``closes`` reads its answer, the project's or TensorFlow Serving's.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from crypto_pipeline.serving.model import MODEL_NAME, require_saved_model
from crypto_pipeline.serving.request_rules import SHOWN_CHARS, RequestError, shorten, shown
from crypto_pipeline.serving.server import DEFAULT_HOST


def client_url(host: str, port: int) -> str:
    """The URL a client on this machine uses for a server listening on ``host:port``."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


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
        raise RequestError(f'the answer has no "predictions" list: {shown(answer)}')
    values = []
    for p in predictions:
        if isinstance(p, list) and len(p) == 1:
            p = p[0]
        if isinstance(p, bool) or not isinstance(p, int | float):
            raise RequestError(f"the answer holds {shown(p)} where a predicted close belongs")
        values.append(float(p))
    return values
