"""Every field of every step's settings reaches its step: in a local run and on a cluster.

Fields are enumerated with ``dataclasses.fields``: a new field fails these tests until
``CHANGED`` gives it a value other than its default, and then the tests follow it through
``run``'s flags, ``submit --param``, the compiled pipeline and the step's own settings.
"""

import dataclasses
import json
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format, struct_pb2

from crypto_pipeline.cli import main
from crypto_pipeline.cli_parser import build_parser
from crypto_pipeline.compiled import compile_pipeline
from crypto_pipeline.config import STEP_SETTINGS, PipelineConfig
from crypto_pipeline.package_params import parameter_arguments
from crypto_pipeline.pipeline import pipeline_arguments

CHANGED = {
    "ingest": {"max_mb": 64, "max_seconds": 120.0},
    "transform": {
        "coin": "ethereum",
        "date_format": "iso",
        "split": "0.6,0.2,0.2",
        "beam_args": ["--direct_num_workers=1"],
    },
    "tune": {"trials": 2, "epochs": 2, "patience": 1, "seed": 7},
    "train": {"epochs": 3, "patience": 2, "seed": 8},
    "deploy": {
        "registry_uri": "REGISTRY",  # a folder under the test's tmp_path
        "storage_uri": "s3://models.example/crypto/1",
        "namespace": "team-poets",
        "service_account": "poets-predictor",
        "image": "registry.example/poets/serve:9.9.9",
        "target": "cluster",
        "ready_timeout": 30,
    },
}
"""A value other than the default for every field of every step's settings."""
NEEDS_A_CLUSTER = {("deploy", "target")}
"""Fields whose other values act on a cluster: the local run keeps their defaults (the
compiled pipeline's test covers them)."""


def changed(tmp_path: Path, local: bool = False) -> PipelineConfig:
    values = {step: dict(fields) for step, fields in CHANGED.items()}
    values["deploy"]["registry_uri"] = str(tmp_path / "registry")
    if local:
        for step, name in NEEDS_A_CLUSTER:
            del values[step][name]
    return PipelineConfig(
        pipeline_root=str(tmp_path / "runs"),
        **{step: STEP_SETTINGS[step].from_dict(values[step], step) for step in STEP_SETTINGS},
    )


def test_every_field_has_a_changed_value():
    """The table above covers each field, with a value its rules allow and not its default."""
    for step, settings in STEP_SETTINGS.items():
        names = [f.name for f in dataclasses.fields(settings)]
        assert sorted(CHANGED[step]) == sorted(names), f"give each field of {step} a value"
        default, given = settings().to_dict(), settings.from_dict(CHANGED[step], step).to_dict()
        assert [n for n in names if default[n] == given[n]] == [], step


def run_flags(config: PipelineConfig) -> list[str]:
    """``run``'s flags that set every field (each found by its ``dest``, ``STEP.FIELD``)."""
    (run,) = (
        choice
        for action in build_parser()._subparsers._group_actions
        for name, choice in action.choices.items()
        if name == "run"
    )
    flags = {a.dest: a.option_strings[0] for a in run._actions if a.option_strings}
    argv = []
    for step in STEP_SETTINGS:
        default = STEP_SETTINGS[step]().to_dict()
        for name, value in getattr(config, step).to_dict().items():
            if value == default[name] or name == "beam_args":
                continue  # a default (NEEDS_A_CLUSTER); Beam's options are options of their own
            argv += [flags[f"{step}.{name}"], str(value)]
    return [*argv, *config.transform.beam_args]


def test_run_hands_every_field_to_its_step(tmp_path, capsys):
    """``crypto-pipeline run`` with every field changed: each step records what it ran with.

    Before, ``run`` had no flag for the patience of tune and train nor for any deploy
    setting, and the pipeline dropped both patiences and the train seed.
    """
    config = changed(tmp_path, local=True)
    argv = ["run", "--pipeline-root", config.pipeline_root, "--no-cache", *run_flags(config)]
    assert main(argv) == 0, capsys.readouterr().err
    summary = json.loads((Path(config.pipeline_root) / "latest" / "summary.json").read_text())
    outputs = {"ingest": "raw", "transform": "data", "tune": "best_params"}
    outputs |= {"train": "model", "deploy": "deployment"}
    for step, output in outputs.items():
        task = Path(summary["artifacts"][output]).parent
        executed = json.loads((task / "executor_output.json").read_text())
        (artifact,) = executed["artifacts"][output]["artifacts"]
        assert artifact["metadata"]["config"] == getattr(config, step).to_dict(), step


def as_a_backend_hands_it(value: dict) -> dict:
    """A struct argument as Kubeflow Pipelines hands it to a component: a protobuf Struct
    (every number a double) written as the JSON of the executor's input."""
    struct = json_format.ParseDict(value, struct_pb2.Struct())
    return json.loads(json_format.MessageToJson(struct))


def test_the_compiled_pipeline_hands_every_field_to_its_step(tmp_path):
    """Each step's settings: one struct parameter, wired to its task, back whole in the step.

    The arguments come from ``submit --param STEP.FIELD=VALUE``, one per field.
    """
    config = changed(tmp_path)
    package = compile_pipeline(tmp_path / "p.yaml")
    spec = yaml.safe_load(package.read_text())
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    items = [
        f"{step}.{name}={' '.join(value) if isinstance(value, list) else value}"
        for step in STEP_SETTINGS
        for name, value in getattr(config, step).to_dict().items()
    ]
    arguments = parameter_arguments(items, package)
    assert arguments == {k: v for k, v in pipeline_arguments(config).items() if k in STEP_SETTINGS}
    for step, settings in STEP_SETTINGS.items():
        assert parameters[step]["parameterType"] == "STRUCT", step
        task = spec["root"]["dag"]["tasks"][f"{step}-step"]
        wired = task["inputs"]["parameters"]["config"]
        assert wired == {"componentInputParameter": step}, step
        component = spec["components"][task["componentRef"]["name"]]
        assert component["inputDefinitions"]["parameters"]["config"]["parameterType"] == "STRUCT"
        handed = as_a_backend_hands_it(arguments[step])
        assert settings.from_dict(handed, step) == getattr(config, step), step
        default = settings.from_dict(as_a_backend_hands_it(parameters[step]["defaultValue"]))
        assert default.to_dict() == {**settings().to_dict(), **_images(step)}, step


def _images(step: str) -> dict:
    """The compiled default of deploy's image: deploy's own image, of the compile's tag."""
    from crypto_pipeline.pipeline import step_image

    return {"image": step_image("deploy")} if step == "deploy" else {}


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        ("tune.patiense=3", "did you mean tune.patience"),
        ("train.patience=0", "patience=0 must be a whole number of at least 1"),
        ("deploy.ready_timeout=soon", "is not a whole number"),
    ],
)
def test_a_setting_given_by_param_is_checked_by_its_field(tmp_path, item, problem):
    from crypto_pipeline.errors import ConfigError

    package = compile_pipeline(tmp_path / "p.yaml")
    with pytest.raises(ConfigError) as refused:
        parameter_arguments([item], package)
    assert problem in f"{refused.value.problem} {refused.value.fix}"
