import csv
import datetime as dt
import gzip
import json
import zipfile

import pandas as pd
import pytest

from conftest import HEADER, REAL_DATA, days, row
from crypto_pipeline import rows
from crypto_pipeline import transform as transform_module
from crypto_pipeline.config import Split, TransformConfig
from crypto_pipeline.errors import (
    CoinNotFoundError,
    ConfigError,
    DateFormatError,
    SchemaError,
    SourceError,
)
from crypto_pipeline.range_passes import plan_ranges
from crypto_pipeline.schema import COLUMNS
from crypto_pipeline.splits import SPLITS, split_path
from crypto_pipeline.transform import beam_io, transform

BAD_ROWS = {
    # line text -> reason it must be rejected with
    row("2014-01-01", o="abc"): rows.NON_NUMERIC,
    row("2014-01-02", o="-3"): rows.NON_POSITIVE_PRICE,
    row("2014-01-03", c="0"): rows.NON_POSITIVE_PRICE,
    row("2014-01-04", h="inf"): rows.NON_FINITE,
    row("2014-01-05", lo="NA"): rows.MISSING_PRICE,
    row("2014-01-06", o=""): rows.MISSING_PRICE,
    row("2014-01-07", h="131", lo="132.1"): rows.HIGH_BELOW_LOW,
    row("2014-01-08", o="140"): rows.OPEN_OUTSIDE_RANGE,
    row("2014-01-09", c="131"): rows.CLOSE_OUTSIDE_RANGE,
    row("2014-02-30"): rows.BAD_DATE,
    row("someday"): rows.BAD_DATE,
    row("2014-01-10", volume="-1"): rows.NEGATIVE_VALUE,
    "bitcoin,BTC,Bitcoin,2014-01-11,1,135.3": rows.WRONG_FIELD_COUNT,
    row("2014-01-12") + ",surplus": rows.WRONG_FIELD_COUNT,
}


@pytest.fixture
def messy(csv_file):
    """40 good bitcoin days, every kind of bad row, duplicates, other coins, blank lines."""
    good = [row(d, market="1.5E+09") for d in days(40)]
    other = [row(d, slug="litecoin") for d in days(7)]
    duplicates = [row("2013-04-30", c="134"), row("2013-05-01")]
    quoted = 'bitcoin,BTC,"Bitcoin, Inc.",2013-06-07,1,135.3,135.98,132.1,134.21,0,1,0.5,3.88'
    lines = good[:20] + list(BAD_ROWS) + other + [""] + duplicates + good[20:] + [quoted, ""]
    # 40 good + 1 quoted = 41 distinct dates kept
    return csv_file(lines), lines


def read_rejects(out):
    with split_path(out, "rejects").open(newline="") as f:
        return list(csv.DictReader(f))


def test_every_row_is_accounted_for(messy, tmp_path):
    path, lines = messy
    out = tmp_path / "out"
    stats = transform(path, out)
    data_rows = sum(1 for line in lines if line)
    assert stats["rows_read"] == data_rows
    assert stats["rows_read"] == (
        stats["rows_kept"] + stats["rows_rejected"] + stats["duplicates"] + stats["other_coins"]
    )
    assert stats["rows_kept"] == 41
    assert stats["other_coins"] == 7
    assert stats["duplicates"] == 2
    assert stats["blank_lines"] == 2
    expected = {}
    for reason in BAD_ROWS.values():
        expected[reason] = expected.get(reason, 0) + 1
    assert stats["rejected_by_reason"] == dict(sorted(expected.items()))
    assert stats["rows_rejected"] == len(BAD_ROWS)
    assert json.loads((out / "stats.json").read_text()) == stats


def test_rejects_carry_line_reason_and_raw_text(messy, tmp_path):
    path, lines = messy
    out = tmp_path / "out"
    stats = transform(path, out)
    rejects = read_rejects(out)
    assert len(rejects) == stats["rows_rejected"] + stats["duplicates"]
    file_lines = path.read_text().split("\n")
    for reject in rejects:
        assert reject["reason"] and reject["detail"]
        assert file_lines[int(reject["line"]) - 1] == reject["raw"], "line number points at the row"
        if reject["reason"] != rows.DUPLICATE_DATE:
            assert BAD_ROWS[reject["raw"]] == reject["reason"]
    duplicates = [r for r in rejects if r["reason"] == rows.DUPLICATE_DATE]
    assert {r["raw"] for r in duplicates} == {row("2013-04-30", c="134"), row("2013-05-01")}
    assert all("already on line" in r["detail"] for r in duplicates)


