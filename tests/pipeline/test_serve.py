"""The model server over real HTTP: a `crypto-pipeline serve` subprocess on loopback."""

import itertools
import json
import math
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from crypto_pipeline.errors import ConfigError
from crypto_pipeline.rows import PRICE_MAX, PRICE_MIN, MarketRow, validate_row
from crypto_pipeline.schema import COLUMNS, parse_header
from crypto_pipeline.serving.client import closes, predict, running_server
from crypto_pipeline.serving.connections import (
    MAX_CONNECTIONS,
    Limits,
    bounded_http,
    connection_limits,
)
from crypto_pipeline.serving.guard import MAX_BODY_BYTES
from crypto_pipeline.serving.logs import logged_path, printable
from crypto_pipeline.serving.model import require_saved_model
from crypto_pipeline.serving.request_rules import (
    MAX_INSTANCES,
    RequestError,
    parse_body,
    parse_instances,
)
from crypto_pipeline.train import load_model

DAY = [100.0, 104.0, 97.0]


@pytest.fixture(scope="module")
def server(trained):
    with running_server(trained[0] / "model") as base:
        yield base


def post(base, body, model="crypto", **kwargs):
    return requests.post(
        f"{base}/v1/models/{model}:predict",
        timeout=10,
        **kwargs,
        **({"data": body} if isinstance(body, str) else {"json": body}),
    )


def test_health_and_readiness(server):
    assert requests.get(f"{server}/", timeout=5).json() == {"status": "alive"}
    assert requests.get(f"{server}/v1/models/crypto", timeout=5).json() == {
        "name": "crypto",
        "ready": True,
    }


def test_both_instance_forms_give_the_savedmodels_answer(server, trained):
    model = load_model(trained[0] / "model")
    expected = float(model.serve(np.array([DAY], np.float32))[0, 0])
    response = post(
        server, {"instances": [DAY, dict(zip(("open", "high", "low"), DAY, strict=True))]}
    )
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert predictions == pytest.approx([expected, expected], rel=1e-6)


BAD_REQUESTS = [
    ("{not json", "the body is not JSON (unexpected character"),
    ("", "the body is empty"),
    ('{"instances": [[1, NaN, 1]]}', "holds NaN at line 1 column 20: JSON has no NaN"),
    ('{"instances": [[1, Infinity, 1]]}', "holds Infinity at line 1 column 20"),
    ('{"instances": [[1, 2, -Infinity]]}', "send finite numbers"),
    ('{"instances": [[1, 1e400, 1]]}', "a number too large for a double"),
    ({"rows": [DAY]}, '"instances"'),
    ([DAY], '"instances"'),
    ({"instances": [DAY], "extra": 1}, "unknown field(s) in the body: extra"),
    ({"instances": []}, "is empty"),
    ({"instances": "100,104,97"}, "must be a list"),
    ({"instances": [[100, 104]]}, "2 values, expected 3"),
    ({"instances": [{"open": 100, "high": 104}]}, "missing low"),
    ({"instances": [{"open": 100, "high": 104, "low": 97, "volume": 5}]}, "unknown volume"),
    ({"instances": [[100, "104", 97]]}, "instances[0].high: '104' is not a number"),
    ({"instances": [[100, True, 97]]}, "is not a number"),
    ({"instances": [[100, None, 97]]}, "is not a number"),
    ({"instances": [DAY, [0, 104, 97]]}, "instances[1].open: 0 is not a positive price"),
    ({"instances": [[-5, 104, 97]]}, "is not a positive price"),
    ({"instances": [[100, 96, 97]]}, "high 96.0 is below low 97.0"),
    ({"instances": [[110, 104, 97]]}, "open 110.0 is outside"),
    ({"instances": [[1e39, 1e39, 1e39]]}, "instances[0].open: 1e+39 is outside the model's"),
    ({"instances": [[1e-45, 1e-45, 1e-45]]}, "1e-45 is outside the model's float32 range"),
    ({"instances": [[3.5e38, 3.5e38, 1e38]]}, "from 1.175494e-38 to 3.402823e+38"),
    ({"instances": [7]}, "got int"),
    ({"instances": [DAY] * (MAX_INSTANCES + 1)}, "more than the limit"),
]


