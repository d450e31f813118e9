"""What a notebook checks and shows with no engine or cluster: the same checks as the tests.

Dockerfiles are linted (hadolint) and manifests validated against the Kubernetes API's
schema, offline; a Dockerfile or manifest is shown as a learner reads it, without the
security scanner's notes. The test suite applies these same checks to the whole tree.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from crypto_pipeline.errors import ConfigError
from crypto_workshop.commands import CommandError
from crypto_workshop.machine import project_root, tool_path


def manifest_objects(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The objects a Kubernetes manifest file declares: kind, apiVersion, name, namespace."""
    import yaml

    return [
        {
            "kind": doc["kind"],
            "apiVersion": doc["apiVersion"],
            "name": doc["metadata"]["name"],
            "namespace": doc["metadata"].get("namespace", ""),
        }
        for doc in yaml.safe_load_all(Path(path).read_text())
        if doc
    ]


_SCANNER_COMMENT = re.compile(r"^\s*#.*checkov", re.IGNORECASE)
_SCANNER_KEY = re.compile(r"^(\s*)checkov\.io/skip\d*:")
_EMPTY_KEY = re.compile(r"^(\s*)annotations:\s*$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def without_scanner_notes(text: str) -> str:
    """A Dockerfile's or manifest's text as a learner reads it: no security-scanner notes.

    The repository keeps checkov's suppressions beside what they suppress, each with its
    reason (``# checkov:skip=…`` lines, ``checkov.io/skip…`` annotations); they are for
    the scanner, not the lesson. Left out here: those lines, a YAML key's folded text
    under them, comments naming the scanner, and an ``annotations:`` key left empty.
    """
    kept: list[str] = []
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if _SCANNER_COMMENT.match(line):
            continue
        if match := _SCANNER_KEY.match(line):
            while i < len(lines) and (
                not lines[i].strip() or _indent(lines[i]) > len(match.group(1))
            ):
                i += 1
            continue
        kept.append(line)
    return "".join(
        line
        for n, line in enumerate(kept)
        if not (
            (match := _EMPTY_KEY.match(line))
            and (n + 1 == len(kept) or _indent(kept[n + 1]) <= len(match.group(1)))
        )
    )


_SKIP_COMMENT = re.compile(r"^\s*#\s*checkov:skip", re.IGNORECASE)


def scanner_notes_left_out(text: str) -> str:
    """What ``without_scanner_notes`` leaves out of ``text``, in one comment line ('' if none).

    It counts the suppressions (``# checkov:skip=…`` lines, ``checkov.io/skip…`` keys), so
    that a learner knows the file has more than they read, and what for.
    """
    lines = text.splitlines()
    comments = sum(1 for line in lines if _SKIP_COMMENT.match(line))
    keys = sum(1 for line in lines if _SCANNER_KEY.match(line))
    parts = [
        f"{n} {what}{'s' if n > 1 else ''}"
        for n, what in ((comments, "'# checkov:skip' line"), (keys, "'checkov.io/skip' annotation"))
        if n
    ]
    if not parts:
        return ""
    their = "its reason" if comments + keys == 1 else "their reasons"
    return (
        f"# (left out here: {' and '.join(parts)}, kept in the file with {their} "
        "for the security scanner checkov)"
    )


def show_file(path: str | os.PathLike[str]) -> None:
    """Prints a Dockerfile or manifest of the repository as a learner reads it.

    Scanner suppressions are left out (``without_scanner_notes``), and a line under the
    file's name says how many: the file keeps them.
    """
    path = Path(path)
    text = path.read_text()
    print(f"# {path.relative_to(project_root()) if path.is_absolute() else path}")
    if note := scanner_notes_left_out(text):
        print(note)
    print(without_scanner_notes(text), end="")


def lint_dockerfiles(*paths: str | os.PathLike[str]) -> list[str]:
    """Lints Dockerfiles with hadolint: its findings, one line each (empty: clean)."""
    hadolint = tool_path("hadolint")
    if hadolint is None:
        raise ConfigError("hadolint is not installed", "run `make setup` (it installs hadolint)")
    result = subprocess.run(
        [hadolint, "--format", "json", *map(os.fspath, paths)], capture_output=True, text=True
    )
    if result.returncode not in (0, 1) or not result.stdout.strip().startswith("["):
        raise CommandError(f"hadolint failed: {result.stderr.strip()}", "check the paths given")
    return [
        f"{f['file']}:{f['line']} {f['code']} {f['level']}: {f['message']}"
        for f in json.loads(result.stdout)
    ]


def validate_manifests(*paths: str | os.PathLike[str]) -> list[str]:
    """Checks Kubernetes manifests against the API's schema, offline and strictly.

    Returns:
        One line per resource, e.g. ``deployment/nginx-server: valid``.

    Raises:
        CommandError: A resource does not match the schema (each problem is quoted).
    """
    validate = tool_path("kubernetes-validate")
    if validate is None:
        raise ConfigError(
            "kubernetes-validate is not installed", "run `make setup` (it installs it)"
        )
    result = subprocess.run(
        [validate, "--strict", *map(os.fspath, paths)], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise CommandError(
            f"the manifests do not match the Kubernetes schema:\n{result.stdout}{result.stderr}",
            "fix the fields named above",
        )
    lines = []
    for line in result.stdout.splitlines():
        # INFO <file> passed for resource <kind>/<name> against version 1.37
        words = line.split()
        if "passed" in words:
            lines.append(f"{words[words.index('resource') + 1]}: valid")
    return lines