def test_splits_are_chronological_contiguous_and_disjoint(messy, tmp_path):
    path, _ = messy
    out = tmp_path / "out"
    stats = transform(path, out, TransformConfig(split=Split(0.6, 0.2, 0.2)))
    frames = {name: pd.read_csv(split_path(out, name)) for name in SPLITS}
    assert [len(frames[n]) for n in SPLITS] == [24, 8, 9]
    for name, frame in frames.items():
        assert tuple(frame.columns) == COLUMNS
        assert frame["date"].is_monotonic_increasing and frame["date"].is_unique
        assert stats["splits"][name]["rows"] == len(frame)
        assert stats["splits"][name]["first_date"] == frame["date"].iloc[0]
        assert stats["splits"][name]["last_date"] == frame["date"].iloc[-1]
    assert frames["train"]["date"].iloc[-1] < frames["eval"]["date"].iloc[0]
    assert frames["eval"]["date"].iloc[-1] < frames["test"]["date"].iloc[0]
    every = pd.concat(frames.values())["date"].tolist()
    assert every == sorted(every) and len(set(every)) == 41
    # the first row of a repeated date is the one kept
    assert frames["train"].set_index("date").loc["2013-04-30", "close"] == 134.21
    # scientific notation and quoted commas come out as plain values
    assert frames["train"]["market"].iloc[0] == 1.5e9
    assert "Bitcoin, Inc." in frames["test"]["name"].tolist()


def test_an_empty_split_is_a_header_only_file(csv_file, tmp_path):
    stats = transform(csv_file([row(d) for d in days(2)]), tmp_path / "out")
    assert stats["splits"]["eval"] == {
        "rows": 0,
        "first_date": None,
        "last_date": None,
        "file": "eval-00000-of-00001.csv",
    }
    assert split_path(tmp_path / "out", "eval").read_text() == HEADER + "\n"
    assert len(pd.read_csv(split_path(tmp_path / "out", "train"))) == 1


def test_dayfirst_dates_are_detected(csv_file, tmp_path):
    dates = [dt.date.fromisoformat(d) for d in days(30)]
    lines = [row(f"{d.day}/{d.month}/{d.year}") for d in dates]
    stats = transform(csv_file(lines), tmp_path / "out")
    assert stats["date_format"]["used_for_slashed_dates"] == "dayfirst"
    assert stats["rows_kept"] == 30
    train = pd.read_csv(split_path(tmp_path / "out", "train"))
    assert train["date"].iloc[0] == "2013-04-28"


def test_ambiguous_dates_are_refused_unless_the_style_is_given(csv_file, tmp_path):
    lines = [row(f"{d}/{m}/2014") for m in (1, 2) for d in range(1, 13)]
    path = csv_file(lines)
    with pytest.raises(DateFormatError) as err:
        transform(path, tmp_path / "out")
    assert "--date-format dayfirst" in err.value.fix
    assert not (tmp_path / "out").exists()
    stats = transform(path, tmp_path / "out", TransformConfig(date_format="dayfirst"))
    assert stats["rows_kept"] == 24
    assert stats["splits"]["train"]["first_date"] == "2014-01-01"
    stats = transform(path, tmp_path / "out2", TransformConfig(date_format="monthfirst"))
    assert stats["splits"]["train"]["first_date"] == "2014-01-01"
    assert stats["splits"]["test"]["last_date"] == "2014-12-02"


def test_evidence_from_other_coins_settles_the_style(csv_file, tmp_path):
    lines = [row("3/4/2014")] + [row("25/4/2014", slug="dogecoin")]
    stats = transform(csv_file(lines), tmp_path / "out")
    assert stats["date_format"]["used_for_slashed_dates"] == "dayfirst"
    assert stats["splits"]["test"]["first_date"] == "2014-04-03"


def test_unknown_coin_lists_the_coins_in_the_file(messy, tmp_path):
    path, _ = messy
    with pytest.raises(CoinNotFoundError) as err:
        transform(path, tmp_path / "out", TransformConfig(coin="bitconnect"))
    assert "litecoin (7)" in err.value.problem and "--coin" in err.value.fix


def test_a_coin_with_only_bad_rows_shows_examples(csv_file, tmp_path):
    with pytest.raises(CoinNotFoundError) as err:
        transform(csv_file([row(o="x"), row(c="-1")]), tmp_path / "out")
    assert "line 2: non_numeric" in err.value.problem


