"""The Katib Experiment rendered from the search space, checked against Katib's API spec."""

import copy

import kubernetes_validate

from conftest import experiment_validator
from crypto_pipeline.cli_parser import build_parser
from crypto_pipeline.config import DATA_PVC, TuneConfig
from crypto_pipeline.hyperparameters import (
    PRUNER_MIN_TRIALS,
    PRUNER_WARMUP_EPOCHS,
    SEARCH_SPACE,
    Params,
)
from crypto_pipeline.katib import katib_experiment


def errors(manifest):
    """Against the pinned Katib's own schema (tests/upstream/), unknown fields refused."""
    return sorted(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in experiment_validator().iter_errors(manifest)
    )


def test_experiment_matches_katibs_published_schema():
    assert errors(katib_experiment(TuneConfig(trials=8))) == []


def test_the_check_catches_a_misspelt_field():
    manifest = katib_experiment()
    broken = copy.deepcopy(manifest)
    broken["spec"]["paralelTrialCount"] = 3
    assert any("paralelTrialCount" in e for e in errors(broken))
    broken = copy.deepcopy(manifest)
    broken["spec"]["parameters"][0]["feasibleSpace"]["maximum"] = "4"
    assert any("maximum" in e for e in errors(broken))


def test_every_search_dimension_becomes_a_katib_parameter():
    manifest = katib_experiment(TuneConfig(trials=20))
    parameters = {p["name"]: p for p in manifest["spec"]["parameters"]}
    assert list(parameters) == [h.name for h in SEARCH_SPACE]
    for h in SEARCH_SPACE:
        space = parameters[h.name]["feasibleSpace"]
        if h.kind == "categorical":
            assert space["list"] == [str(c) for c in h.choices]
        else:
            assert (float(space["min"]), float(space["max"])) == (h.low, h.high)
            assert space["distribution"] == ("logUniform" if h.log else "uniform")
    assert manifest["spec"]["maxTrialCount"] == 20
    assert manifest["spec"]["objective"]["objectiveMetricName"] == "eval_loss"
    # The trial prints the kept weights' loss last; Katib must take that one.
    assert manifest["spec"]["objective"]["metricStrategies"] == [
        {"name": "eval_loss", "value": "latest"}
    ]


def test_trial_command_is_one_the_cli_accepts():
    """Katib substitutes each parameter into the command; the result must parse."""
    manifest = katib_experiment(data_dir="/data/x")
    template = manifest["spec"]["trialTemplate"]
    container = template["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    assert container["name"] == template["primaryContainerName"]
    sample = Params(
        num_layers=3, first_layer_size=17, layer_size_scale=0.4, learning_rate=0.002, batch_size=64
    ).to_dict()
    references = {p["name"]: p["reference"] for p in template["trialParameters"]}
    command = container["command"]
    for name, reference in references.items():
        command = [
            c.replace(f"${{trialParameters.{name}}}", str(sample[reference])) for c in command
        ]
    assert command[:2] == ["crypto-pipeline", "trial"]
    args = build_parser().parse_args(command[1:])
    assert (
        Params.from_dict({h.name: getattr(args, h.name) for h in SEARCH_SPACE}).to_dict() == sample
    )
    assert args.data_dir == "/data/x"


def test_every_trial_gets_its_data():
    """A trial's pod must see the transform output: a mounted claim, or a bucket URI."""
    manifest = katib_experiment(data_dir="/data/transform")
    pod = manifest["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (mount,) = container["volumeMounts"]
    (volume,) = pod["volumes"]
    assert mount == {"name": "data", "mountPath": "/data/transform", "readOnly": True}
    assert volume["name"] == "data"
    assert volume["persistentVolumeClaim"]["claimName"] == DATA_PVC
    assert errors(manifest) == []
    # Katib's schema leaves the trial's Job open: Kubernetes' own schema checks it.
    job = {"metadata": {"name": "trial"}, **manifest["spec"]["trialTemplate"]["trialSpec"]}
    kubernetes_validate.validate(job, "1.33", strict=True)
    bucket = katib_experiment(data_dir="gs://bucket/runs/transform")
    pod = bucket["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
    assert "volumes" not in pod and "volumeMounts" not in pod["containers"][0]
    assert "gs://bucket/runs/transform" in pod["containers"][0]["command"]
    assert errors(bucket) == []
    local = katib_experiment(data_dir="file:///data/transform")
    pod = local["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
    (mount,) = pod["containers"][0]["volumeMounts"]
    assert mount["mountPath"] == "/data/transform", "a file:// URI is a path in the pod"


def test_early_stopping_uses_the_local_pruners_settings():
    """Katib's median rule waits as long as the local pruner does: one home for both."""
    from crypto_pipeline.tune import _create_study

    stopping = katib_experiment()["spec"]["earlyStopping"]
    assert stopping["algorithmName"] == "medianstop"
    assert stopping["algorithmSettings"] == [
        {"name": "min_trials_required", "value": str(PRUNER_MIN_TRIALS)},
        {"name": "start_step", "value": str(PRUNER_WARMUP_EPOCHS)},
    ]
    # The local study prunes nothing before those trials finished and epochs ran.
    study = _create_study(seed=0)
    for _ in range(PRUNER_MIN_TRIALS):
        trial = study.ask()
        for step in range(PRUNER_WARMUP_EPOCHS + 1):
            trial.report(0.1, step)
        study.tell(trial, 0.1)
    slow = study.ask()
    for step in range(PRUNER_WARMUP_EPOCHS):
        slow.report(10.0, step)
        assert not slow.should_prune()
    slow.report(10.0, PRUNER_WARMUP_EPOCHS)
    assert slow.should_prune()


def test_writing_a_manifest_loads_no_tensorflow():
    """The Katib module needs neither TensorFlow nor the local tuner."""
    import subprocess
    import sys

    code = (
        "import sys, crypto_pipeline.katib\n"
        "print(sorted({'tensorflow', 'crypto_pipeline.tune'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
