"""Sources with no end, cut short or too large, and credentials in source URLs: the real
``crypto-pipeline`` command in a subprocess against a local HTTP server, a local endpoint
standing in for a gs:// or s3:// store, a FIFO, a sparse file and /dev/zero. Each ends with
``error:`` and ``fix:`` within seconds, keeps nothing and never shows a password."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import socket
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest

from conftest import HEADER, row

pytestmark = pytest.mark.network

ROW = (row() + "\n").encode()
BODY = (HEADER + "\n").encode() + ROW * 100
BOMB_ROWS = 2_400_000
"""About 200 MB of CSV, which gzip packs into under 1 MB."""


@functools.cache
def bomb() -> bytes:
    """A gzip body of under 1 MB that a client decompresses to about 200 MB."""
    packer = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [packer.compress((HEADER + "\n").encode())]
    parts += [packer.compress(ROW * 12_000) for _ in range(BOMB_ROWS // 12_000)]
    return b"".join([*parts, packer.flush()])


SECRET = "s3cret-pw"  # pragma: allowlist secret


class _Handler(http.server.BaseHTTPRequestHandler):
    """The hostile sources: endless, dripping, a gzip bomb, a body cut short."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        route = getattr(self, f"_{self.path.strip('/').split('.')[0]}", None)
        if route is None:
            self.send_error(404)
            return
        with contextlib.suppress(OSError):
            route()  # the client hangs up on a hostile source: as it should

    def _forever(self):
        self.send_response(200)
        self.end_headers()
        self.close_connection = True
        self.wfile.write((HEADER + "\n").encode())
        while True:
            self.wfile.write(ROW * 1000)

    def _drip(self):
        self.send_response(200)
        self.end_headers()
        self.close_connection = True
        self.wfile.write((HEADER + "\n").encode())
        while True:
            self.wfile.write(ROW)
            self.wfile.flush()
            time.sleep(0.5)

    def _silent(self):
        self.send_response(200)
        self.end_headers()
        self.close_connection = True
        self.wfile.write((HEADER + "\n").encode())
        self.wfile.flush()
        time.sleep(120)

    def _bomb(self):
        self.send_response(200)
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(bomb())))
        self.end_headers()
        self.wfile.write(bomb())

    def _cut(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY) * 3))
        self.end_headers()
        self.wfile.write(BODY)
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_WR)

    def _good(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], OSError):  # a client that hung up
            super().handle_error(request, client_address)


@pytest.fixture(scope="module")
def server():
    httpd = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def cli(*args: str, timeout: float = 120, env: dict | None = None, limit_memory: bool = False):
    """Runs ``crypto-pipeline ARGS``; returns (exit status, stdout + stderr, seconds)."""

    def cap_memory():  # a read without bound fails here instead of swapping the machine
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "crypto_pipeline.cli", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            preexec_fn=cap_memory if limit_memory else None,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"crypto-pipeline {' '.join(args)} did not end within {timeout} s")
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    return done.returncode, output, time.monotonic() - started


def assert_failed(status: int, output: str, *phrases: str) -> None:
    assert status == 1, output
    assert "error: " in output and "\n  fix: " in output, output
    for phrase in phrases:
        assert phrase in output, output


def assert_kept_nothing(out: Path) -> None:
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())


def test_a_source_that_streams_forever_stops_at_the_size_limit(server, tmp_path):
    out = tmp_path / "out"
    status, output, seconds = cli(
        "ingest", "--source", f"{server}/forever", "--output-dir", str(out), "--max-source-mb", "8"
    )
    assert_failed(status, output, f"{server}/forever holds more than 8 MB", "--max-source-mb 32")
    assert_kept_nothing(out)
    print(f"endless stream refused after {seconds:.1f} s")


@pytest.mark.parametrize("route", ["drip", "silent"])
def test_a_slow_source_stops_at_the_time_limit(server, tmp_path, route):
    """A row every half second, or nothing after the header: both end at the limit."""
    out = tmp_path / "out"
    status, output, seconds = cli(
        "ingest",
        "--source",
        f"{server}/{route}",
        "--output-dir",
        str(out),
        "--max-source-seconds",
        "3",
    )
    assert_failed(status, output, "took more than 3 s (the --max-source-seconds limit")
    assert_kept_nothing(out)
    assert seconds < 60, seconds  # 3 s of reading, plus start-up on a loaded machine
    print(f"{route} source refused after {seconds:.1f} s")


