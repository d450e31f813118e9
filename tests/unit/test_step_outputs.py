"""Reading a finished step's outputs back: a folder without them says which and what to pass."""

import pytest

from crypto_pipeline import ingest, train, transform, tune
from crypto_pipeline.errors import ConfigError, SourceError


@pytest.mark.parametrize(
    ("read", "name", "error"),
    [
        (ingest.read_result, "ingest.json", SourceError),
        (transform.read_stats, "stats.json", ConfigError),
        (tune.read_result, "trials.json", ConfigError),
        (train.read_metrics, "metrics.json", ConfigError),
    ],
)
def test_a_folder_without_the_step_output_names_it_and_the_fix(tmp_path, read, name, error):
    with pytest.raises(error, match=f"holds no {name}") as raised:
        read(tmp_path)
    assert "summary.json names it" in raised.value.fix
