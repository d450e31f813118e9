"""A Dockerfile's text read as Docker reads it: instructions, their words, flags and forms.

The pieces notebook 02's check (``exercises.docker``) reads a learner's Dockerfile with:
its instructions (comments dropped, continued lines joined), an instruction's words (the
JSON exec form or plain words), ``--flag=value`` flags, a shell command line's simple
commands and their options (as getopt reads them), and what ``chmod`` leaves executable.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: its keyword (upper case), its arguments, its first line."""

    keyword: str
    arguments: str
    line: int


def instructions(dockerfile: str) -> list[Instruction]:
    """The instructions of a Dockerfile: comments dropped, continued lines joined."""
    found: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, line in enumerate(dockerfile.splitlines(), 1):
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        keyword, _, arguments = " ".join(p for p in pending if p).partition(" ")
        found.append(Instruction(keyword.upper(), arguments.strip(), start))
        pending = []
    if pending:
        keyword, _, arguments = " ".join(p for p in pending if p).partition(" ")
        found.append(Instruction(keyword.upper(), arguments.strip(), start))
    return found


def instruction_words(arguments: str) -> list[str]:
    """An instruction's arguments: the JSON (exec) form's list, else the words."""
    if arguments.startswith("["):
        try:
            words = json.loads(arguments)
        except json.JSONDecodeError:
            return arguments.split()
        if isinstance(words, list):
            return [str(w) for w in words]
    return arguments.split()


def from_image(arguments: str) -> str:
    """The image a FROM names: ``FROM --platform=… IMAGE AS stage`` gives IMAGE."""
    words = [w for w in arguments.split() if not w.startswith("--")]
    return words[0] if words else ""


def pinned(image: str) -> bool:
    """Whether an image name holds a tag other than ``latest``, or a digest."""
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest")


def env_values(found: list[Instruction]) -> dict[str, str]:
    """The variables the ENV instructions set (``ENV A=b C=d`` and the old ``ENV A b``)."""
    values: dict[str, str] = {}
    for instruction in found:
        if instruction.keyword != "ENV":
            continue
        try:
            words = shlex.split(instruction.arguments)
        except ValueError:
            continue  # an unclosed quote: hadolint names it
        if words and "=" not in words[0]:
            values[words[0]] = " ".join(words[1:])
            continue
        for word in words:
            name, _, value = word.partition("=")
            values[name] = value
    return values


def split_flags(arguments: str) -> tuple[dict[str, str], str]:
    """An instruction's ``--name=value`` flags, and the rest of its arguments."""
    flags: dict[str, str] = {}
    rest = arguments.strip()
    while rest.startswith("--"):
        word, _, rest = rest.partition(" ")
        name, _, value = word[2:].partition("=")
        flags[name.lower()] = value
        rest = rest.strip()
    return flags, rest


def executable_after(mode: str, before: bool) -> bool:
    """Whether a file is executable after ``chmod MODE`` (any x bit counts)."""
    if re.fullmatch(r"[0-7]{3,4}", mode):
        return bool(int(mode, 8) & 0o111)
    for clause in mode.split(","):
        match = re.fullmatch(r"([ugoa]*)([-+=])([rwxXst]*)", clause)
        if match is None:
            continue
        who, op, perms = match.groups()
        if op == "+" and "x" in perms:
            before = True
        elif op == "-" and "x" in perms and who in ("", "a", "ugo"):
            before = False
        elif op == "=":
            before = "x" in perms or (who not in ("", "a", "ugo") and before)
    return before


def getopt(words: list[str], takes_value: str) -> tuple[dict[str, str], list[str]]:
    """A command's options and its other words, as getopt reads them."""
    options: dict[str, str] = {}
    plain: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        if word == "--":
            plain += words[index + 1 :]
            break
        if word.startswith("--"):
            name, _, value = word[2:].partition("=")
            options[name] = value
        elif word.startswith("-") and len(word) > 1:
            for at, letter in enumerate(word[1:], 2):
                if letter in takes_value:
                    value = word[at:]
                    if not value and index + 1 < len(words):
                        index += 1
                        value = words[index]
                    options[letter] = value
                    break
                options[letter] = ""
        else:
            plain.append(word)
        index += 1
    return options, plain


_OPERATORS = frozenset({"&&", "||", ";", "|", "&", ";;", "\n"})


def shell_commands(text: str) -> list[list[str]]:
    """A shell command line as its simple commands' words (``a && b; c`` gives 3)."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    try:
        for token in lexer:
            if token in _OPERATORS:
                commands.append([])
            else:
                commands[-1].append(token)
    except ValueError:
        return []
    return [c for c in commands if c]


def command_form(arguments: str) -> tuple[bool, Any]:
    """A CMD's or ENTRYPOINT's form: (True, its words) in JSON, else (False, its text)."""
    if arguments.startswith("["):
        try:
            words = json.loads(arguments)
        except json.JSONDecodeError:
            words = None
        if isinstance(words, list) and all(isinstance(w, str) for w in words):
            return True, words
    return False, arguments  # Docker runs what is not a JSON list of strings with /bin/sh -c
