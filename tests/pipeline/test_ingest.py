import gzip
import hashlib
import json
import os
import socket
import tarfile
import zipfile
from pathlib import Path

import fsspec
import pytest

from conftest import HEADER, days, row
from crypto_pipeline.errors import SchemaError, SourceError
from crypto_pipeline.fingerprint import source_fingerprint
from crypto_pipeline.ingest import MANIFEST_NAME, ingest, source_header
from crypto_pipeline.raw_file import RAW_FILE_NAME
from crypto_pipeline.sample_data import SAMPLE_PATH
from crypto_pipeline.urls import SOURCE_ENV, mask_credentials, source_parameter, with_credentials

GOOD = "\n".join([HEADER, *(row(d) for d in days(5))]) + "\n"


def assert_copied(result, out, data: bytes, rows: int):
    copy = out / RAW_FILE_NAME
    assert copy.read_bytes() == data
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.bytes == len(data)
    assert result.rows == rows
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["sha256"] == result.sha256 and manifest["rows"] == rows
    assert not list(out.glob(".*partial")), "no temporary files left behind"


@pytest.mark.parametrize("form", ["path", "file_uri"])
def test_local_copy_records_checksum_size_and_rows(tmp_path, form):
    source = tmp_path / "in.csv"
    source.write_text(GOOD)
    uri = str(source) if form == "path" else f"file://{source}"
    result = ingest(uri, tmp_path / "out")
    assert_copied(result, tmp_path / "out", GOOD.encode(), 5)
    assert result.synthetic is False
    assert result.columns[:2] == ["slug", "symbol"]


def test_gzip_source_is_decompressed(tmp_path):
    source = tmp_path / "in.csv.gz"
    source.write_bytes(gzip.compress(GOOD.encode()))
    assert_copied(ingest(str(source), tmp_path / "out"), tmp_path / "out", GOOD.encode(), 5)


def test_http_source(tmp_path, httpserver):
    httpserver.expect_request("/crypto-markets.csv").respond_with_data(
        GOOD, content_type="text/csv"
    )
    result = ingest(httpserver.url_for("/crypto-markets.csv"), tmp_path / "out")
    assert_copied(result, tmp_path / "out", GOOD.encode(), 5)


def test_any_fsspec_filesystem(tmp_path):
    """gs:// and s3:// go through the same fsspec call; memory:// proves the path offline."""
    with fsspec.open("memory://bucket/crypto-markets.csv", "wb") as f:
        f.write(GOOD.encode())
    result = ingest("memory://bucket/crypto-markets.csv", tmp_path / "out")
    assert_copied(result, tmp_path / "out", GOOD.encode(), 5)


def test_bundled_sample_is_labelled_synthetic(tmp_path):
    result = ingest(str(SAMPLE_PATH), tmp_path / "out")
    assert result.synthetic is True
    assert "SYNTHETIC" in result.describe()
    assert result.rows > 7000


def test_extra_columns_are_accepted_and_reported(tmp_path, csv_file):
    source = csv_file([row() + ",hello"], header=HEADER + ",notes")
    result = ingest(str(source), tmp_path / "out")
    assert result.extra_columns == ["notes"]
    assert "notes" in result.describe()


