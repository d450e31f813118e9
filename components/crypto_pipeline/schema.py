"""The ``crypto-markets.csv`` schema: its columns, and how a file's header is read.

The original tutorial ingested ``crypto-markets.csv`` (daily market data for every coin
listed on CoinMarketCap). Besides it (many coins, one ``slug`` column naming each row's
coin), the exports people download for a single asset are read by the same rules: a
Yahoo Finance export (``Date,Open,High,Low,Close,Adj Close,Volume``) and a CoinMarketCap
or Kaggle per-coin export (``Date,Open,High,Low,Close,Volume,Market Cap``; or today's
download, ``timeOpen;timeClose;…;open;high;low;close;volume;marketCap;…``, separated by
semicolons) and a yfinance download (its header on three lines: ``Price``, ``Ticker``,
``Date``). Header names match in any case and with the usual aliases (``COLUMN_ALIASES``);
the fields may be separated by commas, semicolons, tabs or vertical bars
(``DELIMITERS``, found from the header); a file without a coin column holds one asset,
which the caller names (``--coin``).

This module reads the header (``header_from_lines``) into a ``Header``: where each column
sits, the file's format and its delimiter. The rules for one row are in ``rows``, those
for its date in ``dates``.
"""

from __future__ import annotations

import csv
import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from crypto_pipeline.errors import SchemaError

COLUMNS: tuple[str, ...] = (
    "slug",
    "symbol",
    "name",
    "date",
    "ranknow",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "market",
    "close_ratio",
    "spread",
)
"""The columns of the original ``crypto-markets.csv``, in its order."""
REQUIRED_COLUMNS: tuple[str, ...] = ("date", "open", "high", "low", "close")
"""Columns without which a file cannot be used; the others may be absent. Without a
``slug`` column, the file holds a single asset (see ``Header.single_asset``)."""
UNUSED = ""
"""Where ``COLUMN_ALIASES`` maps a column that is recognised but not used."""
COLUMN_ALIASES: Mapping[str, str] = {
    "marketcap": "market",
    "vol": "volume",
    "adjclose": UNUSED,  # Yahoo's close adjusted for splits; Close is the day's own close
    # CoinMarketCap's download today: the day is the one its UTC timeOpen starts; the
    # other times (timeClose, the times of the high and low, timestamp) say nothing more.
    "timeopen": "date",
    "timeclose": UNUSED,
    "timehigh": UNUSED,
    "timelow": UNUSED,
    "timestamp": UNUSED,
}
"""Other names of the schema's columns, by ``column_key``; the schema's own names match too."""
FORMATS: Mapping[str, str] = {
    "crypto-markets": "crypto-markets.csv (many coins, a slug column names each row's coin)",
    "yahoo-finance": "a Yahoo Finance export (one asset; Adj Close beside Close)",
    "coinmarketcap": "a CoinMarketCap or Kaggle per-coin export (one asset; a Market Cap column)",
    "yfinance": "a yfinance download (one asset; three header lines: Price, Ticker, Date)",
    "single-asset": "a single-asset OHLC file (one asset, no coin column)",
}
"""The formats a header is recognised as, with what each means; ``Header.format`` is a key."""
HEADER_LINES = 3
"""The most lines a header takes: a yfinance download's three."""


@dataclass(frozen=True)
class Header:
    """Where each known column sits in a file's rows, and what kind of file it is.

    Attributes:
        names: The header's column names, in file order.
        index: Schema column name to position, for the known columns present.
        extra: Names in the header that the schema does not know (kept, ignored).
        unused: Names the schema recognises but does not use, e.g. Yahoo's ``Adj Close``.
        format: What the header was recognised as: a key of ``FORMATS``.
        delimiter: What separates the fields of every row: a key of ``DELIMITERS``.
        lines: How many of the file's first non-blank lines the header takes: 1, or 3
            for a yfinance download (``Price``, ``Ticker`` and ``Date`` lines).
    """

    names: tuple[str, ...]
    index: Mapping[str, int]
    extra: tuple[str, ...]
    unused: tuple[str, ...] = ()
    format: str = "crypto-markets"
    delimiter: str = ","
    lines: int = 1

    @property
    def single_asset(self) -> bool:
        """True when no column names the coin: every row is of the one asset of the file."""
        return "slug" not in self.index

    def describe_format(self) -> str:
        """The recognised format in words, e.g. ``a Yahoo Finance export (one asset; …)``."""
        if self.delimiter == ",":
            return FORMATS[self.format]
        return f"{FORMATS[self.format]}, fields separated by {DELIMITERS[self.delimiter]}"

    def split(self, line: str) -> list[str]:
        """The fields of one data line (without its line break); a blank line has none.

        A record is one line: quoted fields may hold the delimiter, not line breaks.
        """
        if '"' in line:  # only quoted fields need the csv module
            return next(csv.reader([line], delimiter=self.delimiter), [])
        return line.split(self.delimiter) if line else []

    def column_map(self) -> dict[str, str]:
        """Each file column that is read, with the schema column it fills."""
        return {self.names[i]: column for column, i in self.index.items()}


