"""The model server under load with bad requests mixed in: no 5xx, every good answer right.

Eight clients share one `crypto-pipeline serve` subprocess on loopback. Between their good
requests they send every kind of bad one the server must refuse (malformed JSON, NaN,
bodies over the limit with and without Content-Length, wrong shapes, text/plain, prices
outside float32, the model repository's unload). Each good request must get the same
prediction as the same instances got one at a time before the load; each bad one its
4xx; nothing a 5xx or a dropped connection. A damaged model is an error with its fix.
"""

import json
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from crypto_pipeline.serving.client import running_server
from crypto_pipeline.serving.guard import MAX_BODY_BYTES

pytestmark = pytest.mark.network

CLIENTS = 8
ROUNDS = 60
"""Each round: every bad request once, and a good one after each."""

PREDICT = "/v1/models/crypto:predict"
JSON = {"Content-Type": "application/json"}
OVER_LIMIT = json.dumps({"instances": [["x" * (MAX_BODY_BYTES + 10), 104, 97]]}).encode()


def chunked(body: bytes):
    """The body as a generator: requests sends it chunked, with no Content-Length."""
    return (body[i : i + 2**18] for i in range(0, len(body), 2**18))


BAD = {
    "malformed JSON": (PREDICT, lambda: b"{not json", JSON, 400),
    "NaN": (PREDICT, lambda: b'{"instances": [[100, NaN, 97]]}', JSON, 400),
    "Infinity": (PREDICT, lambda: b'{"instances": [[100, 104, -Infinity]]}', JSON, 400),
    "empty body": (PREDICT, lambda: b"", JSON, 400),
    "over the limit": (PREDICT, lambda: OVER_LIMIT, JSON, 413),
    "over the limit, chunked": (PREDICT, lambda: chunked(OVER_LIMIT), JSON, 413),
    "two values": (PREDICT, lambda: b'{"instances": [[100, 104]]}', JSON, 400),
    "a number, not an instance": (PREDICT, lambda: b'{"instances": [7]}', JSON, 400),
    "no instances": (PREDICT, lambda: b'{"rows": [[100, 104, 97]]}', JSON, 400),
    "a string price": (PREDICT, lambda: b'{"instances": [["100", 104, 97]]}', JSON, 400),
    "outside float32": (PREDICT, lambda: b'{"instances": [[1e39, 1e39, 1e39]]}', JSON, 400),
    "high below low": (PREDICT, lambda: b'{"instances": [[100, 96, 97]]}', JSON, 400),
    "text/plain": (
        PREDICT,
        lambda: b'{"instances": [[100, 104, 97]]}',
        {"Content-Type": "text/plain"},
        415,
    ),
    "unknown model": ("/v1/models/eth:predict", lambda: b'{"instances": [[1, 2, 1]]}', JSON, 404),
    "unload": ("/v2/repository/models/crypto/unload", lambda: b"", {}, 403),
}


def good_days(n: int, seed: int = 11) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    low = rng.uniform(20, 60_000, n)
    high = low * rng.uniform(1.0, 1.1, n)
    open_ = low + (high - low) * rng.uniform(0, 1, n)
    return np.column_stack([open_, high, low]).tolist()


def same_predictions(got: list[float], alone: list[float]) -> bool:
    """Whether an answer under load is the one the instances got alone.

    One instance: exactly. In a batch, TensorFlow's matrix product may round the last bit
    of a float32 differently, so within 1e-6.
    """
    if len(got) == 1:
        return got == alone
    return len(got) == len(alone) and got == pytest.approx(alone, rel=1e-6)


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("faults") / "server.log"
    with running_server(trained[0] / "model", log_path=log_path) as base:
        yield base, log_path


