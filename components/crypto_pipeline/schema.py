"""The ``crypto-markets.csv`` schema and the rules for parsing and validating one row.

The original tutorial ingested ``crypto-markets.csv`` (daily market data for every coin
listed on CoinMarketCap). Real copies of that file are messy: spreadsheets rewrote the
dates day-first (``28/4/2013``) and some numbers in scientific notation (``1.23E+09``).
This module is the one place that knows how to read such a row; the Beam transform and
every later step call it.

Validation happens in two steps so that the transform can work in parallel:
``classify_date`` is a cheap look at one row's date that adds to the evidence for the
file's date style, ``resolve_date_style`` turns the evidence of the whole file into one
style (or refuses), and ``validate_row`` parses a row under that style.

Besides ``crypto-markets.csv`` (many coins, one ``slug`` column naming each row's coin),
the exports people download for a single asset are read by the same rules: a Yahoo
Finance export (``Date,Open,High,Low,Close,Adj Close,Volume``) and a CoinMarketCap or
Kaggle per-coin export (``Date,Open,High,Low,Close,Volume,Market Cap``, dates like
``Feb 20, 2018``, numbers like ``9,926,540,000``, ``-`` for missing; or today's download,
``timeOpen;timeClose;…;open;high;low;close;volume;marketCap;…``, separated by semicolons)
and a yfinance download (its header on three lines: ``Price``, ``Ticker``, ``Date``).
Header names match in any case and with the usual aliases (``COLUMN_ALIASES``); the
fields may be separated by commas, semicolons, tabs or vertical bars (``DELIMITERS``,
found from the header); a file without a coin column holds one asset, which the caller
names (``--coin``).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from crypto_pipeline.errors import DateFormatError, SchemaError

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

PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
OPTIONAL_NUMBER_COLUMNS: tuple[str, ...] = ("ranknow", "volume", "market", "close_ratio", "spread")
NON_NEGATIVE_COLUMNS: frozenset[str] = frozenset({"volume", "market", "spread"})

MISSING_VALUES: frozenset[str] = frozenset(
    {"", "NA", "N/A", "NaN", "nan", "null", "NULL", "-", "--", "\u2014"}
)
"""Cell texts that mean "no value": pandas' set, and the dashes of CoinMarketCap exports."""

DateFormat = Literal["auto", "iso", "dayfirst", "monthfirst"]
DATE_FORMATS: tuple[str, ...] = get_args(DateFormat)
DateStyle = Literal["iso", "dayfirst", "monthfirst"]

# Reasons a row is rejected; each becomes a count in stats.json and a rejects row.
WRONG_FIELD_COUNT = "wrong_field_count"
BAD_DATE = "bad_date"
AMBIGUOUS_DATE = "ambiguous_date"
MISSING_PRICE = "missing_price"
NON_NUMERIC = "non_numeric"
NON_FINITE = "non_finite"
NON_POSITIVE_PRICE = "non_positive_price"
PRICE_OUT_OF_RANGE = "price_out_of_range"
NEGATIVE_VALUE = "negative_value"
HIGH_BELOW_LOW = "high_below_low"
OPEN_OUTSIDE_RANGE = "open_outside_low_high"
CLOSE_OUTSIDE_RANGE = "close_outside_low_high"
DUPLICATE_DATE = "duplicate_date"
DATE_OUT_OF_RANGE = "date_out_of_range"

FIRST_DAY = dt.date(2009, 1, 3)
"""The earliest date a row may carry: the day of Bitcoin's first block. No crypto market
is older, so an earlier date (``0001-01-01``, a spreadsheet's ``1900-01-00``) is a mistake."""
FUTURE_DAYS = 2
"""How many days past today (UTC) a row's date may lie: a day that has begun in a time zone
ahead of UTC, and a day more. A later date (``2090-06-01``, ``9999-12-31``) is a mistake."""

