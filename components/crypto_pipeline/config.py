"""The pipeline's settings: one typed object with safe offline defaults.

Each step's settings are one dataclass (``STEP_SETTINGS``), and its fields are the one
place a setting is declared: the pipeline's parameter of that step (a struct,
``settings.Settings.to_dict``), what the step rebuilds from it (``from_dict``), the flags of
``run`` and of the step's command (``cli_parser``, with each field's ``help``) and the
``submit --param STEP.FIELD=VALUE`` keys all follow from them. Environment variables are
read only at entry points, never here (they call ``runtime_environment`` before TensorFlow
loads).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace

from crypto_pipeline import __version__
from crypto_pipeline.dates import DATE_FORMATS, DateFormat
from crypto_pipeline.errors import ConfigError
from crypto_pipeline.settings import Settings, setting

DEFAULT_REGISTRY = "localhost:5001/kubeflow-for-poets"
"""Where the component images live: by default a local registry beside a kind cluster."""
DEFAULT_TAG = __version__
"""The images' version tag: the package's version."""
STEP_IMAGES = {
    "ingest": "ingest",
    "transform": "transform",
    "tune": "train",
    "train": "train",
    "deploy": "serve",
}
"""The image (under the registry) that each step runs in: tune and train share TensorFlow."""


def step_image(step: str, registry: str = DEFAULT_REGISTRY, tag: str = DEFAULT_TAG) -> str:
    """The image a step runs in, as the compiled pipeline names it: ``registry/<image>:tag``."""
    return f"{registry}/{STEP_IMAGES[step]}:{tag}"


DEFAULT_TRAINING_IMAGE = step_image("train")
"""The image that tune and train (and Katib's trials) run in."""
DEFAULT_SERVING_IMAGE = step_image("deploy")
"""The image of the model server, locally in Docker and as KServe's predictor."""
DEFAULT_NAMESPACE = "kubeflow"
"""Where the cluster's objects go: KFP standalone's namespace (a profile's in multi-user)."""
PREDICTOR_SERVICE_ACCOUNT = "crypto-predictor"
"""The predictor's service account: it can read the model (cluster/model-storage.yaml)."""
DATA_PVC = "crypto-data"
"""The claim a Katib trial reads the transform output from, when it is not in a bucket."""
DATA_MOUNT = "/data/transform"
"""Where a Katib trial's pod mounts the claim ``DATA_PVC`` (the transform output), read-only."""
RUNNERS = ("subprocess", "docker")
"""How kfp.local runs each step: in this environment, or in the step's image."""
DEPLOY_TARGETS = ("local", "cluster")
SEED_MAX = 2**32 - 1
"""The largest seed: NumPy, Optuna's sampler and Keras take seeds from 0 to 2**32 - 1."""


@dataclass(frozen=True)
class Split:
    """Fractions of the kept rows, in date order, for train, eval and test."""

    train: float = 0.70
    eval: float = 0.15
    test: float = 0.15

    def __post_init__(self):
        parts = (self.train, self.eval, self.test)
        if any(not 0 < p < 1 for p in parts) or abs(sum(parts) - 1) > 1e-6:
            raise ConfigError(
                f"split {self.train},{self.eval},{self.test} is not three fractions "
                "between 0 and 1 that add up to 1",
                "pass --split like 0.7,0.15,0.15",
            )

    @classmethod
    def parse(cls, text: str) -> Split:
        """Reads ``"0.7,0.15,0.15"``.

        Raises:
            ConfigError: Not three numbers, or they do not make a split.
        """
        try:
            train, eval_, test = (float(p) for p in text.split(","))
        except ValueError:
            raise ConfigError(
                f"--split {text!r} is not three comma-separated numbers",
                "pass --split like 0.7,0.15,0.15",
            ) from None
        return cls(train, eval_, test)

    def __str__(self) -> str:
        return f"{self.train:g},{self.eval:g},{self.test:g}"


@dataclass(frozen=True)
class TransformConfig(Settings):
    """How the transform step reads, filters and splits the data.

    Attributes:
        coin: The ``slug`` of the coin to keep.
        date_format: How to read slashed dates: ``auto`` decides from the file and
            refuses when it cannot; ``iso``, ``dayfirst`` or ``monthfirst`` force it.
        split: Chronological train/eval/test fractions.
        beam_args: Apache Beam pipeline options, e.g. ``("--runner=DataflowRunner",
            "--project=…", "--region=…", "--temp_location=gs://…")``. Empty: the local
            DirectRunner.
    """

    coin: str = setting(
        "bitcoin",
        help="slug of the coin to keep; a single-asset file (Yahoo Finance, CoinMarketCap "
        "exports: no coin column) needs it: it names the asset",
    )
    date_format: DateFormat = setting(
        "auto",
        help="how to read d/m/yyyy-style dates; auto decides from the file and refuses when "
        "it cannot",
    )
    split: Split = setting(default_factory=Split, help="train,eval,test fractions, split by date")
    beam_args: tuple[str, ...] = setting(
        (), help="Apache Beam pipeline options (any other --option)", flag=None
    )

    def __post_init__(self):
        if self.date_format not in DATE_FORMATS:
            raise ConfigError(
                f"unknown date format {self.date_format!r}",
                "use one of: " + ", ".join(DATE_FORMATS),
            )
        if not self.coin.strip():
            raise ConfigError("the coin is empty", "pass --coin bitcoin (a slug from the file)")


MAX_SOURCE_SECONDS = 7 * 24 * 3600
"""The longest ``IngestConfig.max_seconds`` may be: 7 days (604800 s)."""


@dataclass(frozen=True)
class IngestConfig(Settings):
    """How much of a source the ingest step reads before it calls it endless.

    Attributes:
        max_mb: The most megabytes (MiB, counted after decompression) copied from the
            source: five times the largest real source (a few hundred MB), far below
            what fills a disk.
        max_seconds: The longest the source may take to read, in all: a 300 MB file over a
            1 Mbit/s link takes 40 minutes. At most ``MAX_SOURCE_SECONDS`` (7 days): a
            timer's timeout beyond what the system clock counts fails.
    """

    max_mb: int = setting(
        2048,
        help="the most megabytes read from the source, after decompression; more is an error",
        flag="max-source-mb",
    )
    max_seconds: float = setting(
        3600.0,
        help="the longest the source may take to read, in seconds",
        flag="max-source-seconds",
    )

    def __post_init__(self):
        _positive(self, "max_mb")
        if isinstance(self.max_seconds, bool) or not (
            isinstance(self.max_seconds, int | float) and 0 < self.max_seconds <= MAX_SOURCE_SECONDS
        ):
            raise ConfigError(
                f"max_seconds={self.max_seconds!r} must be a number of seconds above 0 "
                f"and at most {MAX_SOURCE_SECONDS:g} (7 days)",
                "pass --max-source-seconds with a positive number up to "
                f"{MAX_SOURCE_SECONDS:g}, e.g. --max-source-seconds 3600",
            )


@dataclass(frozen=True)
class TuneConfig(Settings):
    """How the local hyperparameter search runs (Katib uses the same search space).

    Attributes:
        trials: Hyperparameter settings to try.
        epochs: Most epochs per trial (early stopping and pruning end most sooner).
        patience: Epochs without improvement on eval before a trial stops.
        seed: Seeds the sampler and every trial's training.
    """

    trials: int = setting(12, help="hyperparameter settings to try")
    epochs: int = setting(
        40, help="most epochs per trial; early stopping and pruning end most sooner"
    )
    patience: int = setting(6, help="epochs without improvement on eval before a trial stops")
    seed: int = setting(42, help="seeds the sampler and every trial's training")

    def __post_init__(self):
        _positive(self, "trials", "epochs", "patience")
        _seed(self.seed)


SEARCH_ONLY = ("trials",)
"""The fields of ``TuneConfig`` that only the search uses; one trial (``crypto-pipeline
trial``, a Katib trial's command) takes the others."""


@dataclass(frozen=True)
class TrainConfig(Settings):
    """How the final model trains with the best hyperparameters.

    Attributes:
        epochs: Most epochs (early stopping on the eval split ends it sooner).
        patience: Epochs without improvement on eval before stopping.
        seed: Seeds weights and shuffling: the same seed gives the same metrics.
    """

    epochs: int = setting(150, help="most epochs of the final model; early stopping ends it sooner")
    patience: int = setting(15, help="epochs without improvement on eval before stopping")
    seed: int = setting(42, help="seeds weights and shuffling: the same seed, the same metrics")

    def __post_init__(self):
        _positive(self, "epochs", "patience")
        _seed(self.seed)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive(settings: Settings, *names: str) -> None:
    """The rule for counts (trials, epochs, patience, seconds): a whole number, at least 1.

    Each of the fields NAMES of SETTINGS must keep it; the fix names the field's option.
    """
    for name in names:
        value = getattr(settings, name)
        if not _whole(value) or value < 1:
            option = settings.flag(name)
            raise ConfigError(
                f"{name}={value!r} must be a whole number of at least 1",
                f"pass --{option} with a positive integer"
                if option
                else f"set {name} to a positive integer",
            )


def _seed(seed: int) -> None:
    """The rule for a seed: a whole number from 0 to ``SEED_MAX``, what every library takes."""
    if not _whole(seed) or not 0 <= seed <= SEED_MAX:
        raise ConfigError(
            f"seed={seed!r} must be a whole number from 0 to {SEED_MAX} (2**32 - 1)",
            f"pass --seed with a whole number from 0 to {SEED_MAX}, e.g. --seed 42",
        )


@dataclass(frozen=True)
class DeployConfig(Settings):
    """Where the deploy step registers the model and what it tells KServe.

    Attributes:
        registry_uri: Where model versions are copied (a folder, ``gs://…`` or ``s3://…``).
            Empty (the pipeline's default): nothing is copied, and the cluster serves the
            model artifact where Kubeflow Pipelines stored it. ``crypto-pipeline run``
            keeps a local registry in ``<pipeline_root>/models``.
        storage_uri: What KServe's storage initializer downloads; empty: derived from the
            registered version (see ``crypto_pipeline.deploy``).
        namespace: Namespace of the InferenceService.
        service_account: Kubernetes service account of the predictor, which must be
            able to read ``storage_uri``: ``scripts/cluster.sh storage`` gives it KFP's
            object store (SeaweedFS in KFP 2.16); on GKE, workload identity. Empty: the
            namespace's default.
        image: The serve image, which KServe runs as a custom predictor. In a
            ``PipelineConfig``, the default follows its ``registry`` and ``tag``.
        target: ``local`` writes the manifest; ``cluster`` also applies it and waits
            until the model is served.
        ready_timeout: With ``cluster``: seconds to wait for the InferenceService to be
            ``Ready`` (a first pull of the serve image takes minutes) before the deploy
            fails with the predictor's own reason.
    """

    registry_uri: str = setting(
        "",
        help="folder (or file://) or bucket URI of model versions, e.g. runs/models or "
        "gs://BUCKET/models (empty: serve the model folder as it is)",
        flag="registry",
    )
    storage_uri: str = setting("", help="what the cluster reads (empty: derived)")
    namespace: str = setting(DEFAULT_NAMESPACE, help="namespace of the InferenceService")
    service_account: str = setting(
        PREDICTOR_SERVICE_ACCOUNT,
        help="the predictor's service account, which can read the storage (see cluster/)",
    )
    image: str = setting(
        DEFAULT_SERVING_IMAGE,
        help="the serve image KServe runs (in run: the serve image of --registry and --tag)",
    )
    target: str = setting(
        "local", help="local: write the manifest; cluster: also apply it and wait until served"
    )
    ready_timeout: int = setting(
        600, help="with target cluster: seconds to wait until the model is served"
    )

    def __post_init__(self):
        if self.target not in DEPLOY_TARGETS:
            raise ConfigError(
                f"unknown deploy target {self.target!r}", "use --target local or cluster"
            )
        _positive(self, "ready_timeout")


STEP_SETTINGS: dict[str, type[Settings]] = {
    "ingest": IngestConfig,
    "transform": TransformConfig,
    "tune": TuneConfig,
    "train": TrainConfig,
    "deploy": DeployConfig,
}
"""Each step's settings: the ``PipelineConfig`` field, the pipeline parameter (a struct)
and the ``submit --param STEP.FIELD=VALUE`` prefix that carries them."""
CHOICES: dict[str, tuple[str, ...]] = {"target": DEPLOY_TARGETS, "date_format": DATE_FORMATS}
"""The values a text setting may take, which the command line lists."""


@dataclass(frozen=True)
class PipelineConfig:
    """Everything one run of the pipeline needs.

    Attributes:
        source_uri: Where the raw CSV comes from: a path, ``file://``, ``http(s)://``,
            ``gs://`` or ``s3://``. The default, ``sample``, is the bundled synthetic sample.
        pipeline_root: Local folder for run folders, artifacts, the step cache and the
            registered models.
        ingest: How much of the source the ingest step reads at most.
        transform: Settings of the transform step.
        tune: Settings of the hyperparameter search.
        train: Settings of the final training.
        deploy: Settings of the deploy step.
        runner: ``subprocess`` runs each step in this environment; ``docker`` runs it in
            its image (``registry/<image>:tag``), as the image's user, like a pod.
        registry: Registry and path of the step images.
        tag: Tag of the step images.
    """

    source_uri: str = "sample"
    pipeline_root: str = "runs"
    ingest: IngestConfig = field(default_factory=IngestConfig)
    transform: TransformConfig = field(default_factory=TransformConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    deploy: DeployConfig = field(default_factory=DeployConfig)
    runner: str = "subprocess"
    registry: str = DEFAULT_REGISTRY
    tag: str = DEFAULT_TAG

    def __post_init__(self):
        if self.runner not in RUNNERS:
            raise ConfigError(
                f"unknown runner {self.runner!r}", "use --runner subprocess or docker"
            )
        if self.deploy.image == DEFAULT_SERVING_IMAGE:
            # Unless another serve image is named, KServe runs the serve image of this
            # run's registry and tag, where the steps' images are.
            serve = step_image("deploy", self.registry, self.tag)
            object.__setattr__(self, "deploy", replace(self.deploy, image=serve))


def cluster_uri(uri: str) -> str:
    """An artifact URI as other cluster services read it: KFP's ``minio://`` is ``s3://``.

    Kubeflow Pipelines names artifacts in its bundled object store ``minio://bucket/key``
    (the scheme stayed when KFP 2.16 moved from MinIO to SeaweedFS); KServe's storage
    initializer, fsspec and Beam know that store as S3 (with its endpoint,
    ``seaweedfs.kubeflow:9000``).
    """
    return "s3://" + uri.removeprefix("minio://") if uri.startswith("minio://") else uri


def runtime_environment(verbose: bool = False) -> None:
    """Settings for TensorFlow and Beam; entry points call it before TensorFlow loads.

    oneDNN's reordered float operations would make runs differ in the last digits, so
    they are off (the same seed gives the same metrics from the command line, the tests,
    the notebooks and the pipeline's components). Unless ``verbose``, TensorFlow's C++
    start-up logs and its Python INFO lines are silenced, and so is Beam's hint about
    its interactive extras, printed whenever Beam runs inside Jupyter, and Beam's log of a
    failed worker (the exception itself still reaches the caller). Values already in
    the environment win.
    """
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        for logger in ("tensorflow", "apache_beam.runners.interactive"):
            logging.getLogger(logger).setLevel(logging.ERROR)
        # A failed Beam worker's traceback: the exception itself reaches the caller, which
        # turns it into an error and a fix.
        logging.getLogger("apache_beam").setLevel(logging.CRITICAL)
