#!/usr/bin/env bash
# The cluster route end to end, timed: a kind cluster with its local registry; Kubeflow
# Pipelines, KServe (and Katib with KATIB=1) at the versions in cluster/versions.env; the
# step images built and pushed under their content tag; the pipeline compiled for them and
# run to its end; the InferenceService Ready; and one request that the cluster's predictor
# and the same model served on this machine must answer alike. Then everything it started
# is stopped and the cluster deleted, whatever happened (KEEP=1 leaves them).
#
# It needs Docker, kind, kubectl, curl, python3, `make setup`'s .venv and the network
# (images and manifests come from their registries). Kubeflow 26.03's component table puts
# what it installs at 1.6 CPUs and 4.8 GiB of memory (5.2 GiB with Katib), before
# Kubernetes itself and the pipeline's own pods: give Docker 4 CPUs and 8 GB or more.
# The project's own machines and CI cannot run it: there is no Kubernetes there and
# nothing can be pulled, so `make test` checks its dry run only. It runs for real on a
# laptop (`make cluster-e2e`) and on GitHub Actions (.github/workflows/cluster-e2e.yml).
#
# Usage: scripts/cluster_e2e.sh [--dry-run]
#   --dry-run  print every command, quoted to paste into bash or zsh, and run none; the
#              dry runs of scripts/cluster.sh and scripts/build_images.sh print theirs,
#              indented; needs no Docker, kind or kubectl
# Settings (environment variables, with their defaults):
#   REGISTRY_PORT=5001  CLUSTER=poets-e2e (a cluster of that name must not exist yet: it
#   is deleted at the end); the namespace is KFP standalone's, kubeflow
#   KATIB=0           1: install Katib as well
#   KEEP=0            1: leave the cluster, the port-forwards and the local server running
#   TAG               the images' tag; default: the content tag, python3 scripts/image_tag.py
#   VENV=.venv        where crypto-pipeline is installed (make setup)
#   RUN_TIMEOUT=3600  seconds the pipeline run may take
#   KFP_PORT=8080  PREDICTOR_PORT=8083  LOCAL_PORT=8084   ports on this machine
# What it leaves in build/cluster-e2e/: the compiled pipeline, the model copied out of the
# predictor, the port-forwards' and the local server's logs and, after a failure,
# diagnostics.txt and kind-logs/ (the cluster's state before it was deleted).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
NAMESPACE=kubeflow  # KFP standalone's: its object store serves this namespace (and profiles)
REGISTRY_PORT="${REGISTRY_PORT:-5001}"
CLUSTER="${CLUSTER:-poets-e2e}"  # its own: the one it creates is the one it deletes
export NAMESPACE REGISTRY_PORT CLUSTER  # scripts/cluster.sh reads the same settings
KATIB="${KATIB:-0}"
KEEP="${KEEP:-0}"
VENV="${VENV:-.venv}"
RUN_TIMEOUT="${RUN_TIMEOUT:-3600}"
KFP_PORT="${KFP_PORT:-8080}"
PREDICTOR_PORT="${PREDICTOR_PORT:-8083}"
LOCAL_PORT="${LOCAL_PORT:-8084}"
REGISTRY="localhost:$REGISTRY_PORT/kubeflow-for-poets"
OUT=build/cluster-e2e
CLI="$VENV/bin/crypto-pipeline"
ISVC=crypto  # the InferenceService the pipeline's deploy step creates
REQUEST=(--open 100 --high 104 --low 97)
dry_run=0
# Set as it runs (run_into, background).
kfp_forward="" predictor_forward="" local_server="" pod="" cluster_answer="" local_answer=""

case "${1:-}" in
  --dry-run) dry_run=1 ;;
  "") ;;
  -h | --help)
    sed -n '2,31p' "$0"
    exit 0
    ;;
  *)
    echo "error: unknown option $1 (use --dry-run or --help)" >&2
    exit 2
    ;;
esac