BYTE_ORDER_MARK = "\ufeff"
"""What some editors put before a file's first line; joined files carry it on later lines."""

# A time of day after the date (yfinance writes "2024-01-01 00:00:00+00:00") is allowed:
# the rows are days, and the date is the day's.
_ISO = re.compile(
    r"^(\d{4})-(\d{1,2})-(\d{1,2})"
    r"(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?: ?(?:Z|UTC|[+-]\d{2}:?\d{2}))?)?$"
)
_SLASHED = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")
_MONTH_DAY_YEAR = re.compile(r"^([A-Za-z]{3,9})\.? (\d{1,2}),? (\d{4})$")  # Feb 20, 2018
_DAY_MONTH_YEAR = re.compile(r"^(\d{1,2}) ([A-Za-z]{3,9})\.?,? (\d{4})$")  # 20 Feb 2018
_MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_GROUPED = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?$")  # 9,926,540,000.5
_DECIMAL_COMMA = re.compile(r"^[+-]?[\d.]*\d,\d+$")  # 100,5 or 1.234,5 (a European spreadsheet)


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


def remove_line_marks(text: str) -> tuple[str, int]:
    """Removes the byte-order marks at the starts of a text's lines (data lines: no header).

    A file made by joining files (``cat a.csv b.csv``) carries the second file's mark at
    the start of a later line. The mark is no character of the data: left in place, it
    would make ``\ufeffbitcoin`` a coin of its own, or a date that no parser reads.

    Args:
        text: Whole lines of a file, the first starting at a line's start.

    Returns:
        The text without them, and how many were removed.
    """
    mark = BYTE_ORDER_MARK
    removed = text.count("\n" + mark) + text.startswith(mark)
    if removed:
        text = text.removeprefix(mark).replace("\n" + mark, "\n")
    return text, removed


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


HEADER_LINES = 3
"""The most lines a header takes: a yfinance download's three."""


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


def classify_date(text: str) -> str:
    """Says what one date cell tells about the file's date style.

    Args:
        text: A date cell as found in the file.

    Returns:
        ``"iso"`` (``yyyy-mm-dd``), ``"dayfirst"`` (``d/m/yyyy`` with a day above 12),
        ``"monthfirst"`` (``m/d/yyyy`` with a day above 12), ``"slashed"`` (both parts
        12 or less: either style fits) or ``"unknown"`` (neither shape).
    """
    text = text.strip()
    m = _SLASHED.match(text)
    if m:
        first, second = int(m.group(1)), int(m.group(2))
        if first > 12 >= second:
            return "dayfirst"
        if second > 12 >= first:
            return "monthfirst"
        return "slashed"
    if _ISO.match(text):
        return "iso"
    return "unknown"


def resolve_date_style(requested: DateFormat, evidence: Mapping[str, int]) -> DateStyle:
    """Chooses how to read slashed dates, from the setting and the whole file's evidence.

    ISO dates are unambiguous and always read as ISO. Slashed dates are read in the
    requested style; with ``auto`` the style must follow from the file itself: at least
    one date whose first part is above 12 (day-first) and none whose second part is
    (month-first), or the other way round. Anything else is refused rather than guessed.

    Args:
        requested: ``auto``, ``iso``, ``dayfirst`` or ``monthfirst``.
        evidence: Counts of ``classify_date`` results over every row of the file.

    Returns:
        The style in which to read slashed dates.

    Raises:
        DateFormatError: ``auto`` cannot decide: the slashed dates fit both styles, or
            the file mixes day-first and month-first dates.
    """
    if requested not in DATE_FORMATS:
        raise DateFormatError(
            f"unknown date format {requested!r}",
            "use one of: " + ", ".join(DATE_FORMATS),
        )
    if requested != "auto":
        return requested
    dayfirst = evidence.get("dayfirst", 0)
    monthfirst = evidence.get("monthfirst", 0)
    slashed = evidence.get("slashed", 0)
    if dayfirst and monthfirst:
        raise DateFormatError(
            f"the file mixes day-first dates ({dayfirst} rows like 28/4/2013) and "
            f"month-first dates ({monthfirst} rows like 4/28/2013)",
            "clean the date column so that it uses one style, then pass "
            "--date-format dayfirst or --date-format monthfirst",
        )
    if dayfirst:
        return "dayfirst"
    if monthfirst:
        return "monthfirst"
    if slashed:
        raise DateFormatError(
            f"{slashed} dates like 4/5/2013 could be day-first or month-first, and no date "
            "in the file settles it (no part above 12)",
            "pass --date-format dayfirst (d/m/yyyy, as in spreadsheet copies of "
            "crypto-markets.csv) or --date-format monthfirst (m/d/yyyy)",
        )
    return "iso"


