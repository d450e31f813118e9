import datetime as dt
import math

import pytest

from crypto_pipeline import dates, rows, schema
from crypto_pipeline.errors import DateFormatError, SchemaError
from crypto_pipeline.rows import MarketRow, Rejection, validate_row
from crypto_pipeline.schema import COLUMNS, parse_header

HEADER = parse_header(COLUMNS)


def fields(**overrides):
    values = dict(
        slug="bitcoin",
        symbol="BTC",
        name="Bitcoin",
        date="2013-04-28",
        ranknow="1",
        open="135.3",
        high="135.98",
        low="132.1",
        close="134.21",
        volume="0",
        market="1.23E+09",
        close_ratio="0.5438",
        spread="3.88",
    )
    values.update(overrides)
    return [values[c] for c in COLUMNS]


@pytest.mark.parametrize(
    ("text", "style", "expected"),
    [
        ("2013-04-28", "iso", dt.date(2013, 4, 28)),
        ("2013-4-8", "iso", dt.date(2013, 4, 8)),
        ("28/4/2013", "dayfirst", dt.date(2013, 4, 28)),
        ("4/5/2013", "dayfirst", dt.date(2013, 5, 4)),
        ("4/5/2013", "monthfirst", dt.date(2013, 4, 5)),
        ("2013-04-28", "dayfirst", dt.date(2013, 4, 28)),  # ISO is never ambiguous
        (" 01/12/2017 ", "dayfirst", dt.date(2017, 12, 1)),
    ],
)
def test_parse_date_both_styles(text, style, expected):
    assert dates.parse_date(text, style) == expected


@pytest.mark.parametrize(
    ("text", "style"),
    [
        ("28/4/2013", "iso"),
        ("31/2/2013", "dayfirst"),
        ("4/28/2013", "dayfirst"),
        ("2013-13-01", "iso"),
        ("yesterday", "dayfirst"),
        ("", "iso"),
        ("28/4/13", "dayfirst"),
    ],
)
def test_parse_date_refuses(text, style):
    with pytest.raises(ValueError):
        dates.parse_date(text, style)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("2013-04-28", "iso"),
        ("28/4/2013", "dayfirst"),
        ("4/28/2013", "monthfirst"),
        ("4/5/2013", "slashed"),
        ("12/12/2013", "slashed"),
        ("soon", "unknown"),
    ],
)
def test_classify_date(text, kind):
    assert dates.classify_date(text) == kind


def test_resolve_detects_dayfirst_and_monthfirst():
    assert dates.resolve_date_style("auto", {"dayfirst": 1, "slashed": 500}) == "dayfirst"
    assert dates.resolve_date_style("auto", {"monthfirst": 3, "slashed": 5}) == "monthfirst"
    assert dates.resolve_date_style("auto", {"iso": 10}) == "iso"
    assert dates.resolve_date_style("auto", {}) == "iso"


def test_resolve_refuses_ambiguous_files_with_the_fix():
    with pytest.raises(DateFormatError) as err:
        dates.resolve_date_style("auto", {"slashed": 12, "iso": 3})
    assert "--date-format dayfirst" in err.value.fix
    with pytest.raises(DateFormatError, match="mixes"):
        dates.resolve_date_style("auto", {"dayfirst": 2, "monthfirst": 1})


def test_explicit_style_wins_over_evidence():
    assert dates.resolve_date_style("dayfirst", {"slashed": 12}) == "dayfirst"
    with pytest.raises(DateFormatError):
        dates.resolve_date_style("yearfirst", {})


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("135.3", 135.3),
        ("1.23E+09", 1.23e9),
        ("1.5e-3", 0.0015),
        (" 7 ", 7.0),
        ("-2", -2.0),
        ("", None),
        ("NA", None),
        ("N/A", None),
        ("NaN", None),
    ],
)
def test_parse_number(text, value):
    assert rows.parse_number(text) == value


def test_parse_number_keeps_infinity_and_refuses_text():
    assert math.isinf(rows.parse_number("inf"))
    with pytest.raises(ValueError):
        rows.parse_number("12 USD")


