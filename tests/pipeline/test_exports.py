"""Single-asset exports (Yahoo Finance, CoinMarketCap / Kaggle) read by the same rules.

The files are written here from the days of a crypto-markets.csv run, in each export's
style and with its quirks, so that every test knows the answer: the same days, the same
numbers, with each row accounted for. The variants (header spellings, order, missing
values) come from the styles, not from any one file.
"""

from __future__ import annotations

import csv
import datetime as dt
import json

import pandas as pd
import pytest

from conftest import REAL_DATA
from crypto_pipeline import schema
from crypto_pipeline.cli import main
from crypto_pipeline.config import TransformConfig
from crypto_pipeline.errors import SchemaError
from crypto_pipeline.ingest import ingest
from crypto_pipeline.sample_data import SAMPLE_PATH
from crypto_pipeline.splits import SPLITS, split_path
from crypto_pipeline.transform import transform

NUMBERS = ["open", "high", "low", "close", "volume"]


def kept_days(out) -> pd.DataFrame:
    """Every kept row of a transform output, in date order."""
    return pd.concat(
        [pd.read_csv(split_path(out, name)) for name in SPLITS], ignore_index=True
    ).sort_values("date", ignore_index=True)


@pytest.fixture(scope="module", params=["sample", "real"])
def reference(request, tmp_path_factory):
    """The bitcoin days of a crypto-markets.csv file, as the transform keeps them."""
    if request.param == "real":
        if not REAL_DATA.exists():
            pytest.skip(f"real data not present at {REAL_DATA}")
        source = REAL_DATA
    else:
        source = SAMPLE_PATH
    out = tmp_path_factory.mktemp("reference")
    transform(source, out)
    return kept_days(out)


def grouped(value: float) -> str:
    """A number as CoinMarketCap prints it: thousands separators, no float noise."""
    return format(int(value), ",") if float(value).is_integer() else format(value, ",")


def yahoo_lines(days: pd.DataFrame, header: str) -> list[str]:
    """Oldest first, ISO dates, Adj Close beside Close, a ``null`` row for a missing day."""
    lines = [header]
    for i, r in enumerate(days.itertuples()):
        volume = "" if pd.isna(r.volume) else repr(float(r.volume))
        lines.append(f"{r.date},{r.open!r},{r.high!r},{r.low!r},{r.close!r},{r.close!r},{volume}")
        if i % 97 == 5:  # a day Yahoo has no prices for, as it writes one: nulls
            lines.append(f"{r.date},null,null,null,null,null,null")
    return lines


def cmc_lines(days: pd.DataFrame, header: str) -> list[str]:
    """Newest first, ``Feb 20, 2018`` dates, grouped numbers, ``-`` for a missing volume."""
    lines = [header]
    for i, r in enumerate(days.iloc[::-1].itertuples()):
        day = dt.date.fromisoformat(r.date)
        volume = "-" if i % 50 == 3 or pd.isna(r.volume) else grouped(r.volume)
        cells = [f"{day:%b} {day.day}, {day.year}"]
        cells += [grouped(v) for v in (r.open, r.high, r.low, r.close)]
        cells += [volume, grouped(round(r.close * 16_000_000))]
        lines.append(",".join(f'"{c}"' if "," in c else c for c in cells))
    return lines


def cmc_download_lines(days: pd.DataFrame, header: str) -> list[str]:
    """CoinMarketCap's download today: semicolons, quoted UTC times, newest first.

    ``name`` holds an id, not the coin's name; a missing volume is an empty cell.
    """
    lines = [header]
    for i, r in enumerate(days.iloc[::-1].itertuples()):
        opened, closed = f'"{r.date}T00:00:00.000Z"', f'"{r.date}T23:59:59.999Z"'
        volume = "" if i % 50 == 3 or pd.isna(r.volume) else repr(float(r.volume))
        cells = [opened, closed, f'"{r.date}T13:05:00.000Z"', f'"{r.date}T02:41:00.000Z"']
        cells += ['"2781"', *(repr(float(v)) for v in (r.open, r.high, r.low, r.close))]
        cells += [volume, repr(float(r.close) * 16_000_000), "16000000", closed]
        lines.append(";".join(cells))
    return lines


def kaggle_lines(days: pd.DataFrame, header: str) -> list[str]:
    """Kaggle's per-coin file: a row number, the coin's name and symbol, times after the dates."""
    lines = [header]
    for i, r in enumerate(days.itertuples(), 1):
        cells = [str(i), "Bitcoin", "BTC", f"{r.date} 23:59:59"]
        cells += [repr(float(v)) for v in (r.high, r.low, r.open, r.close)]
        volume = "" if pd.isna(r.volume) else repr(float(r.volume))
        lines.append(",".join([*cells, volume, repr(float(r.close) * 16_000_000)]))
    return lines


