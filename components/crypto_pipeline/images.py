"""The step images' tag: the checkout's content tag when there is a checkout.

``scripts/build_images.sh`` tags the images ``<version>-<digest of what they hold>``
(``scripts/image_tag.py``, the one implementation, which runs before any virtual
environment exists). The cluster route compiles the pipeline, and names the serve and
training images, with the same tag, so that a rebuilt image is a new name: nodes pull it,
and Kubeflow Pipelines' cache runs the changed steps again. Installed without the
repository (inside a step image), there is nothing to digest: the bare version tag.
"""

from __future__ import annotations

import runpy
from pathlib import Path

from crypto_pipeline.config import DEFAULT_TAG

_CHECKOUT = Path(__file__).resolve().parents[2]


def checkout_root() -> Path | None:
    """The repository this package runs from, or ``None`` when it is installed apart."""
    if (_CHECKOUT / "scripts" / "image_tag.py").is_file() and (
        _CHECKOUT / "components" / "serve" / "Dockerfile"
    ).is_file():
        return _CHECKOUT
    return None


def default_tag() -> str:
    """The tag ``scripts/build_images.sh`` gives the images of this checkout, as it is now.

    Not cached: a notebook's kernel outlives edits, and a tag from before them would name
    images that were never built.
    """
    root = checkout_root()
    if root is None:
        return DEFAULT_TAG
    script = runpy.run_path(str(root / "scripts" / "image_tag.py"))
    return script["image_tag"](root)
