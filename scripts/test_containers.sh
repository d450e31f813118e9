#!/usr/bin/env bash
# Builds every Dockerfile of the project and runs each image with a behaviour check.
#
# These machines run a Docker engine but cannot pull from any registry, so the base images
# the Dockerfiles name are replaced by STAND-INS made here and tagged with the real names:
# alpine:3.22 is Debian's busybox-static alone (`docker import` of a root file system of one
# static binary and its applet links, about 2 MB; the real one is about 8 MB);
# nginxinc/nginx-unprivileged:1.28-alpine is Debian's nginx and the libraries it links on
# that (about 12 MB; the real one about 50 MB); python:3.11-slim-bookworm is a Debian
# bookworm root file system from debootstrap (about 300 MB, with what the step images'
# tests need). On a normal machine the real bases are pulled and none of this is needed.
#
# Notebook 02 then runs top to bottom against the engine (require_docker=True), so its
# Docker cells run for real, its builds with BuildKit (DOCKER_BUILDKIT=1, through Debian's
# docker client, which has BuildKit built in); it needs the project's .venv (this script
# runs `make setup` once the step images' builds are under way).
#
# The step images then go where a cluster gets them: a real OCI registry on localhost:5001
# (Debian's docker-registry, started and stopped here): pushed, the local tags removed,
# pulled back by name (manifest and config; the layers stay here, and containerd below
# downloads each one and checks its digest). The whole pipeline then runs with kfp.local's
# DockerRunner, every step in its image as the image's user (like a pod), and its metrics
# are compared with a subprocess run of the same seed.
#
# Three rehearsals of how a cluster runs those images:
# - Beam's portable route (Flink, Spark, Dataflow Runner v2 run Python pipelines through it):
#   the transform is submitted with --runner=PortableRunner to Beam's Python job service on
#   this machine, and its SDK workers run in a worker pool in the transform image
#   (`docker run IMAGE --worker_pool`, --environment_type=EXTERNAL); its splits, rejects and
#   stats must equal the DirectRunner's byte for byte (stats.json: all but runner, seconds).
# - containerd fetches each pushed step image through the hosts.toml that scripts/cluster.sh
#   gives kind's nodes (cluster/containerd-hosts.toml: localhost:5001 is
#   http://kind-registry:5000): Debian's ctr content fetch with --hosts-dir (a pull's
#   download: manifest, config and every layer, each checked against its digest; a node's
#   unpacking is not rehearsed), the name kind-registry resolving to a second registry
#   process on port 5000 over the same storage, only for ctr (a mount namespace with its
#   own /etc/hosts). The digest must be the registry's, and the port-5000 registry's log
#   must show the requests.
# - The serve image runs with the exact container spec of the InferenceService that the
#   docker run's deploy step wrote (tests/containers/isvc_docker.py maps every field to
#   docker run, and refuses one it cannot map), the model at /mnt/models as KServe's
#   storage initializer puts it; once ready it must answer the deploy step's smoke request
#   with the smoke response recorded in deployment.json, exactly.
#
# Notebook 02 records what each Docker command printed (crypto_workshop.tape.Tape), and the run is
# compared with notebooks/recorded/02-docker.json, the outputs a machine without an engine
# shows: ids, times and sizes masked, they must match, or be refreshed.
#
# Last, the workshop image (workshop/Dockerfile): JupyterLab must answer at the address it
# prints, refuse requests without its token, run as uid 1000, find its environment ready,
# and run every notebook inside it; then .devcontainer/devcontainer.json is opened with the
# Dev Containers CLI (pinned in tests/containers/devcontainer/), and the pipeline runs in it.
#
# Usage: scripts/test_containers.sh [--skip-tensorflow] [--refresh-recordings]
#   --skip-tensorflow     leave out the train and serve images (the slow TensorFlow builds)
#   --refresh-recordings  write this run's Docker outputs to notebooks/recorded/02-docker.json
# Needs root (dockerd, debootstrap, unshare). Starts dockerd when none runs and stops it at
# the end; removes the containers it starts and stops the processes, whatever happens; ends
# with the time each part took. Each run first removes the step images an earlier run left
# (every build starts from the base, as on a fresh machine), and stops early when the
# engine's disk is too full to build.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$ROOT/.tools/containers"
BASE=poets-standin/debian:bookworm
IMAGES="kubeflow-for-poets"
# The bare version (crypto_pipeline.__version__), as `make compile` and build_images.sh tag.
TAG="$(python3 "$ROOT/scripts/image_tag.py" --version)"
REGISTRY_PORT=5001
KIND_REGISTRY_PORT=5000  # kind-registry's port in cluster/containerd-hosts.toml
WORKER_POOL_PORT=50000  # Beam's SDK worker pool, as Beam's SDK images start it
STEP_REGISTRY="localhost:$REGISTRY_PORT/$IMAGES"  # the names the compiled pipeline uses
QUICK=(--trials 2 --epochs 8 --seed 42 --no-cache)  # the same run with both runners
NEED_GB=15  # free disk: the step images (6 GB of layers, 3 GB in the registry), the workshop image (3 GB)
skip_tf=0
refresh=0
for arg in "$@"; do
  case "$arg" in
    --skip-tensorflow) skip_tf=1 ;;
    --refresh-recordings) refresh=1 ;;
    *)
      echo "error: unknown option $arg (--skip-tensorflow, --refresh-recordings)" >&2
      exit 2
      ;;
  esac
done

started_dockerd=0
registry_pid=""
kind_registry_pid=""
containerd_pid=""
job_service_pid=""
containers=()
declare -A builds=()  # the step images' build_images.sh processes, by image
builds_started=0
failures=0
times=()  # "PART SECONDS", printed at the end
script_started=$SECONDS

say() { echo "==> $*"; }
pass() { echo "  PASS $*"; }
fail() {
  echo "  FAIL $*" >&2
  failures=$((failures + 1))
}

took() {  # took PART STARTED: remembers how long PART took since STARTED ($SECONDS)
  times+=("$1|$((SECONDS - $2))")
}

timed() {  # timed PART COMMAND...: runs COMMAND and remembers how long it took
  local started=$SECONDS
  "${@:2}"
  took "$1" "$started"
}

print_times() {
  local line
  say "time each part took"
  for line in "${times[@]}" "total|$((SECONDS - script_started))"; do
    printf '    %-60s %5d s\n' "${line%|*}" "${line##*|}"
  done
}

