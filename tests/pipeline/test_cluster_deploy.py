"""The cluster deploy against a stand-in Kubernetes API: apply, wait until served, explain."""

import json
import re
from types import SimpleNamespace

import fsspec
import pytest
import yaml
from kubernetes import client

from crypto_pipeline import cluster_apply
from crypto_pipeline import deploy as deploy_module
from crypto_pipeline.cluster_apply import API_RULES, apply, wait_until_served
from crypto_pipeline.compiled import compile_pipeline
from crypto_pipeline.config import DeployConfig
from crypto_pipeline.deploy import deploy
from crypto_pipeline.errors import PipelineError
from crypto_pipeline.inference_service import DEPLOY_ID, inference_service

ISVCS = "/apis/serving.kserve.io/v1beta1/namespaces/{ns}/inferenceservices"
PODS = "/api/v1/namespaces/{ns}/pods"


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch):
    monkeypatch.setattr(cluster_apply, "POLL_SECONDS", 0.05)
    # Each cluster deploy marks its pods with a new id: "d1" here, so that the stand-in
    # API's pods can carry it.
    monkeypatch.setattr(deploy_module.uuid, "uuid4", lambda: SimpleNamespace(hex="d1"))


def api_client(httpserver):
    configuration = client.Configuration(host=httpserver.url_for("").rstrip("/"))
    return client.ApiClient(configuration)


def isvc(manifest, ready: bool, reason: str = "", message: str = ""):
    status = "True" if ready else "False"
    conditions = [
        {"type": "PredictorReady", "status": status, "reason": reason, "message": message},
        {"type": "Ready", "status": status},
    ]
    return {**manifest, "status": {"conditions": conditions}}