def test_a_failed_transform_keeps_the_previous_output(messy, csv_file, tmp_path):
    path, _ = messy
    out = tmp_path / "out"
    transform(path, out)
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(CoinNotFoundError):
        transform(path, out, TransformConfig(coin="nope"))
    assert sorted(p.name for p in out.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir() if "staging" in p.name] == []


def test_bad_inputs_fail_before_running(tmp_path, csv_file):
    with pytest.raises(SourceError, match="not found"):
        transform(tmp_path / "missing.csv", tmp_path / "out")
    with pytest.raises(SchemaError, match="close"):
        transform(csv_file(["bitcoin,2014-01-01,1"], header="slug,date,open"), tmp_path / "out")


def _packed(directory, name: str, data: bytes):
    path = directory / name
    if name.endswith(".zip"):
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("crypto-markets.csv", data)
    else:
        path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return path


GOOD = ("\n".join([HEADER, *(row(d) for d in days(40))]) + "\n").encode()


@pytest.mark.parametrize(
    ("name", "data", "problem", "fix"),
    [
        ("folder", None, "is a folder, not a file", "folder/crypto-markets.csv"),
        ("crypto-markets.csv.gz", GOOD, "is gzip-compressed", "gunzip -c"),
        ("crypto-markets.zip", GOOD, "is a zip archive", "unzip"),
        ("image.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary bytes near byte 8", "CSV"),
        ("latin1.csv", HEADER.encode() + b"\nbitcoin,\xe9\n", "not UTF-8 text", "UTF-8"),
        ("empty.csv", b"\n\n", "is empty", "ingest"),
    ],
    ids=["folder", "gz", "zip", "binary", "not-utf8", "empty"],
)
def test_unreadable_inputs_say_what_to_pass(tmp_path, name, data, problem, fix):
    if data is None:
        (tmp_path / name).mkdir()
        path = tmp_path / name
    else:
        path = _packed(tmp_path, name, data)
    with pytest.raises(SourceError) as err:
        transform(path, tmp_path / "out")
    assert problem in err.value.problem and str(path) in err.value.problem
    assert fix in err.value.fix
    assert not (tmp_path / "out").exists()


def test_bad_bytes_deep_in_the_file_are_refused_with_their_offset(csv_file, tmp_path, monkeypatch):
    """Past the header's first chunk, the ranges check the bytes: the same error."""
    monkeypatch.setattr(transform_module, "_READ_BYTES", 64)
    monkeypatch.setattr(transform_module, "_RANGE_BYTES", 512)
    path = csv_file([row(d) for d in days(30)])
    data = path.read_bytes()
    at = data.index(b"2013-05-20")
    path.write_bytes(data[:at] + b"\xff" + data[at + 1 :])
    with pytest.raises(SourceError) as err:
        transform(path, tmp_path / "out")
    assert err.value.problem == f"{path} is not UTF-8 text (bad byte near byte {at:,})"
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if "staging" in p.name] == []


def test_a_header_only_file_has_no_data_rows(csv_file, tmp_path):
    with pytest.raises(SourceError) as err:
        transform(csv_file(["", ""]), tmp_path / "out")
    assert err.value.problem.endswith("has a header but no data rows")
    assert "at least one data row" in err.value.fix