@pytest.mark.parametrize(("body", "message"), BAD_REQUESTS)
def test_bad_requests_get_a_400_that_names_the_problem(server, body, message):
    response = post(server, body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_unknown_model_is_a_404(server):
    response = post(server, {"instances": [DAY]}, model="ethereum")
    assert response.status_code == 404 and "ethereum" in response.json()["error"]


def test_edge_prices_of_float32_are_answered(server):
    smallest, largest = PRICE_MIN, PRICE_MAX
    for day in ([smallest] * 3, [largest] * 3, [1e38, 1e38, 1e38]):
        response = post(server, {"instances": [day]})
        assert response.status_code == 200, response.text
        assert None not in response.json()["predictions"]


def test_echoed_values_are_cut_to_80_characters(server):
    huge = "x" * 3_000_000
    for body in (
        {"instances": [[huge, 104, 97]]},
        {"instances": [DAY], huge: 1},
        {"instances": [{"open": 100, "high": 104, "low": 97, huge: 1}]},
    ):
        response = post(server, body)
        assert response.status_code == 400
        assert len(response.content) < 400, response.content[:400]
        assert "x" * 81 not in response.json()["error"]


def big_body(size: int) -> bytes:
    """A good request padded with spaces (valid JSON) to exactly ``size`` bytes."""
    body = json.dumps({"instances": [DAY]}).encode()
    return body + b" " * (size - len(body))


def test_the_body_limit_is_exact(server):
    at_limit = post(server, big_body(MAX_BODY_BYTES).decode())
    assert at_limit.status_code == 200
    over = post(server, big_body(MAX_BODY_BYTES + 1).decode())
    assert over.status_code == 413
    message = over.json()["error"]
    assert f"{MAX_BODY_BYTES + 1:,} bytes, over the limit of {MAX_BODY_BYTES:,} bytes" in message
    assert f"send at most {MAX_INSTANCES:,} instances a request" in message


def test_a_50_mb_body_is_refused_without_holding_up_good_requests(server):
    """Content-Length says 50 MB: a short 413 at once; a chunked 50 MB body: the same."""
    fifty_mb = json.dumps({"instances": [["x" * 50_000_000, 104, 97]]}).encode()
    good_latencies = []
    stop = threading.Event()

    def good_client():
        with requests.Session() as session:
            while not stop.is_set():
                start = time.perf_counter()
                response = session.post(
                    f"{server}/v1/models/crypto:predict", json={"instances": [DAY]}, timeout=10
                )
                good_latencies.append(time.perf_counter() - start)
                assert response.status_code == 200

    worker = threading.Thread(target=good_client)
    worker.start()
    try:
        start = time.perf_counter()
        sized = post(server, fifty_mb.decode())
        sized_s = time.perf_counter() - start
        chunks = (fifty_mb[i : i + 2**20] for i in range(0, len(fifty_mb), 2**20))
        chunked = requests.post(
            f"{server}/v1/models/crypto:predict",
            data=chunks,
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
    finally:
        stop.set()
        worker.join(timeout=30)
    assert sized.status_code == 413 and len(sized.content) < 300
    assert "50,000,0" in sized.json()["error"] and sized_s < 5
    assert chunked.status_code == 413 and len(chunked.content) < 300
    assert f"over the limit of {MAX_BODY_BYTES:,} bytes" in chunked.json()["error"]
    assert good_latencies and max(good_latencies) < 1.0


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("text/plain", 415),
        ("application/x-www-form-urlencoded", 415),  # curl -d without -H
        ("application/xml", 415),
        ("application/json; charset=utf-8", 200),
        ("Application/JSON", 200),
        (None, 200),  # no Content-Type: read as JSON, as KServe does
    ],
)
def test_the_content_type_must_be_json(server, content_type, status):
    headers = {"Content-Type": content_type} if content_type else {}
    response = requests.post(
        f"{server}/v1/models/crypto:predict",
        data=json.dumps({"instances": [DAY]}).encode(),
        headers=headers,
        timeout=10,
    )
    if content_type is None:
        assert "content-type" not in {k.lower() for k in response.request.headers}
    assert response.status_code == status, response.text
    if status == 415:
        message = response.json()["error"]
        assert f"Content-Type {content_type} is not JSON" in message
        assert "Content-Type: application/json" in message


