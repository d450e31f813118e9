import json

import pytest

from crypto_pipeline.config import (
    DEFAULT_TAG,
    SEED_MAX,
    STEP_SETTINGS,
    DeployConfig,
    IngestConfig,
    PipelineConfig,
    Split,
    TrainConfig,
    TransformConfig,
    TuneConfig,
)
from crypto_pipeline.errors import ConfigError


def test_defaults_are_the_offline_sample_and_bitcoin():
    config = PipelineConfig()
    assert config.source_uri == "sample"
    assert config.transform.coin == "bitcoin"
    assert config.transform.date_format == "auto"
    assert (config.transform.split.train, config.transform.split.eval) == (0.7, 0.15)


def test_split_parses_and_prints():
    split = Split.parse("0.8,0.1,0.1")
    assert (split.train, split.eval, split.test) == (0.8, 0.1, 0.1)
    assert str(split) == "0.8,0.1,0.1"


@pytest.mark.parametrize("text", ["0.7,0.3", "a,b,c", "0.7,0.2,0.2", "1,0,0", "0.5,-0.1,0.6"])
def test_bad_splits_say_how_to_fix(text):
    with pytest.raises(ConfigError) as err:
        Split.parse(text)
    assert "--split" in err.value.fix


def test_bad_transform_settings_are_refused():
    with pytest.raises(ConfigError):
        TransformConfig(date_format="american")
    with pytest.raises(ConfigError):
        TransformConfig(coin=" ")


@pytest.mark.parametrize("make", [TuneConfig, TrainConfig])
@pytest.mark.parametrize(
    "field, value, fix",
    [
        ("epochs", 0, "pass --epochs with a positive integer"),
        ("epochs", -1, "pass --epochs with a positive integer"),
        ("patience", 0, "pass --patience with a positive integer"),
        ("seed", -1, "pass --seed with a whole number from 0 to 4294967295, e.g. --seed 42"),
        ("seed", 2**32, "pass --seed with a whole number from 0 to 4294967295, e.g. --seed 42"),
        ("seed", True, "pass --seed with a whole number from 0 to 4294967295, e.g. --seed 42"),
    ],
)
def test_one_rule_per_value_in_tune_and_train(make, field, value, fix):
    with pytest.raises(ConfigError) as err:
        make(**{field: value})
    assert err.value.problem.startswith(f"{field}={value!r} must be a whole number")
    assert err.value.fix == fix


@pytest.mark.parametrize("seed", [0, 42, SEED_MAX])
def test_every_seed_the_libraries_take_is_accepted(seed):
    assert TuneConfig(seed=seed).seed == TrainConfig(seed=seed).seed == seed


@pytest.mark.parametrize("step", sorted(STEP_SETTINGS))
def test_each_steps_settings_go_to_a_dict_and_back(step):
    settings = STEP_SETTINGS[step]()
    assert STEP_SETTINGS[step].from_dict(settings.to_dict(), step) == settings
    assert json.loads(json.dumps(settings.to_dict())) == settings.to_dict()


def test_settings_take_numbers_as_a_backend_hands_them_and_text():
    """A Kubeflow Pipelines backend holds every number of a struct as a float."""
    assert TuneConfig.from_dict({"trials": 3.0, "patience": "4"}) == TuneConfig(
        trials=3, patience=4
    )
    assert IngestConfig.from_dict({"max_seconds": 60}).max_seconds == 60.0


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"trials": 2.5}, "tune.trials=2.5 is not a whole number"),
        ({"trials": True}, "tune.trials=True is not a whole number"),
        ({"patiense": 3}, "tune has no setting 'patiense'"),
        ({"trials": 0}, "trials=0 must be a whole number of at least 1"),
        ([1, 2], "tune is list, not an object of settings"),
    ],
)
def test_settings_from_a_dict_are_checked(data, problem):
    with pytest.raises(ConfigError) as raised:
        TuneConfig.from_dict(data, "tune")
    assert raised.value.problem.startswith(problem), raised.value.problem
    if "patiense" in problem:
        assert raised.value.fix.startswith("did you mean patience?")


def test_the_serve_image_follows_the_run_s_registry_and_tag_unless_one_is_named():
    moved = PipelineConfig(registry="registry.example/poets", tag="9.9.9")
    assert moved.deploy.image == "registry.example/poets/serve:9.9.9"
    named = DeployConfig(image="other.example/serve:1")
    assert PipelineConfig(registry="registry.example/poets", deploy=named).deploy == named


def test_the_image_tag_is_the_packages_version():
    from crypto_pipeline import __version__

    assert __version__ == DEFAULT_TAG


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"max_mb": 0}, "max_mb=0"),
        ({"max_seconds": 0}, "max_seconds=0"),
        ({"max_seconds": float("nan")}, "max_seconds=nan"),
        ({"max_seconds": True}, "max_seconds=True"),
    ],
)
def test_source_limits_are_positive(settings, named):
    with pytest.raises(ConfigError, match=named) as raised:
        IngestConfig(**settings)
    assert "--max-source" in raised.value.fix