def yfinance_lines(days: pd.DataFrame, header: str) -> list[str]:
    """``yf.download("BTC-USD").to_csv(path)``: three header lines, full-precision floats.

    The three header lines are the list's first element, so that, as for the other
    styles, every element after the first is one data row.
    """
    names = header.split(",")
    tickers = ",".join(["Ticker", *["BTC-USD"] * (len(names) - 1)])
    lines = ["\r\n".join([header, tickers, "Date" + "," * (len(names) - 1)])]
    for r in days.itertuples():
        volume = "" if pd.isna(r.volume) else repr(float(r.volume))
        values = {"Close": r.close, "High": r.high, "Low": r.low, "Open": r.open}
        cells = [r.date, *(repr(float(values[n])) for n in names[1:5]), volume]
        lines.append(",".join(cells))
    return lines


def tabbed(write):
    """An export's lines as a spreadsheet copies them: tab-separated, nothing quoted."""

    def lines(days: pd.DataFrame, header: str) -> list[str]:
        return ["\t".join(next(csv.reader([line]))) for line in write(days, header)]

    return lines


CMC_DOWNLOAD = (
    "timeOpen;timeClose;timeHigh;timeLow;name;open;high;low;close;volume;marketCap;"
    "circulatingSupply;timestamp"
)
STYLES = {
    "yahoo-finance": (yahoo_lines, "Date,Open,High,Low,Close,Adj Close,Volume"),
    "yahoo-finance, lower case": (yahoo_lines, "date,open,high,low,close,adj_close,volume"),
    "yahoo-finance, tabs": (tabbed(yahoo_lines), "Date,Open,High,Low,Close,Adj Close,Volume"),
    "coinmarketcap": (cmc_lines, "Date,Open,High,Low,Close,Volume,Market Cap"),
    "coinmarketcap, footnote marks": (cmc_lines, "Date,Open*,High,Low,Close**,Volume,Market Cap"),
    "coinmarketcap, upper case": (cmc_lines, "DATE,OPEN,HIGH,LOW,CLOSE,VOLUME,MARKETCAP"),
    "coinmarketcap, tabs": (tabbed(cmc_lines), "Date,Open,High,Low,Close,Volume,Market Cap"),
    "coinmarketcap, today's download": (cmc_download_lines, CMC_DOWNLOAD),
    "yfinance": (yfinance_lines, "Price,Close,High,Low,Open,Volume"),
    "coinmarketcap, kaggle": (
        kaggle_lines,
        "SNo,Name,Symbol,Date,High,Low,Open,Close,Volume,Marketcap",
    ),
}


@pytest.mark.parametrize("style", STYLES)
def test_an_export_gives_the_same_days_as_crypto_markets(style, reference, tmp_path):
    write, header = STYLES[style]
    lines = write(reference, header)
    path = tmp_path / "export.csv"
    path.write_text("\n".join(lines) + "\n")

    stats = transform(path, tmp_path / "out", TransformConfig(coin="bitcoin"))

    assert stats["format"] == style.split(",")[0]
    assert stats["coin_from"] == "--coin (a single-asset file)"
    assert stats["rows_read"] == len(lines) - 1
    assert stats["rows_read"] == (
        stats["rows_kept"] + stats["rows_rejected"] + stats["duplicates"] + stats["other_coins"]
    )
    assert stats["rows_kept"] == len(reference)
    nulls = sum(1 for line in lines if "null" in line)
    assert stats["rejected_by_reason"] == ({"missing_price": nulls} if nulls else {})
    kept = kept_days(tmp_path / "out")
    assert (kept["slug"] == "bitcoin").all()
    assert list(kept["date"]) == list(reference["date"])
    for column in NUMBERS:
        if column == "volume" and style.startswith("coinmarketcap") and "kaggle" not in style:
            present = kept["volume"].notna()
            assert present.sum() < len(kept)  # the "-" cells are missing, not zero
            pd.testing.assert_series_equal(
                kept[column][present], reference[column][present], check_dtype=False
            )
        else:
            pd.testing.assert_series_equal(kept[column], reference[column], check_dtype=False)


def test_ingest_records_the_format_it_recognised(tmp_path):
    days = pd.read_csv(SAMPLE_PATH).query("slug == 'bitcoin'").head(40)
    for style, (write, header) in STYLES.items():
        path = tmp_path / "export.csv"
        path.write_text("\n".join(write(days, header)) + "\n")
        result = ingest(str(path), tmp_path / style)
        manifest = json.loads((tmp_path / style / "ingest.json").read_text())
        assert manifest["format"] == style.split(",")[0] == result.format
        assert manifest["format_description"].startswith(schema.FORMATS[result.format])
        assert set(manifest["columns_used"].values()) >= {"date", "open", "high", "low", "close"}
        assert "--coin names it" in result.describe()