def test_valid_row_is_parsed():
    result = validate_row(fields(), HEADER, "iso")
    assert isinstance(result, MarketRow)
    assert result.date == dt.date(2013, 4, 28)
    assert result.market == 1.23e9 and result.volume == 0.0
    assert result.to_csv_fields()[3] == "2013-04-28"
    assert result.to_csv_fields()[10] == "1230000000"


def test_missing_optional_values_are_fine():
    result = validate_row(fields(volume="NA", market="", ranknow=""), HEADER, "iso")
    assert isinstance(result, MarketRow) and result.volume is None and result.market is None


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"date": "28/4/2013"}, rows.BAD_DATE),
        ({"date": "2013-02-30"}, rows.BAD_DATE),
        ({"open": ""}, rows.MISSING_PRICE),
        ({"close": "NA"}, rows.MISSING_PRICE),
        ({"high": "abc"}, rows.NON_NUMERIC),
        ({"volume": "lots"}, rows.NON_NUMERIC),
        ({"low": "inf"}, rows.NON_FINITE),
        ({"open": "-1"}, rows.NON_POSITIVE_PRICE),
        ({"close": "0"}, rows.NON_POSITIVE_PRICE),
        ({"high": "1e39"}, rows.PRICE_OUT_OF_RANGE),  # infinite as the model's float32
        ({"close": "1e-45"}, rows.PRICE_OUT_OF_RANGE),
        ({"volume": "-5"}, rows.NEGATIVE_VALUE),
        ({"high": "130", "low": "132.1"}, rows.HIGH_BELOW_LOW),
        ({"open": "140"}, rows.OPEN_OUTSIDE_RANGE),
        ({"close": "131"}, rows.CLOSE_OUTSIDE_RANGE),
    ],
)
def test_invalid_rows_are_rejected_with_a_reason(overrides, reason):
    result = validate_row(fields(**overrides), HEADER, "iso")
    assert isinstance(result, Rejection)
    assert result.reason == reason
    assert result.detail


def test_wrong_field_count_is_rejected():
    result = validate_row(fields()[:-1], HEADER, "iso")
    assert isinstance(result, Rejection) and result.reason == rows.WRONG_FIELD_COUNT


def test_header_accepts_extra_and_reordered_columns_and_a_bom():
    header = parse_header(["\ufeffdate", "close", "low", "high", "open", "slug", "notes"])
    assert header.index["date"] == 0 and header.index["slug"] == 5
    assert header.extra == ("notes",)
    row = validate_row(["2013-04-28", "2", "1", "3", "2", "bitcoin", "x"], header, "iso")
    assert isinstance(row, MarketRow) and row.close == 2.0 and row.volume is None


def test_header_missing_columns_names_them_and_the_fix():
    with pytest.raises(SchemaError) as err:
        parse_header(["slug", "date", "open"])
    assert "high, low, close" in err.value.problem
    assert "date,open,high,low,close, and slug for a file of many coins" in err.value.fix


def test_header_with_repeated_names_is_refused():
    with pytest.raises(SchemaError, match="repeats"):
        parse_header([*COLUMNS, "close"])


@pytest.mark.parametrize(
    "text, value",
    [
        ("9,926,540,000", 9926540000.0),
        ("11,231.80", 11231.8),
        ("-1,234", -1234.0),
        ("$1,234.5", 1234.5),
        ("$135.3", 135.3),
        ("1.23E+09", 1.23e9),
        ("-", None),
        ("--", None),
        ("null", None),
    ],
)
def test_numbers_as_exports_write_them(text, value):
    assert rows.parse_number(text) == value


@pytest.mark.parametrize("text", ["1,5", "12,34", "1,2345", "1.234,5", "1,234,56", "$", "12 345"])
def test_commas_that_do_not_group_thousands_are_not_guessed_at(text):
    with pytest.raises(ValueError):
        rows.parse_number(text)


