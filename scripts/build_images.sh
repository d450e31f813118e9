#!/usr/bin/env bash
# Builds one image per pipeline step, named as the compiled pipeline expects:
# $REGISTRY/<image>:$TAG for image in ingest, transform, train, serve
# (crypto_pipeline.pipeline.STEP_IMAGES maps the steps to these images).
#
# Usage: scripts/build_images.sh [--push] [--dry-run]
#   REGISTRY  default localhost:5001/kubeflow-for-poets (a local registry beside kind)
#   TAG       default 0.1.0
#   IMAGES    default "ingest transform train serve"
#   --push    push each image after building it (log in to the registry first)
#   --dry-run print the commands without running them
set -euo pipefail

REGISTRY="${REGISTRY:-localhost:5001/kubeflow-for-poets}"
TAG="${TAG:-0.1.0}"
read -r -a IMAGES <<< "${IMAGES:-ingest transform train serve}"
push=0
dry_run=0

for arg in "$@"; do
  case "$arg" in
    --push) push=1 ;;
    --dry-run) dry_run=1 ;;
    -h | --help)
      sed -n '2,13p' "$0"
      exit 0
      ;;
    *)
      echo "error: unknown option $arg (use --push, --dry-run or --help)" >&2
      exit 2
      ;;
  esac
done

run() {
  echo "+ $*"
  if [[ "$dry_run" == 0 ]]; then
    "$@"
  fi
}

cd "$(dirname "$0")/.."
for image in "${IMAGES[@]}"; do
  run docker build -f "components/$image/Dockerfile" -t "$REGISTRY/$image:$TAG" .
  if [[ "$push" == 1 ]]; then
    run docker push "$REGISTRY/$image:$TAG"
  fi
done
verb=$([[ "$dry_run" == 1 ]] && echo "would build" || echo "built")
(IFS=,; echo "$verb ${#IMAGES[@]} images: $REGISTRY/{${IMAGES[*]}}:$TAG")
