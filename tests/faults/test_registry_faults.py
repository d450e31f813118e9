"""Fault drills for the model registry: concurrent deploys, failed and killed deploys, and
runs or servers that refer to a model that was deleted. The commands run in real
processes, as a user runs them."""

from __future__ import annotations

import datetime
import fcntl
import json
import multiprocessing
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from crypto_pipeline.registry import register

QUICK = ("--trials", "2", "--epochs", "4")


def cli(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "crypto_pipeline.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def finished(process: subprocess.Popen, timeout_s: float = 600) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout_s)
    assert "Traceback" not in out + err, err
    return process.returncode, out, err


def deploy(model: Path, registry: str, out: Path) -> subprocess.Popen:
    return cli("deploy", "--model", str(model), "--registry", registry, "--output-dir", str(out))


def files(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` and its size: what a version holds."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def versions(registry: Path) -> dict[str, dict[str, int]]:
    """The registry's versions as a reader sees them: visible folders and their files."""
    models = registry / "crypto"
    return {p.name: files(p) for p in models.iterdir() if not p.name.startswith(".")}


def staged(registry: Path) -> list[Path]:
    return sorted((registry / "crypto").glob(".staging-*"))


@pytest.fixture
def model(trained) -> Path:
    return trained[0] / "model"


def corrupt_copy(model: Path, where: Path, name: str) -> Path:
    """A copy of ``model`` whose file ``name`` is cut to its first 300 bytes."""
    shutil.copytree(model, where)
    (where / name).write_bytes((model / name).read_bytes()[:300])
    return where


def _registered(out: str) -> list[str]:
    """The version numbers a deploy's output says it registered."""
    return re.findall(r"^registered version (\d+) at ", out, re.M)


def _register_at_once(start, model: Path, registry: Path, numbers) -> None:
    """In a process of its own: registers ``model`` as soon as every process is ready."""
    start.wait()
    numbers.put(register(model, str(registry))[0])


def test_concurrent_register_calls_in_processes_get_distinct_complete_versions(model, tmp_path):
    registry = tmp_path / "registry"
    spawn = multiprocessing.get_context("spawn")
    start, numbers = spawn.Barrier(3), spawn.Queue()
    processes = [
        spawn.Process(target=_register_at_once, args=(start, model, registry, numbers))
        for _ in range(3)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(600)
        assert process.exitcode == 0
    said = sorted(numbers.get(timeout=10) for _ in processes)
    assert said == [1, 2, 3]
    assert versions(registry) == {str(n): files(model) for n in said}
    assert staged(registry) == []


def test_concurrent_register_calls_in_threads_get_distinct_complete_versions(model, tmp_path):
    registry = tmp_path / "registry"
    start = threading.Barrier(4)

    def one(_):
        start.wait()
        return register(model, str(registry))[0]

    with ThreadPoolExecutor(4) as pool:
        numbers = sorted(pool.map(one, range(4)))
    assert numbers == [1, 2, 3, 4]
    assert versions(registry) == {str(n): files(model) for n in numbers}


@pytest.mark.parametrize("cut", ["saved_model.pb", "variables/variables.index"])
def test_a_deploy_whose_model_fails_its_smoke_test_leaves_the_registry_as_it_was(
    model, tmp_path, cut
):
    registry = tmp_path / "registry"
    register(model, str(registry))
    before = versions(registry)
    broken = corrupt_copy(model, tmp_path / "broken", cut)
    for _ in range(2):  # a retry uses no number either
        rc, out, err = finished(deploy(broken, str(registry), tmp_path / "out"))
        assert rc == 1 and "registered version" not in out
        assert err.startswith(f"error: the model in {broken} does not load"), err
        assert "\n  fix: train it again" in err
        assert versions(registry) == before and staged(registry) == []
    # The next good deploy takes the next number after the last good version.
    rc, out, _ = finished(deploy(model, str(registry), tmp_path / "out"))
    assert rc == 0 and _registered(out) == ["2"]


@pytest.mark.parametrize("odd", ["dangling link", "named pipe"])
def test_a_model_folder_holding_what_cannot_be_copied_is_named(model, tmp_path, odd):
    registry = tmp_path / "registry"
    register(model, str(registry))
    before = versions(registry)
    odd_model = tmp_path / "odd"
    shutil.copytree(model, odd_model)
    if odd == "dangling link":
        (odd_model / "notes").symlink_to(tmp_path / "nowhere")
    else:
        os.mkfifo(odd_model / "notes")
    rc, out, err = finished(deploy(odd_model, str(registry), tmp_path / "out"), timeout_s=120)
    assert rc == 1 and "registered version" not in out
    assert err.startswith(f"error: the model in {odd_model} cannot be copied: "), err
    assert "\n  fix: deploy a model folder as train writes it" in err
    assert versions(registry) == before and staged(registry) == []


def test_a_killed_deploys_leftovers_are_removed_by_the_next_deploy(model, tmp_path):
    registry = tmp_path / "registry"
    killed = deploy(model, str(registry), tmp_path / "killed")
    deadline = time.monotonic() + 300
    while not (registry.is_dir() and staged(registry)):
        assert killed.poll() is None, "the deploy ended before it could be killed while staging"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert staged(registry), "the killed deploy left nothing to clean"
    rc, out, err = finished(deploy(model, str(registry), tmp_path / "out"))
    assert rc == 0, err
    assert staged(registry) == []
    assert versions(registry) == {"1": files(model)}


def test_a_version_claimed_but_not_yet_renamed_is_seen_by_no_reader_nor_removed(model, tmp_path):
    """The moment between a deploy's claim (its folder) and the rename of its copy onto it."""
    from crypto_pipeline.registry import latest_version, registered_versions, version_complete

    registry = tmp_path / "registry"
    register(model, str(registry))
    with open(registry / "crypto" / ".deploy.lock", "a") as lock:  # a deploy mid-publish
        fcntl.flock(lock, fcntl.LOCK_SH)
        (registry / "crypto" / "2").mkdir()
        assert not version_complete(registry / "crypto" / "2")
        assert registered_versions(str(registry)) == [1]
        assert latest_version(f"file://{registry}") == 1
        rc, out, err = finished(deploy(model, str(registry), tmp_path / "out"))
        assert rc == 0 and _registered(out) == ["3"], err
        assert (registry / "crypto" / "2").is_dir()  # another deploy's claim: left alone
    # That deploy died there: the next deploy removes its empty claim.
    rc, out, err = finished(deploy(model, str(registry), tmp_path / "out"))
    assert rc == 0 and _registered(out) == ["4"], err
    assert versions(registry) == {n: files(model) for n in ("1", "3", "4")}
    assert registered_versions(str(registry)) == [1, 3, 4]


def memory_registry(tmp_path: Path) -> tuple[str, str]:
    """A fresh ``memory://`` registry (fsspec's stand-in for a bucket): its URI and root."""
    return f"memory://registry-{tmp_path.name}", f"/registry-{tmp_path.name}/crypto"


def left_by_a_deploy(model: Path, folder: str, age_s: float, claim: str = "") -> None:
    """Writes what a deploy killed while copying into ``folder`` leaves: every file of the
    model but ``saved_model.pb`` (copied last), ``age_s`` seconds old, and its claim."""
    import fsspec

    fs = fsspec.filesystem("memory")
    written = [claim] if claim else []
    for path in model.rglob("*"):
        if path.is_file() and path.name != "saved_model.pb":
            written.append(f"{folder}/{path.relative_to(model).as_posix()}")
            fs.pipe_file(written[-1], path.read_bytes())
    if claim:
        fs.pipe_file(claim, b"")  # as older deploys wrote it: no time inside
    then = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=age_s)
    for path in written:
        fs.store[path].modified = then


def test_a_bucket_deploy_killed_mid_copy_is_no_version_and_the_next_deploy_cleans_it(
    model, tmp_path, capsys
):
    import fsspec

    from crypto_pipeline.registry import latest_version, registered_versions, version_complete

    fs = fsspec.filesystem("memory")
    registry, root = memory_registry(tmp_path)
    register(model, registry)
    two_days, a_minute = 2 * 24 * 3600, 60
    left_by_a_deploy(model, f"{root}/2", two_days, claim=f"{root}/.claims/2")  # killed
    left_by_a_deploy(model, f"{root}/3", a_minute, claim=f"{root}/.claims/3")  # copying
    stale = f"{root}/.staging-{int(time.time()) - two_days}-0123456789ab"
    left_by_a_deploy(model, stale, two_days)
    fresh = f"{root}/.staging-{int(time.time())}-ba9876543210"
    left_by_a_deploy(model, fresh, a_minute)
    # No reader takes a partial version for one.
    assert not version_complete(f"{registry}/crypto/2")
    assert registered_versions(registry) == [1] and latest_version(registry) == 1

    assert register(model, registry)[0] == 4  # a number no deploy took before
    said = capsys.readouterr().out
    assert f"removed {registry}/crypto/2: incomplete, left by a killed deploy\n" in said
    assert "crypto/3" not in said
    assert not fs.find(f"{root}/2") and not fs.exists(stale)
    assert fs.isfile(f"{root}/.claims/2")  # its number stays taken
    assert fs.find(f"{root}/3") and fs.exists(fresh)  # young: perhaps still being written
    assert registered_versions(registry) == [1, 4]
    assert register(model, registry)[0] == 5


def test_a_bucket_version_a_failed_deploy_removed_keeps_its_number_taken(model, tmp_path):
    import fsspec

    from crypto_pipeline.config import DeployConfig
    from crypto_pipeline.deploy import deploy as deploy_model
    from crypto_pipeline.registry import registered_versions

    registry, root = memory_registry(tmp_path)
    not_a_folder = tmp_path / "out"
    not_a_folder.write_text("the manifest cannot go here\n")
    with pytest.raises(OSError):
        deploy_model(model, not_a_folder, DeployConfig(registry_uri=registry))
    assert registered_versions(registry) == []
    assert fsspec.filesystem("memory").isfile(f"{root}/.claims/1")
    assert register(model, registry)[0] == 2


def test_a_file_registry_never_reaches_the_manifest_as_a_path(model, tmp_path):
    registry = tmp_path / "registry"
    rc, out, err = finished(deploy(model, f"file://{registry}", tmp_path / "out"))
    assert rc == 0, err
    manifest_text = (tmp_path / "out" / "inferenceservice.yaml").read_text()
    assert "file://" not in manifest_text and str(tmp_path) not in manifest_text
    (container,) = yaml.safe_load(manifest_text)["spec"]["predictor"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["STORAGE_URI"] == "pvc://crypto-models/crypto/1"
    assert versions(registry) == {"1": files(model)}


def test_a_registry_that_is_a_file_is_an_error_with_a_fix(model, tmp_path):
    registry = tmp_path / "registry"
    registry.write_text("keep me\n")
    rc, _, err = finished(deploy(model, str(registry), tmp_path / "out"))
    assert rc == 1
    assert err.startswith(f"error: the registry {registry} cannot hold models"), err
    assert "\n  fix: pass a folder" in err
    assert registry.read_text() == "keep me\n"


# Runs and servers that refer to deleted models.


@pytest.fixture(scope="module")
def pipeline_root(tmp_path_factory) -> Path:
    """A pipeline root with one finished run (and its cache and registry)."""
    root = tmp_path_factory.mktemp("runs")
    rc, _, err = finished(cli("run", "--pipeline-root", str(root), *QUICK))
    assert rc == 0, err
    return root


def latest_summary(root: Path) -> dict:
    return json.loads((root / "latest" / "summary.json").read_text())


def cached_run(root: Path) -> dict:
    """A run whose every step comes from the cache: it points into earlier run folders."""
    rc, _, err = finished(cli("run", "--pipeline-root", str(root), *QUICK))
    assert rc == 0, err
    summary = latest_summary(root)
    assert "train" in summary["cache_hits"] and "deploy" in summary["cache_hits"]
    return summary


def test_a_run_after_its_cached_version_was_deleted_registers_the_model_again(pipeline_root):
    summary = cached_run(pipeline_root)
    gone = Path(summary["deployment"]["version_uri"])
    shutil.rmtree(gone)
    rc, out, err = finished(cli("run", "--pipeline-root", str(pipeline_root), *QUICK))
    assert rc == 0, err
    again = latest_summary(pipeline_root)
    assert "deploy" not in again["cache_hits"] and "train" in again["cache_hits"]
    assert (Path(again["deployment"]["version_uri"]) / "saved_model.pb").is_file()
    assert f"deployed   version {again['deployment']['version']}" in out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_outlives_the_removal_of_the_run_folder_a_cached_run_points_into(pipeline_root):
    summary = cached_run(pipeline_root)
    trained_in = Path(summary["model_dir"]).parents[2]
    assert trained_in != Path(summary["run_dir"])
    shutil.rmtree(trained_in)
    port = free_port()
    server = cli("serve", "--pipeline-root", str(pipeline_root), "--port", str(port))
    try:
        deadline = time.monotonic() + 300
        while True:
            assert server.poll() is None, server.communicate()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models/crypto") as r:
                    assert r.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.5)
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=60)
    assert out.startswith(f"serving {summary['deployment']['version_uri']} as 'crypto'"), out
    # With the registered copy gone too, serve says which models are gone and what to do.
    shutil.rmtree(summary["deployment"]["version_uri"])
    rc, _, err = finished(cli("serve", "--pipeline-root", str(pipeline_root), "--port", str(port)))
    assert rc == 1
    assert err.startswith(f"error: the latest run's model is gone: {summary['model_dir']}"), err
    assert summary["deployment"]["version_uri"] in err
    assert "\n  fix: run the pipeline again" in err


@pytest.mark.parametrize(
    "content",
    [b'{"model_dir": "/srv/m', b"[]", b"\x00\xff\xfe not json", b'{"model_dir": 3}'],
    ids=["cut short", "a list", "binary", "no path"],
)
def test_serve_with_a_broken_latest_summary_is_an_error_with_a_fix(tmp_path, content):
    run = tmp_path / "crypto-pipeline-1"
    run.mkdir()
    (run / "summary.json").write_bytes(content)
    (tmp_path / "latest").symlink_to(run.name)
    rc, out, err = finished(
        cli("serve", "--pipeline-root", str(tmp_path), "--port", str(free_port()))
    )
    assert rc == 1 and out == ""
    summary = tmp_path / "latest" / "summary.json"
    assert err == (
        f"error: {summary} is not a run's summary (unreadable or cut short)\n"
        "  fix: run the pipeline again (`make pipeline`), or pass --model DIR\n"
    )


def test_make_clean_keeps_every_registered_model_unless_asked(tmp_path):
    root = Path(__file__).resolve().parents[2]
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(root / name, tmp_path / name)
    kept = ["runs/models/crypto/1/saved_model.pb", "runs/docker/models/crypto/1/saved_model.pb"]
    kept += ["runs/notebooks/crypto/models/crypto/2/saved_model.pb"]
    gone = ["runs/crypto-pipeline-a/train-step/model/saved_model.pb", "runs/.kfp_cache/e.json"]
    gone += ["runs/notebooks/crypto/crypto-pipeline-b/ingest-step/raw/x.csv", "build/site/i.html"]
    for name in kept + gone:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    (tmp_path / "runs/models/crypto/1/assets").mkdir()  # an empty folder a model may hold
    (tmp_path / "runs/latest").symlink_to("crypto-pipeline-a")
    done = subprocess.run(["make", "-s", "clean"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "kept the registered models" in done.stdout
    assert all((tmp_path / name).is_file() for name in kept)
    assert (tmp_path / "runs/models/crypto/1/assets").is_dir()
    assert not any((tmp_path / name).exists() for name in gone)
    assert not (tmp_path / "runs/latest").is_symlink()
    assert not (tmp_path / "runs/crypto-pipeline-a").exists()
    done = subprocess.run(
        ["make", "-s", "clean", "MODELS=delete"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0 and not (tmp_path / "runs").exists()