@pytest.mark.parametrize(
    "text, day",
    [
        ("Feb 20, 2018", "2018-02-20"),
        ("February 20, 2018", "2018-02-20"),
        ("feb 20 2018", "2018-02-20"),
        ("Sept 1, 2018", "2018-09-01"),
        ("Sep. 1, 2018", "2018-09-01"),
        ("20 Feb 2018", "2018-02-20"),
        ("2024-01-01 00:00:00+00:00", "2024-01-01"),
        ("2013-04-29 23:59:59", "2013-04-29"),
        ("2020-03-01T00:00:00Z", "2020-03-01"),
    ],
)
def test_dates_as_exports_write_them(text, day):
    for style in ("iso", "dayfirst", "monthfirst"):
        assert dates.parse_date(text, style).isoformat() == day


@pytest.mark.parametrize(
    "text", ["Feb 30, 2018", "Foo 20, 2018", "Ma 2, 2018", "2018-02-20 25", "20/Feb/2018"]
)
def test_dates_that_name_no_day_are_refused(text):
    with pytest.raises(ValueError, match=f"^{text!r} (is not a date|names no real day)"):
        dates.parse_date(text, "iso")


@pytest.mark.parametrize(
    "header, fmt",
    [
        ("slug,date,open,high,low,close", "crypto-markets"),
        ("SLUG,Date,Open,High,Low,Close", "crypto-markets"),
        ("Date,Open,High,Low,Close,Adj Close,Volume", "yahoo-finance"),
        ("Date,Open,High,Low,Close,Volume,Market Cap", "coinmarketcap"),
        ("date,open,high,low,close", "single-asset"),
    ],
)
def test_the_header_says_what_kind_of_file_it_is(header, fmt):
    parsed = parse_header(header.split(","))
    assert parsed.format == fmt
    assert parsed.single_asset == (fmt != "crypto-markets")
    assert fmt in schema.FORMATS


def test_aliases_and_unused_columns():
    header = parse_header(
        ["Date", "Open*", "High", "Low", "Close**", "Adj Close", "Vol.", "MarketCap"]
    )
    assert header.column_map() == {
        "Date": "date",
        "Open*": "open",
        "High": "high",
        "Low": "low",
        "Close**": "close",
        "Vol.": "volume",
        "MarketCap": "market",
    }
    assert header.unused == ("Adj Close",) and header.extra == ()


def test_a_row_of_a_single_asset_file_takes_the_named_coin():
    header = parse_header(["Date", "Open", "High", "Low", "Close", "Volume", "Market Cap"])
    row = validate_row(
        ["Feb 20, 2018", "11,231.80", "11,958.50", "11,231.80", "11,403.70", "-", "1,000"],
        header,
        "iso",
        "bitcoin",
    )
    assert isinstance(row, MarketRow)
    assert (row.slug, row.date.isoformat(), row.high, row.volume, row.market) == (
        "bitcoin",
        "2018-02-20",
        11958.5,
        None,
        1000.0,
    )


@pytest.mark.parametrize(
    "line, delimiter",
    [
        ("Date,Open,High,Low,Close", ","),
        ("Date;Open;High;Low;Close", ";"),
        ("Date\tOpen\tHigh\tLow\tClose\r\n", "\t"),
        ("Date|Open|High|Low|Close", "|"),
        ('"Date";"Open";"High";"Low";"Close";"Volume"', ";"),
        ("date,open,high,low,close,note;remark", ","),  # a name holding a semicolon
        ("Date;Open,High;Low,Close;Volume,Market Cap", ","),  # a tie goes to commas
    ],
)
def test_the_header_row_says_what_separates_the_fields(line, delimiter):
    if line.startswith("Date;Open,"):
        with pytest.raises(SchemaError, match="required column"):
            schema.header_from_line(line)
        return
    header = schema.header_from_line(line)
    assert header.delimiter == delimiter
    assert header.index["close"] == 4
    row = delimiter.join(["2020-01-01", "1", "2", "0.5", "1.5", *[""] * (len(header.names) - 5)])
    assert header.split(row)[:5] == ["2020-01-01", "1", "2", "0.5", "1.5"]
    assert header.split("") == []