def parse_date(text: str, style: DateStyle) -> dt.date:
    """Parses one date cell.

    Args:
        text: ``yyyy-mm-dd`` (a time of day after it is allowed), a date with the month's
            name (``Feb 20, 2018``, ``February 20 2018``, ``20 Feb 2018``), all always
            accepted, or a slashed date.
        style: How to read slashed dates: ``dayfirst`` (``d/m/yyyy``) or ``monthfirst``
            (``m/d/yyyy``); with ``iso``, slashed dates are refused.

    Returns:
        The date.

    Raises:
        ValueError: The text is not a date in an accepted shape, or names no real day.
    """
    text = text.strip()
    try:
        day = _parse_day(text, style)
    except ValueError as exc:  # a shape of date, but no such day
        raise ValueError(f"{quote(text)} names no real day ({exc})") from None
    if day is None:
        expected = "yyyy-mm-dd" if style == "iso" else f"yyyy-mm-dd, {_SLASH_SHAPE[style]}"
        raise ValueError(f"{quote(text)} is not a date ({expected} or Mon d, yyyy)")
    return day


def _parse_day(text: str, style: DateStyle) -> dt.date | None:
    """The day of a date cell in one of the accepted shapes; ``None`` for another shape."""
    m = _ISO.match(text)
    if m:
        return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    m = _SLASHED.match(text)
    if m and style != "iso":
        first, second, year = int(m.group(1)), int(m.group(2)), int(m.group(3))
        day, month = (first, second) if style == "dayfirst" else (second, first)
        return dt.date(year, month, day)
    m = _MONTH_DAY_YEAR.match(text)
    if m and (month := _month(m.group(1))):
        return dt.date(int(m.group(3)), month, int(m.group(2)))
    m = _DAY_MONTH_YEAR.match(text)
    if m and (month := _month(m.group(2))):
        return dt.date(int(m.group(3)), month, int(m.group(1)))
    return None


def _month(name: str) -> int | None:
    """The number of a month from its name or an abbreviation of 3 letters or more."""
    name = name.lower()
    if name == "sept":
        return 9
    for number, month in enumerate(_MONTHS, 1):
        if month.startswith(name):
            return number
    return None


_SLASH_SHAPE = {"dayfirst": "d/m/yyyy", "monthfirst": "m/d/yyyy"}


def parse_number(text: str) -> float | None:
    """Parses a number cell; scientific notation is fine, missing values give ``None``.

    Thousands separators are read when they group digits by three (``9,926,540,000``,
    ``1,234.5``); a comma anywhere else (``1,5``, a decimal comma) is not guessed at.
    A leading ``$`` is dropped: some exports print prices as money.

    Args:
        text: The cell, e.g. ``"135.3"``, ``"1.23E+09"``, ``"9,926,540,000"`` or ``"NA"``.

    Returns:
        The value, or ``None`` for an empty, ``NA`` or ``-`` cell. Infinities come back as
        they are, for the caller to refuse.

    Raises:
        ValueError: The text is not a number.
    """
    text = text.strip()
    if text in MISSING_VALUES:
        return None
    try:
        return float(text)
    except ValueError:
        plain = text.removeprefix("$")
        if _GROUPED.match(plain):
            plain = plain.replace(",", "")
        elif "," in plain:
            raise
        return float(plain)