def column_key(name: str) -> str:
    """How header names are compared: letters and digits only, lower case.

    ``Market Cap``, ``market_cap`` and ``MarketCap`` all give ``marketcap``; ``Close**``
    (CoinMarketCap's footnote marks) gives ``close``.
    """
    return re.sub(r"[^a-z0-9]", "", name.lower())


_KNOWN_KEYS: Mapping[str, str] = {**{column_key(c): c for c in COLUMNS}, **COLUMN_ALIASES}
DELIMITERS: Mapping[str, str] = {
    ",": "commas",
    ";": "semicolons",
    "\t": "tabs",
    "|": "vertical bars",
}
"""What may separate fields, in order of preference; the header's own row decides."""


def header_from_lines(lines: Sequence[str]) -> Header:
    """Checks a file's header: its first row, or the three header lines of a yfinance download.

    ``yf.download(...).to_csv(path)`` (yfinance 0.2.51 and later) writes the column names
    on a ``Price`` line, the ticker of each column on a ``Ticker`` line and an empty
    ``Date`` line before the rows. Such a file is read as one asset with the names of the
    first line and ``Date`` for the first column; a download of several tickers is refused.

    Args:
        lines: The file's first non-blank lines, at most ``HEADER_LINES`` of them (fewer
            when the file has fewer), with or without their line breaks.

    Returns:
        The header (see ``header_from_line``), with the number of lines it takes.

    Raises:
        SchemaError: As ``parse_header``, or a yfinance download of several tickers.
    """
    if len(lines) < HEADER_LINES:
        return header_from_line(lines[0])
    delimiter = _delimiter(lines[0].rstrip("\r\n"))
    rows = [next(csv.reader([line.rstrip("\r\n")], delimiter=delimiter), []) for line in lines]
    names, tickers, dates = rows[:HEADER_LINES]
    if (
        [column_key(row[0]) if row else "" for row in (names, tickers, dates)]
        != ["price", "ticker", "date"]
        or len(names) != len(tickers)
        or any(cell.strip() for cell in dates[1:])
    ):
        return header_from_line(lines[0])
    held = sorted({t.strip() for t in tickers[1:] if t.strip()})
    if len(held) > 1:
        raise SchemaError(
            f"a yfinance download of {len(held)} tickers ({', '.join(map(quote, held[:5]))}): "
            "its rows hold every ticker's prices side by side",
            "download one ticker per file: yf.download('BTC-USD').to_csv(path)",
        )
    header = parse_header([dates[0], *names[1:]], delimiter)
    return dataclasses.replace(header, format="yfinance", lines=HEADER_LINES)


def _delimiter(line: str) -> str:
    """The delimiter that splits a header row into the most fields (commas on a tie)."""
    return max(DELIMITERS, key=lambda d: len(next(csv.reader([line], delimiter=d), [])))


def header_from_line(line: str) -> Header:
    """Checks a file's first row, finding what separates its fields.

    The delimiter is the one of ``DELIMITERS`` that splits the row into the most fields
    (commas when several split it equally): a header names its columns, so its row holds
    more of its delimiter than of any other. Every data row is then split the same way.

    Args:
        line: The file's first non-blank line, with or without its line break.

    Returns:
        The header (see ``parse_header``), with its delimiter.

    Raises:
        SchemaError: As ``parse_header``.
    """
    line = line.rstrip("\r\n")
    delimiter = _delimiter(line)
    return parse_header(next(csv.reader([line], delimiter=delimiter), []), delimiter)


def _header_fix(cleaned: Sequence[str]) -> str:
    """The fix for a header without the required columns, from what the header holds."""
    if cleaned and column_key(cleaned[0]) == "price" and "date" not in map(column_key, cleaned):
        return (
            "this looks like the first line of a yfinance download, but the Ticker and Date "
            "lines that follow it are not there: write the file again with "
            "yf.download('BTC-USD').to_csv(path), or name its first column Date"
        )
    keys = {column_key(name) for name in cleaned}
    if "price" in keys and "close" not in keys:
        return (
            "the file has a Price column but no Close: if Price is the day's closing price "
            "(as in Investing.com exports), rename that column to Close"
        )
    return (
        "the first row must name the columns (in any case): "
        + ",".join(REQUIRED_COLUMNS)
        + ", and slug for a file of many coins; also known: "
        + ",".join(c for c in COLUMNS if c not in REQUIRED_COLUMNS and c != "slug")
        + ", Market Cap, Adj Close"
    )


