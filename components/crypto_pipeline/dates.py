"""The dates of rows: their shapes, the file's date style, and the days a row may carry.

Real copies of ``crypto-markets.csv`` are messy: spreadsheets rewrote the dates day-first
(``28/4/2013``), and per-coin exports write them with the month's name (``Feb 20, 2018``).
Validation happens in two steps so that the transform can work in parallel:
``classify_date`` is a cheap look at one row's date that adds to the evidence for the
file's date style, ``resolve_date_style`` turns the evidence of the whole file into one
style (or refuses), and ``parse_date`` reads a date under that style. ``date_problem``
refuses a day no crypto market has had: before ``FIRST_DAY`` or in the future.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Literal, get_args

from crypto_pipeline.errors import DateFormatError
from crypto_pipeline.schema import quote

DateFormat = Literal["auto", "iso", "dayfirst", "monthfirst"]
DATE_FORMATS: tuple[str, ...] = get_args(DateFormat)
DateStyle = Literal["iso", "dayfirst", "monthfirst"]
FIRST_DAY = dt.date(2009, 1, 3)
"""The earliest date a row may carry: the day of Bitcoin's first block. No crypto market
is older, so an earlier date (``0001-01-01``, a spreadsheet's ``1900-01-00``) is a mistake."""
FUTURE_DAYS = 2
"""How many days past today (UTC) a row's date may lie: a day that has begun in a time zone
ahead of UTC, and a day more. A later date (``2090-06-01``, ``9999-12-31``) is a mistake."""
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
    if m and (named := _month(m.group(1))):
        return dt.date(int(m.group(3)), named, int(m.group(2)))
    m = _DAY_MONTH_YEAR.match(text)
    if m and (named := _month(m.group(2))):
        return dt.date(int(m.group(3)), named, int(m.group(1)))
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
