"""Serving: a KServe ModelServer that answers KServe's V1 REST protocol.

It is the protocol KServe's TensorFlow runtime speaks on a cluster, so the same requests
work here and there::

    POST /v1/models/crypto:predict
    {"instances": [[open, high, low], ...]}                        -> {"predictions": [close, ...]}
    {"instances": [{"open": o, "high": h, "low": l}, ...]}         (accepted here; see README)

Readiness and health: ``GET /v1/models/crypto`` (``{"name": "crypto", "ready": true}``)
and ``GET /`` (``{"status": "alive"}``), from KServe.

Every request is checked before the model sees it: a bad one gets a 400 with a message
naming the instance and the problem (an unknown model name gets a 404), and the server
stays up. The checks are those of the transform step: numbers, finite, positive,
low <= open <= high.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from crypto_pipeline.errors import TrainingError
from crypto_pipeline.features import INPUTS

MODEL_NAME = "crypto"
MAX_INSTANCES = 10_000
"""Most instances one request may carry; larger batches get a 400 telling to split them."""


class RequestError(ValueError):
    """A request the server refuses, with the reason a client can act on."""


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError(f"{where}: {value!r} is not a number")
    if not math.isfinite(value):
        raise RequestError(f"{where}: {value!r} is not finite")
    if value <= 0:
        raise RequestError(f"{where}: {value!r} is not a positive price")
    return float(value)


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
    extra = sorted(set(payload) - {"instances"})
    if extra:
        raise RequestError(f"unknown field(s) in the body: {', '.join(extra)}")
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
            unknown = sorted(set(instance) - set(INPUTS))
            if missing or unknown:
                parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
                    [f"unknown {', '.join(unknown)}"] if unknown else []
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
        open_, high, low = (_number(v, f"{where}.{k}") for k, v in zip(INPUTS, values, strict=True))
        if high < low:
            raise RequestError(f"{where}: high {high!r} is below low {low!r}")
        if not low <= open_ <= high:
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
        """Validates V1 requests and runs the exported model's serving signature."""

        def __init__(self):
            super().__init__(name)
            self._signature = None

        def load(self) -> bool:
            loaded = tf.saved_model.load(os.fspath(model_dir))
            self._loaded = loaded  # the signature needs its object alive
            self._signature = loaded.signatures["serving_default"]
            self.ready = True
            return self.ready

        async def preprocess(self, payload, headers=None):
            try:
                return parse_instances(payload)
            except RequestError as exc:
                raise kserve.errors.InvalidInput(str(exc)) from None

        async def predict(self, prices, headers=None):
            output = self._signature(prices=tf.constant(prices))
            closes = next(iter(output.values())).numpy().ravel()
            return {"predictions": [round(float(c), 6) for c in closes]}

    model = CryptoModel()
    model.load()
    return model


def serve(model_dir: str | os.PathLike[str], port: int = 8080) -> None:
    """Serves the model on ``port`` until interrupted (KServe handles SIGINT/SIGTERM)."""
    import warnings

    # kserve's own use of a FastAPI class that FastAPI now deprecates: not the user's concern.
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
    kserve = _import_kserve()
    model = make_model(model_dir)
    kserve.ModelServer(http_port=port, enable_grpc=False, workers=1).start([model])


@contextlib.contextmanager
def running_server(
    model_dir: str | os.PathLike[str], port: int | None = None, timeout_s: float = 120.0
) -> Iterator[str]:
    """Runs ``crypto-pipeline serve`` in a subprocess on loopback until the block ends.

    Waits until the model reports ready, yields the server's base URL, and stops the
    server afterwards. Used by the notebooks, the tests and the serving benchmark.

    Args:
        model_dir: The SavedModel folder to serve.
        port: The port on 127.0.0.1 (default: a free one).
        timeout_s: Seconds to wait for the model to become ready.

    Raises:
        TrainingError: ``model_dir`` holds no SavedModel.
        RuntimeError: The server exited or was not ready in time (its log is quoted).
    """
    import requests

    if not Path(model_dir, "saved_model.pb").exists():
        raise TrainingError(
            f"no SavedModel in {model_dir}",
            "train a model first (`make pipeline`, or `crypto-pipeline train`)",
        )
    if port is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "crypto_pipeline.cli", "serve", "--model"]
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            [*command, os.fspath(model_dir), "--port", str(port)], stdout=log, stderr=log
        )
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if process.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"the server exited ({process.returncode}):\n{log.read()}")
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
        url: The server (``http://localhost:8080``) or the full ``…:predict`` URL.
        instances: ``[[open, high, low], ...]``.
        timeout_s: Seconds to wait for the answer.

    Raises:
        RequestError: The server refused the request (its message is kept).
        ConnectionError: No server answered at ``url``.
    """
    import requests

    if not url.rstrip("/").endswith(":predict"):
        url = f"{url.rstrip('/')}/v1/models/{MODEL_NAME}:predict"
    try:
        response = requests.post(url, json={"instances": instances}, timeout=timeout_s)
    except requests.ConnectionError as exc:
        raise ConnectionError(f"no server answered at {url}: {exc}") from None
    if response.status_code >= 400:
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text
        raise RequestError(f"the server answered {response.status_code}: {message}")
    return closes(response.json())


def closes(answer: Any) -> list[float]:
    """The predicted closes of a V1 answer, one number per instance.

    The project's server answers ``{"predictions": [close, ...]}``; TensorFlow Serving
    (KServe's ``tensorflow`` runtime) answers ``[[close], ...]`` for the same model.

    Raises:
        RequestError: The answer is not a list of predictions.
    """
    predictions = answer.get("predictions") if isinstance(answer, dict) else None
    if not isinstance(predictions, list):
        raise RequestError(f'the answer has no "predictions" list: {str(answer)[:200]}')
    values = []
    for p in predictions:
        if isinstance(p, list) and len(p) == 1:
            p = p[0]
        if isinstance(p, bool) or not isinstance(p, int | float):
            raise RequestError(f"the answer holds {p!r} where a predicted close belongs")
        values.append(float(p))
    return values
