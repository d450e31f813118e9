"""A source URL with credentials in `crypto-pipeline run`: the real command in a process,
against a local HTTP server that serves the file only with the right password. The data is
read with it, and the password is in no file of the pipeline root, in no output and on no
step's command line (kfp.local writes the parameters into its log and onto those)."""

from __future__ import annotations

import base64
import contextlib
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest

from crypto_pipeline.sample_data import SAMPLE_PATH

pytestmark = pytest.mark.pipeline_run

SECRET = "s3cret"  # pragma: allowlist secret
QUICK = ("--trials", "2", "--epochs", "4")


class _Server(http.server.ThreadingHTTPServer):
    """Serves the sample as /data.csv to ``user:s3cret`` (Basic auth), 401 to anyone else.

    While it answers a request, it notes the command lines of every process below
    ``watched`` (the run): the ingest step is among them, waiting for the answer.
    """

    daemon_threads = True
    watched: int | None = None

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answered: list[bool] = []
        self.command_lines: list[str] = []


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self._answer(with_body=False)

    def do_GET(self):
        self._answer(with_body=True)

    def _answer(self, with_body: bool):
        expected = "Basic " + base64.b64encode(f"user:{SECRET}".encode()).decode()
        allowed = self.headers.get("Authorization") == expected and self.path == "/data.csv"
        self.server.answered.append(allowed)
        self.server.command_lines += steps_command_lines(self.server.watched)
        body = SAMPLE_PATH.read_bytes() if allowed else b""
        self.send_response(200 if allowed else 401)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            with contextlib.suppress(OSError):  # a reader that needed only the header
                self.wfile.write(body)


def steps_command_lines(pid: int | None) -> list[str]:
    """The command lines of the processes below PID, as `ps` shows them to every user."""
    if pid is None:
        return []
    lines = []
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                lines.append(" ".join(child.cmdline()))
    return lines


@pytest.fixture
def server():
    httpd = _Server()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def files_holding(root: Path, text: str) -> list[str]:
    return [
        str(path)
        for path in root.rglob("*")
        if path.is_file() and not path.is_symlink() and text.encode() in path.read_bytes()
    ]


def test_a_password_in_the_source_url_stays_out_of_logs_files_and_command_lines(server, tmp_path):
    root = tmp_path / "root"
    port = server.server_address[1]
    source = f"http://user:{SECRET}@127.0.0.1:{port}/data.csv"
    process = subprocess.Popen(
        [sys.executable, "-m", "crypto_pipeline.cli", "run", "--pipeline-root", str(root)]
        + ["--source", source, *QUICK],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server.watched = process.pid
    try:
        output, _ = process.communicate(timeout=540)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"the run did not end within 540 s:\n{process.communicate()[0]}")
    assert "Traceback" not in output, output
    assert process.returncode == 0, output

    assert server.answered and all(server.answered), server.answered  # read with the password
    (run_dir,) = [p for p in root.glob("crypto-pipeline-*") if p.is_dir()]
    copy = run_dir / "ingest-step" / "raw" / "crypto-markets.csv"
    assert copy.read_bytes() == SAMPLE_PATH.read_bytes()

    steps = [line for line in server.command_lines if "--executor_input" in line]
    assert steps, server.command_lines  # the ingest step was seen while it read
    assert f"http://***@127.0.0.1:{port}/data.csv" in steps[0], steps[0]
    assert not [line for line in server.command_lines if SECRET in line]
    assert SECRET not in output, output
    assert files_holding(root, SECRET) == []
    assert SECRET not in (run_dir / "kfp-local.log").read_text()


def test_a_source_given_masked_is_read_with_the_url_in_the_environment(server, tmp_path):
    """How a user keeps the password off their own command line too."""
    port = server.server_address[1]
    masked = f"http://***@127.0.0.1:{port}/data.csv"
    command = [sys.executable, "-m", "crypto_pipeline.cli", "ingest", "--source", masked]
    url = f"http://user:{SECRET}@127.0.0.1:{port}/data.csv"
    env = {**os.environ, "CRYPTO_PIPELINE_SOURCE_URI": url}
    done = subprocess.run(
        [*command, "--output-dir", str(tmp_path / "out")], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert (tmp_path / "out" / "crypto-markets.csv").read_bytes() == SAMPLE_PATH.read_bytes()
    assert SECRET not in done.stdout + done.stderr

    env.pop("CRYPTO_PIPELINE_SOURCE_URI")
    done = subprocess.run(
        [*command, "--output-dir", str(tmp_path / "none")], capture_output=True, text=True, env=env
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"error: {masked} has its credentials masked (***)" in done.stderr, done.stderr
    assert "fix: set CRYPTO_PIPELINE_SOURCE_URI to the URL" in done.stderr, done.stderr
    assert not (tmp_path / "none").exists()
