"""Docker runs of the pipeline: kfp.local's DockerRunner set up so each step runs like a pod."""

import os
from pathlib import Path

from crypto_pipeline.errors import PipelineError


def docker_runner(
    root: Path,
    images: list[str],
    labels: dict[str, str] | None = None,
    environment: dict[str, str] | None = None,
):
    """kfp.local's DockerRunner, set up so that each step runs in its image like a pod.

    The step runs as the image's own (non-root) user, with ``root`` mounted at the same
    path. The images' ``crypto-pipeline`` entrypoint is replaced by a shell that runs KFP's
    command (Kubernetes' ``command`` replaces an entrypoint the same way), with umask 002
    so that the folders a step writes stay writable for the host's group: ``root`` is made
    group-writable and setgid, and the container gets the host user's group.

    Args:
        root: The folder of the run's artifacts, mounted into every step.
        images: The step images; each must be here or pullable (as a cluster pulls it).
        labels: Labels for the step containers (``RUN_LABEL``: the run they belong to).
        environment: Variables for the step containers (the source URL with its
            credentials, ``ingest.SOURCE_ENV``): Docker's API sets them, and they are on
            no command line.

    Raises:
        PipelineError: No Docker engine answers, the ``docker`` package is missing, or an
            image is neither here nor pullable.
    """
    from kfp import local

    try:
        import docker

        client = docker.from_env()
        client.ping()
    except ImportError:
        raise PipelineError(
            "the docker Python package is missing", "run `make setup` (it is in the lock)"
        ) from None
    except Exception as exc:  # docker raises several types for a missing engine
        raise PipelineError(
            f"no Docker engine answers ({type(exc).__name__})",
            "start Docker (or `sudo dockerd &`), build the images with "
            "`scripts/build_images.sh`, then run again",
        ) from None
    for image in images:
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            try:
                client.images.pull(image)
            except docker.errors.APIError as exc:
                raise PipelineError(
                    f"the step image {image} is not here and cannot be pulled "
                    f"({exc.explanation or exc})",
                    "build the images with `make images` (REGISTRY=… TAG=… for others), "
                    "or pass the --registry and --tag they were pushed under",
                ) from None
    root.chmod(root.stat().st_mode | 0o2070)
    # The image's user joins the host user's group (gid 0 for root, as OpenShift runs
    # every container): it may write into ``root``, and the host may remove what it wrote.
    return local.DockerRunner(
        entrypoint=["/bin/sh", "-c", 'umask 002 && exec "$@"', "step"],
        group_add=[str(os.getgid())],
        labels=labels or {},
        environment=environment or {},
    )