def test_a_gzip_bomb_is_bounded_after_decompression(server, tmp_path):
    assert len(bomb()) < 1 << 20
    out = tmp_path / "out"
    status, output, _ = cli(
        "ingest", "--source", f"{server}/bomb", "--output-dir", str(out), "--max-source-mb", "20"
    )
    assert_failed(status, output, "holds more than 20 MB", "counted after decompression")
    assert_kept_nothing(out)


def test_a_body_cut_before_its_announced_length_is_an_error(server, tmp_path):
    out = tmp_path / "out"
    status, output, _ = cli("ingest", "--source", f"{server}/cut", "--output-dir", str(out))
    assert_failed(
        status,
        output,
        "ended before the end the server announced",
        f"received {len(BODY)} of {len(BODY) * 3} bytes",
        "curl -C -",
    )
    assert_kept_nothing(out)


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "crypto-markets.csv"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("scheme", ["", "file://", "local://"])
def test_a_fifo_as_ingest_source_is_refused_at_once(fifo, tmp_path, scheme):
    out = tmp_path / "out"
    source = f"{scheme}{fifo}"
    status, output, _ = cli("ingest", "--source", source, "--output-dir", str(out), timeout=60)
    assert_failed(status, output, f"source {fifo} is a named pipe (FIFO)", "cat SOURCE >")
    assert_kept_nothing(out)


@pytest.mark.parametrize("coin", [[], ["--coin", "bitcoin"]], ids=["header-read", "coin-given"])
def test_a_fifo_as_run_source_is_refused_before_the_run_starts(fifo, tmp_path, coin):
    """Without --coin, ``run`` reads the source's header first; with it, the fingerprint."""
    root = tmp_path / "root"
    status, output, seconds = cli(
        "run", "--source", str(fifo), "--pipeline-root", str(root), *coin, timeout=90
    )
    assert_failed(status, output, f"source {fifo} is a named pipe (FIFO)")
    assert not root.exists()
    print(f"run refused the FIFO after {seconds:.1f} s")


def test_dev_zero_as_source_is_refused(tmp_path):
    status, output, _ = cli("ingest", "--source", "/dev/zero", "--output-dir", str(tmp_path))
    assert_failed(status, output, "/dev/zero is a character device")


@pytest.fixture
def package(tmp_path):
    path = tmp_path / "crypto_pipeline.yaml"
    path.write_text("root: {}\n")
    return path


@pytest.mark.parametrize("token_file", ["/dev/zero", "fifo", "huge"])
def test_a_token_file_with_no_end_is_blamed_not_the_host(package, tmp_path, token_file):
    if token_file == "fifo":
        token_file = str(tmp_path / "token")
        os.mkfifo(token_file)
    elif token_file == "huge":
        token_file = str(tmp_path / "token")
        with open(token_file, "wb") as f:
            f.truncate(4 << 30)  # 4 GiB, sparse
    status, output, _ = cli(
        "submit",
        "--host",
        "http://127.0.0.1:9",
        "--package",
        str(package),
        env={"KF_PIPELINES_SA_TOKEN_PATH": token_file},
        timeout=90,
        limit_memory=True,
    )
    assert_failed(status, output, f"the token file {token_file} (KF_PIPELINES_SA_TOKEN_PATH)")
    assert "--host" not in output, output


@pytest.mark.parametrize(
    "path, phrase",
    [("missing.csv", "/missing.csv"), ("cut.csv", "ended before"), ("good.csv", "ingested")],
)
def test_credentials_in_a_source_url_are_never_shown(server, tmp_path, path, phrase):
    url = server.replace("://", f"://alice:{SECRET}@") + f"/{path}?token={SECRET}&x=1"
    out = tmp_path / "out"
    status, output, _ = cli("ingest", "--source", url, "--output-dir", str(out))
    assert phrase in output, output
    assert SECRET not in output, output
    assert "://***@127.0.0.1" in output and "token=***&x=***" in output, output
    if status == 0:
        assert SECRET not in (out / "ingest.json").read_text()


def test_a_token_of_several_lines_is_refused_without_showing_it(package, tmp_path):
    token = tmp_path / "token"
    token.write_text(f"{SECRET}\nsecond-line-{SECRET}\n")
    status, output, _ = cli(
        "submit",
        "--host",
        "http://127.0.0.1:9",
        "--package",
        str(package),
        "--token-file",
        str(token),
    )
    assert_failed(status, output, f"the token file {token} (--token-file) holds more than one")
    assert SECRET not in output, output