PRICE_MIN = 1.1754943508222875e-38
"""The smallest normal float32: prices go into the model as float32."""
PRICE_MAX = 3.4028234663852886e38
"""The largest float32; a larger price would become infinite in the model."""


def price_problem(price: float) -> str | None:
    """The rule for one price, in a CSV row and in a serving request.

    Finite, positive, and within float32's normal range (``PRICE_MIN`` to ``PRICE_MAX``),
    the model's input type: a larger price would become infinite there, a smaller one zero.

    Args:
        price: An open, high, low or close.

    Returns:
        ``None`` when the price is acceptable, else the reason: ``non_finite``,
        ``non_positive_price`` or ``price_out_of_range``.
    """
    if not math.isfinite(price):
        return NON_FINITE
    if price <= 0:
        return NON_POSITIVE_PRICE
    if not PRICE_MIN <= price <= PRICE_MAX:
        return PRICE_OUT_OF_RANGE
    return None


def price_range_problem(
    open_: float, high: float, low: float, close: float | None = None
) -> str | None:
    """The rules between one day's prices, in a CSV row and in a serving request.

    High is not below low, open lies in [low, high], and so does close when it is given
    (a serving request has no close).

    Returns:
        ``None`` when the prices fit together, else the first reason they don't:
        ``high_below_low``, ``open_outside_low_high`` or ``close_outside_low_high``.
    """
    if high < low:
        return HIGH_BELOW_LOW
    if not low <= open_ <= high:
        return OPEN_OUTSIDE_RANGE
    if close is not None and not low <= close <= high:
        return CLOSE_OUTSIDE_RANGE
    return None


_PRICE_PROBLEM_TEXT = {
    NON_FINITE: "not finite",
    NON_POSITIVE_PRICE: "not positive",
    PRICE_OUT_OF_RANGE: f"outside float32's range ({PRICE_MIN:.7g} to {PRICE_MAX:.7g})",
}


@dataclass(frozen=True)
class Rejection:
    """Why one row cannot be used.

    Attributes:
        reason: A short code, e.g. ``high_below_low``; the keys of ``rejected_by_reason``.
        detail: The values at fault, for a person to read.
    """

    reason: str
    detail: str


@dataclass(frozen=True)
class MarketRow:
    """One valid day of one coin, with the date parsed and the numbers as floats."""

    slug: str
    symbol: str
    name: str
    date: dt.date
    ranknow: float | None
    open: float
    high: float
    low: float
    close: float
    volume: float | None
    market: float | None
    close_ratio: float | None
    spread: float | None

    def to_csv_fields(self) -> list[str]:
        """Returns the row in ``COLUMNS`` order: ISO date, numbers in round-trip form."""
        return [_format_cell(getattr(self, c)) for c in COLUMNS]


def _number(text: str) -> str:
    """A number cell as a rejection shows it: as written, at most ``QUOTE_CHARS`` characters."""
    text = text.strip()
    return text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS] + "…"


def _format_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def last_day(today: dt.date | None = None) -> dt.date:
    """The latest date a row may carry: ``FUTURE_DAYS`` days after ``today`` (default: UTC's)."""
    return (today or dt.datetime.now(dt.UTC).date()) + dt.timedelta(days=FUTURE_DAYS)


def date_problem(day: dt.date, last: dt.date) -> str | None:
    """Why a row's date cannot be a day of a crypto market, or ``None`` when it can.

    Args:
        day: The row's date.
        last: The latest date accepted (``last_day``).

    Returns:
        ``None`` from ``FIRST_DAY`` to ``last``, else the detail of a
        ``date_out_of_range`` rejection.
    """
    if day < FIRST_DAY:
        first = FIRST_DAY.isoformat()
        return f"{day.isoformat()} is before {first}, the first day of any crypto market"
    if day > last:
        after = f"after {last.isoformat()} (today in UTC and {FUTURE_DAYS} days)"
        return f"{day.isoformat()} is in the future: {after}"
    return None