def test_a_quoted_field_may_hold_the_delimiter():
    header = schema.header_from_line("Date;Open;High;Low;Close;Note")
    assert header.split('2020-01-01;1;2;0.5;1.5;"a; b"') == [
        "2020-01-01",
        "1",
        "2",
        "0.5",
        "1.5",
        "a; b",
    ]
    assert "separated by semicolons" in header.describe_format()
    assert "separated" not in schema.header_from_line("Date,Open,High,Low,Close").describe_format()


def test_coinmarketcap_s_download_of_today_is_read_by_its_day_of_opening():
    header = schema.header_from_line(
        "timeOpen;timeClose;timeHigh;timeLow;name;open;high;low;close;volume;marketCap;"
        "circulatingSupply;timestamp"
    )
    assert header.format == "coinmarketcap"
    assert header.names[header.index["date"]] == "timeOpen"
    assert set(header.unused) == {"timeClose", "timeHigh", "timeLow", "timestamp"}
    fields = header.split(
        '"2025-10-20T00:00:00.000Z";"2025-10-20T23:59:59.999Z";"2025-10-20T15:53:00.000Z";'
        '"2025-10-20T00:34:00.000Z";"2781";108667.44;111711.03;107485.01;110588.93;'
        '63507793084.59;2204868785654.89;19937518;"2025-10-20T23:59:59.999Z"'
    )
    row = validate_row(fields, header, "iso", "bitcoin")
    assert isinstance(row, MarketRow)
    assert (row.date.isoformat(), row.close, row.market) == (
        "2025-10-20",
        110588.93,
        2204868785654.89,
    )


YF_NAMES = "Price,Adj Close,Close,High,Low,Open,Volume"
YF_TICKERS = "Ticker,BTC-USD,BTC-USD,BTC-USD,BTC-USD,BTC-USD,BTC-USD"


@pytest.mark.parametrize("line_end", ["\n", "\r\n"])
def test_a_yfinance_download_s_three_header_lines_are_one_header(line_end):
    lines = [f"\ufeff{YF_NAMES}{line_end}", YF_TICKERS + line_end, "Date,,,,,," + line_end]
    header = schema.header_from_lines(lines)
    assert (header.format, header.lines, header.single_asset) == ("yfinance", 3, True)
    assert header.names == ("Date", "Adj Close", "Close", "High", "Low", "Open", "Volume")
    assert header.index["close"] == 2 and header.unused == ("Adj Close",)


def test_a_header_of_one_line_takes_one_line_whatever_follows():
    lines = ["Date,Open,High,Low,Close", "2020-01-01,1,2,0.5,1.5", "2020-01-02,1,2,0.5,1.5"]
    assert schema.header_from_lines(lines).lines == 1
    assert schema.header_from_lines(lines[:1]).lines == 1


def test_a_yfinance_download_of_several_tickers_is_refused():
    lines = [
        "Price,Close,Close,High,High,Low,Low,Open,Open",
        "Ticker,BTC-USD,ETH-USD,BTC-USD,ETH-USD,BTC-USD,ETH-USD,BTC-USD,ETH-USD",
        "Date,,,,,,,,",
    ]
    with pytest.raises(SchemaError, match="2 tickers") as err:
        schema.header_from_lines(lines)
    assert "one ticker per file" in err.value.fix


@pytest.mark.parametrize(
    "header, fix",
    [
        (YF_NAMES, "the Ticker and Date lines that follow it are not there"),
        ("Date Open High Low Close", "the first row must name the columns"),
        ('"Date","Price","Open","High","Low","Vol.","Change %"', "rename that column to Close"),
    ],
)
def test_a_header_without_the_columns_gets_the_fix(header, fix):
    with pytest.raises(SchemaError, match="required column") as err:
        schema.header_from_line(header)
    assert fix in err.value.fix


@pytest.mark.parametrize(
    "cell, hinted",
    [("100,5", True), ("1.234,56", True), ("-0,25", True), ("1,5e3", False), ("abc", False)],
)
def test_a_number_with_a_decimal_comma_is_refused_with_the_hint(cell, hinted):
    header = schema.header_from_line("Date;Open;High;Low;Close")
    row = validate_row(["2020-01-01", cell, "2", "0.5", "1.5"], header, "iso", "bitcoin")
    assert isinstance(row, Rejection) and row.reason == rows.NON_NUMERIC
    assert ("decimal comma" in row.detail) is hinted