cleanup() {
  local pid
  for pid in "${builds[@]}"; do  # an early exit leaves no build behind
    kill "$pid" 2> /dev/null || true
  done
  for c in "${containers[@]}"; do
    docker rm -f "$c" > /dev/null 2>&1 || true
  done
  if [[ -n "$job_service_pid" ]]; then
    kill "$job_service_pid" 2> /dev/null || true
    job_service_pid=""
  fi
  if [[ -n "$kind_registry_pid" ]]; then
    kill "$kind_registry_pid" 2> /dev/null || true
    kind_registry_pid=""
  fi
  if [[ -n "$containerd_pid" ]]; then
    kill "$containerd_pid" 2> /dev/null || true
    containerd_pid=""
  fi
  if [[ -n "$registry_pid" ]]; then
    say "stopping the registry on localhost:$REGISTRY_PORT"
    kill "$registry_pid" 2> /dev/null || true
    registry_pid=""
    rm -rf "$WORK/registry/data"  # the pushed layers, gigabytes no later run reads
  fi
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

free_port() {  # a port nothing listens on, below Linux's range for outgoing connections
  # (32768-60999), where no client's connection can take it before the server binds it
  python3 - << 'PY'
import random, socket
for port in random.sample(range(20000, 32768), 200):
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            continue
    print(port)
    break
PY
}

install_tools() {
  local missing=()
  command -v dockerd > /dev/null || missing+=(docker.io)
  command -v debootstrap > /dev/null || missing+=(debootstrap)
  command -v docker-registry > /dev/null || missing+=(docker-registry)
  dpkg -s busybox-static > /dev/null 2>&1 || missing+=(busybox-static)
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

make_alpine_standin() {  # alpine:3.22's stand-in: Debian's busybox-static and its applets
  local rootfs="$WORK/alpine-rootfs" applet made
  # What it is made of, as a label: the same inputs make no new image (nor a dangling old one).
  made=$(cat /bin/busybox "$ROOT"/tests/containers/standins/alpine/* | sha256sum | cut -c1-16)
  if [[ "$(docker image inspect -f '{{index .Config.Labels "poets.standin"}}' alpine:3.22 \
    2> /dev/null)" == "$made" ]]; then
    return 0
  fi
  rm -rf "$rootfs"
  mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp}
  cp /bin/busybox "$rootfs/bin/busybox"
  for applet in $(/bin/busybox --list-full); do  # bin/sh, usr/bin/wget, …: links, as in alpine
    [[ -e "$rootfs/$applet" ]] || ln -s /bin/busybox "$rootfs/$applet"
  done
  cp "$ROOT"/tests/containers/standins/alpine/{passwd,group,os-release} "$rootfs/etc/"
  chmod 1777 "$rootfs/tmp"
  tar -C "$rootfs" --numeric-owner --owner=0 --group=0 -c . \
    | docker import --change 'CMD ["/bin/sh"]' --change "LABEL poets.standin=$made" - alpine:3.22 \
      > /dev/null
  rm -rf "$rootfs"
}

standin_size() {  # standin_size IMAGE: its size as `docker image ls` shows it
  docker image ls --format '{{.Size}}' "$1"
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
  echo "!!! here from Debian's packages and tagged with the real names. On a normal machine"
  echo "!!! the real images are pulled instead."
  docker build -q -t python:3.11-slim-bookworm "$ROOT/tests/containers/standins/python" \
    > "$WORK/build-standins.log" 2>&1
  make_alpine_standin
  docker build -q -t nginxinc/nginx-unprivileged:1.28-alpine \
    "$ROOT/tests/containers/standins/nginx" >> "$WORK/build-standins.log" 2>&1
  # Notebook 02's recording shows image sizes: each stand-in's, with why it differs.
  printf '    %-40s %7s  %s\n' \
    alpine:3.22 "$(standin_size alpine:3.22)" \
    "Debian's busybox-static alone (the real one: about 8 MB, musl, BusyBox and apk)" \
    nginxinc/nginx-unprivileged:1.28-alpine "$(standin_size nginxinc/nginx-unprivileged:1.28-alpine)" \
    "Debian's nginx and its libraries on that (the real one: about 50 MB)" \
    python:3.11-slim-bookworm "$(standin_size python:3.11-slim-bookworm)" \
    "a whole Debian bookworm with python3, pip, wget and nginx (the step images' tests)"
}

build() {  # build IMAGE DOCKERFILE CONTEXT
  local started=$SECONDS
  if docker build -t "$1" -f "$2" "$3" > "$WORK/build-${1//[\/:]/_}.log" 2>&1; then
    pass "built $1 in $((SECONDS - started)) s"
    took "build of $1" "$started"
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
  docker rm -f "$name" > /dev/null  # gone before notebook 02 lists its own poets-nginx
}

buildkit_docker() {  # prints the folder of a docker client that builds with BuildKit here
  local client
  # Docker 23 and later build with BuildKit through the buildx plugin; Debian's 20.10 client
  # has BuildKit built in (DOCKER_BUILDKIT=1). A client without either would fall back to
  # the legacy builder, whose output (and DEPRECATED banner) learners no longer see.
  for client in "$(command -v docker)" /usr/bin/docker; do
    if [[ -x "$client" ]] && echo 'FROM alpine:3.22' \
      | DOCKER_BUILDKIT=1 "$client" build -q - > /dev/null 2>&1; then
      dirname "$client"
      return 0
    fi
  done
  return 1
}

check_docker_notebook() {  # notebook 02 top to bottom, every Docker command for real
  local port=8081 log="$WORK/notebook-02.log" recorded="$WORK/recorded" client
  # Its default port, so that the commands it records are the ones a learner's run shows.
  python3 -c 'import socket; socket.socket().bind(("127.0.0.1", 8081))' 2> /dev/null \
    || port=$(free_port)
  if ! client=$(buildkit_docker); then
    fail "notebook 02: no docker client here builds with BuildKit (install docker-buildx)"
    return 0
  fi
  containers+=(poets-nginx poets-greeting-check)
  rm -rf "$recorded"
  if PATH="$client:$PATH" DOCKER_BUILDKIT=1 POETS_RECORD_TO="$recorded" \
    POETS_RECORDED_BY="make test-containers" \
    POETS_RECORD_TOOLS="Docker Engine $(docker version -f '{{.Server.Version}}') (BuildKit)" \
    POETS_RECORD_NOTE="base images: local stand-ins, as this machine cannot pull: alpine:3.22 \
is Debian's busybox-static alone ($(standin_size alpine:3.22); the real one is about 8 MB); \
nginxinc/nginx-unprivileged:1.28-alpine is Debian's nginx and its libraries on that \
($(standin_size nginxinc/nginx-unprivileged:1.28-alpine); the real one is about 50 MB)" \
    "$ROOT/.venv/bin/python" "$ROOT/scripts/run_notebooks.py" --only 02 \
    --output-dir "$WORK/executed" \
    -p require_docker=True -p nginx_port="$port" > "$log" 2>&1; then
    pass "notebooks/02-docker.ipynb ran with the engine: $(tail -1 "$log")"
  else
    fail "notebooks/02-docker.ipynb with the engine; see $log"
    tail -15 "$log" >&2
    return 0
  fi
  if [[ "$port" != 8081 ]]; then
    echo "  SKIP the recorded outputs: port 8081 is busy, so the commands differ from a learner's"
  elif [[ "$refresh" == 1 ]]; then
    cp "$recorded/02-docker.json" "$ROOT/notebooks/recorded/02-docker.json"
    pass "refreshed notebooks/recorded/02-docker.json from this run (commit it)"
  elif "$ROOT/.venv/bin/python" - "$ROOT/notebooks/recorded/02-docker.json" \
    "$recorded/02-docker.json" << 'PY'; then
import difflib, json, sys
from crypto_workshop.tape import comparable
kept, fresh = (json.load(open(p))["commands"] for p in sys.argv[1:])
assert [c["command"] for c in kept] == [c["command"] for c in fresh], "the commands differ"
for old, new in zip(kept, fresh):
    a, b = comparable(old["output"]), comparable(new["output"])
    assert (a, old["status"]) == (b, new["status"]), f"$ {old['command']}\n" + "\n".join(
        difflib.unified_diff(a.splitlines(), b.splitlines(), "recorded", "now", lineterm=""))
print(f"    {len(fresh)} commands; ids, times and sizes masked")
PY
    pass "notebook 02's recorded outputs match what the engine printed now"
  else
    fail "notebook 02's recorded outputs are stale; fix: scripts/test_containers.sh" \
      "--refresh-recordings, then commit notebooks/recorded/02-docker.json"
  fi
}

start_registry() {  # Debian's docker-registry (distribution 2.8), as kind's local registry
  if wget -q -O /dev/null "http://127.0.0.1:$REGISTRY_PORT/v2/" 2> /dev/null; then
    echo "error: something answers on localhost:$REGISTRY_PORT already (a kind-registry?);" \
      "stop it first (docker rm -f kind-registry)" >&2
    exit 1
  fi
  rm -rf "$WORK/registry" && mkdir -p "$WORK/registry"
  cat > "$WORK/registry/config.yml" << YAML
version: 0.1
storage:
  filesystem:
    rootdirectory: $WORK/registry/data
http:
  addr: 127.0.0.1:$REGISTRY_PORT
YAML
  docker-registry serve "$WORK/registry/config.yml" > "$WORK/registry/registry.log" 2>&1 &
  registry_pid=$!
  for _ in $(seq 1 30); do
    if wget -q -O /dev/null "http://127.0.0.1:$REGISTRY_PORT/v2/" 2> /dev/null; then
      pass "a registry (Debian's docker-registry) answers on localhost:$REGISTRY_PORT"
      return
    fi
    sleep 1
  done
  fail "the registry did not start; see $WORK/registry/registry.log"
  exit 1
}

free_gb() {  # free_gb PATH: whole gigabytes free on the file system holding PATH
  df -P -B1G "$1" | awk 'NR == 2 {print $4}'
}

make_room() {  # remove the step images earlier runs left, then check the free disk
  local old root free
  # A pulled image keeps no build cache, so older step images are only dead weight: every
  # image of $STEP_REGISTRY, tagged or superseded, and exited containers of failed builds.
  old=$({
    docker images -q --filter "reference=$STEP_REGISTRY/*"
    docker images -q --filter "reference=poets-kept/*"
  } | sort -u)
  if [[ -n "$old" ]]; then
    # shellcheck disable=SC2086  # one id per word
    docker rmi -f $old > /dev/null 2>&1 || true
    echo "    removed $(wc -w <<< "$old") step image(s) an earlier run left"
  fi
  # shellcheck disable=SC2046  # one id per word
  docker rm $(docker ps -aq --filter status=exited --filter ancestor=python:3.11-slim-bookworm) \
    > /dev/null 2>&1 || true
  docker image prune -f > /dev/null  # layers nothing names any more
  root=$(docker info -f '{{.DockerRootDir}}')
  free=$(free_gb "$root")
  echo "    $free GB free for $root and $(free_gb "$WORK") GB for $WORK (need $NEED_GB)"
  if ((free < NEED_GB)) || (($(free_gb "$WORK") < NEED_GB / 2)); then
    echo "error: too little free disk to build the step images: $free GB for $root," \
      "$NEED_GB GB needed; fix: free space there (docker system df shows what the" \
      "engine holds; docker system prune removes what nothing uses)" >&2
    exit 1
  fi
}

start_builds() {  # start_builds IMAGE...: build and push each step image, in the background
  local image
  builds_started=$SECONDS
  # Side by side, one build_images.sh each: much of a build waits on downloads. Each
  # leaves the second it ended in build-IMAGE.ended.
  for image in "$@"; do
    rm -f "$WORK/build-$image.ended"
    (
      status=0
      IMAGES="$image" REGISTRY="$STEP_REGISTRY" TAG="$TAG" bash "$ROOT/scripts/build_images.sh" \
        --push > "$WORK/build-$image.log" 2>&1 || status=$?
      echo "$SECONDS" > "$WORK/build-$image.ended"
      exit "$status"
    ) &
    builds[$image]=$!
  done
}

pull_back() {  # pull_back IMAGE...: wait for the builds, drop the local tags, pull back by name
  local ref image started failed=0 ended=0 at
  local -A ids=()
  for image in "$@"; do
    if ! wait "${builds[$image]}"; then
      fail "build or push of $image; see $WORK/build-$image.log"
      tail -20 "$WORK/build-$image.log" >&2
      failed=1
    fi
    unset "builds[$image]"
    read -r at < "$WORK/build-$image.ended" && ((at > ended)) && ended=$at
  done
  ((failed)) && exit 1
  pass "built and pushed $* side by side in $((ended - builds_started)) s"
  times+=("build and push, side by side: $*|$((ended - builds_started))")
  started=$SECONDS
  echo "    registry catalog: $(wget -q -O - "http://127.0.0.1:$REGISTRY_PORT/v2/_catalog")"
  # The name comes back from the registry; the layers stay here under a second name, so
  # the pull fetches the manifest and config, not gigabytes of layers again: containerd
  # downloads every layer below, each checked against its digest.
  for image in "$@"; do
    ref="$STEP_REGISTRY/$image:$TAG"
    ids[$image]=$(docker image inspect -f '{{.Id}}' "$ref")
    docker tag "$ref" "poets-kept/$image:$TAG"
    docker rmi "$ref" > /dev/null
    if docker image inspect "$ref" > /dev/null 2>&1; then
      fail "$ref is still here after docker rmi"
    fi
  done
  for image in "$@"; do
    ref="$STEP_REGISTRY/$image:$TAG"
    if docker pull -q "$ref" > /dev/null \
      && [[ "$(docker image inspect -f '{{.Id}}' "$ref")" == "${ids[$image]}" ]]; then
      pass "removed the local tag, then pulled $ref back from the registry (same image id)"
    else
      fail "pull of $ref from the registry"
    fi
    docker rmi "poets-kept/$image:$TAG" > /dev/null
  done
  took "the step images pulled back by name" "$started"
}

check_component() {  # check_component IMAGE COMMAND EXPECTED: run COMMAND with /out shared
  local image="$STEP_REGISTRY/$1:$TAG" out
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

find_containerd() {  # sets ctr_socket: the engine's containerd, or one started here
  local socket
  for socket in /run/containerd/containerd.sock /var/run/docker/containerd/containerd.sock; do
    if [[ -S "$socket" ]] && ctr --address "$socket" version > /dev/null 2>&1; then
      ctr_socket=$socket
      return 0
    fi
  done
  # None answers (the engine talks to a containerd elsewhere): one of our own, under $WORK.
  mkdir -p "$WORK/containerd"
  ctr_socket="$WORK/containerd/containerd.sock"
  cat > "$WORK/containerd/config.toml" << TOML
version = 2
root = "$WORK/containerd/root"
state = "$WORK/containerd/state"
[grpc]
  address = "$ctr_socket"
TOML
  containerd --config "$WORK/containerd/config.toml" > "$WORK/containerd/containerd.log" 2>&1 &
  containerd_pid=$!
  for _ in $(seq 1 30); do
    ctr --address "$ctr_socket" version > /dev/null 2>&1 && return 0
    sleep 1
  done
  return 1
}

registry_digest() {  # registry_digest PORT NAME TAG: the manifest digest the registry serves
  # One Accept header: without the schema 2 and OCI types, the registry converts the
  # manifest to schema 1, whose digest differs.
  local types=application/vnd.docker.distribution.manifest
  types+=".v2+json, $types.list.v2+json, application/vnd.oci.image.manifest.v1+json"
  types+=", application/vnd.oci.image.index.v1+json"
  wget -q -S --spider --header "Accept: $types" "http://127.0.0.1:$1/v2/$2/manifests/$3" 2>&1 |
    awk 'tolower($1) == "docker-content-digest:" {print $2}' | tr -d '\r'
}

check_containerd_hosts() {  # check_containerd_hosts IMAGE...: ctr fetches through kind's hosts.toml
  local hosts_toml="$ROOT/cluster/containerd-hosts.toml" dir="$WORK/containerd-pull"
  local namespace=poets-rehearsal image ref want got log t0 out ctr_socket
  local direct_log="$WORK/registry/registry.log" direct
  local -a in_kind
  rm -rf "$dir" && mkdir -p "$dir/certs.d/localhost:$REGISTRY_PORT"
  cp "$hosts_toml" "$dir/certs.d/localhost:$REGISTRY_PORT/hosts.toml"
  if listening "$KIND_REGISTRY_PORT"; then
    fail "port $KIND_REGISTRY_PORT is taken: kind-registry's port cannot be rehearsed"
    return 0
  fi
  # kind-registry: the same registry (its storage folder), on the port the nodes reach it at.
  sed -e "s/^  addr: .*/  addr: 127.0.0.1:$KIND_REGISTRY_PORT/" "$WORK/registry/config.yml" \
    > "$dir/kind-registry.yml"
  log="$dir/kind-registry.log"
  docker-registry serve "$dir/kind-registry.yml" > "$log" 2>&1 &
  kind_registry_pid=$!
  if ! wait_listening "$KIND_REGISTRY_PORT" 30 || ! find_containerd; then
    fail "the kind-registry stand-in (see $log) or a containerd did not start"
    return 0
  fi
  # Only for ctr, kind-registry is this machine: a mount namespace with its own /etc/hosts.
  { cat /etc/hosts && echo "127.0.0.1 kind-registry"; } > "$dir/hosts"
  # shellcheck disable=SC2016  # expanded by that sh: $0 is the hosts file, $@ the command
  in_kind=(unshare --mount sh -c 'mount --bind "$0" /etc/hosts && exec "$@"' "$dir/hosts")
  echo "    $(ctr --address "$ctr_socket" version | awk '/Version/ {print "containerd " $2; exit}')" \
    "at $ctr_socket; hosts.toml: $(grep -v '^#' "$hosts_toml")"
  for image in "$@"; do
    ref="localhost:$REGISTRY_PORT/$IMAGES/$image:$TAG"
    want=$(registry_digest "$REGISTRY_PORT" "$IMAGES/$image" "$TAG")
    t0=$SECONDS
    direct=$(grep -c 'useragent="containerd/' "$direct_log" || true)
    # A pull's download: the manifest, the config and every layer, each checked against its
    # digest. (A node then unpacks the layers: containerd's own work on verified bytes,
    # which hosts.toml does not touch.)
    if ! out=$("${in_kind[@]}" ctr --address "$ctr_socket" --namespace "$namespace" content fetch \
      --hosts-dir "$dir/certs.d" "$ref" 2>&1); then
      fail "ctr fetch of $ref through hosts.toml:"
      tail -5 <<< "$out" >&2
      continue
    fi
    got=$(ctr --address "$ctr_socket" --namespace "$namespace" images ls "name==$ref" |
      awk 'NR == 2 {print $3}')
    # Through hosts.toml, every request reaches kind-registry:5000 and none localhost:5001.
    if [[ -n "$want" && "$got" == "$want" ]] \
      && grep -F "uri=\"/v2/$IMAGES/$image/manifests/$TAG?ns=localhost%3A$REGISTRY_PORT\"" \
        "$log" | grep -q 'http.request.host="kind-registry:' \
      && [[ "$(grep -c 'useragent="containerd/' "$direct_log")" == "$direct" ]]; then
      pass "ctr fetched $ref in $((SECONDS - t0)) s: every request went to" \
        "kind-registry:$KIND_REGISTRY_PORT (its log: ?ns=localhost:$REGISTRY_PORT), none to" \
        "localhost:$REGISTRY_PORT;" \
        "digest ${got:0:19}… is the registry's"
    else
      fail "ctr fetch of $ref: digest $got (the registry's: $want); see $log for" \
        "requests to kind-registry, $direct_log for requests to localhost:$REGISTRY_PORT"
    fi
    ctr --address "$ctr_socket" --namespace "$namespace" images rm --sync "$ref" > /dev/null 2>&1
  done
  ctr --address "$ctr_socket" namespaces rm "$namespace" > /dev/null 2>&1 || true
  kill "$kind_registry_pid" 2> /dev/null || true
  kind_registry_pid=""
  if [[ -n "$containerd_pid" ]]; then
    kill "$containerd_pid" 2> /dev/null || true
    containerd_pid=""
  fi
}

listening() {  # listening PORT: something accepts connections on 127.0.0.1:PORT
  (: > "/dev/tcp/127.0.0.1/$1") 2> /dev/null
}

wait_listening() {  # wait_listening PORT SECONDS [ALIVE...]: gives up once ALIVE fails
  local _
  for _ in $(seq 1 "$2"); do
    listening "$1" && return 0
    (($# == 2)) || "${@:3}" || return 1
    sleep 1
  done
  return 1
}

running() {  # running CONTAINER: it has not exited
  [[ "$(docker inspect -f '{{.State.Running}}' "$1" 2> /dev/null)" == true ]]
}

alive() {  # alive PID: the process has not ended
  kill -0 "$1" 2> /dev/null
}

start_worker_pool() {  # start_worker_pool IMAGE NAME DIR: sets pool_port, where it listens
  local try logs
  # Port 50000 first, as Beam's SDK images listen; it lies in Linux's range for outgoing
  # connections (32768-60999), so any connection on this busy machine may hold it by the
  # time the pool binds it: then a free port below that range.
  pool_port=$WORKER_POOL_PORT
  for try in 1 2 3; do
    listening "$pool_port" && pool_port=$(free_port)
    docker rm -f "$2" > /dev/null 2>&1 || true
    containers+=("$2")
    docker run -d --name "$2" --network host -v "$3:$3" "$1" \
      --worker_pool "--service_port=$pool_port" > /dev/null || return 1
    wait_listening "$pool_port" 60 running "$2" && return 0
    logs=$(docker logs "$2" 2>&1)
    grep -q "Failed to bind to address" <<< "$logs" || return 1
    echo "    port $pool_port was taken when the pool bound it (try $try); another port"
    pool_port=$(free_port)
  done
  return 1
}

check_beam_portable() {  # the transform on Beam's portable route, against the DirectRunner
  local image="$STEP_REGISTRY/transform:$TAG" dir="$WORK/portable" name=poets-beam-worker-pool
  local job_port pool_port out differ owner try
  local raw="$dir/raw/crypto-markets.csv"
  # The workers (uid 10001 in the image) read the input and write the output where this
  # machine does: the folder is mounted at the same path, writable for every user.
  rm -rf "$dir" && mkdir -p "$dir" && chmod 1777 "$dir"
  if ! "$ROOT/.venv/bin/crypto-pipeline" ingest --source sample --output-dir "$dir/raw" \
    > "$dir/ingest.log" 2>&1; then
    fail "the sample for the portable run; see $dir/ingest.log"
    return 0
  fi
  chmod -R a+rX "$dir/raw"
  if ! start_worker_pool "$image" "$name" "$dir"; then
    fail "Beam's worker pool (docker run $image --worker_pool) did not start;" \
      "see docker logs $name"
    docker logs "$name" 2>&1 | tail -10 >&2
    return 0
  fi
  for try in 1 2 3; do  # another server may take a free port before it binds it
    job_port=$(free_port)
    "$ROOT/.venv/bin/python" -m apache_beam.runners.portability.local_job_service_main \
      --port "$job_port" > "$dir/job-service.log" 2>&1 &
    job_service_pid=$!
    wait_listening "$job_port" 60 alive "$job_service_pid" && break
    kill "$job_service_pid" 2> /dev/null || true
    job_service_pid=""
  done
  if [[ -z "$job_service_pid" ]]; then
    fail "Beam's job service did not start (3 tries); see $dir/job-service.log"
    tail -10 "$dir/job-service.log" >&2
    return 0
  fi
  pass "the transform image as Beam's SDK worker pool: docker run IMAGE --worker_pool" \
    "on localhost:$pool_port; Beam's job service on localhost:$job_port"
  if "$ROOT/.venv/bin/crypto-pipeline" transform --input "$raw" --output-dir "$dir/portable" \
    --runner=PortableRunner "--job_endpoint=localhost:$job_port" \
    --environment_type=EXTERNAL "--environment_config=localhost:$pool_port" \
    > "$dir/portable.log" 2>&1; then
    pass "the transform with --runner=PortableRunner --environment_type=EXTERNAL:" \
      "$(grep -m1 'kept' "$dir/portable.log" | sed 's/^ *//')"
  else
    fail "the transform with the PortableRunner; see $dir/portable.log"
    tail -15 "$dir/portable.log" >&2
    docker logs "$name" 2>&1 | tail -10 >&2
    return 0
  fi
  owner=$(stat -c %u "$dir/portable/train-00000-of-00001.csv" 2> /dev/null) || owner=none
  if [[ "$owner" == "$(docker image inspect -f '{{.Config.User}}' "$image")" ]] \
    && docker logs "$name" 2>&1 | grep -q "Starting worker"; then
    pass "the splits were written by the image's workers (uid $owner; the pool started" \
      "$(docker logs "$name" 2>&1 | grep -c "Starting worker") worker(s))"
  else
    fail "the portable run's splits are owned by uid $owner, not the worker pool's user"
  fi
  if ! "$ROOT/.venv/bin/crypto-pipeline" transform --input "$raw" --output-dir "$dir/direct" \
    > "$dir/direct.log" 2>&1; then
    fail "the transform with the DirectRunner; see $dir/direct.log"
    return 0
  fi
  differ=$(diff -r -q -x stats.json "$dir/direct" "$dir/portable" 2>&1) || true
  out=$("$ROOT/.venv/bin/python" - "$dir/direct/stats.json" "$dir/portable/stats.json" << 'PY'
import json, sys
direct, portable = (json.load(open(p)) for p in sys.argv[1:])
runners = direct.pop("runner"), portable.pop("runner")
seconds = direct.pop("seconds"), portable.pop("seconds")
assert runners == ("DirectRunner", "PortableRunner"), runners
assert direct == portable, [k for k in direct if direct[k] != portable.get(k)]
print(f"stats.json equal but runner and seconds ({seconds[1]} s portable, {seconds[0]} s direct)")
PY
  ) || differ+=$'\n'"stats.json: $out"
  if [[ -z "$differ" ]]; then
    pass "PortableRunner and DirectRunner outputs are byte-identical:" \
      "$(cd "$dir/direct" && find . -type f ! -name stats.json | sed 's|^\./||' | sort | xargs)"
    echo "    $out"
  else
    fail "the PortableRunner's output differs from the DirectRunner's:"
    echo "$differ" >&2
  fi
  docker rm -f "$name" > /dev/null
  kill "$job_service_pid" 2> /dev/null || true
  wait "$job_service_pid" 2> /dev/null || true
  job_service_pid=""
}

check_katib_trial() {  # a trial of the Katib Experiment, its Job's container run in Docker
  local out values
  local -a spec
  # The manifest `tune --katib-manifest` writes (3 epochs), its trial's parameters set as
  # Katib sets them, its claim a folder here: the container as Katib's Job would run it.
  mapfile -t spec < <("$ROOT/.venv/bin/python" - "$STEP_REGISTRY/train:$TAG" << 'PY'
import sys
from crypto_pipeline.config import TuneConfig, runtime_environment
runtime_environment()
from crypto_pipeline.hyperparameters import Params
from crypto_pipeline.katib import katib_experiment

manifest = katib_experiment(TuneConfig(trials=1, epochs=3), image=sys.argv[1])
template = manifest["spec"]["trialTemplate"]
(container,) = template["trialSpec"]["spec"]["template"]["spec"]["containers"]
unknown = set(container) - {"name", "image", "command", "volumeMounts"}
assert not unknown, f"cannot map the trial container's {sorted(unknown)} to docker run"
values = Params().to_dict()
command = container["command"]
for p in template["trialParameters"]:
    command = [c.replace(f"${{trialParameters.{p['name']}}}", str(values[p["reference"]])) for c in command]
(mount,) = container["volumeMounts"]
print(container["image"], mount["mountPath"], *command, sep="\n")
PY
  )
  if ((${#spec[@]} < 4)); then
    fail "the Katib trial's container could not be read from the manifest"
    return 0
  fi
  out=$(docker run --rm -v "$WORK/shared/data:${spec[1]}:ro" --entrypoint "${spec[2]}" \
    "${spec[0]}" "${spec[@]:3}" 2>&1) || true
  # Katib's StdOut collector reads name=value lines; the last one is the objective.
  values=$(grep -cE '(^|[^a-z_])eval_loss=[0-9.eE+-]+$' <<< "$out" || true)
  if ((values >= 1)) && grep -qE '^kept eval_loss=[0-9.eE+-]+$' <<< "$out"; then
    pass "a Katib trial's container, as its Job runs it in the train image with the claim" \
      "mounted read-only: $values eval_loss lines, then $(grep -m1 '^kept eval_loss' <<< "$out")"
  else
    fail "the Katib trial printed no eval_loss for Katib's collector:"
    echo "$out" | tail -15 >&2
  fi
}

check_deploy_defaults() {  # the deploy step's defaults work in its image, as its user
  local image="$STEP_REGISTRY/serve:$TAG" out
  out=$(docker run --rm -v "$WORK/shared:/out" "$image" \
    deploy --model /out/train/model --output-dir /out/deploy 2>&1) || true
  if grep -q "KServe reads" <<< "$out"; then
    pass "the deploy step with its defaults, in the serve image as uid" \
      "$(docker run --rm --entrypoint id "$image" -u): $(head -1 <<< "$out")"
  else
    fail "deploy with its defaults in the serve image:"
    echo "$out" | tail -15 >&2
  fi
}

timed_run() {  # timed_run LOG ARGS...: crypto-pipeline run ARGS > LOG; prints the seconds
  local t0=$EPOCHREALTIME
  "$ROOT/.venv/bin/crypto-pipeline" run "${@:2}" > "$1" 2>&1 || return 1
  python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" \
    "$t0" "$EPOCHREALTIME"
}

check_docker_pipeline() {  # the whole pipeline in its images, against a subprocess run
  local runs="$WORK/pipeline" sub_s dock_s user owner missing locked
  rm -rf "$runs" && mkdir -p "$runs"
  if ! sub_s=$(timed_run "$WORK/run-subprocess.log" --pipeline-root "$runs" "${QUICK[@]}"); then
    fail "the subprocess run; see $WORK/run-subprocess.log"
    tail -15 "$WORK/run-subprocess.log" >&2
    return 0
  fi
  if ! dock_s=$(timed_run "$WORK/run-docker.log" --runner docker --pipeline-root "$runs" \
    "${QUICK[@]}"); then
    fail "the docker run; see $WORK/run-docker.log"
    tail -25 "$WORK/run-docker.log" >&2
    return 0
  fi
  pass "the pipeline ran with --runner docker, every step in its image:"
  grep -E '^  [a-z]+ +success' "$WORK/run-docker.log" | sed 's/^/    /'
  if "$ROOT/.venv/bin/python" - "$runs/latest/summary.json" "$runs/docker/latest/summary.json" \
    << 'PY'; then
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
assert b["runner"] == "docker" and b["cache_hits"] == [], b["cache_hits"]
assert a["metrics"] == b["metrics"], (a["metrics"], b["metrics"])
assert a["rows"] == b["rows"] and a["best_params"] == b["best_params"]
print(f"    test RMSE {b['metrics']['test_rmse']} in both; best params and row counts equal")
PY
    pass "the docker run's metrics equal the subprocess run's (same seed)"
  else
    fail "the docker run's metrics differ from the subprocess run's"
  fi
  user=$(docker image inspect -f '{{.Config.User}}' "$STEP_REGISTRY/train:$TAG")
  owner=$(stat -c %u "$(readlink -f "$runs/docker/latest")/train-step/model/model/saved_model.pb")
  if [[ "$owner" == "$user" && "$owner" != 0 ]]; then
    pass "the docker run's artifacts are owned by the image's user (uid $owner)"
  else
    fail "the model is owned by uid $owner, not the image's user ($user)"
  fi
  locked=$(find "$(readlink -f "$runs/docker/latest")" "$runs/docker/models" -type d ! -perm -g+w)
  if [[ -z "$locked" ]]; then
    pass "every folder the steps wrote is writable for the host user's group (it can clean up)"
  else
    fail "folders the host user's group cannot clean up: $locked"
  fi
  missing=$("$ROOT/.venv/bin/crypto-pipeline" run --runner docker --pipeline-root "$runs" \
    --tag no-such 2>&1) && fail "a run with images that do not exist succeeded"
  if grep -q "make images" <<< "$missing"; then
    pass "a missing step image is named, with the fix: $(grep -m1 '^error' <<< "$missing")"
  else
    fail "a missing step image does not say how to build it:"
    tail -5 <<< "$missing" >&2
  fi
  python3 -c "import sys; d, s = map(float, sys.argv[1:]); print(
    f'benchmark: the pipeline cold (${QUICK[*]}): docker runner {d:.1f} s, '
    f'subprocess runner {s:.1f} s: {d / s:.2f}x (goal: at most 2x)')" "$dock_s" "$sub_s"
}

check_docker_kill() {  # kill -9 of a docker run mid-step, every core busy: its container ends
  local runs="$WORK/pipeline" log="$WORK/run-killed.log" pid left="" burners=() i killed
  "$ROOT/.venv/bin/crypto-pipeline" run --runner docker --pipeline-root "$runs" \
    "${QUICK[@]}" --seed 5 > "$log" 2>&1 &
  pid=$!
  for _ in $(seq 1 240); do
    grep -q "tune      running" "$log" && break
    sleep 0.5
  done
  sleep 3
  if [[ -z "$(docker ps -q --filter label=crypto-pipeline.run)" ]]; then
    fail "no step container was running to kill (see $log)"
    kill -9 "$pid" 2> /dev/null
    return 0
  fi
  for ((i = 0; i < $(getconf _NPROCESSORS_ONLN); i++)); do
    python3 -c 'while True: pass' &
    burners+=($!)
  done
  kill -9 "$pid"
  killed=$SECONDS
  while ((SECONDS - killed < 5)); do
    left=$(docker ps -q --filter label=crypto-pipeline.run)
    [[ -z "$left" ]] && break
    sleep 0.5
  done
  left=$(docker ps -q --filter label=crypto-pipeline.run)
  kill "${burners[@]}"
  wait "${burners[@]}" 2> /dev/null || true
  if [[ -z "$left" ]]; then
    pass "after kill -9 of a docker run, every core busy, its step container ended within 5 s"
  else
    fail "a step container outlived its killed run by 5 s: $left"
    docker rm -f "$left" > /dev/null
  fi
}

check_serve() {  # the serve image as KServe runs it: the InferenceService's container spec
  local summary="$WORK/pipeline/docker/latest/summary.json" name=poets-serve-test
  local started=$SECONDS answer="" image version manifest deployment args health="" address word
  local -a run_args flags=()
  [[ -f "$summary" ]] || {
    fail "serve: no docker run to serve"
    return 0
  }
  read -r image version manifest < <("$ROOT/.venv/bin/python" - "$summary" << 'PY'
import json, sys, yaml
deployment = json.load(open(sys.argv[1]))["deployment"]
manifest = yaml.safe_load(open(deployment["manifest_path"]))
(container,) = manifest["spec"]["predictor"]["containers"]
print(container["image"], deployment["version_uri"], deployment["manifest_path"])
PY
  )
  deployment="$(dirname "$manifest")/deployment.json"
  # Every field of the container spec, as docker run flags; a field it cannot map fails here.
  if ! args=$("$ROOT/.venv/bin/python" "$ROOT/tests/containers/isvc_docker.py" "$manifest" \
    --model "$version" --name "$name" \
    --image-user "$(docker image inspect -f '{{.Config.User}}' "$image")" 2>&1); then
    fail "the InferenceService's container spec cannot be run as it is: $args"
    return 0
  fi
  mapfile -t run_args <<< "$args"
  for word in "${run_args[@]}"; do  # the flags: what comes before the image
    [[ "$word" == "$image" ]] && break
    [[ "$word" == --* ]] && flags+=("$word")
  done
  pass "the InferenceService's container spec as docker run flags:" \
    "$(printf '%s\n' "${flags[@]}" | sort -u | xargs)"
  containers+=("$name")
  if ! docker run -d "${run_args[@]}" > /dev/null; then
    fail "docker run of the InferenceService's container spec"
    return 0
  fi
  # Ready as the readinessProbe says (the manifest's probe, as Docker's health check).
  for _ in $(seq 1 120); do
    health=$(docker inspect -f '{{.State.Health.Status}}' "$name" 2> /dev/null) || break
    [[ "$health" == healthy ]] && break
    sleep 1
  done
  if [[ "$health" != healthy ]]; then
    fail "serve did not become ready (health: ${health:-exited})"
    docker logs "$name" 2>&1 | tail -15 >&2
    return 0
  fi
  address=$(docker port "$name" 8080/tcp | head -1) || true
  if answer=$("$ROOT/.venv/bin/python" - "$deployment" "$address" << 'PY'
import json, sys, urllib.request
deployment = json.load(open(sys.argv[1]))
request = urllib.request.Request(
    f"http://{sys.argv[2]}/v1/models/crypto:predict",
    data=json.dumps(deployment["smoke_request"]).encode(),
    headers={"Content-Type": "application/json"},
)
answer = json.load(urllib.request.urlopen(request, timeout=30))
assert answer == deployment["smoke_response"], (answer, deployment["smoke_response"])
print(json.dumps(deployment["smoke_request"]), "->", json.dumps(answer))
PY
  ); then
    pass "ready after $((SECONDS - started)) s as uid $(docker exec "$name" id -u), it" \
      "answered the deploy step's smoke request with the smoke_response it recorded: $answer"
  else
    fail "serve did not answer the smoke request with deployment.json's smoke_response:"
    echo "$answer" | tail -5 >&2
    docker logs "$name" 2>&1 | tail -15 >&2
  fi
  answer=$(wget -S -O - --header 'Content-Type: application/json' \
    --post-data '{"instances": [[100, 90, 97]]}' \
    "http://$address/v1/models/crypto:predict" 2>&1 || true)
  if grep -q "HTTP/1.1 400" <<< "$answer"; then
    pass "serve refused a bad instance (high below low) with a 400"
  else
    fail "serve did not refuse high < low with a 400"
  fi
  docker rm -f "$name" > /dev/null
}

check_workshop() {  # the workshop image: JupyterLab answers, and the notebooks run in it
  local image="$IMAGES/workshop:$TAG" name=poets-workshop-test port url="" token health
  local log="$WORK/workshop-notebooks.log" started
  build "$image" "$ROOT/workshop/Dockerfile" "$ROOT" || return 0
  echo "    $(grep -m1 '^set-up (learner' "$WORK/build-${image//[\/:]/_}.log" || echo "set-up: every layer from the engine's build cache")"
  echo "    image: $(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.2f GB", $1 / 1e9}')"
  port=$(free_port)
  docker run -d --name "$name" -p "127.0.0.1:$port:8888" "$image" > /dev/null
  containers+=("$name")
  for _ in $(seq 1 90); do
    url=$(docker logs "$name" 2>&1 | grep -o 'http://127.0.0.1:8888/lab[^ ?]*?token=[0-9a-f]*' |
      head -1) || true  # not printed yet
    [[ -n "$url" ]] && break
    sleep 1
  done
  token=${url#*token=}
  if [[ -n "$token" ]] && wget -q -O - "http://127.0.0.1:$port/api/status?token=$token" |
    grep -q '"kernels"'; then
    pass "JupyterLab answers on 127.0.0.1:$port, the address it printed: ${url%%\?*}?token=…"
  else
    fail "JupyterLab in the workshop image did not answer on 127.0.0.1:$port"
    docker logs "$name" 2>&1 | tail -15 >&2
    return 0
  fi
  local page="http://127.0.0.1:$port/lab/tree/notebooks/01-introduction.ipynb?token=$token"
  local loaded=0
  for _ in $(seq 1 30); do  # the API answers a moment before the lab's page is built
    if wget -q -O - "$page" | grep -q "JupyterLab"; then
      loaded=1
      break
    fi
    sleep 1
  done
  if ((loaded)); then
    pass "the lab page of notebooks/01-introduction.ipynb loads"
  else
    fail "the lab page of notebook 01 did not load within 30 s"
    wget -S -O /dev/null "$page" 2>&1 | grep -m3 'HTTP/\|ERROR' >&2 || true
    docker logs "$name" 2>&1 | tail -15 >&2
  fi
  if wget -q -O /dev/null "http://127.0.0.1:$port/api/contents" 2> /dev/null; then
    fail "JupyterLab answered without its token"
  else
    pass "without the token, JupyterLab refuses"
  fi
  if [[ "$(docker exec "$name" id -u)" == 1000 ]]; then
    pass "the workshop image runs as uid 1000 (poet), not root"
  else
    fail "the workshop image does not run as uid 1000"
  fi
  if docker exec "$name" make -q setup; then
    pass "make setup in the image has nothing to do: the environment is ready"
  else
    fail "make setup in the image would install again"
  fi
  started=$SECONDS
  if docker exec "$name" python scripts/run_notebooks.py > "$log" 2>&1; then
    pass "every notebook ran inside the workshop image in $((SECONDS - started)) s:" \
      "$(tail -1 "$log")"
  else
    fail "the notebooks inside the workshop image; see $log"
    tail -15 "$log" >&2
  fi
  for _ in $(seq 1 90); do
    health=$(docker inspect -f '{{.State.Health.Status}}' "$name")
    [[ "$health" != starting ]] && break
    sleep 1
  done
  if [[ "$health" == healthy ]]; then
    pass "the workshop image's HEALTHCHECK: healthy"
  else
    fail "the workshop image's health: $health"
  fi
  docker rm -f "$name" > /dev/null
}

check_devcontainer() {  # .devcontainer/devcontainer.json, opened by the Dev Containers CLI
  local tools="$ROOT/tests/containers/devcontainer" up id out
  local cli="$tools/node_modules/.bin/devcontainer" run="/tmp/devcontainer-run"
  if ! (cd "$tools" && npm ci --no-audit --no-fund --ignore-scripts) > "$WORK/devcontainer-npm.log" 2>&1; then
    fail "npm ci of the Dev Containers CLI; see $WORK/devcontainer-npm.log"
    return 0
  fi
  # As VS Code and Codespaces do: build the image, mount this checkout over the tutorial.
  if up=$("$cli" up --workspace-folder "$ROOT" 2> "$WORK/devcontainer-up.log") \
    && grep -q '"outcome":"success"' <<< "$up"; then
    id=$(grep -o '"containerId":"[0-9a-f]*"' <<< "$up" | cut -d'"' -f4)
    containers+=("$id")
    pass "devcontainer up (Dev Containers CLI $("$cli" --version)): container ${id:0:12}"
  else
    fail "devcontainer up; see $WORK/devcontainer-up.log"
    tail -15 "$WORK/devcontainer-up.log" >&2
    return 0
  fi
  out=$("$cli" exec --workspace-folder "$ROOT" python -c \
    'import crypto_pipeline, shutil; print(crypto_pipeline.__file__, shutil.which("jupyter"))' \
    2>&1) || true
  if [[ "$out" == "/home/poet/kubeflow-for-poets/components/crypto_pipeline/__init__.py /opt/venv/bin/jupyter" ]]; then
    pass "in the dev container, the package is the mounted checkout's, and jupyter is /opt/venv's"
  else
    fail "in the dev container: $out"
  fi
  if "$cli" exec --workspace-folder "$ROOT" make -q setup; then
    pass "in the dev container, make setup has nothing to do"
  else
    fail "in the dev container, make setup would install again"
  fi
  out=$("$cli" exec --workspace-folder "$ROOT" crypto-pipeline run --pipeline-root "$run" \
    --trials 2 --epochs 5 2>&1) || true
  if grep -q "^deployed" <<< "$out"; then
    pass "the pipeline ran in the dev container: $(grep -m1 '^durations' <<< "$out")"
  else
    fail "the pipeline in the dev container:"
    tail -15 <<< "$out" >&2
  fi
}

make_setup() {  # the project's .venv, for notebook 02 and the pipeline's runs
  # The builds need none, so they are under way first. setup_env.py waits while another
  # set-up of the same venv runs; SETUP_TARGET=setup-dev (.ci/run) asks for the same set
  # as the make setup-dev beside it, so that whichever comes second finds it ready.
  "${MAKE:-make}" -C "$ROOT" --no-print-directory "${SETUP_TARGET:-setup}" && return 0
  echo "error: make ${SETUP_TARGET:-setup} failed: notebook 02 and the pipeline's runs need" \
    ".venv" >&2
  exit 1
}

start_engine() {
  install_tools
  start_docker
  make_standins
  start_registry  # notebook 02 pushes to it, and the step images go through it
}

timed "the Docker engine, the stand-in bases and the registry" start_engine
steps=(ingest transform train serve)
[[ "$skip_tf" == 0 ]] || steps=(ingest transform)
say "step images, named as the compiled pipeline names them ($STEP_REGISTRY/<image>:$TAG):" \
  "built and pushed from now on, beside the parts below"
make_room
start_builds "${steps[@]}"
timed "the project's environment (make setup)" make_setup
say "docker-intro"
check_hello_world
check_nginx
timed "notebook 02 against the engine" check_docker_notebook

say "step images: pushed; their names pulled back from the registry"
pull_back "${steps[@]}"
say "containerd fetches them as kind's nodes do: through cluster/containerd-hosts.toml"
timed "containerd fetches the step images through kind's hosts.toml" \
  check_containerd_hosts "${steps[@]}"
say "each step image runs its step (/out is shared between them)"
rm -rf "$WORK/shared" && mkdir -p "$WORK/shared" && chmod 777 "$WORK/shared"
timed "the ingest image runs its step" check_component ingest \
  "crypto-pipeline ingest --source sample --output-dir /out/raw" "ingested 7,805 rows"
timed "the transform image runs its step" check_component transform \
  "crypto-pipeline transform --input /out/raw/crypto-markets.csv --output-dir /out/data" \
  "kept 1,793 rows of bitcoin"
say "Beam's portable route (Flink, Spark): the transform's workers in the transform image"
timed "Beam's portable route: job service, worker pool, both runners" check_beam_portable
if [[ "$skip_tf" == 1 ]]; then
  echo "  SKIP train and serve images and the docker run (--skip-tensorflow)"
else
  params='{"num_layers": 2, "first_layer_size": 32, "layer_size_scale": 0.5,
    "learning_rate": 0.003, "batch_size": 32}'
  timed "the train image runs its step" check_component train \
    "echo '$params' > /tmp/params.json && crypto-pipeline train --data-dir /out/data \
     --params /tmp/params.json --output-dir /out/train --epochs 5" \
    "baseline: least_squares"
  timed "a Katib trial's container in the train image" check_katib_trial
  timed "the deploy step's defaults in the serve image" check_deploy_defaults
  say "the whole pipeline with kfp.local's DockerRunner, then the serve image as KServe runs it"
  timed "the pipeline: DockerRunner and subprocess runs" check_docker_pipeline
  timed "the serve image as the InferenceService's container" check_serve
  timed "kill -9 of a docker run mid-step" check_docker_kill
fi

say "the workshop image: JupyterLab, the tutorial and the learner's environment"
timed "the workshop image (build included): JupyterLab, notebooks" check_workshop
timed "the dev container: up, set-up, a pipeline run" check_devcontainer

print_times
if ((failures)); then
  echo "containers: $failures check(s) failed" >&2
  exit 1
fi
say "containers: every build and check passed"
