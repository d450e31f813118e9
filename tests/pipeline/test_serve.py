"""The model server over real HTTP: a `crypto-pipeline serve` subprocess on loopback."""

import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from crypto_pipeline.serve import (
    MAX_INSTANCES,
    RequestError,
    closes,
    parse_instances,
    predict,
    running_server,
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
    ("{not json", "Unrecognized request format"),
    ('{"instances": [[1, NaN, 1]]}', "Unrecognized request format"),
    ('{"instances": [[1, Infinity, 1]]}', "Unrecognized request format"),
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
