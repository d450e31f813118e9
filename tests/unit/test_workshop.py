"""workshop: how notebook cells find a Docker engine, a cluster or a KFP host, or do without."""

import stat

import pytest

from crypto_pipeline import workshop
from crypto_pipeline.workshop import CommandError


def fake_tool(folder, name, script):
    path = folder / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def bare_path(tmp_path, monkeypatch):
    """A PATH with only the fakes a test puts there."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", str(folder))
    return folder


def test_docker_engine_absent_installed_but_stopped_and_running(bare_path):
    missing = workshop.docker_engine()
    assert not missing and "not installed" in missing.detail
    fake_tool(bare_path, "docker", "echo 'Cannot connect to the Docker daemon' >&2; exit 1")
    stopped = workshop.docker_engine()
    assert not stopped and "no engine answers" in stopped.detail
    fake_tool(bare_path, "docker", "echo 27.5.1")
    running = workshop.docker_engine()
    assert running and running.detail == "Docker Engine 27.5.1"
    assert str(running) == "Docker engine: available (Docker Engine 27.5.1)"
    assert stopped.missing == "no Docker engine here"


def test_kube_context_needs_a_context_and_an_answering_server(bare_path):
    assert "not installed" in workshop.kube_context().detail
    fake_tool(bare_path, "kubectl", "echo 'error: current-context is not set' >&2; exit 1")
    assert "no current context" in workshop.kube_context().detail
    fake_tool(
        bare_path,
        "kubectl",
        'if [ "$2" = current-context ]; then echo kind-poets; else exit 1; fi',
    )
    down = workshop.kube_context()
    assert not down and "'kind-poets' does not answer" in down.detail
    fake_tool(
        bare_path,
        "kubectl",
        'if [ "$2" = current-context ]; then echo kind-poets; '
        """else echo '{"serverVersion": {"gitVersion": "v1.33.1"}}'; fi""",
    )
    up = workshop.kube_context()
    assert up and up.detail == "context 'kind-poets', Kubernetes v1.33.1"


def test_kfp_host_empty_unreachable_failing_and_healthy(httpserver):
    assert "set the notebook's kfp_host parameter" in workshop.kfp_host("").detail
    assert "nothing answered" in workshop.kfp_host("http://127.0.0.1:9", timeout_s=2).detail
    httpserver.expect_request("/apis/v2beta1/healthz").respond_with_data("no", status=503)
    assert "answered 503" in workshop.kfp_host(httpserver.url_for("/")).detail
    httpserver.clear()
    httpserver.expect_request("/apis/v2beta1/healthz").respond_with_json({"commit_sha": "x"})
    assert workshop.kfp_host(httpserver.url_for("/"))


def test_sh_shows_runs_and_fails_loudly(capsys, tmp_path):
    assert workshop.sh("echo hello", run=False, why_not="no engine") is None
    assert capsys.readouterr().out == "$ echo hello\n  (shown, not run here: no engine)\n"
    assert workshop.sh("echo hello", cwd=tmp_path) is None
    assert capsys.readouterr().out == "$ echo hello\nhello\n"
    assert workshop.sh("echo hello", cwd=tmp_path, capture=True) == "hello\n"
    assert workshop.sh("echo hello", run=False, capture=True) is None
    with pytest.raises(CommandError, match="`exit 3` failed with exit status 3"):
        workshop.sh("exit 3", cwd=tmp_path)
    assert workshop.sh("echo oops >&2; exit 3", cwd=tmp_path, check=False, capture=True) == ""
    assert "oops" in capsys.readouterr().out


def test_project_root_is_the_checkout():
    root = workshop.project_root()
    assert (root / "notebooks").is_dir() and (root / "docker-intro").is_dir()


def test_lint_dockerfiles_reports_findings(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM debian\nRUN cd /tmp && apt-get install curl\n")
    findings = workshop.lint_dockerfiles(dockerfile)
    codes = {line.split()[1] for line in findings}
    assert {"DL3006", "DL3003", "DL3008"} <= codes, findings
    assert all(line.startswith(f"{dockerfile}:") for line in findings)


def test_validate_manifests_lists_resources_and_refuses_bad_ones(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: poets\n")
    assert workshop.validate_manifests(good) == ["namespace/poets: valid"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: five\n"
    )
    with pytest.raises(CommandError, match="do not match the Kubernetes schema"):
        workshop.validate_manifests(bad)


def test_registry_and_wait_for_http(httpserver):
    host = httpserver.url_for("/").removeprefix("http://").rstrip("/")
    httpserver.expect_request("/v2/").respond_with_json({})
    assert workshop.registry(host)
    assert "start one with" in workshop.registry("127.0.0.1:9", timeout_s=2).detail
    httpserver.expect_request("/page").respond_with_data("hello")
    assert workshop.wait_for_http(httpserver.url_for("/page"), timeout_s=5) == "hello"
    with pytest.raises(TimeoutError, match="did not answer within 1 s"):
        workshop.wait_for_http("http://127.0.0.1:9/", timeout_s=1)


def test_manifest_objects_lists_what_the_intro_deploys():
    path = workshop.project_root() / "kubernetes-intro" / "deployment.yaml"
    assert [(o["kind"], o["name"]) for o in workshop.manifest_objects(path)] == [
        ("Namespace", "poets"),
        ("Deployment", "nginx-server"),
        ("Service", "nginx-server"),
        ("NetworkPolicy", "nginx-server"),
    ]
