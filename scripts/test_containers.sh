#!/usr/bin/env bash
# Builds every Dockerfile of the project and runs each image with a behaviour check.
#
# These machines run a Docker engine but cannot pull from any registry, so the base images
# the Dockerfiles name are replaced by STAND-INS made here: a Debian bookworm root file
# system from debootstrap, imported with `docker import`, then tagged with the real names
# (python:3.11-slim-bookworm, alpine:3.22, nginxinc/nginx-unprivileged:1.28-alpine). On a
# normal machine the real bases are pulled and none of this is needed.
#
# Notebook 02 then runs top to bottom against the engine (require_docker=True), so its
# Docker cells run for real; it needs the project's .venv (`make test-containers` makes it).
#
# Usage: scripts/test_containers.sh [--skip-tensorflow]
#   --skip-tensorflow  leave out the train and serve images (the slow TensorFlow builds)
# Needs root (dockerd, debootstrap). Starts dockerd when none runs and stops it at the end;
# removes the containers it starts, whatever happens.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$ROOT/.tools/containers"
BASE=poets-standin/debian:bookworm
IMAGES="kubeflow-for-poets"
TAG=0.1.0
skip_tf=0
[[ "${1:-}" == "--skip-tensorflow" ]] && skip_tf=1

started_dockerd=0
containers=()
failures=0

say() { echo "==> $*"; }
pass() { echo "  PASS $*"; }
fail() {
  echo "  FAIL $*" >&2
  failures=$((failures + 1))
}