say() { echo "==> $*"; }

# The words as one command line to paste: each quoted with %q; a word @@NAME@@ (a value
# that only a real run knows: a pod's name, a process id) is shown as "$NAME".
quoted() {
  local line pattern variable
  line=$(printf '%q ' "$@")
  line="${line% }"
  while [[ "$line" =~ @@([a-z_]+)@@ ]]; do
    pattern="${BASH_REMATCH[0]}"
    variable="\"\$${BASH_REMATCH[1]}\""
    line="${line/"$pattern"/$variable}"
  done
  printf '%s' "$line"
}

show() { echo "+ $(quoted "$@")"; }

run() {
  show "$@"
  if [[ "$dry_run" == 0 ]]; then
    "$@"
  fi
}

# run_into VAR COMMAND...: VAR=$(COMMAND); a dry run leaves VAR as @@VAR@@.
run_into() {
  local name="$1" value
  shift
  echo "+ $name=\$($(quoted "$@"))"
  if [[ "$dry_run" == 0 ]]; then
    value=$("$@")  # apart from `local`, so that a failure stops the script
    printf -v "$name" '%s' "$value"
  else
    printf -v "$name" '@@%s@@' "$name"
  fi
}

# A script of this project. A dry run shows the command a real run runs, then runs the
# script's own dry run (--dry-run goes right after the script), indented.
script() {
  show "$@"
  if [[ "$dry_run" == 0 ]]; then
    "$@"
    return
  fi
  local words=() word passed=0
  for word in "$@"; do
    words+=("$word")
    if [[ "$passed" == 0 && "$word" == scripts/*.sh ]]; then
      words+=(--dry-run)
      passed=1
    fi
  done
  "${words[@]}" 2>&1 | sed 's/^/    /'
}

# background VAR LOG COMMAND...: COMMAND > LOG 2>&1 &, its process id in VAR.
background_pids=()
background() {
  local name="$1" log="$2"
  shift 2
  echo "+ $(quoted "$@") > $(quoted "$log") 2>&1 &"
  echo "+ $name=\$!"
  if [[ "$dry_run" == 0 ]]; then
    "$@" > "$log" 2>&1 &
    printf -v "$name" '%s' "$!"
    background_pids+=("$!")
  else
    printf -v "$name" '@@%s@@' "$name"
    background_pids+=("@@$name@@")
  fi
}

# await URL SECONDS PID LOG: until URL answers (curl), while the process PID still runs.
await() {
  local url="$1" seconds="$2" pid="$3" log="$4" deadline=$((SECONDS + $2))
  say "waiting up to $seconds s until $url answers"
  show curl -fsS -o /dev/null "$url"
  [[ "$dry_run" == 0 ]] || return 0
  until curl -fsS -o /dev/null "$url" 2> /dev/null; do
    if ! kill -0 "$pid" 2> /dev/null; then
      echo "error: the process behind $url has stopped; its log, $log:" >&2
      tail -n 20 "$log" >&2
      return 1
    fi
    if ((SECONDS >= deadline)); then
      echo "error: $url did not answer within $seconds s; see $log" >&2
      return 1
    fi
    sleep 2
  done
}

# Phases and their times.
phase_names=()
phase_seconds=()
phase=""
phase_started=0
end_phase() {
  if [[ -n "$phase" ]]; then
    phase_names+=("$phase")
    phase_seconds+=($((SECONDS - phase_started)))
    phase=""
  fi
}
begin() {
  end_phase
  phase="$1"
  phase_started=$SECONDS
  echo
  echo "--- $1: $2"
}
report_times() {
  local i total=0
  echo
  if [[ "$dry_run" == 1 ]]; then
    echo "--- times (a dry run: nothing ran)"
  else
    echo "--- times"
  fi
  for ((i = 0; i < ${#phase_names[@]}; i++)); do
    printf '%-9s %6d s\n' "${phase_names[i]}" "${phase_seconds[i]}"
    total=$((total + phase_seconds[i]))
  done
  printf '%-9s %6d s\n' total "$total"
}

need() {
  if ! command -v "$1" > /dev/null; then
    echo "error: $1 is not installed; $2" >&2
    exit 1
  fi
}

# After a failure, the cluster's state, before the cluster goes.
diagnose() {
  local file="$OUT/diagnostics.txt"
  say "writing the cluster's state to $file and kind's logs to $OUT/kind-logs"
  mkdir -p "$OUT"
  {
    kubectl get nodes -o wide
    kubectl get pods -A -o wide
    kubectl get events -A --sort-by=.lastTimestamp
    kubectl -n "$NAMESPACE" describe "inferenceservice/$ISVC"
    kubectl -n "$NAMESPACE" describe pods -l "serving.kserve.io/inferenceservice=$ISVC"
    kubectl -n "$NAMESPACE" logs -l "serving.kserve.io/inferenceservice=$ISVC" \
      --all-containers --tail=200
  } > "$file" 2>&1
  kind export logs "$OUT/kind-logs" --name "$CLUSTER" > /dev/null 2>&1
}

finish() {
  local status=$? failed="${phase:-start}" pid
  set +e
  end_phase
  if [[ "$status" != 0 && "$dry_run" == 0 ]]; then
    echo "error: phase $failed failed (exit $status)" >&2
    [[ "${cluster_up:-0}" == 0 ]] || diagnose
  fi
  if [[ "$KEEP" == 1 ]]; then
    say "KEEP=1: left running: kind cluster $CLUSTER and kind-registry, and" \
      "${#background_pids[@]} processes; stop and delete them with:"
    for pid in ${background_pids[@]+"${background_pids[@]}"}; do
      echo "    $(quoted kill "$pid")"
    done
    echo "    scripts/cluster.sh down"
  else
    begin down "stop what this script started, delete the cluster and its registry"
    for pid in ${background_pids[@]+"${background_pids[@]}"}; do
      run kill "$pid"
    done
    if [[ "${cluster_up:-0}" == 1 || "$dry_run" == 1 ]]; then
      script scripts/cluster.sh down
    fi
    end_phase
  fi
  report_times
  if [[ "$status" == 0 && "$dry_run" == 0 ]]; then
    say "the cluster route works: the predictor and the local server gave the same answer"
  fi
  exit "$status"
}

if [[ "$dry_run" == 0 ]]; then
  need docker "install Docker (docs.docker.com/get-docker)"
  need kind "install kind (see cluster/versions.env for the version: kind.sigs.k8s.io)"
  need kubectl "install kubectl (kubernetes.io/docs/tasks/tools)"
  need curl "install curl"
  need python3 "install Python 3"
  [[ -x "$CLI" ]] || { echo "error: no $CLI; run make setup first" >&2; exit 1; }
fi
trap finish EXIT
trap 'exit 130' INT  # Ctrl-C, or a cancelled workflow: finish still cleans up
trap 'exit 143' TERM

if [[ "$dry_run" == 0 ]] && kind get kubeconfig --name "$CLUSTER" > /dev/null 2>&1; then
  echo "error: a kind cluster named $CLUSTER exists already; this check creates its own" \
    "and deletes it at the end" >&2
  echo "  fix: CLUSTER=another-name make cluster-e2e, or delete it (kind delete cluster" \
    "--name $CLUSTER)" >&2
  trap - EXIT
  exit 1
fi
begin kind "a kind cluster with the local registry on localhost:$REGISTRY_PORT"
cluster_up=1  # from here on, `down` has something to delete
script scripts/cluster.sh kind

begin kfp "Kubeflow Pipelines (standalone)"
script scripts/cluster.sh kfp

begin kserve "cert-manager and KServe (Standard mode)"
script scripts/cluster.sh kserve

if [[ "$KATIB" == 1 ]]; then
  begin katib "Katib (standalone)"
  script scripts/cluster.sh katib
fi

begin rbac "KFP's pipeline-runner may create InferenceServices"
script scripts/cluster.sh rbac

begin storage "the predictor's service account and the claims"
script scripts/cluster.sh storage

begin images "build the step images and push them to localhost:$REGISTRY_PORT"
if [[ -n "${TAG:-}" ]]; then
  say "TAG=$TAG, from the environment"
else
  # A dry run runs it too: it only reads files, and the commands below show the tag.
  echo "+ TAG=\$($(quoted python3 scripts/image_tag.py))"
  TAG=$(python3 scripts/image_tag.py)
  say "the content tag: $TAG"
fi
script env "REGISTRY=$REGISTRY" "TAG=$TAG" scripts/build_images.sh --push

begin compile "the pipeline, for those images"
run mkdir -p "$OUT"
run "$CLI" compile -o "$OUT/crypto_pipeline.yaml" --registry "$REGISTRY" --tag "$TAG"

begin run "submit the pipeline to KFP's API and wait for the run to succeed"
run kubectl -n kubeflow wait --for=condition=available --timeout=600s deployment/ml-pipeline-ui
background kfp_forward "$OUT/kfp-port-forward.log" \
  kubectl -n kubeflow port-forward svc/ml-pipeline-ui "$KFP_PORT:80"
await "http://localhost:$KFP_PORT/apis/v2beta1/healthz" 120 "$kfp_forward" \
  "$OUT/kfp-port-forward.log"
run "$CLI" submit --host "http://localhost:$KFP_PORT" --package "$OUT/crypto_pipeline.yaml" \
  --namespace "$NAMESPACE" --param deploy.target=cluster --wait --timeout "$RUN_TIMEOUT"

begin ready "the InferenceService $ISVC"
run kubectl -n "$NAMESPACE" wait --for=condition=Ready --timeout=600s "inferenceservice/$ISVC"

begin predict "one request to the predictor, and to its model served here"
background predictor_forward "$OUT/predictor-port-forward.log" \
  kubectl -n "$NAMESPACE" port-forward "svc/$ISVC-predictor" "$PREDICTOR_PORT:80"
await "http://127.0.0.1:$PREDICTOR_PORT/v1/models/$ISVC" 60 "$predictor_forward" \
  "$OUT/predictor-port-forward.log"
run_into pod kubectl -n "$NAMESPACE" get pods \
  -l "serving.kserve.io/inferenceservice=$ISVC" --field-selector=status.phase=Running \
  -o 'jsonpath={.items[0].metadata.name}'
if [[ -z "$pod" ]]; then
  echo "error: no running pod of inferenceservice/$ISVC" >&2
  exit 1
fi
run rm -rf "$OUT/model"
run kubectl -n "$NAMESPACE" cp -c kserve-container "$pod:/mnt/models" "$OUT/model"
background local_server "$OUT/local-serve.log" \
  "$CLI" serve --model "$OUT/model" --port "$LOCAL_PORT"
await "http://127.0.0.1:$LOCAL_PORT/v1/models/$ISVC" 120 "$local_server" "$OUT/local-serve.log"
run_into cluster_answer "$CLI" predict --url "http://127.0.0.1:$PREDICTOR_PORT" "${REQUEST[@]}"
run_into local_answer "$CLI" predict --url "http://127.0.0.1:$LOCAL_PORT" "${REQUEST[@]}"

begin compare "the two answers"
if [[ "$dry_run" == 0 ]]; then
  say "the cluster's predictor: $cluster_answer"
  say "the same model, here:    $local_answer"
fi
# shellcheck disable=SC2016  # the line shows the variables, as they were run above
echo '+ test "$cluster_answer" = "$local_answer"'
if [[ "$dry_run" == 0 && "$cluster_answer" != "$local_answer" ]]; then
  echo "error: the cluster's predictor and the local server answered differently" >&2
  exit 1
fi
end_phase