def test_bad_requests_under_load_get_4xx_and_good_ones_the_right_answer(server):
    base, log_path = server
    days = good_days(40)
    with requests.Session() as session:
        alone = [
            session.post(f"{base}{PREDICT}", json={"instances": [d]}, timeout=10).json()[
                "predictions"
            ][0]
            for d in days
        ]

    # (kind, path, body, headers, expected status, expected predictions or None)
    plan = []
    for r in range(ROUNDS):
        for j, (kind, (path, body, headers, status)) in enumerate(BAD.items()):
            plan.append((kind, path, body, headers, status, None))
            picks = [(r * 7 + j * 3 + k) % len(days) for k in range(1 + (r + j) % 3)]
            instances = [days[i] for i in picks]
            expected = [alone[i] for i in picks]
            plan.append(("good", PREDICT, instances, JSON, 200, expected))
    local = threading.local()

    def send(step):
        kind, path, body, headers, status, expected = step
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        start = time.perf_counter()
        try:
            if kind == "good":
                response = session.post(f"{base}{path}", json={"instances": body}, timeout=20)
            else:
                response = session.post(f"{base}{path}", data=body(), headers=headers, timeout=20)
        except requests.RequestException as exc:
            return kind, status, f"no answer: {type(exc).__name__}", None, expected, 0.0
        answer = response.json() if response.status_code == 200 else None
        seconds = time.perf_counter() - start
        return kind, status, response.status_code, answer, expected, seconds

    started = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(send, plan))
    elapsed = time.monotonic() - started

    codes = Counter(code for _, _, code, *_ in results)
    wrong_status = [(k, want, got) for k, want, got, *_ in results if got != want]
    good = [r for r in results if r[0] == "good"]
    wrong_answers = [
        (answer, expected)
        for _, _, code, answer, expected, _ in good
        if code == 200 and not same_predictions(answer["predictions"], expected)
    ]
    good_seconds = sorted(s for *_, s in good)
    print(
        f"\n{len(results)} requests ({len(good)} good) from {CLIENTS} clients in {elapsed:.1f} s;"
        f" status counts {dict(codes)}; good p50 {good_seconds[len(good) // 2] * 1000:.1f} ms,"
        f" max {good_seconds[-1] * 1000:.0f} ms"
    )
    assert sum(n for code, n in codes.items() if isinstance(code, int) and code >= 500) == 0
    assert wrong_status == []
    assert len(good) == ROUNDS * len(BAD) and wrong_answers == []
    assert elapsed < 60

    assert requests.get(f"{base}/v1/models/crypto", timeout=5).json()["ready"] is True
    time.sleep(0.5)
    log = log_path.read_text()
    assert "Traceback" not in log and "xxxxxxxxxx" not in log
    assert sum(" refused " in line for line in log.splitlines()) == ROUNDS * len(BAD)


def test_identical_batches_under_load_get_identical_answers(server):
    """A batch of 1,000 instances, sent by 8 clients at once, answers the same every time."""
    base, _ = server
    batch = {"instances": good_days(1000, seed=5)}
    with requests.Session() as session:
        first = session.post(f"{base}{PREDICT}", json=batch, timeout=20).json()["predictions"]

    def send(_):
        response = requests.post(f"{base}{PREDICT}", json=batch, timeout=20)
        return response.status_code, response.json().get("predictions")

    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(pool.map(send, range(4 * CLIENTS)))
    assert all(code == 200 for code, _ in answers)
    assert all(p == first for _, p in answers)
    assert len(first) == 1000 and all(isinstance(p, float) for p in first)


@pytest.mark.parametrize(
    "damage",
    [
        "saved_model.pb cut in half",
        "saved_model.pb empty",
        "variables cut in half",
        "variables missing",
    ],
)
def test_a_corrupt_or_truncated_model_is_an_error_with_a_fix(trained, tmp_path, damage):
    """`serve` of a damaged SavedModel: `error:` and `fix:`, no traceback, exit 1."""
    model = tmp_path / "model"
    shutil.copytree(trained[0] / "model", model)
    data = next((model / "variables").glob("variables.data-*"))
    target = model / "saved_model.pb" if damage.startswith("saved_model") else data
    if damage.endswith("missing"):
        shutil.rmtree(model / "variables")
    else:
        content = target.read_bytes()
        target.write_bytes(b"" if damage.endswith("empty") else content[: len(content) // 2])
    result = subprocess.run(
        [sys.executable, "-m", "crypto_pipeline.cli", "serve", "--model", str(model)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert f"error: the model in {model} does not load, it is corrupt or truncated" in result.stderr
    assert "  fix: serve a complete model folder" in result.stderr
