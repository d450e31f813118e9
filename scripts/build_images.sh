#!/usr/bin/env bash
# Builds one image per pipeline step, named as the compiled pipeline expects:
# $REGISTRY/<image>:$TAG for image in ingest, transform, train, serve
# (crypto_pipeline.pipeline.STEP_IMAGES maps the steps to these images).
#
# Usage: scripts/build_images.sh [--push] [--dry-run]
#   REGISTRY  default localhost:$REGISTRY_PORT/kubeflow-for-poets (REGISTRY_PORT=5001: the
#             local registry beside kind that scripts/cluster.sh starts)
#   TAG       default: the content tag, `python3 scripts/image_tag.py` (version and a
#             digest of what the images hold: a rebuild after a change is a new name, so
#             nodes pull it and Kubeflow Pipelines' cache runs the changed steps again);
#             each image is also tagged with the bare version (crypto_pipeline.__version__) here,
#             for `make pipeline-docker`, and only the content tag is pushed
#   PLATFORMS where --push goes to a registry other than this machine's (kind's
#             localhost one): the platforms to build for, default linux/amd64,linux/arm64
#             (docker buildx; an image built on an Apple-silicon laptop alone runs on no
#             amd64 node). Locally: this machine's platform.
#   IMAGES    default "ingest transform train serve"
#   --push    push each image after building it (log in to the registry first)
#   --dry-run print the commands without running them
# Last line: the tag, for `crypto-pipeline compile --tag`.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
REGISTRY="${REGISTRY:-localhost:${REGISTRY_PORT:-5001}/kubeflow-for-poets}"
VERSION="$(python3 "$ROOT/scripts/image_tag.py" --version)"
TAG="${TAG:-$(python3 "$ROOT/scripts/image_tag.py")}"
read -r -a IMAGES <<< "${IMAGES:-ingest transform train serve}"
push=0
dry_run=0

for arg in "$@"; do
  case "$arg" in
    --push) push=1 ;;
    --dry-run) dry_run=1 ;;
    -h | --help)
      sed -n '2,21p' "$0"
      exit 0
      ;;
    *)
      echo "error: unknown option $arg (use --push, --dry-run or --help)" >&2
      exit 2
      ;;
  esac
done

# shellcheck source=scripts/show.sh
source "$ROOT/scripts/show.sh"

run() {
  local started=$SECONDS
  show "$@"
  if [[ "$dry_run" == 0 ]]; then
    "$@"
    echo "  ($1 $2 took $((SECONDS - started)) s)"
  fi
}

# kind's registry (and any other on this machine) serves the nodes of this machine only.
case "${REGISTRY%%/*}" in
  localhost | localhost:* | 127.0.0.1 | 127.0.0.1:*) remote=0 ;;
  *) remote=1 ;;
esac

platforms="${PLATFORMS:-linux/amd64,linux/arm64}"
if [[ "$push" == 1 && "$remote" == 1 && "$dry_run" == 0 ]]; then
  # The default builder of a plain Linux engine builds for its own platform only.
  builder=$(docker buildx inspect 2> /dev/null | sed -n 's/^Platforms: *//p' | head -1)
  builder="${builder//\*/}"  # buildx marks the platforms it was asked for with a *
  for platform in ${platforms//,/ }; do
    if [[ ", $builder," != *", $platform,"* ]]; then
      echo "error: the current buildx builder cannot build for $platform (it has: ${builder:-none})" >&2
      echo "  fix: docker buildx create --use --name poets (a builder that can), and on Linux" \
        "QEMU for the other platform: docker run --privileged --rm tonistiigi/binfmt" \
        "--install all; or PLATFORMS=<your nodes' platform>" >&2
      exit 1
    fi
  done
fi

cd "$ROOT"
for image in "${IMAGES[@]}"; do
  ref="$REGISTRY/$image:$TAG"
  if [[ "$push" == 1 && "$remote" == 1 ]]; then
    run docker buildx build --platform "$platforms" \
      -f "components/$image/Dockerfile" -t "$ref" --push .
    continue
  fi
  tags=(-t "$ref")
  [[ "$TAG" == "$VERSION" ]] || tags+=(-t "$REGISTRY/$image:$VERSION")
  run docker build -f "components/$image/Dockerfile" "${tags[@]}" .
  if [[ "$push" == 1 ]]; then
    run docker push "$ref"
  fi
done
verb=$([[ "$dry_run" == 1 ]] && echo "would build" || echo "built")
(IFS=,; echo "$verb ${#IMAGES[@]} images: $REGISTRY/{${IMAGES[*]}}:$TAG")
echo "$TAG"
