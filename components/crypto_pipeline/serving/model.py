"""The served model: KServe's ``Model`` around the exported SavedModel's serving signature.

A request's body reaches the model unparsed (``guard.py``); the model parses and checks it
once (``request_rules.py``) and predicts, both in ``PREDICT_THREADS`` worker threads, so
the event loop only moves bytes and health answers never wait for prediction work. A
prediction that is not finite is refused with a 400 naming the instance.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from crypto_pipeline.errors import ConfigError
from crypto_pipeline.serving.logs import printable
from crypto_pipeline.serving.request_rules import (
    RequestError,
    parse_body,
    parse_instances,
    shorten,
)
from crypto_pipeline.workarounds.kserve import import_kserve

MODEL_NAME = "crypto"
"""The model's name in the V1 routes: ``POST /v1/models/crypto:predict``."""
PREDICT_THREADS = 2
"""Worker threads that parse, check and predict; the event loop only moves bytes, so
health answers never wait for prediction work."""


def make_model(model_dir: str | os.PathLike[str], name: str = MODEL_NAME):
    """A loaded KServe model that serves the SavedModel in ``model_dir``."""
    kserve: Any = import_kserve()  # no type information: its Model is a base of Any
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


def loaded_model(model_dir: Path):
    """``make_model(model_dir)``, or a ConfigError when the SavedModel does not load."""
    import_kserve()
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