QUOTE_CHARS = 32
"""The most characters of one cell or column name that an error or a reject quotes."""
QUOTE_NAMES = 20
"""The most column names an error lists."""


def quote(text: str, limit: int = QUOTE_CHARS) -> str:
    """A cell or a name as an error shows it: escaped, in quotes, at most ``limit`` characters.

    Control characters and other unprintable ones are escaped (``repr``), so that nothing
    quoted moves the cursor or forges a line; a longer text ends in ``…``.
    """
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "…"


def _describe_header(names: Sequence[str], known: bool, delimiter: str) -> str:
    """What a header without the required columns holds, in words, for its error.

    The names are quoted only when the row is a header of this kind of file: when some
    name is a known column. Any other first line (a file that is not market data, or one
    without a header row) could be anything, a password file's first line included: its
    text is never quoted, only how many fields it splits into and, when its words name
    columns, those words.
    """
    if known:
        shown = ", ".join(quote(n) for n in names[:QUOTE_NAMES])
        more = f" and {len(names) - QUOTE_NAMES} more" if len(names) > QUOTE_NAMES else ""
        return f"the header's columns are: {shown}{more}"
    words = re.split(r"[^\w%*.()-]+", " ".join(names))
    named = [w for w in dict.fromkeys(words) if column_key(w) in _KNOWN_KEYS]
    if len(names) == 1:
        *others, last = DELIMITERS.values()
        shape = f"the first line is one field: no {', '.join(others)} or {last} split it"
        unknown = "and it is not a known column name"
    else:
        shape = f"the first line has {len(names)} fields separated by {DELIMITERS[delimiter]}"
        unknown = "none of them a known column name"
    if named:
        listing = ", ".join(quote(w) for w in named[:QUOTE_NAMES])
        return f"{shape}; its words {listing} are column names, separated some other way"
    return f"{shape}, {unknown}; its text is not shown"


def _file_format(index: Mapping[str, int], unused_keys: set[str]) -> str:
    if "slug" in index:
        return "crypto-markets"
    if "adjclose" in unused_keys:
        return "yahoo-finance"
    if "market" in index:
        return "coinmarketcap"
    return "single-asset"


def parse_header(names: Sequence[str], delimiter: str = ",") -> Header:
    """Checks a header row and maps the known columns to their positions.

    Names match in any case, ignoring spaces, punctuation and footnote marks, and through
    ``COLUMN_ALIASES``. Extra columns are accepted and ignored; the order of columns does
    not matter. A header without ``slug`` is a single-asset file.

    Args:
        names: The cells of the file's first row.
        delimiter: What separated them (``header_from_line`` finds it).

    Returns:
        The header, with the position of every known column present and its format.

    Raises:
        SchemaError: A required column is missing, or two columns mean the same one.
    """
    cleaned = tuple(n.strip().lstrip("\ufeff").strip() for n in names)
    by_column: dict[str, list[str]] = {}
    index: dict[str, int] = {}
    unused: list[str] = []
    unused_keys: set[str] = set()
    extra: list[str] = []
    for i, name in enumerate(cleaned):
        key = column_key(name)
        column = _KNOWN_KEYS.get(key)
        if column is None:
            extra.append(name)
        elif column == UNUSED:
            unused.append(name)
            unused_keys.add(key)
        else:
            by_column.setdefault(column, []).append(name)
            index[column] = i
    repeated = {c: n for c, n in by_column.items() if len(n) > 1}
    if repeated:
        listing = "; ".join(f"{c} as {' and '.join(map(quote, n))}" for c, n in repeated.items())
        raise SchemaError(
            f"the header repeats column(s): {listing}",
            "give each column one name only: remove or rename the repeated ones",
        )
    missing = [c for c in REQUIRED_COLUMNS if c not in index]
    if missing:
        raise SchemaError(
            f"required column(s) missing: {', '.join(missing)} "
            f"({_describe_header(cleaned, bool(index or unused), delimiter)})",
            _header_fix(cleaned),
        )
    return Header(
        names=cleaned,
        index=index,
        extra=tuple(extra),
        unused=tuple(unused),
        format=_file_format(index, unused_keys),
        delimiter=delimiter,
    )
