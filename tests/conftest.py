"""Shared helpers: small CSV files in the crypto-markets.csv schema."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from crypto_pipeline.config import TrainConfig, runtime_environment
from crypto_pipeline.sample_data import SAMPLE_PATH
from crypto_pipeline.schema import COLUMNS
from crypto_workshop.manifest_schemas import (
    inference_service_validator,  # noqa: F401  (tests import it from conftest)
    strict_schema,
)

HEADER = ",".join(COLUMNS)
UPSTREAM = Path(__file__).resolve().parent / "upstream"
"""Facts of the pinned upstream releases (tests/upstream/README.md)."""
VERSIONS = Path(__file__).resolve().parents[1] / "cluster" / "versions.env"
REAL_DATA = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "data"
    / "crypto-markets-real-subset.csv"
)


def row(
    date: str = "2013-04-28",
    o="135.3",
    h="135.98",
    lo="132.1",
    c="134.21",
    slug="bitcoin",
    volume="0",
    market="1500520000",
) -> str:
    """One data line; prices as text so tests can put anything in them."""
    name = {"bitcoin": "Bitcoin"}.get(slug, slug.title())
    return f"{slug},BTC,{name},{date},1,{o},{h},{lo},{c},{volume},{market},0.5438,3.88"


QUICK_TRAIN = TrainConfig(epochs=6, patience=3, seed=7)
"""A few epochs: enough for a real model, quick enough for tests."""


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory):
    """The transform output of the bundled sample."""
    from crypto_pipeline.transform import transform

    out = tmp_path_factory.mktemp("sample") / "transform"
    transform(SAMPLE_PATH, out)
    return out


@pytest.fixture(scope="session")
def trained(sample_data, tmp_path_factory):
    """A model trained quickly on the sample: ``(output_dir, metrics)``."""
    from crypto_pipeline.hyperparameters import Params
    from crypto_pipeline.train import train

    out = tmp_path_factory.mktemp("train")
    return out, train(sample_data, Params(), out, QUICK_TRAIN)


def write_csv(path: Path, lines: list[str], header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def csv_file(tmp_path):
    """Returns a function that writes data lines (under the schema's header) to a file."""

    def make(lines: list[str], header: str = HEADER, name: str = "crypto-markets.csv") -> Path:
        return write_csv(tmp_path / name, lines, header)

    return make


def days(n: int, start: str = "2013-04-28") -> list[str]:
    """``n`` consecutive ISO dates."""
    import datetime as dt

    first = dt.date.fromisoformat(start)
    return [(first + dt.timedelta(days=i)).isoformat() for i in range(n)]


def pytest_configure(config):
    """TensorFlow settings the command line also sets: deterministic, quiet."""
    runtime_environment()


# The slow kinds (pyproject.toml's markers), which `make test-fast` leaves out. A module of
# one kind says so in its `pytestmark`; these are marked here: by a fixture they use, by
# being a notebook (nbval) or a fault drill, or by name where one module mixes quick tests
# and whole runs.
KIND_OF_FIXTURE = {
    "executed_notebooks": "notebook",  # executes every notebook when the copies are stale
    "engine": "docker",  # tests/notebooks/test_exercises_02.py: the real Docker engine
    "kubernetes_copy": "notebook",  # tests/notebooks/test_notebooks.py: nbval over a copy
    "server": "network",  # a real server for the test module (test_serve.py, the drills)
    "bounded_server": "network",  # tests/pipeline/test_serve.py: a server with tight limits
    "browser": "browser",
}
PIPELINE_RUNS = {
    "tests/pipeline/test_cli.py": {
        "test_run_on_the_bundled_sample_with_defaults_then_from_cache",
        "test_no_cache_runs_every_step",
        "test_run_on_real_data_with_defaults",
    },
    "tests/pipeline/test_coin_flip.py": {"test_only_the_chosen_branch_runs"},
    "tests/pipeline/test_exports.py": {"test_a_run_from_an_export_end_to_end"},
    "tests/pipeline/test_settings_travel.py": {"test_run_hands_every_field_to_its_step"},
    "tests/faults/test_registry_faults.py": {
        "test_a_run_after_its_cached_version_was_deleted_registers_the_model_again",
        "test_serve_outlives_the_removal_of_the_run_folder_a_cached_run_points_into",
    },
}
"""Tests that run the whole pipeline, in modules whose other tests are quick."""
DRILLS = Path(__file__).parent / "faults"
"""The fault drills: each runs the real command in its own process."""


def pytest_collection_modifyitems(config, items):
    """Marks each test of a slow kind that its fixtures, its file or PIPELINE_RUNS show."""
    root = Path(__file__).resolve().parents[1]
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.notebook)
        if DRILLS in item.path.parents:
            item.add_marker(pytest.mark.drill)
        for fixture, kind in KIND_OF_FIXTURE.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(getattr(pytest.mark, kind))
        module = item.path.relative_to(root).as_posix() if root in item.path.parents else ""
        names = PIPELINE_RUNS.get(module, ())
        if getattr(item, "originalname", None) in names:
            item.add_marker(pytest.mark.pipeline_run)
        code = getattr(item, "module", None)
        missing = [name for name in names if code is not None and not hasattr(code, name)]
        if missing:
            raise pytest.UsageError(
                f"{module} has no {', '.join(sorted(missing))}: a test named in PIPELINE_RUNS "
                "(tests/conftest.py) was renamed or removed; name it as it is now there"
            )
    _heaviest_files_first(items)


