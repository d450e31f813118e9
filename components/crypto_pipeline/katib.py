"""The local search's space on a cluster: a Katib ``Experiment`` (``kubeflow.org/v1beta1``).

``katib_experiment`` renders ``hyperparameters.SEARCH_SPACE`` as an Experiment whose
trials run ``crypto-pipeline trial`` in the training image and print the objective for
Katib's stdout collector. Its early stopping is the local pruner's rule with the local
pruner's settings. This module needs no TensorFlow, so writing a manifest is quick.
"""

from __future__ import annotations

from typing import Any

from crypto_pipeline.config import (
    DATA_MOUNT,
    DATA_PVC,
    DEFAULT_NAMESPACE,
    DEFAULT_TRAINING_IMAGE,
    SEARCH_ONLY,
    TuneConfig,
)
from crypto_pipeline.files import is_remote, local_path
from crypto_pipeline.hyperparameters import (
    OBJECTIVE_METRIC,
    PRUNER_MIN_TRIALS,
    PRUNER_WARMUP_EPOCHS,
    SEARCH_SPACE,
)


def _camel(name: str) -> str:
    """A parameter's name as Katib's trial parameters spell it: ``num_layers``, ``numLayers``."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def katib_experiment(
    config: TuneConfig | None = None,
    data_dir: str = DATA_MOUNT,
    image: str = DEFAULT_TRAINING_IMAGE,
    name: str = "crypto-tune",
    namespace: str = DEFAULT_NAMESPACE,
    parallel_trials: int = 2,
    data_pvc: str = DATA_PVC,
) -> dict[str, Any]:
    """Renders ``SEARCH_SPACE`` as a Katib Experiment for a cluster.

    Each trial is a Kubernetes Job running ``crypto-pipeline trial`` in the training
    image; it prints ``eval_loss=<value>``, which Katib's stdout collector reads. Katib's
    TPE and median-stop algorithms mirror the local Optuna sampler and pruner, with the
    same settings (``PRUNER_MIN_TRIALS``, ``PRUNER_WARMUP_EPOCHS``).

    Args:
        config: Trials, epochs, patience and seed.
        data_dir: Where the trial containers find the transform output: a bucket URI
            (``gs://…``, ``s3://…``; the pod's service account must read it), or a
            path at which the PersistentVolumeClaim ``data_pvc`` is mounted read-only.
        image: The training image (``scripts/`` builds it; no credentials inside).
        name: The Experiment's name.
        namespace: Its namespace (a Kubeflow profile namespace).
        parallel_trials: Trials that run at once.
        data_pvc: The claim holding the transform output when ``data_dir`` is a path
            (``scripts/cluster.sh upload-data`` fills it).

    Returns:
        The Experiment as a dict, ready for ``yaml.safe_dump`` or the Kubernetes API.
    """
    config = config or TuneConfig()
    return {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "objective": {
                "type": "minimize",
                "objectiveMetricName": OBJECTIVE_METRIC,
                # The trial prints the loss of the weights it keeps last; an epoch's lower
                # loss that did not clearly beat least squares must not count.
                "metricStrategies": [{"name": OBJECTIVE_METRIC, "value": "latest"}],
            },
            "algorithm": {
                "algorithmName": "tpe",
                "algorithmSettings": [{"name": "random_state", "value": str(config.seed)}],
            },
            "earlyStopping": {
                "algorithmName": "medianstop",
                "algorithmSettings": [
                    {"name": "min_trials_required", "value": str(PRUNER_MIN_TRIALS)},
                    {"name": "start_step", "value": str(PRUNER_WARMUP_EPOCHS)},
                ],
            },
            "maxTrialCount": config.trials,
            "parallelTrialCount": parallel_trials,
            "maxFailedTrialCount": max(1, config.trials // 4),
            "metricsCollectorSpec": {"collector": {"kind": "StdOut"}},
            "parameters": _parameters(),
            "trialTemplate": _trial_template(config, data_dir, image, data_pvc),
        },
    }


def _parameters() -> list[dict[str, Any]]:
    """``SEARCH_SPACE`` in Katib's terms: each dimension's type and feasible space."""
    parameters = []
    for h in SEARCH_SPACE:
        if h.kind == "categorical":
            space: dict[str, Any] = {"list": [str(c) for c in h.choices]}
            kind = "categorical"
        else:
            space = {"min": f"{h.low:g}", "max": f"{h.high:g}"}
            kind = "int" if h.kind == "int" else "double"
            space["distribution"] = "logUniform" if h.log else "uniform"
        parameters.append({"name": h.name, "parameterType": kind, "feasibleSpace": space})
    return parameters


def _trial_template(config: TuneConfig, data_dir: str, image: str, data_pvc: str) -> dict[str, Any]:
    """A trial: a Job running ``crypto-pipeline trial`` with one point of the space.

    Where ``data_dir`` is a path, the pod mounts the claim ``data_pvc`` there read-only.
    """
    command = ["crypto-pipeline", "trial", "--data-dir", data_dir]
    for name, value in config.to_dict().items():
        if name not in SEARCH_ONLY:
            command += [f"--{config.flag(name)}", str(value)]
    command += [f"--{h.flag}=${{trialParameters.{_camel(h.name)}}}" for h in SEARCH_SPACE]
    training: dict[str, Any] = {"name": "training", "image": image}
    pod_volumes: dict[str, Any] = {}
    if not is_remote(data_dir):  # a path: the trial's pod mounts the data there
        mount = {"name": "data", "mountPath": local_path(data_dir), "readOnly": True}
        training["volumeMounts"] = [mount]
        pod_volumes["volumes"] = [
            {"name": "data", "persistentVolumeClaim": {"claimName": data_pvc, "readOnly": True}}
        ]
    return {
        "primaryContainerName": "training",
        "trialParameters": [
            {"name": _camel(h.name), "description": h.help, "reference": h.name}
            for h in SEARCH_SPACE
        ],
        "trialSpec": {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "spec": {
                "template": {
                    "metadata": {"annotations": {"sidecar.istio.io/inject": "false"}},
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{**training, "command": command}],
                        **pod_volumes,
                    },
                }
            },
        },
    }
