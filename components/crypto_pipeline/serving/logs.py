"""The server's log: one line per refusal, and floods of the same event kept to a few lines.

Each refused request is one warning line (method, path, client, status and message),
without a traceback or the body; the path is percent-encoded and every other character
that is not printable escaped, so no client can start a line or write a terminal escape.
Past ``REFUSALS_LOGGED`` refusals in ``LOG_INTERVAL_S``, they are one line per kind of
refusal and interval. A repeated connection event (the limit, a timeout, a failed accept)
is one line per ``LOG_INTERVAL_S``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import urllib.parse

from crypto_pipeline.serving.request_rules import SHOWN_CHARS, shorten

REFUSALS_LOGGED = 1000
"""Refused requests logged one by one in each ``LOG_INTERVAL_S``; past that, a flood of
them is one line per kind of refusal and interval, with its count."""
LOG_INTERVAL_S = 10.0
"""A repeated connection event (the limit reached, a timeout, a failed accept) is logged
once, then as one line per this many seconds with its count."""

log = logging.getLogger("crypto_pipeline.serving")


def logged_path(path: str) -> str:
    """A request's path as the log shows it: percent-encoded, like uvicorn's access log.

    ``%0A`` stays ``%0A`` and ``%1B`` stays ``%1B``: a path cannot start a line or write
    a terminal escape in the log.
    """
    return urllib.parse.quote(shorten(path), safe="/:@!$&'()*+,;=-._~…")


def printable(text: str) -> str:
    r"""``text`` with each character that is not printable written as its escape.

    ``\n``, ``\x1b`` and ``\u202e`` stay as those letters: a client's text stays on its
    line in the log and writes no terminal escape.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class _Repeated:
    """Logs an event at once, then its repeats as one line per ``LOG_INTERVAL_S``.

    A flood of the same event (a connection over the limit, a timeout, a failed accept)
    is then a few lines a minute, not a line per event. Call it from the event loop.
    """

    def __init__(self, interval_s: float = LOG_INTERVAL_S):
        self.interval_s = interval_s
        self._repeats: dict[str, int] = {}  # kind -> repeats since its last line

    def __call__(self, kind: str, line: str) -> None:
        if kind in self._repeats:
            self._repeats[kind] += 1
            return
        log.warning("%s", printable(line))
        self._repeats[kind] = 0
        asyncio.get_running_loop().call_later(self.interval_s, self._flush, kind, line)

    def _flush(self, kind: str, line: str) -> None:
        repeats = self._repeats.pop(kind, 0)
        if repeats:
            log.warning("%s (%d more times in %g s)", printable(line), repeats, self.interval_s)
            self._repeats[kind] = 0
            asyncio.get_running_loop().call_later(self.interval_s, self._flush, kind, line)


_repeated = _Repeated()


class _Budget:
    """``per_interval`` uses every ``interval_s``: ``spend()`` says whether one is left."""

    def __init__(self, per_interval: int, interval_s: float = LOG_INTERVAL_S):
        self.per_interval = per_interval
        self.interval_s = interval_s
        self._start = -math.inf
        self._spent = 0

    def spend(self) -> bool:
        now = time.monotonic()
        if now - self._start >= self.interval_s:
            self._start, self._spent = now, 0
        self._spent += 1
        return self._spent <= self.per_interval


_refusals_logged = _Budget(REFUSALS_LOGGED)


def loop_exception(loop, context) -> None:
    """The event loop's error handler: one line per kind of error and interval, no traceback.

    Accepting a connection without a free file fails once per queued connection, each
    time the loop looks: logged one by one, that is megabytes a second.
    """
    exc = context.get("exception")
    message = context.get("message", "event loop error")
    detail = f": {type(exc).__name__}: {shorten(str(exc), 4 * SHOWN_CHARS)}" if exc else ""
    _repeated(f"loop {message} {type(exc).__name__}", f"{message}{detail}")


_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")


def _log_refusal(scope, status: int, message: str) -> None:
    """One line per refusal, up to ``REFUSALS_LOGGED`` an interval; then one per kind."""
    client = scope.get("client")
    method, path = scope.get("method", "?"), logged_path(scope.get("path", "?"))
    shown = shorten(message, 4 * SHOWN_CHARS)
    if _refusals_logged.spend():
        where = f"{client[0]}:{client[1]}" if client else "?"
        log.warning("refused %s %s from %s: %d %s", method, path, where, status, printable(shown))
    else:  # one line per kind, not per path or message: a flood varies them at will
        known = method if method in _METHODS else "other"
        route = "predictions" if path.endswith(":predict") else "other paths"
        kind = f"refused {known} requests to {route}: {status}"
        budget = _refusals_logged
        _repeated(
            kind,
            f"{kind} (past {budget.per_interval:,} refusals logged one by one in "
            f"{budget.interval_s:g} s; the first: {path})",
        )


class _OneLineFormatter(logging.Formatter):
    """Every record on one line: what is not printable is written as its escape."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))


def log_to_stderr() -> None:
    """Shows the refusal lines, whatever the root logger's level."""
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(_OneLineFormatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
