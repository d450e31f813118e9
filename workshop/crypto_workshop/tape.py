"""Real outputs of a notebook's commands, recorded where the tool ran, for where it does not.

A Docker command that cannot run here shows what it printed where it did run (a ``Tape``,
recorded by ``make test-containers``), labelled before the output with the date, the engine
and "not this machine". ``comparable`` masks what differs between two runs of a command, so
that a recording can be checked against a new run. No output is made up.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

RECORD_TO = "POETS_RECORD_TO"
"""When this variable names a folder, a command that runs with a tape is recorded there.

``make test-containers`` sets it (with ``POETS_RECORDED_BY``, ``POETS_RECORD_TOOLS`` and
``POETS_RECORD_NOTE``, which the recording keeps) while notebook 02 runs against its Docker
engine."""

_VOLATILE = (  # what differs between two runs of the same command
    # the legacy builder's cache notes
    (
        re.compile(
            r"^ ---> (Using cache|Running in \S+)\n|^Removing intermediate container.*\n", re.M
        ),
        "",
    ),
    # BuildKit: a step's own output (timed), whether it ran or came from the cache, and timings
    (re.compile(r"^#\d+ \d+\.\d+ .*\n", re.M), ""),
    (re.compile(r"^(#\d+) (CACHED|DONE \d+\.\d+s)$", re.M), r"\1 <done>"),
    (re.compile(r" \d+\.\d+s done$", re.M), " done"),
    # a push's progress (how often a layer waited is timing) and whether the registry had it
    (re.compile(r"^\S+: (Preparing|Waiting)\n", re.M), ""),
    (re.compile(r": (Pushed|Layer already exists)$", re.M), ": <pushed>"),
    # a HEALTHCHECK's requests in nginx's log: as many as its interval allowed
    (re.compile(r'^.*"Wget[^\n]*\n?', re.M), ""),
    # curl's word on an attempt that --retry then repeated (`curl: (52) Empty reply from
    # server` while nginx starts): as many as the start took. One that failed for good
    # still differs, in its exit status.
    (re.compile(r"^curl: \(\d+\) [^\n]*\n?", re.M), ""),
    (re.compile(r"\b(sha256:)?[0-9a-f]{12,64}\b"), "<id>"),
    (
        re.compile(r"\d{4}[-/]\d{2}[-/]\d{2}([T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?)?"),
        "<date>",
    ),
    (re.compile(r"\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}"), "<date>"),
    (re.compile(r"\b\d{1,2}:\d{2}:\d{2}\b"), "<time>"),
    (re.compile(r"(About an? \w+|Less than a second|\d+ \w+)( ago)"), "<when>\\2"),
    (
        re.compile(r"\bUp (About an? \w+|Less than a second|\d+ \w+)( \(health: \w+\)| \(\w+\))?"),
        "Up <while>",
    ),
    (re.compile(r"\b\d+(\.\d+)?\s?[kMG]?B\b"), "<size>"),
    (re.compile(r"\b(\d{1,3}\.){3}\d{1,3}\b"), "<ip>"),
    (re.compile(r"\bcurl/[\d.]+"), "curl/<version>"),
    (re.compile(r"[ \t]+"), " "),
)


_BUILDKIT_STEP = re.compile(r"^#\d+ ", re.M)


def comparable(output: str) -> str:
    """A command's output with what changes from run to run (ids, times, sizes) masked.

    BuildKit's progress (``#1 [internal] load …``) numbers its steps in the order they
    start, and prints them in the order they finish, neither of which two runs share: its
    lines are compared without the numbers, as a sorted set.
    """
    for pattern, mask in _VOLATILE:
        output = pattern.sub(mask, output)
    if _BUILDKIT_STEP.match(output):  # the first step to finish, whichever it is
        lines = set(_BUILDKIT_STEP.sub("#N ", output).splitlines()) - {""}
        output = "\n".join(sorted(line for line in lines if not _superseded(line, lines)))
    return output.strip()


_ELAPSED = re.compile(r" \d+\.\d+s$")


def _superseded(line: str, lines: set[str]) -> bool:
    """Whether LINE is a status BuildKit printed while it ran, then again once done.

    As many as the step's time allowed: `writing image <id>`, then `writing image <id>
    done`; `transferring context: 0.0s`, then `transferring context: <size> done`.
    """
    if line.endswith(" done"):
        return False
    finished = re.compile(re.escape(_ELAPSED.sub("", line)) + r"( \S+)? done")
    return any(finished.fullmatch(other) for other in lines)


class Tape:
    """Real outputs of a notebook's commands, recorded where the tool ran, for where it does not.

    A ``Program`` (or ``sh``) that cannot run a command here prints the output that the
    same command printed where it ran, under a label that says when, with what, and that it
    was not this machine; nothing is invented. With ``RECORD_TO`` set, what runs is
    recorded. The file is JSON: ``recorded_by``, ``recorded_on``, ``tools`` (e.g. ``Docker
    Engine 20.10.24+dfsg1 (BuildKit)``), ``note`` (optional: what else differed there) and
    ``commands`` (each ``command``, ``output``, ``status``).
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.recording = (
            json.loads(self.path.read_text()) if self.path.is_file() else {"commands": []}
        )

    @property
    def label(self) -> str:
        """E.g. ``recorded on 2026-12-05, Docker Engine 28.0.1 (BuildKit), not this machine``."""
        r = self.recording
        return f"recorded on {r.get('recorded_on')}, {r.get('tools')}, not this machine"

    def find(self, shown: str) -> dict | None:
        """The recording of exactly this command, or None."""
        return next((c for c in self.recording["commands"] if c["command"] == shown), None)

    def replay(self, shown: str, why_not: str = "") -> dict | None:
        """Prints the recorded output of ``shown`` under its label; None when it was not recorded.

        The label comes first, so nobody reads the output as this machine's: ``[recorded
        on DATE, TOOLS, not this machine: WHY NOT HERE]``, then ``$ command``, then what it
        printed there (nothing, when it printed nothing).
        """
        recorded = self.find(shown)
        if recorded is None:
            return None
        print(f"[{self.label}{f': {why_not}' if why_not else ''}]")
        print(f"$ {shown}")
        if recorded["output"]:
            print(recorded["output"])
        return recorded

    def record(self, shown: str, output: str, status: int) -> None:
        """Adds what a command printed to the recording in ``$POETS_RECORD_TO``."""
        target = Path(os.environ[RECORD_TO]) / self.path.name
        recording = (
            json.loads(target.read_text())
            if target.is_file()
            else {
                "recorded_by": os.environ.get("POETS_RECORDED_BY", "a notebook run"),
                "recorded_on": time.strftime("%Y-%m-%d"),
                "tools": os.environ.get("POETS_RECORD_TOOLS", ""),
                **({"note": note} if (note := os.environ.get("POETS_RECORD_NOTE")) else {}),
                "commands": [],
            }
        )
        commands = [c for c in recording["commands"] if c["command"] != shown]
        recording["commands"] = [*commands, {"command": shown, "output": output, "status": status}]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(recording, indent=1, ensure_ascii=False) + "\n")
