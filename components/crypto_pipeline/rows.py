"""The rules for one row of market data: its numbers, its prices, and why it is rejected.

Real copies of ``crypto-markets.csv`` are messy: spreadsheets rewrote some numbers in
scientific notation (``1.23E+09``), per-coin exports group digits (``9,926,540,000``) and
write ``-`` for a missing value. ``validate_row`` parses one row, already split by its
``Header``, under the file's date style (``dates``), into a ``MarketRow`` or a
``Rejection`` with its reason (one of the codes below, each a count in ``stats.json``).
The price rules (``price_problem``, ``price_range_problem``) are the model server's too.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from crypto_pipeline.dates import DateStyle, date_problem, last_day, parse_date
from crypto_pipeline.schema import COLUMNS, QUOTE_CHARS, Header, quote

PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
OPTIONAL_NUMBER_COLUMNS: tuple[str, ...] = ("ranknow", "volume", "market", "close_ratio", "spread")
NON_NEGATIVE_COLUMNS: frozenset[str] = frozenset({"volume", "market", "spread"})
MISSING_VALUES: frozenset[str] = frozenset(
    {"", "NA", "N/A", "NaN", "nan", "null", "NULL", "-", "--", "\u2014"}
)
"""Cell texts that mean "no value": pandas' set, and the dashes of CoinMarketCap exports."""
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
BYTE_ORDER_MARK = "\ufeff"
"""What some editors put before a file's first line; joined files carry it on later lines."""
_GROUPED = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?$")  # 9,926,540,000.5
_DECIMAL_COMMA = re.compile(r"^[+-]?[\d.]*\d,\d+$")  # 100,5 or 1.234,5 (a European spreadsheet)


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

    prices = _parsed_prices(cell)
    if isinstance(prices, Rejection):
        return prices
    others: dict[str, float | None] = {}
    for column in OPTIONAL_NUMBER_COLUMNS:
        value = _checked_number(column, cell(column))
        if isinstance(value, Rejection):
            return value
        others[column] = value

    if (out_of_order := _price_range_rejection(prices)) is not None:
        return out_of_order
    return MarketRow(
        slug=asset if header.single_asset else cell("slug").strip(),
        symbol=cell("symbol").strip(),
        name=cell("name").strip(),
        date=date,
        open=prices["open"],
        high=prices["high"],
        low=prices["low"],
        close=prices["close"],
        **others,
    )


def price_rejection(cell: Callable[[str], str]) -> Rejection | None:
    """Why a row's open, high, low and close break ``validate_row``'s price rules, or ``None``.

    For rows already written by those rules (a transform's splits), read again: CELL gives
    a column's text.
    """
    prices = _parsed_prices(cell)
    if isinstance(prices, Rejection):
        return prices
    return _price_range_rejection(prices)


def _parsed_prices(cell: Callable[[str], str]) -> dict[str, float] | Rejection:
    """A row's open, high, low and close as numbers, each by ``price_problem``'s rule."""
    prices: dict[str, float] = {}
    for column in PRICE_COLUMNS:
        price = _checked_number(column, cell(column))
        if price is None:
            return Rejection(MISSING_PRICE, f"{column} is missing")
        if isinstance(price, Rejection):
            return price
        prices[column] = price
    return prices


def _checked_number(column: str, text: str) -> float | Rejection | None:
    """One number cell of a row: its value, ``None`` when missing, or why it is refused."""
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
        return None
    if column in PRICE_COLUMNS and (problem := price_problem(value)):
        return Rejection(problem, f"{column}={_number(text)} is {_PRICE_PROBLEM_TEXT[problem]}")
    if not math.isfinite(value):
        return Rejection(NON_FINITE, f"{column}={_number(text)} is not finite")
    if column in NON_NEGATIVE_COLUMNS and value < 0:
        return Rejection(NEGATIVE_VALUE, f"{column}={_number(text)} is negative")
    return value


def _price_range_rejection(values: dict[str, float]) -> Rejection | None:
    """The rejection of a row whose prices do not fit together (``price_range_problem``)."""
    o, h, lo, c = values["open"], values["high"], values["low"], values["close"]
    problem = price_range_problem(o, h, lo, c)
    if problem == HIGH_BELOW_LOW:
        return Rejection(HIGH_BELOW_LOW, f"high={h!r} < low={lo!r}")
    if problem == OPEN_OUTSIDE_RANGE:
        return Rejection(OPEN_OUTSIDE_RANGE, f"open={o!r} outside [low={lo!r}, high={h!r}]")
    if problem == CLOSE_OUTSIDE_RANGE:
        return Rejection(CLOSE_OUTSIDE_RANGE, f"close={c!r} outside [low={lo!r}, high={h!r}]")
    return None