def test_duplicates_over_many_ranges_name_the_kept_line(csv_file, tmp_path, monkeypatch):
    """The first row of a date in the file is kept wherever the ranges cut it."""
    monkeypatch.setattr(transform_module, "_RANGE_BYTES", 300)
    lines = [row(d, c=c) for c in ("134.21", "134", "133") for d in days(20)]
    stats = transform(csv_file(lines), tmp_path / "out")
    assert (stats["rows_kept"], stats["duplicates"]) == (20, 40)
    train = pd.read_csv(split_path(tmp_path / "out", "train"))
    assert set(train["close"]) == {134.21}
    rejects = read_rejects(tmp_path / "out")
    assert [int(r["line"]) for r in rejects] == list(range(22, 62))
    for r in rejects:
        kept = int(r["line"]) - 20 * ((int(r["line"]) - 2) // 20)
        assert r["detail"] == f"{days(20)[kept - 2]} already on line {kept}"


def test_ranges_cover_every_line_once(tmp_path):
    lines = [HEADER] + [row(d) for d in days(500)]
    path = tmp_path / "f.csv"
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(data)
    ranges = list(plan_ranges(str(path), target_bytes=3000))
    assert len(ranges) > 5
    assert ranges[0][0] == len(lines[0]) + 1 and ranges[-1][1] == len(data)
    for (s, e, first), (s2, _, first2) in zip(ranges, ranges[1:], strict=False):
        assert e == s2 and first2 == first + data[s:e].count(b"\n")
    for s, e, first in ranges:
        assert data[s:e].decode().split("\n")[0] == lines[first - 1]


def test_many_ranges_give_the_same_result(messy, tmp_path, monkeypatch):
    path, _ = messy
    one = transform(path, tmp_path / "one")
    monkeypatch.setattr(transform_module, "_RANGE_BYTES", 256)
    many = transform(path, tmp_path / "many")
    for stats in (one, many):
        stats.pop("seconds")
    assert one == many
    for name in SPLITS:
        assert (
            split_path(tmp_path / "one", name).read_text()
            == split_path(tmp_path / "many", name).read_text()
        )
    assert sorted(map(str, read_rejects(tmp_path / "one"))) == sorted(
        map(str, read_rejects(tmp_path / "many"))
    )


def test_crlf_line_endings(tmp_path):
    path = tmp_path / "crlf.csv"
    path.write_bytes(("\r\n".join([HEADER, *(row(d) for d in days(10))]) + "\r\n").encode())
    stats = transform(path, tmp_path / "out")
    assert stats["rows_kept"] == 10 and stats["rows_rejected"] == 0


@pytest.mark.skipif(not REAL_DATA.exists(), reason=f"real data not present at {REAL_DATA}")
def test_real_data_bitcoin_days(tmp_path):
    stats = transform(REAL_DATA, tmp_path / "out")
    assert stats["date_format"]["used_for_slashed_dates"] == "dayfirst"
    assert stats["rows_kept"] == 1793
    assert stats["splits"]["train"]["first_date"] == "2013-04-28"
    assert stats["splits"]["test"]["last_date"] == "2018-03-25"
    assert stats["rows_read"] == (
        stats["rows_kept"] + stats["rows_rejected"] + stats["duplicates"] + stats["other_coins"]
    )
    train = pd.read_csv(split_path(tmp_path / "out", "train"))
    first = train.iloc[0]
    assert (first["date"], first["open"], first["close"]) == ("2013-04-28", 135.3, 134.21)
    # 1.23E+09 in the file is a plain number after the transform
    assert train.set_index("date").loc["2013-06-12", "market"] == 1.23e9
    dates = pd.to_datetime(
        pd.concat(pd.read_csv(split_path(tmp_path / "out", n))["date"] for n in SPLITS)
    )
    assert dates.diff().dropna().dt.days.eq(1).all(), "1,793 consecutive days, none mis-parsed"


def test_a_remote_runner_gets_the_artifacts_uris():
    """Dataflow's workers cannot read the pod's paths: they get the bucket URIs."""
    pod = ("/gcs/raw", "gs://b/raw", "/gcs/data", "gs://b/data")
    assert beam_io(*pod, ()) == ("/gcs/raw", "/gcs/data")
    assert beam_io(*pod, ("--runner=DirectRunner",)) == ("/gcs/raw", "/gcs/data")
    dataflow = ("--runner=DataflowRunner", "--project=p", "--region=r")
    assert beam_io(*pod, dataflow) == ("gs://b/raw", "gs://b/data")
    minio = ("/m/raw", "minio://mlpipeline/raw", "/m/data", "minio://mlpipeline/data")
    assert beam_io(*minio, ("--runner=FlinkRunner",)) == (
        "s3://mlpipeline/raw",
        "s3://mlpipeline/data",
    )
    with pytest.raises(ConfigError, match="cannot read this machine's files"):
        beam_io("/runs/raw", "/runs/raw", "/runs/data", "/runs/data", dataflow)


@pytest.mark.parametrize(
    "uris",
    [("file:///runs/raw", "gs://b/data"), ("gs://b/raw", "file:///runs/data")],
    ids=["file-input", "file-output"],
)
def test_a_remote_runner_refuses_file_uris_either_way(uris):
    """``file://`` is this machine's disk: a remote runner's workers cannot reach it."""
    dataflow = ("--runner=DataflowRunner", "--project=p", "--region=r")
    raw_uri, data_uri = uris
    with pytest.raises(ConfigError, match="cannot read this machine's files"):
        beam_io("/runs/raw", raw_uri, "/runs/data", data_uri, dataflow)