@pytest.mark.parametrize(
    "day, reason",
    [
        ("0001-01-01", rows.DATE_OUT_OF_RANGE),
        ("2009-01-02", rows.DATE_OUT_OF_RANGE),  # the day before Bitcoin's first block
        ("2009-01-03", None),
        ("2026-01-03", None),
        ("2026-01-05", None),  # today (2026-01-03) and two days
        ("2026-01-06", rows.DATE_OUT_OF_RANGE),
        ("2090-06-01", rows.DATE_OUT_OF_RANGE),
        ("9999-12-31", rows.DATE_OUT_OF_RANGE),
    ],
)
def test_dates_outside_any_crypto_market_are_rejected(day, reason):
    last = dates.last_day(dt.date(2026, 1, 3))
    result = validate_row(fields(date=day), HEADER, "iso", last=last)
    if reason is None:
        assert isinstance(result, MarketRow) and result.date.isoformat() == day
    else:
        assert isinstance(result, Rejection) and result.reason == reason
        early = "is before 2009-01-03, the first day of any crypto market"
        late = "is in the future: after 2026-01-05 (today in UTC and 2 days)"
        assert result.detail == f"{day} {early if day < '2009-01-03' else late}"


def test_the_latest_date_follows_today():
    today = dt.datetime.now(dt.UTC).date()
    assert dates.last_day() == today + dt.timedelta(days=dates.FUTURE_DAYS)
    future = (today + dt.timedelta(days=dates.FUTURE_DAYS + 1)).isoformat()
    assert validate_row(fields(date=future), HEADER, "iso").reason == rows.DATE_OUT_OF_RANGE


@pytest.mark.parametrize(
    "text, expected, removed",
    [
        ("a\nb\n", "a\nb\n", 0),
        ("\ufeffa\nb\n", "a\nb\n", 1),
        ("a\n\ufeffb\r\n\ufeffc\n", "a\nb\r\nc\n", 2),
        ("a,\ufeffb\n", "a,\ufeffb\n", 0),  # inside a line: part of its cell
    ],
)
def test_byte_order_marks_at_line_starts_are_removed_and_counted(text, expected, removed):
    assert rows.remove_line_marks(text) == (expected, removed)


SHADOW = "root:$6$Zm9vYmFy$c2VjcmV0aGFzaA:19000:0:99999:7:::"


@pytest.mark.parametrize(
    "line, secret",
    [
        (SHADOW, "Zm9vYmFy"),
        ("api_key,s3cr3t-t0ken", "s3cr3t"),
        ("user;password;hunter2", "hunter2"),
    ],
)
def test_a_first_line_without_known_columns_is_not_quoted(line, secret):
    with pytest.raises(SchemaError) as err:
        schema.header_from_line(line)
    assert secret not in err.value.problem + err.value.fix
    assert "its text is not shown" in err.value.problem


def test_a_header_with_known_columns_is_listed_escaped_and_cut():
    names = [
        "Date",
        "Open",
        "High",
        "Low",
        "Note\x1b[2J" + "x" * 100,
        *(f"c{i}" for i in range(30)),
    ]
    with pytest.raises(SchemaError) as err:
        schema.header_from_line(",".join(names))
    problem = err.value.problem
    assert "'Date', 'Open', 'High', 'Low', 'Note\\x1b[2J" in problem
    assert "\x1b" not in problem and "x" * 40 not in problem
    assert "'c14' and 15 more" in problem


def test_a_header_separated_another_way_names_the_columns_it_found():
    with pytest.raises(SchemaError) as err:
        schema.header_from_line("Date Open High Low Close")
    assert "'Date', 'Open', 'High', 'Low', 'Close' are column names" in err.value.problem


def test_a_long_cell_is_quoted_short():
    result = validate_row(fields(high="x" * 10_000), HEADER, "iso")
    assert result.reason == rows.NON_NUMERIC and len(result.detail) < 80