def test_a_host_with_a_password_is_not_echoed(package):
    status, output, _ = cli(
        "submit", "--host", f"http://alice:{SECRET}@127.0.0.1:9", "--package", str(package)
    )
    assert status == 1 and "error: " in output and "fix: " in output, output
    assert SECRET not in output and "***@127.0.0.1:9" in output, output


@pytest.fixture(scope="module")
def silent_store():
    """An endpoint that takes every connection and never answers: a store that hangs."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    held = []

    def accept():
        with contextlib.suppress(OSError):  # the listener closed: the module is done
            while True:
                held.append(listener.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()
    for connection in held:
        connection.close()


@pytest.fixture
def closed_port():
    """An endpoint where nothing listens: a store that cannot be reached."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def store_at(scheme: str, endpoint: str) -> dict[str, str]:
    """The environment that points gcsfs (``gs``) or s3fs (``s3``) at a local endpoint."""
    if scheme == "gs":
        return {"STORAGE_EMULATOR_HOST": endpoint}
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "drill",
        "AWS_SECRET_ACCESS_KEY": "drill",  # pragma: allowlist secret
    }


@pytest.mark.parametrize("scheme", ["gs", "s3"])
def test_a_bucket_that_never_answers_stops_at_the_time_limit(silent_store, tmp_path, scheme):
    """Left to themselves, gcsfs and s3fs wait on such a store for many minutes."""
    out = tmp_path / "out"
    source = f"{scheme}://bucket/crypto-markets.csv"
    status, output, seconds = cli(
        "ingest",
        "--source",
        source,
        "--output-dir",
        str(out),
        "--max-source-seconds",
        "3",
        env=store_at(scheme, silent_store),
        timeout=90,
    )
    assert_failed(
        status,
        output,
        f"reading {source} took more than 3 s (the --max-source-seconds limit",
        "raise the limit (--max-source-seconds 12)",
    )
    assert_kept_nothing(out)
    assert seconds < 60, seconds  # 3 s of waiting, plus start-up on a loaded machine
    print(f"{scheme}:// store that never answers refused after {seconds:.1f} s")


def test_run_bounds_every_read_of_a_bucket_that_never_answers(silent_store, tmp_path):
    """The header read and the fingerprint before the run, and the ingest step in it."""
    root = tmp_path / "root"
    status, output, seconds = cli(
        "run",
        "--source",
        "gs://bucket/crypto-markets.csv",
        "--pipeline-root",
        str(root),
        "--max-source-seconds",
        "3",
        env=store_at("gs", silent_store),
        timeout=150,
    )
    assert_failed(
        status,
        output,
        "the ingest step failed: reading gs://bucket/crypto-markets.csv took more than 3 s",
    )
    print(f"run with a gs:// store that never answers failed after {seconds:.1f} s")


def test_an_unreachable_bucket_fails_without_a_traceback(closed_port, tmp_path):
    """gcsfs logs a traceback each time it gives up on a request; only error and fix show."""
    out = tmp_path / "out"
    status, output, seconds = cli(
        "ingest",
        "--source",
        "gs://bucket/crypto-markets.csv",
        "--output-dir",
        str(out),
        env=store_at("gs", closed_port),
        timeout=150,
    )
    assert_failed(status, output, "could not reach gs://bucket/crypto-markets.csv", "credentials")
    assert output.startswith("error: "), output  # nothing of the store's own log before it
    assert_kept_nothing(out)
    print(f"unreachable gs:// store refused after {seconds:.1f} s (gcsfs's own retries)")


def test_run_refuses_a_source_over_the_size_limit_before_hashing_it(tmp_path):
    """The cache's fingerprint of a local source read the whole file before any limit."""
    source = tmp_path / "crypto-markets.csv"
    with source.open("wb") as f:
        f.write(BODY)
        f.truncate(8 << 30)  # 8 GiB, sparse
    root = tmp_path / "root"
    status, output, seconds = cli(
        "run",
        "--source",
        str(source),
        "--pipeline-root",
        str(root),
        "--max-source-mb",
        "100",
        timeout=120,
    )
    assert_failed(
        status, output, f"{source} holds more than 100 MB (the --max-source-mb limit", "400"
    )
    assert not root.exists(), "the run started"
    print(f"run refused an 8 GiB source after {seconds:.1f} s")


def test_a_password_holding_an_at_sign_is_masked_whole():
    from crypto_pipeline.urls import mask_credentials

    masked = mask_credentials("https://u:p@ss@host/f.csv")  # pragma: allowlist secret
    assert masked == "https://***@host/f.csv"
