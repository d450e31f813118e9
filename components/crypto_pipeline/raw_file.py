"""The raw CSV between ingest and the transform: its name, and the checks that it is text.

Ingest writes the source's copy as ``RAW_FILE_NAME``; the transform reads it. Both refuse
what is not UTF-8 CSV text with the same messages (``check_text``): an archive or a
compressed file (named by its first bytes, with the command that unpacks it), binary
bytes, or bytes that are not UTF-8, each with the byte offset. ``header_text_lines``
reads a file's first non-blank lines, where its header is, checking them the same way.
"""

from __future__ import annotations

import codecs
import re
import shlex
from collections.abc import Iterable
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from crypto_pipeline.errors import SourceError
from crypto_pipeline.files import is_remote, local_path
from crypto_pipeline.schema import COLUMNS, HEADER_LINES

RAW_FILE_NAME = "crypto-markets.csv"
_PACKED = (
    (re.compile(rb"PK(\x03\x04|\x05\x06)"), "a zip archive", "unzip {}"),
    (re.compile(rb"7z\xbc\xaf\x27\x1c"), "a 7-Zip archive", "7z x {}"),
    (re.compile(rb".{257}ustar", re.DOTALL), "a tar archive", "tar -xf {}"),
    (re.compile(rb"\x1f\x8b"), "gzip-compressed", "gunzip -c {} > crypto-markets.csv"),
    (re.compile(rb"BZh[1-9]1AY&SY"), "bzip2-compressed", "bunzip2 -c {} > crypto-markets.csv"),
    (re.compile(rb"\xfd7zXZ\x00"), "xz-compressed", "unxz -c {} > crypto-markets.csv"),
    (re.compile(rb"\x28\xb5\x2f\xfd"), "zstd-compressed", "unzstd -c {} > crypto-markets.csv"),
)
"""First bytes of archives and compressed files: what the file is, how to unpack it."""


def file_name(uri: str) -> str:
    """The file a URI names, as a command on this machine takes it.

    A local path as it is (``file://`` removed); of a remote URI, the last part of its path.
    """
    return PurePosixPath(urlsplit(uri).path).name if is_remote(uri) else local_path(uri)


def packed_error(uri: str, what: str, command: str) -> SourceError:
    """The error for an archive or a compressed file, with COMMAND that unpacks it."""
    unpack = command.format(shlex.quote(file_name(uri)))
    if "archive" in what:
        return SourceError(
            f"{uri} is {what}, not a CSV file",
            f"unpack it first ({unpack}) and pass the crypto-markets.csv inside",
        )
    return SourceError(
        f"{uri} is {what}, not a CSV text file",
        f"unpack it first ({unpack}) and pass the CSV; ingest also unpacks a file on the "
        "way when its name ends in .gz, .bz2 or .xz",
    )


def check_text(
    data: bytes, offset: int, uri: str, decoder: codecs.IncrementalDecoder | None = None
) -> str:
    """Decodes one chunk of a source file, refusing what is not UTF-8 CSV text.

    Ingest checks every chunk it copies; the transform checks its input's first bytes
    and then every byte range, with the same messages.

    Args:
        data: The chunk.
        offset: Where the chunk starts in the file. At 0, archives and compressed files
            are recognized by their first bytes.
        uri: The file, as errors name it.
        decoder: An incremental UTF-8 decoder, for chunks that may end inside a
            character; without one, the chunk must end at a line end.

    Returns:
        The chunk's text.

    Raises:
        SourceError: An archive, a compressed file, binary bytes or bytes that are not
            UTF-8, with the byte offset.
    """
    if offset == 0:
        for signature, what, command in _PACKED:
            if signature.match(data):
                raise packed_error(uri, what, command)
    nul = data.find(b"\x00")
    if nul >= 0:
        raise SourceError(
            f"{uri} is not a CSV text file (it holds binary bytes near byte {offset + nul:,})",
            "pass the crypto-markets.csv file itself (a CSV text file)",
        )
    try:
        return decoder.decode(data) if decoder else data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"{uri} is not UTF-8 text (bad byte near byte {offset + exc.start:,})",
            "save the file as UTF-8 CSV (spreadsheets: 'CSV UTF-8')",
        ) from exc


def no_data_rows(uri: str) -> SourceError:
    """The error for a file that has a header and nothing under it."""
    return SourceError(
        f"{uri} has a header but no data rows",
        "pass a file with at least one data row under the header " + ",".join(COLUMNS),
    )


def header_text_lines(chunks: Iterable[bytes], uri: str) -> list[str]:
    """The first non-blank lines of a file read in chunks: at most ``HEADER_LINES``.

    Reading stops once they are found; the chunks read are checked to be UTF-8 text.

    Raises:
        SourceError: The bytes read are binary, compressed, an archive or not UTF-8.
    """
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    first: list[str] = []
    pending, offset = "", 0
    for chunk in chunks:
        *lines, pending = (pending + check_text(chunk, offset, uri, decoder)).split("\n")
        offset += len(chunk)
        first += [line for line in lines if line.strip()]
        if len(first) >= HEADER_LINES:
            return first[:HEADER_LINES]
    if pending.strip():
        first.append(pending)
    return first[:HEADER_LINES]
