"""Credentials in source URLs: masked wherever a URL is shown, and handed on unmasked.

A source URL may carry credentials: ``user:pass@``, or a token in its query, fragment or
path parameters. ``mask_credentials`` masks them in any text (messages, ``ingest.json``,
the run's parameters). A pipeline's parameters are no place for a secret, so ``run`` gives
its steps the URL masked (``source_parameter``) and the URL itself in the environment
variable ``SOURCE_ENV``, from which ingest reads it back (``with_credentials``).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator

from crypto_pipeline.errors import PipelineError, SourceError

_URL = re.compile(
    r"(?<=://)(?P<authority>[^/?#\s'\"<>]*)(?P<path>[^?#\s'\"<>]*)(?P<rest>[^\s'\"<>]*)"
)
"""What follows a URL's ``scheme://``: its authority, its path, then its query and fragment."""
_USERINFO = re.compile(r"^.*@")  # to the last @: a password may hold one
# a value already masked stays as it is, with the text that follows the URL
_PATH_VALUE = re.compile(r"(;[^=/;]*=)(?!\*\*\*)[^/;]*")  # a matrix value ends at / or ;
_QUERY_VALUE = re.compile(r"([?&;#][^=?&;#]*=)(?!\*\*\*)[^&;#]*")  # it may hold / and ?


def mask_credentials(text: str) -> str:
    """TEXT with the credentials any URL in it may carry masked; the rest of TEXT as it is.

    In each ``scheme://…`` of TEXT the ``user:pass@`` becomes ``***@``, and the value of
    every parameter becomes ``***``: in the query (``?a=``, ``&b=``), in the fragment
    and in the path (``;jsessionid=``). Any of them may be a secret, whatever its name.
    """
    return _URL.sub(_masked_url, text)


def _masked_url(found: re.Match[str]) -> str:
    """One URL, after its ``scheme://``, with its user and parameter values masked."""
    authority = _USERINFO.sub("***@", found["authority"])
    path = _PATH_VALUE.sub(r"\1***", found["path"])
    return authority + path + _QUERY_VALUE.sub(r"\1***", found["rest"])


@contextlib.contextmanager
def credentials_masked(uri: str) -> Iterator[None]:
    """Re-raises a PipelineError with the credentials in its problem and fix masked.

    URI itself is masked first (so the text around it stays as it is), then any other URL.
    """

    def mask(text: str) -> str:
        return mask_credentials(text.replace(uri, mask_credentials(uri)))

    try:
        yield
    except PipelineError as exc:
        problem, fix = mask(exc.problem), mask(exc.fix)
        if (problem, fix) == (exc.problem, exc.fix):
            raise
        raise type(exc)(problem, fix) from None  # the chain would carry the credentials


SOURCE_ENV = "CRYPTO_PIPELINE_SOURCE_URI"
"""The environment variable that holds a source URL with its credentials.

A pipeline's parameters are no place for a secret: kfp.local writes them into its log and
onto the steps' command lines. ``run`` passes the source with its credentials masked, and
the URL itself in this variable of the steps' environment (``source_parameter``); ingest
reads it back (``with_credentials``).
"""
_MASKED = re.compile(r"://\*\*\*@|[?&;#][^=?&;#/\s]*=\*\*\*(?=[/?&;#\s]|$)")
"""A URL as ``mask_credentials`` leaves it: a masked user or parameter value."""


def source_parameter(source_uri: str) -> tuple[str, dict[str, str]]:
    """The source as a pipeline parameter may show it, and the environment its step needs.

    Returns:
        ``(source_uri, {})`` for a source without credentials; otherwise the source with
        its credentials masked (``mask_credentials``) and ``{SOURCE_ENV: <the URL>}``.

    Raises:
        SourceError: SOURCE_URI is given masked, without the URL (``with_credentials``).
    """
    full = with_credentials(source_uri)
    shown = mask_credentials(full)
    return (shown, {}) if shown == full else (shown, {SOURCE_ENV: full})


def with_credentials(source_uri: str) -> str:
    """The URL that SOURCE_URI stands for, its credentials restored from the environment.

    That is SOURCE_URI itself, or ``$CRYPTO_PIPELINE_SOURCE_URI`` when SOURCE_URI is that
    URL with its credentials masked (``source_parameter``).

    Raises:
        SourceError: SOURCE_URI has masked credentials (``***``), and the variable does not
            hold the URL they were masked in.
    """
    if not _MASKED.search(source_uri):
        return source_uri
    full = os.environ.get(SOURCE_ENV, "")
    if full and mask_credentials(full) == source_uri:
        return full
    raise SourceError(
        f"{mask_credentials(source_uri)} has its credentials masked (***), and the "
        f"environment variable {SOURCE_ENV} does not hold the URL with them",
        f"set {SOURCE_ENV} to the URL with its credentials and pass it masked like this "
        "(crypto-pipeline run does so for its steps), or pass the URL itself",
    )