cleanup() {
  for c in "${containers[@]}"; do
    docker rm -f "$c" > /dev/null 2>&1 || true
  done
  if [[ "$started_dockerd" == 1 ]]; then
    say "stopping the dockerd this script started"
    kill "$(cat "$WORK/dockerd.pid")" 2> /dev/null || true
    for _ in $(seq 1 30); do
      docker info > /dev/null 2>&1 || break
      sleep 1
    done
  fi
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

install_tools() {
  local missing=()
  command -v dockerd > /dev/null || missing+=(docker.io)
  command -v debootstrap > /dev/null || missing+=(debootstrap)
  if ((${#missing[@]})); then
    say "installing ${missing[*]} from Debian's packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" > /dev/null
  fi
}

start_docker() {
  mkdir -p "$WORK"
  if docker info > /dev/null 2>&1; then
    say "using the running Docker engine"
    return
  fi
  say "starting dockerd"
  dockerd > "$WORK/dockerd.log" 2>&1 &
  echo $! > "$WORK/dockerd.pid"
  started_dockerd=1
  for _ in $(seq 1 60); do
    docker info > /dev/null 2>&1 && return
    sleep 1
  done
  echo "error: dockerd did not start; see $WORK/dockerd.log" >&2
  exit 1
}

make_standins() {
  if ! docker image inspect "$BASE" > /dev/null 2>&1; then
    say "making the base root file system with debootstrap (Debian bookworm)"
    rm -rf "$WORK/rootfs"
    debootstrap --variant=minbase \
      --include=python3,python3-pip,python3-venv,ca-certificates,wget,nginx-light \
      bookworm "$WORK/rootfs" http://deb.debian.org/debian > "$WORK/debootstrap.log"
    # The host's CA bundle, so that pip in a build trusts what the host trusts.
    cp /etc/ssl/certs/ca-certificates.crt "$WORK/rootfs/etc/ssl/certs/ca-certificates.crt"
    tar -C "$WORK/rootfs" -c . | docker import - "$BASE" > /dev/null
    rm -rf "$WORK/rootfs"
  fi
  echo "!!! STAND-IN BASE IMAGES: these machines cannot pull, so the bases below are built"
  echo "!!! here from Debian bookworm and tagged with the real names. On a normal machine"
  echo "!!! the real images are pulled instead."
  docker build -q -t python:3.11-slim-bookworm "$ROOT/tests/containers/standins/python" \
    > "$WORK/build-standins.log" 2>&1
  docker tag "$BASE" alpine:3.22
  docker build -q -t nginxinc/nginx-unprivileged:1.28-alpine \
    "$ROOT/tests/containers/standins/nginx" >> "$WORK/build-standins.log" 2>&1
  echo "    python:3.11-slim-bookworm, alpine:3.22, nginxinc/nginx-unprivileged:1.28-alpine"
}

build() {  # build IMAGE DOCKERFILE CONTEXT
  local started=$SECONDS
  if docker build -q -t "$1" -f "$2" "$3" > "$WORK/build-${1//[\/:]/_}.log" 2>&1; then
    pass "built $1 in $((SECONDS - started)) s"
  else
    fail "build of $1; see $WORK/build-${1//[\/:]/_}.log"
    tail -20 "$WORK/build-${1//[\/:]/_}.log" >&2
    return 1
  fi
}

check_hello_world() {
  local image="$IMAGES/hello-world:$TAG" out
  build "$image" "$ROOT/docker-intro/hello-world/Dockerfile" "$ROOT/docker-intro/hello-world" || return 0
  out=$(docker run --rm "$image")
  if [[ "$out" == "Today's date is $(date -u +%Y-%m-%d)" || "$out" == "Today's date is $(date +%Y-%m-%d)" ]]; then
    pass "hello-world printed: $out"
  else
    fail "hello-world printed: $out"
  fi
}

check_nginx() {
  local image="$IMAGES/nginx-server:$TAG" port name=poets-nginx-test body health
  build "$image" "$ROOT/docker-intro/nginx-server/Dockerfile" "$ROOT/docker-intro/nginx-server" || return 0
  port=$(free_port)
  docker run -d --name "$name" -p "127.0.0.1:$port:8080" "$image" > /dev/null
  containers+=("$name")
  body=""
  for _ in $(seq 1 30); do
    body=$(wget -q -O - "http://127.0.0.1:$port/" 2> /dev/null) && break
    sleep 1
  done
  if [[ "$body" == "$(cat "$ROOT/docker-intro/nginx-server/html/index.html")" ]]; then
    pass "nginx-server served index.html on 127.0.0.1:$port"
  else
    fail "nginx-server did not serve index.html on 127.0.0.1:$port"
  fi
  for _ in $(seq 1 40); do
    health=$(docker inspect -f '{{.State.Health.Status}}' "$name")
    [[ "$health" == healthy ]] && break
    sleep 1
  done
  if [[ "$health" == healthy ]]; then
    pass "nginx-server HEALTHCHECK: healthy"
  else
    fail "nginx-server health: $health"
  fi
  if [[ "$(docker exec "$name" id -u)" == 101 ]]; then
    pass "nginx-server runs as uid 101"
  else
    fail "nginx-server does not run as uid 101"
  fi
}

check_docker_notebook() {  # notebook 02 top to bottom, every Docker command for real
  local port log="$WORK/notebook-02.log"
  port=$(free_port)
  containers+=(poets-nginx)
  if "$ROOT/.venv/bin/python" "$ROOT/scripts/run_notebooks.py" --only 02 \
    -p require_docker=True -p nginx_port="$port" > "$log" 2>&1; then
    pass "notebooks/02-docker.ipynb ran with the engine: $(tail -1 "$log")"
  else
    fail "notebooks/02-docker.ipynb with the engine; see $log"
    tail -15 "$log" >&2
  fi
}

check_component() {  # check_component IMAGE COMMAND EXPECTED: run COMMAND with /out shared
  local image="$IMAGES/$1:$TAG" out
  build "$image" "$ROOT/components/$1/Dockerfile" "$ROOT" || return 0
  if docker run --rm "$image" --help | grep -q "usage: crypto-pipeline"; then
    pass "$1 answers --help"
  else
    fail "$1 --help"
  fi
  if [[ "$(docker run --rm --entrypoint id "$image" -u)" != 0 ]]; then
    pass "$1 runs as non-root"
  else
    fail "$1 runs as root"
  fi
  out=$(docker run --rm -v "$WORK/shared:/out" --entrypoint sh "$image" -c "$2" 2>&1) || true
  if grep -q "$3" <<< "$out"; then
    pass "$1 ran its step: $(grep -m1 "$3" <<< "$out" | sed 's/^ *//')"
  else
    fail "$1 step output lacks '$3':"
    echo "$out" | tail -15 >&2
  fi
}

check_serve() {  # serves the model that the train image trained into /out/train/model
  local image="$IMAGES/serve:$TAG" port name=poets-serve-test answer=""
  build "$image" "$ROOT/components/serve/Dockerfile" "$ROOT" || return 0
  if [[ ! -f "$WORK/shared/train/model/saved_model.pb" ]]; then
    fail "serve: no model from the train image to serve"
    return 0
  fi
  port=$(free_port)
  docker run -d --name "$name" -p "127.0.0.1:$port:8080" \
    -v "$WORK/shared/train/model:/mnt/models:ro" "$image" > /dev/null
  containers+=("$name")
  for _ in $(seq 1 90); do
    answer=$(wget -q -O - --header 'Content-Type: application/json' \
      --post-data '{"instances": [[100, 104, 97]]}' \
      "http://127.0.0.1:$port/v1/models/crypto:predict" 2> /dev/null) && break
    sleep 1
  done
  if [[ "$answer" == *predictions* ]]; then
    pass "serve answered on 127.0.0.1:$port: $answer"
  else
    fail "serve did not answer a prediction on 127.0.0.1:$port"
    docker logs "$name" 2>&1 | tail -15 >&2
  fi
}

install_tools
start_docker
make_standins

say "docker-intro"
check_hello_world
check_nginx
check_docker_notebook

say "pipeline component images (each runs its step; /out is shared between them)"
rm -rf "$WORK/shared" && mkdir -p "$WORK/shared" && chmod 777 "$WORK/shared"
check_component ingest \
  "crypto-pipeline ingest --source sample --output-dir /out/raw" "ingested 7,805 rows"
check_component transform \
  "crypto-pipeline transform --input /out/raw/crypto-markets.csv --output-dir /out/data" \
  "kept 1,793 rows of bitcoin"
if [[ "$skip_tf" == 1 ]]; then
  echo "  SKIP train and serve images (--skip-tensorflow)"
else
  params='{"num_layers": 2, "first_layer_size": 32, "layer_size_scale": 0.5,
    "learning_rate": 0.003, "batch_size": 32}'
  check_component train \
    "echo '$params' > /tmp/params.json && crypto-pipeline train --data-dir /out/data \
     --params /tmp/params.json --output-dir /out/train --epochs 5" \
    "baseline: least_squares"
  check_serve
fi

if ((failures)); then
  echo "containers: $failures check(s) failed" >&2
  exit 1
fi
say "containers: every build and check passed"