def test_blank_lines_are_not_rows(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("\n" + HEADER + "\n" + row() + "\n\n" + row("2013-04-29") + "\n\n")
    assert ingest(str(source), tmp_path / "out").rows == 2


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("make_source", "error", "problem", "fix"),
    [
        (lambda d: str(d / "missing.csv"), SourceError, "not found", "check the path"),
        (lambda d: str(d), SourceError, "is a folder", "check the path"),
        (
            lambda d: f"http://127.0.0.1:{_closed_port()}/crypto-markets.csv",
            SourceError,
            "could not reach",
            "pass a local path",
        ),
        (lambda d: _write(d, b""), SourceError, "is empty", "header row"),
        (lambda d: _write(d, b"  \n\n"), SourceError, "is empty", "header row"),
        (
            lambda d: _write(d, (HEADER + "\n").encode()),
            SourceError,
            "no data rows",
            "at least one",
        ),
        (
            lambda d: _write(d, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
            SourceError,
            "not a CSV",
            "crypto-markets.csv file itself",
        ),
        (
            lambda d: _write(d, HEADER.encode() + b"\nbitcoin,\xff\xfe\n"),
            SourceError,
            "not UTF-8",
            "UTF-8",
        ),
        (
            lambda d: _write(d, b"slug,date,open\nbitcoin,2013-04-28,1\n"),
            SchemaError,
            "high, low, close",
            "date,open,high,low,close, and slug",
        ),
    ],
    ids=[
        "missing",
        "folder",
        "unreachable",
        "empty",
        "whitespace",
        "header-only",
        "binary",
        "not-utf8",
        "missing-columns",
    ],
)
def test_bad_sources_fail_clearly_and_leave_nothing(tmp_path, make_source, error, problem, fix):
    out = tmp_path / "out"
    with pytest.raises(error) as err:
        ingest(make_source(tmp_path), out)
    assert problem in err.value.problem
    assert fix in err.value.fix
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.parametrize(
    ("status", "problem", "fix"),
    [
        (404, "answered 404 Not Found", "check the URL"),
        (410, "answered 410 Gone", "check the URL"),
        (403, "answered 403 Forbidden", "needs a login"),
        (503, "answered 503 Service Unavailable", "try again later"),
    ],
)
def test_an_http_error_names_the_status(tmp_path, httpserver, status, problem, fix):
    httpserver.expect_request("/nothing.csv").respond_with_data("no", status=status)
    url = httpserver.url_for("/nothing.csv")
    with pytest.raises(SourceError) as err:
        ingest(url, tmp_path / "out")
    assert err.value.problem == f"the server {problem} for {url}"
    assert fix in err.value.fix
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def _zip(directory, name: str) -> str:
    path = directory / name
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("crypto-markets.csv", GOOD)
    return str(path)


def _tar_gz(directory) -> str:
    path = directory / "crypto-markets.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(_write(directory, GOOD.encode()), arcname="crypto-markets.csv")
    return str(path)


@pytest.mark.parametrize(
    ("make_source", "problem", "fix"),
    [
        (lambda d: _zip(d, "crypto-markets.zip"), "is a zip archive", "(unzip "),
        (lambda d: _zip(d, "crypto-markets.csv"), "is a zip archive", "(unzip "),
        (lambda d: _tar_gz(d), "is a tar archive", "(tar -xf "),
        (
            lambda d: _write(d, gzip.compress(GOOD.encode())),
            "is gzip-compressed, not a CSV text file",
            "gunzip -c",
        ),
    ],
    ids=["zip", "zip-named-csv", "tar-gz", "gzip-named-csv"],
)
def test_archives_are_refused_with_the_command_that_unpacks_them(
    tmp_path, make_source, problem, fix
):
    source = make_source(tmp_path)
    with pytest.raises(SourceError) as err:
        ingest(source, tmp_path / "out")
    assert err.value.problem.startswith(source) and problem in err.value.problem
    assert fix in err.value.fix and "crypto-markets.csv" in err.value.fix
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize(
    ("uri", "problem", "fix"),
    [
        ("sftp://host/data/crypto-markets.csv", "paramiko", "scp HOST:PATH ."),
        ("webdav://host/crypto-markets.csv", "webdav4", "copy the file to this machine"),
        ("nosuch://host/crypto-markets.csv", "no such protocol", "copy the file"),
    ],
)
def test_unsupported_schemes_say_what_works(tmp_path, uri, problem, fix):
    with pytest.raises(SourceError) as err:
        ingest(uri, tmp_path / "out")
    scheme = uri.split("://")[0]
    assert err.value.problem.startswith(f"ingest cannot read {scheme}:// sources")
    assert problem in err.value.problem
    assert fix in err.value.fix
    assert "file://, http://, https://, gs:// or s3://" in err.value.fix
    assert "make setup" not in err.value.fix


def test_the_schemes_named_as_working_open(tmp_path, httpserver):
    """Every scheme that the fix for an unsupported one names has its library here."""
    for scheme in ("file", "http", "https", "gs", "s3"):
        fsspec.get_filesystem_class(scheme)
    httpserver.expect_request("/crypto-markets.csv").respond_with_data(GOOD)
    local = _write(tmp_path, GOOD.encode())
    for uri in (httpserver.url_for("/crypto-markets.csv"), f"file://{local}"):
        assert ingest(uri, tmp_path / "out").rows == 5


def test_a_failed_ingest_keeps_the_previous_copy(tmp_path, csv_file):
    out = tmp_path / "out"
    ingest(str(csv_file([row()])), out)
    before = (out / RAW_FILE_NAME).read_bytes()
    with pytest.raises(SourceError):
        ingest(_write(tmp_path, b"\x00\x01binary"), out)
    assert (out / RAW_FILE_NAME).read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == [RAW_FILE_NAME, MANIFEST_NAME]


def _write(directory, data: bytes) -> str:
    path = directory / "source.csv"
    path.write_bytes(data)
    return str(path)


def _rows_of_size(size: int) -> bytes:
    """A CSV of exactly SIZE bytes: the header, rows, and one shorter last row."""
    data = (HEADER + "\n").encode()
    line = (row() + "\n").encode()
    data += line * ((size - len(data)) // len(line))
    pad = size - len(data)
    return data + (b"x" * (pad - 1) + b"\n" if pad else b"")


def test_the_size_limit_lets_a_file_of_its_size_pass_and_refuses_one_byte_more(tmp_path):
    exact = _write(tmp_path, _rows_of_size(1 << 20))
    assert ingest(exact, tmp_path / "out", max_mb=1).bytes == 1 << 20
    over = _write(tmp_path, _rows_of_size((1 << 20) + 1))
    with pytest.raises(SourceError) as err:
        ingest(over, tmp_path / "out2", max_mb=1)
    assert "holds more than 1 MB (the --max-source-mb limit" in err.value.problem
    assert "--max-source-mb 4" in err.value.fix
    assert not (tmp_path / "out2").exists() or list((tmp_path / "out2").iterdir()) == []


def test_the_size_limit_counts_decompressed_bytes(tmp_path):
    source = tmp_path / "in.csv.gz"
    source.write_bytes(gzip.compress(_rows_of_size(3 << 20)))
    assert source.stat().st_size < 1 << 20
    with pytest.raises(SourceError, match="counted after decompression"):
        ingest(str(source), tmp_path / "out", max_mb=2)


@pytest.mark.parametrize("kind", ["fifo", "device", "socket"])
def test_a_stream_is_refused_without_being_opened(tmp_path, kind):
    """A FIFO with no writer would block open(); the refusal comes first, everywhere."""
    path = tmp_path / "crypto-markets.csv"
    if kind == "fifo":
        os.mkfifo(path)
        what = "a named pipe (FIFO)"
    elif kind == "device":
        path, what = Path("/dev/zero"), "a character device"
    else:
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(path))
        what = "a socket"
    for read in (
        lambda: ingest(str(path), tmp_path / "out"),
        lambda: ingest(f"file://{path}", tmp_path / "out"),
        lambda: source_header(str(path)),
        lambda: source_fingerprint(str(path)),
    ):
        with pytest.raises(SourceError) as err:
            read()
        assert err.value.problem.startswith(f"source {path} is {what}, not a regular file")
        assert "cat SOURCE > crypto-markets.csv" in err.value.fix
    assert not (tmp_path / "out").exists()


def test_a_missing_source_has_an_unknown_fingerprint(tmp_path):
    assert source_fingerprint(str(tmp_path / "missing.csv")).startswith("unknown:")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("https://me:pw@host/f.csv", "https://***@host/f.csv"),  # pragma: allowlist secret
        ("https://tok@host/f.csv", "https://***@host/f.csv"),
        (
            "s3://bucket/f.csv?X-Amz-Signature=ab&X-Amz-Credential=cd&v=1",
            "s3://bucket/f.csv?X-Amz-Signature=***&X-Amz-Credential=***&v=***",
        ),
        ("https://host/f.csv?access_token=ab#top", "https://host/f.csv?access_token=***#top"),
        ("https://host/a@b.csv", "https://host/a@b.csv"),
        ("/data/me@home/f.csv", "/data/me@home/f.csv"),
        # every value of a URL: any name may hold a secret
        ("https://host/f.csv?coin=bitcoin", "https://host/f.csv?coin=***"),
        ("https://host/f.csv?pass=pw", "https://host/f.csv?pass=***"),
        ("https://host/f.csv?user=me&pwd=pw", "https://host/f.csv?user=***&pwd=***"),
        ("https://host/f.csv?jwt=e.y.J/x?y", "https://host/f.csv?jwt=***"),
        ("https://host/app;jsessionid=AB12/f.csv", "https://host/app;jsessionid=***/f.csv"),
        ("https://host/f.csv?zq_blob=k&dl=1;v=2", "https://host/f.csv?zq_blob=***&dl=***;v=***"),
        ("https://host/f.csv#id_token=ab&state=1", "https://host/f.csv#id_token=***&state=***"),
        ("https://host/f.csv?download", "https://host/f.csv?download"),
        ("gs://bucket/dir/f.csv", "gs://bucket/dir/f.csv"),
        # text outside a URL is untouched, around it too
        ("pass=pw ?token=t &a=1", "pass=pw ?token=t &a=1"),
        (
            "read 'https://u:p@h/f.csv?pwd=pw' (twice): ftp://h/x;type=a done",
            "read 'https://***@h/f.csv?pwd=***' (twice): ftp://h/x;type=*** done",
        ),
        ("https://host/f.csv?token=***: not found", "https://host/f.csv?token=***: not found"),
    ],
)
def test_credentials_are_masked(text, shown):
    assert mask_credentials(text) == shown
    assert mask_credentials(shown) == shown