@pytest.mark.parametrize("column", ["Symbol", "Name"])
def test_a_file_without_a_slug_column_that_names_two_assets_is_refused(column, tmp_path):
    days = pd.read_csv(SAMPLE_PATH).query("slug == 'bitcoin'").head(40)
    lines = kaggle_lines(days, "SNo,Name,Symbol,Date,High,Low,Open,Close,Volume,Marketcap")
    # The same days again, under another asset: taken together they would be one coin.
    other = {"Symbol": (",BTC,", ",ETH,"), "Name": (",Bitcoin,", ",Ethereum,")}[column]
    lines += [line.replace(*other) for line in lines[1:11]]
    path = tmp_path / "coins.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SchemaError, match=f"its {column} column names 2 different assets") as err:
        transform(path, tmp_path / "out", TransformConfig(coin="bitcoin"))
    assert "(40 rows)" in err.value.problem and "(10 rows)" in err.value.problem
    assert "--coin" in err.value.fix and "slug column" in err.value.fix
    assert not (tmp_path / "out").exists()


def test_repeated_days_of_an_export_are_counted_as_duplicates(tmp_path):
    path = tmp_path / "BTC-USD.csv"
    path.write_text(
        "Date,Open,High,Low,Close,Adj Close,Volume\n"
        + "".join(f"2020-01-{d:02d},100,110,90,105,105,1000\n" for d in range(1, 21))
        + "2020-01-05,101,111,91,106,106,1000\n"
    )
    stats = transform(path, tmp_path / "out", TransformConfig(coin="bitcoin"))
    assert (stats["rows_read"], stats["rows_kept"], stats["duplicates"]) == (21, 20, 1)


@pytest.mark.parametrize(
    "header, problem",
    [
        ("Date,Open,High,Low,Close,Volume,Vol.", "volume as 'Volume' and 'Vol.'"),
        ("Date,Open,High,Low,Close,Market Cap,market_cap", "market as"),
    ],
)
def test_two_columns_for_one_field_are_refused(header, problem):
    with pytest.raises(SchemaError, match="repeats") as err:
        schema.parse_header(header.split(","))
    assert problem in err.value.problem


def test_a_single_asset_file_needs_the_coin_named(tmp_path, capsys):
    path = tmp_path / "BTC-USD.csv"
    path.write_text(
        "\n".join(
            yahoo_lines(
                pd.read_csv(SAMPLE_PATH).query("slug == 'bitcoin'").head(60),
                STYLES["yahoo-finance"][1],
            )
        )
        + "\n"
    )
    for args in (
        ["transform", "--input", str(path), "--output-dir", str(tmp_path / "t")],
        ["run", "--source", str(path), "--pipeline-root", str(tmp_path / "runs")],
    ):
        assert main(args) == 1
        err = capsys.readouterr().err
        assert "Yahoo Finance export" in err and "no coin column" in err
        assert "--coin bitcoin" in err
    assert not (tmp_path / "runs").exists()  # refused before any step ran

    assert (
        main(
            [
                "transform",
                "--input",
                str(path),
                "--output-dir",
                str(tmp_path / "t"),
                "--coin",
                "bitcoin",
            ]
        )
        == 0
    )
    assert "kept 60 rows of bitcoin (named by --coin)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "style", ["yahoo-finance", "yfinance", "coinmarketcap", "coinmarketcap, today's download"]
)
def test_a_run_from_an_export_end_to_end(style, tmp_path):
    write, header = STYLES[style]
    lines = write(pd.read_csv(SAMPLE_PATH).query("slug == 'bitcoin'").head(300), header)
    path = tmp_path / "export.csv"
    path.write_text("\n".join(lines) + "\n")
    root = tmp_path / "runs"
    quick = ["--trials", "1", "--epochs", "2", "--coin", "bitcoin"]
    assert main(["run", "--source", str(path), "--pipeline-root", str(root), *quick]) == 0
    summary = json.loads((root / "latest" / "summary.json").read_text())
    (manifest,) = (root / "latest").glob("**/ingest.json")
    assert json.loads(manifest.read_text())["format"] == style.split(",")[0]
    (stats,) = (root / "latest").glob("**/stats.json")
    stats = json.loads(stats.read_text())
    assert (
        stats["rows_read"]
        == len(lines) - 1
        == (
            stats["rows_kept"] + stats["rows_rejected"] + stats["duplicates"] + stats["other_coins"]
        )
    )
    assert summary["coin"] == "bitcoin"
    rows = summary["rows"]
    assert (rows["train"], rows["eval"], rows["test"]) == (210, 45, 45)
    assert summary["metrics"]["test_rmse"] > 0


def test_submitting_a_single_asset_source_needs_the_coin_named(tmp_path, capsys, cluster_package):
    path = tmp_path / "BTC-USD.csv"
    path.write_text("Date,Open,High,Low,Close,Adj Close,Volume\n2020-01-01,1,2,0.5,1.5,1.5,10\n")
    submit = ["submit", "--package", str(cluster_package), "--host", "http://127.0.0.1:9"]
    assert main([*submit, "--param", f"source_uri={path}"]) == 1
    err = capsys.readouterr().err
    assert "no coin column" in err and "--param transform.coin=bitcoin" in err
    # Named, it gets as far as the (absent) cluster.
    assert (
        main([*submit, "--param", f"source_uri={path}", "--param", "transform.coin=bitcoin"]) == 1
    )
    assert "could not submit to http://127.0.0.1:9" in capsys.readouterr().err