def test_a_body_without_content_type_that_is_not_json_says_what_to_send(server):
    response = requests.post(f"{server}/v1/models/crypto:predict", data=b"100,104,97", timeout=10)
    assert response.status_code == 400
    assert "Content-Type: application/json" in response.json()["error"]


def test_the_model_repository_is_closed(server):
    for action in ("unload", "load"):
        response = requests.post(f"{server}/v2/repository/models/crypto/{action}", timeout=10)
        assert response.status_code == 403
        assert "restart `crypto-pipeline serve" in response.json()["error"]
    assert requests.get(f"{server}/v1/models/crypto", timeout=5).json()["ready"] is True
    assert post(server, {"instances": [DAY]}).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/metrics", 200),
        ("GET", "/v1/models", 200),
        ("GET", "/v2/health/live", 200),
        ("GET", "/v2/health/ready", 200),
        ("GET", "/docs", 404),
        ("GET", "/openapi.json", 404),
        ("GET", "/redoc", 404),
        ("GET", "/v2/models/crypto", 404),
        ("POST", "/v2/models/crypto/infer", 404),
        ("POST", "/v1/models/crypto:explain", 404),
        ("GET", "/v1/models/crypto:predict", 405),
        ("DELETE", "/v1/models/crypto", 405),
        ("GET", "/v1/models/ethereum", 404),
    ],
)
def test_only_the_documented_routes_are_open(server, method, path, status):
    response = requests.request(method, f"{server}{path}", timeout=10)
    assert response.status_code == status
    if status == 404:
        assert "POST /v1/models/crypto:predict" in response.json()["error"]
    if status == 405:
        assert "is not served: use " in response.json()["error"]


def test_the_server_listens_on_loopback_only(server):
    port = int(server.rsplit(":", 1)[1])
    with socket.socket() as s:
        s.settimeout(5)
        assert s.connect_ex(("127.0.0.2", port)) != 0  # another loopback address


@pytest.mark.network  # a real server on every interface
def test_host_opens_every_interface_and_refusals_are_one_log_line(trained, tmp_path):
    log_path = tmp_path / "server.log"
    bad = [
        "{not json",
        '{"instances": [[1, NaN, 1]]}',
        {"instances": [[1e39, 1e39, 1e39]]},
        {"instances": [["y" * 3_000_000, 104, 97]]},
        "z" * (MAX_BODY_BYTES + 1),
        {"instances": [[100, 96, 97]]},
    ]
    with running_server(trained[0] / "model", host="0.0.0.0", log_path=log_path) as base:
        port = int(base.rsplit(":", 1)[1])
        other = f"http://127.0.0.2:{port}"
        assert post(other, {"instances": [DAY]}).status_code == 200
        statuses = [post(base, body).status_code for body in bad]
        refused = requests.post(f"{base}/v2/repository/models/crypto/unload", timeout=5)
        time.sleep(0.5)
        log = log_path.read_text()
    assert statuses == [400, 400, 400, 400, 413, 400] and refused.status_code == 403
    lines = [line for line in log.splitlines() if " refused " in line]
    assert len(lines) == len(bad) + 1, log[-2000:]
    assert "Traceback" not in log and "y" * 81 not in log and "zzzz" not in log
    assert len(log) < 10_000
    assert all(len(line) < 500 for line in lines)


def test_requests_and_csv_rows_follow_the_same_price_rules():
    """One rule, one home: schema's price functions decide for both."""
    values = [0.5, 1.0, 2.0, 0.0, -1.0, math.inf, -math.inf, math.nan, 1e39, 1e-45]
    header = parse_header(COLUMNS)
    for open_, high, low in itertools.product(values, repeat=3):
        row = f"bitcoin,BTC,Bitcoin,2013-04-28,1,{open_},{high},{low},{open_},0,1,0.5,1"
        fields = row.split(",")
        row_ok = isinstance(validate_row(fields, header, "iso"), MarketRow)
        try:
            parse_instances({"instances": [[open_, high, low]]})
            request_ok = True
        except RequestError:
            request_ok = False
        assert row_ok == request_ok, (open_, high, low)