@pytest.mark.parametrize(
    "url",
    [
        "https://host/f.csv?pass=pw",
        "https://host/f.csv?pwd=pw",
        "https://host/f.csv?jwt=e.y.J",
        "https://host/app;jsessionid=AB12/f.csv",
        "https://host/f.csv?zq_blob=k",  # a name a service invents
        "s3://key:pw@bucket/f.csv",  # pragma: allowlist secret
    ],
)
def test_a_parameter_carries_the_url_masked_and_the_environment_the_url(url, monkeypatch):
    """``run``'s pipeline parameter (logged, on command lines) never holds a value of the URL."""
    shown, environment = source_parameter(url)
    assert shown == mask_credentials(url) and "***" in shown and shown != url
    assert environment == {SOURCE_ENV: url}
    monkeypatch.setenv(SOURCE_ENV, url)
    assert with_credentials(shown) == url  # what the ingest step reads


def test_a_url_without_a_user_or_a_value_is_its_own_parameter():
    for url in ("https://host/f.csv", "gs://bucket/f.csv", "/data/f.csv", "sample"):
        assert source_parameter(url) == (url, {})


def test_an_http_error_masks_the_credentials_of_the_url(tmp_path, httpserver):
    httpserver.expect_request("/nothing.csv").respond_with_data("no", status=404)
    url = httpserver.url_for("/nothing.csv").replace("://", "://me:pw@")
    with pytest.raises(SourceError) as err:
        ingest(url, tmp_path / "out")
    shown = mask_credentials(url)
    assert err.value.problem == f"the server answered 404 Not Found for {shown}"
    assert ":pw@" not in str(err.value)
    assert err.value.__cause__ is None  # the chain would carry the URL as given
    with pytest.raises(SourceError) as err:
        ingest(f"{url}?token=t0k", tmp_path / "out")
    assert f"{shown}?token=***:" in err.value.problem
    assert ":pw@" not in str(err.value) and "t0k" not in str(err.value)


def test_a_copy_from_a_url_with_credentials_records_it_masked(tmp_path, httpserver):
    httpserver.expect_request("/crypto-markets.csv").respond_with_data(GOOD)
    url = httpserver.url_for("/crypto-markets.csv").replace("://", "://me:pw@")
    result = ingest(url, tmp_path / "out")
    assert result.source_uri == mask_credentials(url) and ":pw@" not in result.describe()
    assert ":pw@" not in (tmp_path / "out" / MANIFEST_NAME).read_text()
