"""`tune --katib-manifest`: the Experiment for a profile's namespace, without a local search."""

import yaml

from crypto_pipeline import tune as tune_module
from crypto_pipeline.cli import main
from crypto_pipeline.config import TuneConfig
from crypto_pipeline.tune import katib_experiment


def test_the_manifest_alone_goes_where_the_profile_keeps_its_data(tmp_path, monkeypatch):
    """Before, it had no namespace or claim flag and ran the whole local search first."""

    def no_search(*args, **kwargs):
        raise AssertionError("the local search ran")

    monkeypatch.setattr(tune_module, "tune", no_search)
    path = tmp_path / "experiment.yaml"
    argv = ["tune", "--katib-manifest", str(path), "--trials", "6"]
    argv += ["--katib-namespace", "team-a", "--katib-data-claim", "team-a-data"]
    assert main(argv) == 0
    manifest = yaml.safe_load(path.read_text())
    assert manifest == katib_experiment(
        TuneConfig(trials=6), namespace="team-a", data_pvc="team-a-data"
    )
    pod = manifest["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
    assert manifest["metadata"]["namespace"] == "team-a"
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "team-a-data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["experiment.yaml"]


def test_the_local_search_needs_its_folders(capsys):
    assert main(["tune"]) == 1
    err = capsys.readouterr().err
    assert "tune needs --data-dir and --output-dir" in err and "--katib-manifest" in err
