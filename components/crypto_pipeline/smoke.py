"""The smoke request: a model proves it loads and answers before it is registered or served."""

from __future__ import annotations

import asyncio
import os
import tempfile
import textwrap
from typing import Any

import fsspec

from crypto_pipeline.errors import ConfigError
from crypto_pipeline.files import is_remote, local_path
from crypto_pipeline.serving.model import make_model

SMOKE_INSTANCE = {"open": 100.0, "high": 104.0, "low": 97.0}


def smoke_test(version_uri: str, shown: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
    """Loads a model with the serving code and answers one request.

    Args:
        version_uri: The model's folder (a bucket's is downloaded first).
        shown: The folder to name in an error (the user's, for a staged copy).

    Returns:
        The request and the response, as a client would send and get them.

    Raises:
        ConfigError: The model does not load or does not answer (a corrupt or truncated
            SavedModel); the message names the model's folder.
    """
    request = {"instances": [SMOKE_INSTANCE]}
    with tempfile.TemporaryDirectory() as tmp:
        local_dir = local_path(version_uri)
        if is_remote(version_uri):  # a bucket: fetch the copy, as a server would
            fs, path = fsspec.core.url_to_fs(version_uri)
            local_dir = os.path.join(tmp, "model")
            fs.get(path, local_dir, recursive=True)
        try:
            model = make_model(local_dir)
            response = asyncio.run(model.predict(asyncio.run(model.preprocess(request))))
        except Exception as exc:  # any failure to load or answer is the model's
            raise ConfigError(
                f"the model in {shown or version_uri} does not load or answer a smoke "
                f"request, it is corrupt or truncated ({type(exc).__name__}: "
                f"{textwrap.shorten(str(exc).replace(local_dir, shown or local_dir), 200)})",
                "train it again (`crypto-pipeline train`, or `make pipeline`) and deploy the "
                "new model/ folder; nothing was registered",
            ) from None
    return request, response
