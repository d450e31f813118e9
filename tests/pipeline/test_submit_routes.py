"""Submitting to a cluster: one namespace, the routes that sign in, waiting for the run."""

import json
from pathlib import Path

import pytest
from test_pipeline import COMMITTED, kfp_api

from crypto_pipeline import __version__
from crypto_pipeline.cli import main
from crypto_pipeline.submit import ROUTES, TOKEN_AUDIENCE

ROOT = Path(__file__).resolve().parents[2]


def submitted(httpserver) -> tuple[dict, dict]:
    requests = {(r.method, r.path): r for r, _ in httpserver.log}
    experiment = json.loads(requests["POST", "/apis/v2beta1/experiments"].data)
    run = json.loads(requests["POST", "/apis/v2beta1/runs"].data)
    return experiment, run


def test_the_namespace_given_once_reaches_the_run_and_the_deploy(
    httpserver, capsys, cluster_package
):
    """Before, --namespace reached kfp.Client only: the deploy step stayed in kubeflow."""
    kfp_api(httpserver)
    host = httpserver.url_for("").rstrip("/")
    assert (
        main(["submit", "--host", host, "--package", str(cluster_package), "--namespace", "team-a"])
        == 0
    )
    experiment, run = submitted(httpserver)
    assert experiment["namespace"] == "team-a"
    assert run["runtime_config"]["parameters"]["deploy"]["namespace"] == "team-a"
    assert "namespace team-a" in capsys.readouterr().out


def test_a_second_different_namespace_is_refused(capsys, cluster_package):
    argv = ["submit", "--host", "http://127.0.0.1:9", "--package", str(cluster_package)]
    assert main([*argv, "--namespace", "team-a", "--param", "deploy.namespace=team-b"]) == 1
    assert "give the namespace once" in capsys.readouterr().err


def test_without_namespace_the_standalone_default_is_sent(httpserver, cluster_package):
    kfp_api(httpserver)
    host = httpserver.url_for("").rstrip("/")
    assert main(["submit", "--host", host, "--package", str(cluster_package)]) == 0
    parameters = submitted(httpserver)[1]["runtime_config"]["parameters"]
    assert parameters["deploy"]["namespace"] == "kubeflow"


def test_the_ingress_route_sends_the_session_cookie(httpserver, monkeypatch, cluster_package):
    kfp_api(httpserver)
    monkeypatch.setenv("KF_PIPELINES_COOKIE", "oauth2_proxy_kubeflow=abc")
    host = httpserver.url_for("").rstrip("/")
    assert (
        main(["submit", "--host", host, "--package", str(cluster_package), "--namespace", "u"]) == 0
    )
    for request, _ in httpserver.log:
        assert request.headers.get("Cookie") == "oauth2_proxy_kubeflow=abc", request.path


def test_a_refused_sign_in_names_the_routes_that_work(httpserver, capsys, cluster_package):
    """oauth2-proxy (m2m-dex-only) answers a Kubernetes token from outside with a refusal."""
    httpserver.expect_request("/apis/v2beta1/healthz").respond_with_json({})
    httpserver.expect_request("/apis/v2beta1/experiments").respond_with_data(
        "Unauthorized", status=401
    )
    host = httpserver.url_for("").rstrip("/")
    argv = ["submit", "--host", host, "--package", str(cluster_package), "--namespace", "u"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "refused the request (401)" in err
    assert "m2m-dex-only" in err and "KF_PIPELINES_COOKIE" in err and TOKEN_AUDIENCE in err
    assert "Traceback" not in err


def runs_api(httpserver, state: str, error: str = ""):
    kfp_api(httpserver)
    answer = {"run_id": "run-1", "state": state}
    if error:
        answer["error"] = {"message": error}
    httpserver.expect_request("/apis/v2beta1/runs/run-1", method="GET").respond_with_json(answer)


def test_wait_ends_with_the_runs_state(httpserver, capsys, cluster_package):
    runs_api(httpserver, "SUCCEEDED")
    host = httpserver.url_for("").rstrip("/")
    assert main(["submit", "--host", host, "--package", str(cluster_package), "--wait"]) == 0
    assert "run run-1: SUCCEEDED" in capsys.readouterr().out


def test_wait_fails_when_the_run_fails(httpserver, capsys, cluster_package):
    runs_api(httpserver, "FAILED", "deploy-step: the InferenceService is not serving")
    host = httpserver.url_for("").rstrip("/")
    assert main(["submit", "--host", host, "--package", str(cluster_package), "--wait"]) == 1
    assert "run run-1 ended FAILED: deploy-step" in capsys.readouterr().err


def test_a_package_with_the_reused_tag_is_refused(httpserver, capsys):
    """(f) Before, nothing said that a rebuilt 0.1.0 image is never pulled again."""
    kfp_api(httpserver)
    host = httpserver.url_for("").rstrip("/")
    assert main(["submit", "--host", host, "--package", str(COMMITTED)]) == 1
    err = capsys.readouterr().err
    assert f"names its images by the reused tag {__version__}" in err and "build_images.sh" in err
    assert not httpserver.log  # nothing reached the API
    argv = ["submit", "--host", host, "--package", str(COMMITTED), "--allow-version-tag"]
    assert main(argv) == 0


def test_compile_names_the_images_by_this_checkouts_content(tmp_path):
    """The cluster route's compile needs no --tag: the checkout's, as the images are built."""
    import subprocess

    from crypto_pipeline.compiled import compiled_tasks

    tag = subprocess.run(
        ["python3", ROOT / "scripts" / "image_tag.py"], capture_output=True, text=True, check=True
    ).stdout.strip()
    # Into a folder that does not exist yet, as the README's build/crypto_pipeline.yaml.
    assert main(["compile", "-o", str(tmp_path / "build" / "p.yaml")]) == 0
    images = {row["image"] for row in compiled_tasks(tmp_path / "build" / "p.yaml")}
    assert images and all(i.endswith(f":{tag}") for i in images), images


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_the_readme_shows_each_route(route):
    readme = (ROOT / "README.md").read_text()
    assert ROUTES[route]["host"] in readme, route
    if ROUTES[route]["port_forward"]:
        assert ROUTES[route]["port_forward"] in readme, route


def test_a_pipeline_without_a_namespace_parameter_gets_none(httpserver, tmp_path):
    """The namespace reaches the run always, the parameter only where the pipeline has one."""
    from crypto_workshop import coin_flip

    kfp_api(httpserver)
    package = coin_flip.compile_pipeline(tmp_path / "condition.yaml")
    host = httpserver.url_for("").rstrip("/")
    argv = ["submit", "--host", host, "--package", str(package), "--namespace", "team-a"]
    assert main([*argv, "--param", "seed=7"]) == 0
    experiment, run = submitted(httpserver)
    assert experiment["namespace"] == "team-a"
    # Before, it also got source_fingerprint, which the sample has no parameter for.
    assert run["runtime_config"]["parameters"] == {"seed": 7}


def test_a_file_that_is_no_pipeline_is_refused(tmp_path, capsys):
    package = tmp_path / "notes.yaml"
    package.write_text("- just\n- a list\n")
    assert main(["submit", "--host", "http://127.0.0.1:9", "--package", str(package)]) == 1
    assert "is not a compiled pipeline" in capsys.readouterr().err
