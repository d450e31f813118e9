"""One answer to notebook 01's exercise: the artifacts each task reads, and who wrote them.

Read from crypto_pipeline.yaml: under root > dag > tasks, each task's
inputs > artifacts > NAME > taskOutputArtifact > producerTask. ingest-step is not here: its
inputs are parameters only (the source URI), so it reads no other task's output.
"""

my_artifacts = {
    "transform-step": {"raw": "ingest-step"},
    "tune-step": {"data": "transform-step"},
    "train-step": {"data": "transform-step", "best_params": "tune-step"},
    "deploy-step": {"model": "train-step"},
}