def test_one_error_for_a_folder_without_a_model(tmp_path, capsys):
    from crypto_pipeline.cli import main
    from crypto_pipeline.deploy import deploy
    from crypto_pipeline.registry import register

    errors = []
    for attempt in (
        lambda: require_saved_model(tmp_path),
        lambda: running_server(tmp_path).__enter__(),
        lambda: register(tmp_path, str(tmp_path / "registry")),
        lambda: deploy(tmp_path, tmp_path / "out"),
    ):
        with pytest.raises(ConfigError) as caught:
            attempt()
        errors.append((caught.value.problem, caught.value.fix))
    assert len(set(errors)) == 1
    problem, fix = errors[0]
    assert problem == f"no SavedModel in {tmp_path} (saved_model.pb is missing)"
    assert main(["serve", "--model", str(tmp_path), "--port", "8080"]) == 1
    assert f"error: {problem}\n  fix: {fix}" in capsys.readouterr().err


def test_the_server_stays_up_after_bad_requests(server):
    for body, _ in BAD_REQUESTS[:8]:
        post(server, body, headers={"Content-Type": "application/json"})
    assert post(server, {"instances": [DAY]}).status_code == 200


def test_a_short_bounded_load(server):
    """8 clients, 200 requests, on loopback, each with a timeout; stops by itself."""
    local = threading.local()

    def one(i):
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        low = 50.0 + i
        start = time.perf_counter()
        response = session.post(
            f"{server}/v1/models/crypto:predict",
            json={"instances": [[low * 1.01, low * 1.03, low]]},
            timeout=5,
        )
        return response.status_code, time.perf_counter() - start

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(200)))
    assert time.monotonic() - started < 60
    assert [code for code, _ in results].count(200) == 200
    assert np.percentile([s for _, s in results], 50) < 0.5


def test_a_thousand_instances_in_one_request(server):
    rng = np.random.default_rng(3)
    low = rng.uniform(10, 1000, size=1000)
    rows = np.column_stack([low * 1.02, low * 1.05, low]).tolist()
    response = post(server, {"instances": rows})
    assert response.status_code == 200 and len(response.json()["predictions"]) == 1000


def test_predict_client(server):
    (close,) = predict(server, [DAY])
    assert 90 < close < 110
    with pytest.raises(RequestError, match="400.*below low"):
        predict(server, [[100, 96, 97]])
    with pytest.raises(RequestError, match="400.*1e\\+308 is outside the model's float32 range"):
        predict(server, [[1e308, 1e308, 1e308]])
    with pytest.raises(RequestError, match="NaN or Infinity, which JSON cannot carry"):
        predict(server, [[math.nan, 104, 97]])
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "crypto_pipeline.cli",
            "predict",
            "--url",
            server,
            "--open",
            "100",
            "--high",
            "104",
            "--low",
            "97",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and "predicted close:" in result.stdout


def test_predict_client_without_a_server():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionError, match="no server answered"):
        predict(f"http://127.0.0.1:{port}", [DAY])


@pytest.mark.parametrize(
    "body",
    [{"instances": [DAY, [2.0, 2.5, 1.5]]}, {"instances": [{"open": 2, "high": 3, "low": 1}]}],
)
def test_parse_instances_accepts_both_forms(body):
    rows = parse_instances(body)
    assert rows.dtype == np.float32 and rows.shape == (len(body["instances"]), 3)


