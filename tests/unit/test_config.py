import pytest

from crypto_pipeline.config import (
    SEED_MAX,
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


def test_the_ingest_steps_defaults_are_the_ingest_configs():
    """The step's source is shipped to its container on its own: its defaults are literals."""
    import inspect

    from crypto_pipeline import steps

    parameters = inspect.signature(steps.ingest_step).parameters
    assert parameters["max_source_mb"].default == IngestConfig().max_mb
    assert parameters["max_source_seconds"].default == IngestConfig().max_seconds


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"max_mb": 0}, "max_source_mb=0"),
        ({"max_seconds": 0}, "max_source_seconds=0"),
        ({"max_seconds": float("nan")}, "max_source_seconds=nan"),
        ({"max_seconds": True}, "max_source_seconds=True"),
    ],
)
def test_source_limits_are_positive(settings, named):
    with pytest.raises(ConfigError, match=named) as raised:
        IngestConfig(**settings)
    assert "--max-source" in raised.value.fix