def validate_row(
    fields: Sequence[str],
    header: Header,
    style: DateStyle,
    asset: str = "",
    last: dt.date | None = None,
) -> MarketRow | Rejection:
    """Parses and checks one row.

    A valid row has a real date from ``FIRST_DAY`` to a few days after today
    (``date_problem``), and open, high, low and close present, finite and
    positive, with low <= open <= high and low <= close <= high. The other numbers may
    be missing, but when present they must be finite numbers (volume, market cap and
    spread not negative). The price rules are ``price_problem`` and
    ``price_range_problem``, which the model server applies to its requests too.

    Args:
        fields: The row's cells, already split, in the header's order.
        header: The file's header.
        style: How to read slashed dates (see ``resolve_date_style``).
        asset: The coin of a single-asset file (its rows' slug); unused when the file
            has a slug column.
        last: The latest date accepted; ``None``: ``last_day()``. A caller that checks
            many rows passes it, so that all are checked against the same day.

    Returns:
        The parsed row, or the reason it cannot be used.
    """
    if len(fields) != len(header.names):
        return Rejection(
            WRONG_FIELD_COUNT, f"{len(fields)} fields, the header has {len(header.names)}"
        )
    idx = header.index

    def cell(column: str) -> str:
        i = idx.get(column)
        return "" if i is None else fields[i]

    try:
        date = parse_date(cell("date"), style)
    except ValueError as exc:
        return Rejection(BAD_DATE, str(exc))
    if out_of_range := date_problem(date, last or last_day()):
        return Rejection(DATE_OUT_OF_RANGE, out_of_range)

    values: dict[str, float | None] = {}
    for column in PRICE_COLUMNS + OPTIONAL_NUMBER_COLUMNS:
        text = cell(column)
        try:
            value = parse_number(text)
        except ValueError:
            hint = (
                " (a decimal comma? write the file with a decimal point)"
                if _DECIMAL_COMMA.match(text.strip())
                else ""
            )
            return Rejection(NON_NUMERIC, f"{column}={quote(text)} is not a number{hint}")
        if value is None:
            if column in PRICE_COLUMNS:
                return Rejection(MISSING_PRICE, f"{column} is missing")
        elif column in PRICE_COLUMNS and (problem := price_problem(value)):
            return Rejection(problem, f"{column}={_number(text)} is {_PRICE_PROBLEM_TEXT[problem]}")
        elif not math.isfinite(value):
            return Rejection(NON_FINITE, f"{column}={_number(text)} is not finite")
        elif column in NON_NEGATIVE_COLUMNS and value < 0:
            return Rejection(NEGATIVE_VALUE, f"{column}={_number(text)} is negative")
        values[column] = value

    o, h, lo, c = values["open"], values["high"], values["low"], values["close"]
    problem = price_range_problem(o, h, lo, c)
    if problem == HIGH_BELOW_LOW:
        return Rejection(HIGH_BELOW_LOW, f"high={h!r} < low={lo!r}")
    if problem == OPEN_OUTSIDE_RANGE:
        return Rejection(OPEN_OUTSIDE_RANGE, f"open={o!r} outside [low={lo!r}, high={h!r}]")
    if problem == CLOSE_OUTSIDE_RANGE:
        return Rejection(CLOSE_OUTSIDE_RANGE, f"close={c!r} outside [low={lo!r}, high={h!r}]")
    return MarketRow(
        slug=asset if header.single_asset else cell("slug").strip(),
        symbol=cell("symbol").strip(),
        name=cell("name").strip(),
        date=date,
        **values,
    )