def pod(
    name: str,
    ready: bool,
    waiting: str = "",
    exit_code: int = 0,
    init_waiting: str = "",
    deploy_id: str = "d1",
):
    container = {"name": "kserve-container", "ready": ready, "restartCount": 3, "image": "x"}
    container["imageID"] = ""
    if waiting:
        container["state"] = {"waiting": {"reason": waiting, "message": "back-off 40s"}}
    else:
        container["state"] = {"running": {}}
    if exit_code:
        container["lastState"] = {"terminated": {"exitCode": exit_code, "reason": "Error"}}
    status = {
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        "containerStatuses": [container],
    }
    if init_waiting:
        status["initContainerStatuses"] = [
            {
                "name": "storage-initializer",
                "ready": False,
                "restartCount": 2,
                "image": "kserve/storage-initializer",
                "imageID": "",
                "state": {"waiting": {"reason": init_waiting}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
            }
        ]
    metadata = {"name": name, "namespace": "kubeflow", "annotations": {DEPLOY_ID: deploy_id}}
    return {"metadata": metadata, "status": status}


def serve_cluster(httpserver, manifest, isvc_answer, pods, log="", ns="kubeflow"):
    base = ISVCS.format(ns=ns)
    httpserver.expect_request(base, method="POST").respond_with_json(manifest)
    httpserver.expect_request(f"{base}/crypto", method="GET").respond_with_json(isvc_answer)
    httpserver.expect_request(PODS.format(ns=ns), method="GET").respond_with_json(
        {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": pods}
    )
    for p in pods:
        httpserver.expect_request(
            f"{PODS.format(ns=ns)}/{p['metadata']['name']}/log", method="GET"
        ).respond_with_data(log)


def test_a_cluster_deploy_waits_until_the_model_is_served(trained, tmp_path, httpserver):
    config = DeployConfig(registry_uri="memory://registry", target="cluster")
    manifest = inference_service("memory://registry/crypto/1", config, deploy_id="d1")
    serve_cluster(httpserver, manifest, isvc(manifest, True), [pod("crypto-predictor-1", True)])
    result = deploy(
        trained[0] / "model", tmp_path / "out", config, api_client=api_client(httpserver)
    )
    assert result.applied and result.storage_uri == "memory://registry/crypto/1"
    post = httpserver.log[0][0]
    assert post.method == "POST" and json.loads(post.data) == manifest
    assert manifest["spec"]["predictor"]["annotations"] == {DEPLOY_ID: "d1"}
    assert post.headers["Content-Type"] == "application/json"
    pods = [r for r, _ in httpserver.log if r.path.endswith("/pods")]
    assert pods and pods[0].args["labelSelector"] == "serving.kserve.io/inferenceservice=crypto"


def test_a_crash_looping_predictor_fails_the_deploy_with_its_own_reason(
    trained, tmp_path, httpserver
):
    """Before, the step returned once the object was created: a green run, no model."""
    config = DeployConfig(registry_uri="memory://crash", target="cluster", ready_timeout=1)
    manifest = inference_service("memory://crash/crypto/1", config)
    answer = isvc(manifest, False, "MinimumReplicasUnavailable", "Deployment lacks replicas")
    crashing = pod("crypto-predictor-1", False, waiting="CrashLoopBackOff", exit_code=1)
    log = "serving /mnt/models\nerror: /mnt/models holds no SavedModel\n"
    serve_cluster(httpserver, manifest, answer, [crashing], log=log)
    with pytest.raises(PipelineError) as caught:
        deploy(trained[0] / "model", tmp_path / "out", config, api_client=api_client(httpserver))
    message = str(caught.value)
    assert "kubeflow/crypto is not serving after 1 s" in message
    assert "PredictorReady: MinimumReplicasUnavailable" in message
    assert "kserve-container: CrashLoopBackOff" in message and "exited with code 1" in message
    assert "its last log line: error: /mnt/models holds no SavedModel" in message
    assert "kubectl -n kubeflow describe inferenceservice crypto" in message
    assert not (tmp_path / "out" / "deployment.json").exists()  # no record of a served model
    # The cluster accepted a manifest naming version 1: it stays, and the error says so.
    assert "version 1 stays registered: the InferenceService names it" in message
    assert fsspec.filesystem("memory").isfile("memory://crash/crypto/1/saved_model.pb")


def test_a_storage_initializer_that_fails_is_named(httpserver):
    manifest = inference_service("s3://mlpipeline/v2/artifacts/x/model", deploy_id="d1")
    stuck = pod("crypto-predictor-2", False, init_waiting="CrashLoopBackOff")
    serve_cluster(httpserver, manifest, isvc(manifest, False), [stuck])
    with pytest.raises(PipelineError, match="storage-initializer: CrashLoopBackOff"):
        wait_until_served(manifest, api_client(httpserver), timeout=0.2)


def test_ready_is_not_enough_while_a_new_pod_crash_loops(httpserver):
    """During a roll-out the old pod keeps the InferenceService Ready."""
    manifest = inference_service("gs://bucket/models/crypto/2", deploy_id="d1")
    pods = [
        pod("crypto-predictor-old", True, deploy_id="d0"),
        pod("crypto-predictor-new", False, "ErrImagePull"),
    ]
    serve_cluster(httpserver, manifest, isvc(manifest, True), pods)
    with pytest.raises(PipelineError, match="crypto-predictor-new: kserve-container: ErrImagePull"):
        wait_until_served(manifest, api_client(httpserver), timeout=0.2)


def test_an_earlier_deploys_ready_pod_is_not_this_deploy_served(httpserver):
    """Right after a replace, only the old pod exists, ready: not yet this deploy's model."""
    manifest = inference_service("gs://bucket/models/crypto/3", deploy_id="d1")
    serve_cluster(httpserver, manifest, isvc(manifest, True), [pod("old", True, deploy_id="d0")])
    with pytest.raises(PipelineError, match="only an earlier deploy's serves"):
        wait_until_served(manifest, api_client(httpserver), timeout=0.2)


def test_an_evicted_pod_left_listed_does_not_hold_the_wait_up(httpserver):
    """Kind laptops evict pods under disk pressure; they stay listed until collected."""
    manifest = inference_service("gs://bucket/models/crypto/3", deploy_id="d1")
    evicted = pod("evicted", False, deploy_id="d0")
    evicted["status"]["phase"] = "Failed"
    serving = pod("serving", True)
    serving["status"]["phase"] = "Running"
    serve_cluster(httpserver, manifest, isvc(manifest, True), [evicted, serving])
    assert wait_until_served(manifest, api_client(httpserver), timeout=0.2)


def test_a_missing_predictor_pod_names_the_service_account(httpserver):
    manifest = inference_service("gs://bucket/models/crypto/3", deploy_id="d1")
    serve_cluster(httpserver, manifest, isvc(manifest, False), [])
    with pytest.raises(PipelineError, match="scripts/cluster.sh storage"):
        wait_until_served(manifest, api_client(httpserver), timeout=0.2)


def test_a_refused_apply_says_which_role_is_missing(trained, tmp_path, httpserver):
    config = DeployConfig(target="cluster", namespace="team-a")
    httpserver.expect_request(ISVCS.format(ns="team-a"), method="POST").respond_with_json(
        {"kind": "Status", "reason": "Forbidden"}, status=403
    )
    with pytest.raises(PipelineError) as caught:
        deploy(trained[0] / "model", tmp_path / "out", config, api_client=api_client(httpserver))
    assert "refused the deploy in namespace team-a: 403" in str(caught.value)
    assert "NAMESPACE=team-a scripts/cluster.sh rbac" in caught.value.fix


def test_apply_replaces_an_existing_inferenceservice(httpserver):
    manifest = inference_service("gs://bucket/models/crypto/1")
    base = ISVCS.format(ns="kubeflow")
    httpserver.expect_request(base, method="POST").respond_with_json(
        {"reason": "AlreadyExists"}, status=409
    )
    httpserver.expect_request(f"{base}/crypto", method="GET").respond_with_json(
        {**manifest, "metadata": {**manifest["metadata"], "resourceVersion": "41"}}
    )
    httpserver.expect_request(f"{base}/crypto", method="PUT").respond_with_json(manifest)
    apply(manifest, api_client(httpserver))
    methods = [request.method for request, _ in httpserver.log]
    assert methods == ["POST", "GET", "PUT"]
    put = json.loads(httpserver.log[-1][0].data)
    assert put["metadata"]["resourceVersion"] == "41"
    assert put["spec"] == manifest["spec"]


VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def api_calls(log) -> set[tuple[str, str, str]]:
    """(group, resource, verb) of each request, as the API server's RBAC sees it."""
    calls = set()
    for request, _ in log:
        m = re.fullmatch(
            r"/(?:api/v1|apis/(?P<group>[^/]+)/[^/]+)/namespaces/[^/]+/(?P<res>[^/]+)"
            r"(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?",
            request.path,
        )
        resource = m["res"] + (f"/{m['sub']}" if m["sub"] else "")
        verb = VERBS.get(request.method) or ("get" if m["name"] else "list")
        calls.add((m["group"] or "", resource, verb))
    return calls


def test_every_api_call_of_a_deploy_is_listed_in_api_rules(trained, tmp_path, httpserver):
    """The roles are checked against API_RULES (tests/assets/test_upstream.py): it must be whole."""
    manifest = inference_service("gs://bucket/models/crypto/1")
    base = ISVCS.format(ns="kubeflow")
    httpserver.expect_request(base, method="POST").respond_with_json({}, status=409)
    httpserver.expect_request(f"{base}/crypto", method="GET").respond_with_json(
        isvc({**manifest, "metadata": {**manifest["metadata"], "resourceVersion": "1"}}, False)
    )
    httpserver.expect_request(f"{base}/crypto", method="PUT").respond_with_json(manifest)
    crashing = pod("crypto-predictor-1", False, waiting="CrashLoopBackOff", exit_code=2)
    httpserver.expect_request(PODS.format(ns="kubeflow"), method="GET").respond_with_json(
        {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [crashing]}
    )
    httpserver.expect_request(
        f"{PODS.format(ns='kubeflow')}/crypto-predictor-1/log", method="GET"
    ).respond_with_data("boom")
    api = api_client(httpserver)
    apply(manifest, api)
    with pytest.raises(PipelineError):
        wait_until_served(manifest, api, timeout=0.1)
    granted = {(g, r, v) for g, r, verbs in API_RULES for v in verbs}
    assert api_calls(httpserver.log) == granted


def test_the_compiled_pipeline_never_serves_a_deploy_from_the_cache(tmp_path):
    """A cached deploy would report a model served after its InferenceService was deleted."""
    spec = yaml.safe_load(compile_pipeline(tmp_path / "p.yaml").read_text())
    tasks = spec["root"]["dag"]["tasks"]
    assert tasks["deploy-step"]["cachingOptions"].get("enableCache") is not True
    assert all(
        t["cachingOptions"].get("enableCache") for name, t in tasks.items() if name != "deploy-step"
    )
    deploy = spec["root"]["inputDefinitions"]["parameters"]["deploy"]["defaultValue"]
    assert deploy["ready_timeout"] == 600


def test_the_deploy_id_is_a_field_kserves_crd_has():
    from conftest import inference_service_validator

    manifest = inference_service("gs://bucket/models/crypto/3", deploy_id="0123abcd")
    assert list(inference_service_validator().iter_errors(manifest)) == []