def test_serve_refuses_a_folder_without_a_model(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "crypto_pipeline.cli", "serve", "--model", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "no SavedModel" in result.stderr


def test_the_client_reads_both_answer_shapes():
    """This server answers [x]; TF Serving (KServe's tensorflow runtime) answers [[x]]."""
    assert closes({"predictions": [101.5, 99.0]}) == [101.5, 99.0]
    assert closes({"predictions": [[101.5], [99.0]]}) == [101.5, 99.0]
    for bad in ({"outputs": [1.0]}, {"predictions": [[1.0, 2.0]]}, {"predictions": ["x"]}, [1.0]):
        with pytest.raises(RequestError):
            closes(bad)


def test_predict_reads_a_tf_serving_answer(httpserver):
    httpserver.expect_request("/v1/models/crypto:predict", method="POST").respond_with_json(
        {"predictions": [[101.25]]}
    )
    assert predict(httpserver.url_for("/"), [DAY]) == [101.25]


def test_client_text_is_escaped_for_the_log():
    assert logged_path("/x\n2026-01-01 WARNING forged") == "/x%0A2026-01-01%20WARNING%20forged"
    assert logged_path("/\x1b[31mred") == "/%1B%5B31mred"
    assert printable("a\nb\x1b[0m\u202ec\x00") == "a\\nb\\x1b[0m\\u202ec\\x00"
    assert printable("plain text, é ü") == "plain text, é ü"


def test_the_body_is_parsed_once_with_the_same_messages():
    assert parse_body(b'{"instances": [[100, 104, 97]]}').tolist() == [[100.0, 104.0, 97.0]]
    with pytest.raises(RequestError, match="holds NaN at line 1 column 20"):
        parse_body(b'{"instances": [[1, NaN, 1]]}')
    with pytest.raises(RequestError, match="the body is empty"):
        parse_body(b"  ")


@pytest.mark.parametrize(
    ("open_files", "connections"), [(1_048_576, MAX_CONNECTIONS), (20_000, 1000), (1024, 696)]
)
def test_connections_and_accepts_fit_in_the_open_files(open_files, connections):
    limits = connection_limits(open_files)
    assert limits.max_connections == connections
    assert limits.max_connections + 4 * limits.accept_at_once <= open_files - 100


@pytest.fixture
def bounded_server():
    """uvicorn with the bounded protocol around a tiny app: 4 connections, short timeouts."""
    import asyncio

    import uvicorn

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    limits = Limits(max_connections=4, header_timeout_s=2.0, body_timeout_s=1.0)
    config = uvicorn.Config(app, port=port, http=bounded_http(limits), lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()))
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(timeout=30)


def closed_within(s: socket.socket, seconds: float) -> bytes | None:
    """What the server sent before it closed ``s``, or None if it is still open."""
    s.settimeout(seconds)
    received = b""
    try:
        while chunk := s.recv(4096):
            received += chunk
    except TimeoutError:
        return None
    except OSError:
        pass
    return received


def test_a_slow_body_is_cut_off_and_slow_headers_get_a_408(bounded_server):
    with (
        socket.create_connection(("127.0.0.1", bounded_server)) as body,
        socket.create_connection(("127.0.0.1", bounded_server)) as head,
    ):
        body.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        head.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        assert closed_within(head, 5).startswith(b"HTTP/1.1 408 ")
        assert closed_within(body, 5) == b""


def test_over_the_limit_the_longest_waiting_connection_is_closed(bounded_server):
    silent = [socket.create_connection(("127.0.0.1", bounded_server)) for _ in range(4)]
    time.sleep(0.2)
    answer = requests.get(f"http://127.0.0.1:{bounded_server}/", timeout=5)
    assert answer.status_code == 200 and answer.text == "ok"
    assert closed_within(silent[0], 0.3) == b""  # the oldest made room
    assert closed_within(silent[3], 0.1) is None  # the newest still waits
    for s in silent:
        s.close()


@pytest.mark.parametrize("shape", ["one object of many keys", "one list of many values"])
def test_a_body_of_few_instances_but_very_many_keys_is_refused_unparsed(server, shape):
    """Three brackets, 200,000 keys: parsing and checking it would hold up health answers."""
    many = (
        {"instances": [{f"k{i}": 1 for i in range(200_000)}]}
        if shape.startswith("one object")
        else {"instances": [[1] * 200_000]}
    )
    refused = post(server, many)
    assert refused.status_code == 400
    assert "more values and keys than 10,000 instances" in refused.json()["error"]
    good = post(server, {"instances": [{"open": 100, "high": 104, "low": 97}] * MAX_INSTANCES})
    assert good.status_code == 200
