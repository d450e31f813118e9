"""Notebook 03's exercise: a ClusterIP Service in front of the nginx Deployment, validated
strictly and read against the Deployment's Pods. Its check passes the solution, names what
is missing on an empty answer, and catches the usual wrong answers."""

from pathlib import Path

import nbformat
import pytest
import yaml

from crypto_workshop.exercises import kubernetes

ROOT = Path(__file__).resolve().parents[2]
SOLUTION = ROOT / "notebooks" / "solutions" / "03-kubernetes" / "service.yaml"
NOTEBOOK = ROOT / "notebooks" / "03-kubernetes.ipynb"


@pytest.fixture(scope="module")
def solution() -> str:
    return SOLUTION.read_text()


def test_the_solution_is_right(solution):
    found = kubernetes.check_service(solution)
    assert found.ok, found
    assert "nginx-internal (ClusterIP)" in str(found)


def test_the_solution_selects_the_pods_of_the_deployment(solution):
    pods = kubernetes.deployment_pods(ROOT / "kubernetes-intro" / "deployment.yaml")
    service = yaml.safe_load(solution)
    assert service["spec"]["selector"].items() <= pods["labels"].items()
    assert service["metadata"]["namespace"] == pods["namespace"]


@pytest.mark.parametrize("empty", ["", "\n", "   \n"])
def test_the_empty_answer_says_what_to_write(empty):
    found = kubernetes.check_service(empty)
    assert not found.ok
    assert str(found).startswith("Not yet: my_service is empty: write a Service manifest")


@pytest.mark.parametrize(
    ("change", "said"),
    [
        # the port nginx listens on in the Docker chapter's image is 8080, not 80
        (("targetPort: http", "targetPort: 80"), "forwards to the Pods' port 80"),
        (("      targetPort: http  #", "      #"), "no targetPort: it is the same as port"),
        (("targetPort: http", "targetPort: web"), "targetPort 'web' names no port"),
        (("app: nginx-server  #", "app: nginx  #"), "its selector app=nginx matches no Pod"),
        (("namespace: poets", "namespace: default"), "a Service selects Pods of its own"),
        (("type: ClusterIP", "type: NodePort"), "its type is NodePort"),
        (("name: nginx-internal", "name: nginx-server"), "nginx-server is the name of"),
    ],
)
def test_a_wrong_service_is_named(solution, change, said):
    wrong = solution.replace(*change)
    assert wrong != solution
    found = kubernetes.check_service(wrong)
    assert not found.ok and said in str(found), found


def test_a_misspelt_field_is_refused_by_strict_validation(solution):
    found = kubernetes.check_service(solution.replace("targetPort", "targetport"))
    assert "strict validation refuses it" in str(found)
    assert "'targetport' was unexpected" in str(found)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("kind: [", "the YAML does not parse"),
        ("apiVersion: apps/v1\nkind: Deployment\n", "it must be a Service of the core API"),
        ("apiVersion: v1\nkind: Service\nspec: {}\n", "metadata.name is missing"),
        ("a: 1\n---\nb: 2\n", "write exactly one object"),
    ],
)
def test_what_is_not_a_service_is_named_not_raised(text, said):
    found = kubernetes.check_service(text)
    assert not found.ok and said in str(found), found


def test_the_notebook_holds_the_empty_answer_and_the_check():
    """The answer cell is empty, the check right after it says what is missing (nbval
    compares that output), and the task names the solution's file."""
    cells = nbformat.read(NOTEBOOK, as_version=4).cells
    (answer,) = [c for c in cells if c.source.startswith("my_service = ")]
    (check,) = [c for c in cells if "exercises.kubernetes.check_service(my_service)" in c.source]
    assert cells.index(check) == cells.index(answer) + 1
    assert "nbval-check-output" in check.metadata.get("tags", [])
    given = {}
    exec(answer.source, given)  # the empty answer, as the learner finds it
    found = kubernetes.check_service(given["my_service"])
    assert not found.ok
    shown = "".join(o.get("text", "") for o in check.outputs)
    assert shown == f"{found}\n"
    task = cells[cells.index(answer) - 1].source
    assert str(SOLUTION.relative_to(ROOT)) in task
