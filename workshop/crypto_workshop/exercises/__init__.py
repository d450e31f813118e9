"""The notebooks' write-it exercises, each with a check of what the learner wrote.

A check says in a sentence whether the answer is right and, if not, what is missing.
One module per notebook (``docker`` for 02, ``kubernetes`` for 03, …); ``dockerfile`` and
``greeting_image`` read a Dockerfile for ``docker``, ``step_run`` runs a step for ``crypto``.
A check returns a ``Verdict``; a notebook's check cell prints it. The solutions are in
``notebooks/solutions/``, out of the learner's way, and the tests run every check against
its solution and against an empty answer.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

MODULES = ("introduction", "docker", "kubernetes", "kubeflow", "pipelines", "crypto")
"""Each notebook's exercises, 01 to 06; `exercises.docker` imports its module when used."""


def __getattr__(name: str) -> ModuleType:
    if name in MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class Verdict:
    """What a check found: nothing missing (right), or each thing missing, with its fix."""

    missing: tuple[str, ...]
    right: str
    """What the answer does, said when nothing is missing."""

    @property
    def ok(self) -> bool:
        return not self.missing

    def __str__(self) -> str:
        if self.ok:
            return f"Right: {self.right}"
        return "Not yet: " + "; ".join(self.missing) + "."


def verdict(missing: list[str], right: str) -> Verdict:
    """A verdict from the list of what is missing (each a phrase that says the fix)."""
    return Verdict(tuple(missing), right)


def one_yaml_object(text: str, what: str) -> tuple[dict[str, Any] | None, str]:
    """The one object a learner's YAML holds, or None and what is wrong with it."""
    import yaml

    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        return None, f"the YAML does not parse{where}: {problem}"
    if len(docs) != 1 or not isinstance(docs[0], dict):
        return None, f"write exactly one object, the {what} (it holds {len(docs)})"
    return docs[0], ""


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_RAISED = re.compile(r"^\s*(?P<type>[A-Za-z_][\w.]*(?:Error|Exception|Exit)): (?P<text>.*)$")


def log_lines(log: str) -> list[str]:
    """kfp.local's log as plain lines (its colours taken out)."""
    return [_ANSI.sub("", line) for line in log.splitlines()]


def last_exception(lines: list[str]) -> str:
    """The last exception a step's output names (``KeyError: 'price'``), or ""."""
    raised = [m for line in lines if (m := _RAISED.match(line))]
    if not raised:
        return ""
    return f"{raised[-1]['type'].rsplit('.', 1)[-1]}: {raised[-1]['text'].strip()}"


@contextlib.contextmanager
def local_session(root: Path) -> Iterator[io.StringIO]:
    """kfp.local set up in ROOT for a learner's component or pipeline, its output kept.

    Caching is off and pip may not reach an index (a package missing here fails at once,
    not after pip's retries); the caller's own kfp.local session and environment come
    back after. Yields the buffer kfp.local's output goes to.
    """
    from kfp import local
    from kfp.local import config

    before = config.LocalExecutionConfig.instance
    log = io.StringIO()
    no_index = {"PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    saved_env = {name: os.environ.get(name) for name in no_index}
    os.environ.update(no_index)
    try:
        local.init(
            runner=local.SubprocessRunner(use_venv=False),
            pipeline_root=str(root / "pipeline-root"),
            workspace_root=str(root / "workspace"),
            raise_on_error=False,
        )
        with (
            contextlib.redirect_stdout(log),
            contextlib.redirect_stderr(log),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            yield log
    finally:
        config.LocalExecutionConfig.instance = before
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
