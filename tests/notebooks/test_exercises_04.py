"""Notebook 04's exercise: an InferenceService for the crypto model, validated against the
pinned KServe's CRD schema and read as KServe would run it. Its check passes the solution
and what the deploy step writes, names what is missing on an empty answer, and catches the
usual wrong answers."""

from pathlib import Path

import nbformat
import pytest
import yaml

from crypto_pipeline import inference_service
from crypto_workshop.exercises import kubeflow

ROOT = Path(__file__).resolve().parents[2]
SOLUTION = ROOT / "notebooks" / "solutions" / "04-kubeflow" / "inferenceservice.yaml"
NOTEBOOK = ROOT / "notebooks" / "04-kubeflow.ipynb"


@pytest.fixture(scope="module")
def solution() -> str:
    return SOLUTION.read_text()


def test_the_solution_is_right(solution):
    found = kubeflow.check_inference_service(solution)
    assert found.ok, found
    assert kubeflow.MODEL_URI in str(found)


def test_what_the_deploy_step_writes_is_right_too():
    manifest = inference_service.inference_service(kubeflow.MODEL_URI)
    found = kubeflow.check_inference_service(yaml.safe_dump(manifest))
    assert found.ok, found


def test_leaving_the_images_own_command_is_right(solution):
    """With no args, the serve image's CMD runs: serve /mnt/models on 0.0.0.0:8080."""
    assert kubeflow.image_command()[:3] == ["serve", "--model", kubeflow.MODEL_MOUNT]
    lines = [line for line in solution.splitlines() if not line.lstrip().startswith("args:")]
    assert kubeflow.check_inference_service("\n".join(lines)).ok


@pytest.mark.parametrize("empty", ["", "\n"])
def test_the_empty_answer_says_what_to_write(empty):
    found = kubeflow.check_inference_service(empty)
    assert not found.ok
    assert str(found).startswith("Not yet: my_inference_service is empty")


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (("  predictor:", "  predictor:\n    minReplica: 1"), "'minReplica' was unexpected"),
        (("containers:", "container:"), "'container' was unexpected"),
        (("name: kserve-container", "name: crypto"), "named kserve-container"),
        (("/serve:", "/nginx-server:"), "the project's serve image"),
        (("STORAGE_URI", "MODEL_URI"), "set the container's STORAGE_URI variable"),
        (("crypto/1", "crypto/2"), "STORAGE_URI is gs://my-bucket/models/crypto/2"),
        (('"/mnt/models"', '"/models"'), "must load the model from /mnt/models"),
        ((', "--host", "0.0.0.0"', ""), "the server listens on 127.0.0.1"),
        (('"--port", "8080"', '"--port", "8082"'), "make --port and containerPort agree"),
        (('"--port"', '"--prot"'), "unrecognized arguments: --prot"),
        (("v1beta1", "v1"), "apiVersion: serving.kserve.io/v1beta1"),
        (("name: crypto\n", "name: Crypto\n"), "metadata.name must be a lower-case name"),
    ],
)
def test_a_wrong_manifest_is_named(solution, change, said):
    wrong = solution.replace(*change)
    assert wrong != solution, change
    found = kubeflow.check_inference_service(wrong)
    assert not found.ok and said in str(found), found


def test_a_built_in_model_format_is_not_the_projects_server():
    text = """\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: crypto
spec:
  predictor:
    model:
      modelFormat:
        name: tensorflow
      storageUri: gs://my-bucket/models/crypto/1
"""
    found = kubeflow.check_inference_service(text)
    assert "spec.predictor has no containers" in str(found)


@pytest.mark.parametrize("text", ["spec: [", "kind: InferenceService\n", "- 1\n- 2\n"])
def test_what_is_not_an_inference_service_is_named_not_raised(text):
    assert not kubeflow.check_inference_service(text).ok


def test_the_notebook_holds_the_empty_answer_and_the_check():
    """The answer cell is empty, the check right after it says what is missing (nbval
    compares that output), and the task names the solution's file."""
    cells = nbformat.read(NOTEBOOK, as_version=4).cells
    (answer,) = [c for c in cells if c.source.startswith("my_inference_service = ")]
    call = "exercises.kubeflow.check_inference_service(my_inference_service)"
    (check,) = [c for c in cells if call in c.source]
    assert cells.index(check) == cells.index(answer) + 1
    assert "nbval-check-output" in check.metadata.get("tags", [])
    given = {}
    exec(answer.source, given)  # the empty answer, as the learner finds it
    found = kubeflow.check_inference_service(given["my_inference_service"])
    assert not found.ok
    shown = "".join(o.get("text", "") for o in check.outputs)
    assert shown == f"{found}\n"
    task = cells[cells.index(answer) - 1].source
    assert str(SOLUTION.relative_to(ROOT)) in task