HEAVY_KINDS = {
    "pipeline_run": 50,  # a whole run: 40 to 120 s on 2 busy cores
    "slow": 30,
    "browser": 5,
    "docker": 3,
    "notebook": 2,
    "network": 2,
    "drill": 2,
}
"""About how many seconds a test of each slow kind takes (its heaviest kind counts)."""
QUICK_TEST = 0.2
"""About how many seconds any other test takes."""


def _heaviest_files_first(items) -> None:
    """Orders the test files by their slow kinds' weight, heaviest first, each file whole.

    pytest-xdist (``--dist loadfile --no-loadscope-reorder``, the Makefile's) hands out
    whole files in this order as its processes come free: the long files start at once,
    and the short ones fill in at the end, instead of one long file running alone after
    the others are done.
    """
    weight: Counter = Counter()
    for item in items:
        marks = list(item.iter_markers())
        if any(m.name == "skip" or (m.name == "skipif" and m.args[:1] == (True,)) for m in marks):
            continue  # skipped here: it takes no time
        weight[item.path] += max([QUICK_TEST, *(HEAVY_KINDS.get(m.name, 0) for m in marks)])
    items.sort(key=lambda item: -weight[item.path])  # stable: a file's tests stay in order


def pinned_versions() -> dict[str, str]:
    """The versions cluster/versions.env pins (KFP_VERSION, KSERVE_VERSION, …)."""
    lines = VERSIONS.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if re.match(r"^[A-Z_]+=", line))


def upstream(name: str) -> Path:
    """A file of tests/upstream/; ``{KFP_VERSION}`` … in NAME are the pinned versions."""
    path = UPSTREAM / name.format(**pinned_versions())
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no facts of the pinned version; after changing cluster/versions.env, "
            "regenerate them: python scripts/upstream_facts.py --mirror-dir DIR"
        )
    return path


@functools.cache
def experiment_validator():
    """Strict validator of the pinned Katib's v1beta1 Experiment (its OpenAPI schemas)."""
    import jsonschema

    spec = json.loads(upstream("katib-{KATIB_VERSION}-experiment-openapi.json").read_text())
    document = {"components": {"schemas": strict_schema(spec["components"]["schemas"])}}
    schema = {"$ref": "#/components/schemas/v1beta1.Experiment", **document}
    return jsonschema.Draft202012Validator(schema)


needs_root = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="needs root (CI has it): to mount a read-only or small tmpfs, or to run a child "
    "process as another user",
)


@contextlib.contextmanager
def tmpfs(path: Path, options: str):
    """Mounts a tmpfs (``ro``, ``size=1m`` …) at ``path`` for the block; unmounts it after."""
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.fixture(scope="session")
def executed_notebooks() -> Path:
    """notebooks/executed/, current: `make notebooks` wrote it (CI), or it is written here."""
    import sys

    sources = sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))
    executed = NOTEBOOKS / "executed"
    if any(
        not (executed / s.name).is_file() or (executed / s.name).stat().st_mtime < s.stat().st_mtime
        for s in sources
    ):
        result = subprocess.run(
            [sys.executable, NOTEBOOKS.parent / "scripts" / "run_notebooks.py"],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    return executed


# The browser tests (tests/site/): Debian's Chromium, driven by Playwright, no browser
# downloaded. Every test there needs it and is skipped without it.
BROWSER_TESTS = Path(__file__).parent / "site"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As root in a closed network: no sandbox, and none of Chromium's own calls home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NO_CHROMIUM = "needs Debian's chromium: `make browser` installs it (as root; .ci/run does)"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    # Before any fixture: the site's fixtures first execute every notebook, which is wasted
    # when there is no browser to look at the result.
    if BROWSER_TESTS in item.path.parents and not Path(CHROMIUM).is_file():
        pytest.skip(NO_CHROMIUM)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    # A server's log says why a page did not do what was expected: a fixture that starts
    # one lists its log in `item.failure_logs`, shown under the failure.
    report = yield
    if report.failed:
        for log in getattr(item, "failure_logs", []):
            if log.is_file():
                report.sections.append((f"log {log.name}", log.read_text(errors="replace")))
    return report


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def page_problems(page, only_host=None):
    """What goes wrong in a browser page: console errors, page errors, failed requests,
    HTTP errors and, given ONLY_HOST (host:port), any request to another host."""
    from urllib.parse import urlsplit

    problems = []
    page.on(
        "console",
        lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
    )
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} {r.failure}"))
    page.on(
        "response",
        lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None,
    )
    if only_host is not None:
        page.on(
            "request",
            lambda r: (
                None
                if urlsplit(r.url).netloc == only_host
                else problems.append(f"request off this machine: {r.url}")
            ),
        )
    return problems


@pytest.fixture(scope="session")
def cluster_package(tmp_path_factory):
    """The pipeline as the cluster route compiles it: its images named by a content tag."""
    from crypto_pipeline.compiled import compile_pipeline

    path = tmp_path_factory.mktemp("cluster") / "crypto_pipeline.yaml"
    return compile_pipeline(path, tag="0.1.0-0123456789ab")
