#!/usr/bin/env bash
# Clusters for the tutorial: a local one (kind, or minikube), or GKE; then Kubeflow
# Pipelines (standalone), Katib and KServe at pinned versions; and tear-down.
#
# Usage: scripts/cluster.sh [--dry-run] COMMAND
#   kind            create a kind cluster (NodePort 30001 mapped to the host)
#   minikube        create a minikube cluster instead
#   gke             create a GKE cluster with workload identity (needs PROJECT; see below)
#   kfp             install Kubeflow Pipelines standalone ($KFP_VERSION)
#   katib           install Katib standalone ($KATIB_VERSION)
#   kserve          install cert-manager and KServe in raw deployment mode ($KSERVE_VERSION)
#   down            delete the kind or minikube cluster, or the GKE one with --gke
#   --dry-run       print every command instead of running it
#
# Settings (environment variables, with their defaults):
#   CLUSTER=poets  KIND_NODE_IMAGE=kindest/node:v1.33.1  KFP_VERSION=2.5.0
#   KATIB_VERSION=v0.18.0  KSERVE_VERSION=v0.15.2  CERT_MANAGER_VERSION=v1.17.2
#   GKE: PROJECT (required, your Google Cloud project id), REGION=us-central1,
#        MACHINE_TYPE=e2-standard-4, NODES=2
# Each command is idempotent: what exists already is left as it is.
set -euo pipefail

CLUSTER="${CLUSTER:-poets}"
KIND_NODE_IMAGE="${KIND_NODE_IMAGE:-kindest/node:v1.33.1}"
KFP_VERSION="${KFP_VERSION:-2.5.0}"
KATIB_VERSION="${KATIB_VERSION:-v0.18.0}"
KSERVE_VERSION="${KSERVE_VERSION:-v0.15.2}"
CERT_MANAGER_VERSION="${CERT_MANAGER_VERSION:-v1.17.2}"
REGION="${REGION:-us-central1}"
MACHINE_TYPE="${MACHINE_TYPE:-e2-standard-4}"
NODES="${NODES:-2}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
dry_run=0

say() { echo "==> $*"; }

run() {
  echo "+ $*"
  if [[ "$dry_run" == 0 ]]; then
    "$@"
  fi
}

need() {
  if [[ "$dry_run" == 0 ]] && ! command -v "$1" > /dev/null; then
    echo "error: $1 is not installed; $2" >&2
    exit 1
  fi
}

# True when the thing exists; a dry run assumes it does not, to show every step.
exists() {
  [[ "$dry_run" == 0 ]] && "$@" > /dev/null 2>&1
}

up_kind() {
  need kind "install it from the kind releases (kind.sigs.k8s.io)"
  if exists kind get kubeconfig --name "$CLUSTER"; then
    say "kind cluster $CLUSTER exists"
  else
    say "creating kind cluster $CLUSTER ($KIND_NODE_IMAGE)"
    run kind create cluster --name "$CLUSTER" --image "$KIND_NODE_IMAGE" \
      --config "$ROOT/kubernetes-intro/kind-cluster.yaml"
  fi
}

up_minikube() {
  need minikube "install it from minikube.sigs.k8s.io"
  if exists minikube status --profile "$CLUSTER"; then
    say "minikube cluster $CLUSTER is running"
  else
    say "starting minikube cluster $CLUSTER"
    run minikube start --profile "$CLUSTER" --cpus 4 --memory 8g
  fi
}

up_gke() {
  need gcloud "install the Google Cloud CLI and run 'gcloud auth login'"
  if [[ -z "${PROJECT:-}" ]]; then
    echo "error: set PROJECT to your Google Cloud project id (PROJECT=my-project $0 gke)" >&2
    exit 1
  fi
  if exists gcloud container clusters describe "$CLUSTER" --project "$PROJECT" --region "$REGION"; then
    say "GKE cluster $CLUSTER exists"
  else
    say "creating GKE cluster $CLUSTER in $PROJECT/$REGION (workload identity on)"
    run gcloud container clusters create "$CLUSTER" --project "$PROJECT" --region "$REGION" \
      --machine-type "$MACHINE_TYPE" --num-nodes "$NODES" \
      --workload-pool "$PROJECT.svc.id.goog"
  fi
  run gcloud container clusters get-credentials "$CLUSTER" --project "$PROJECT" --region "$REGION"
}

install_kfp() {
  need kubectl "install kubectl (kubernetes.io/docs/tasks/tools)"
  local base="github.com/kubeflow/pipelines/manifests/kustomize"
  say "installing Kubeflow Pipelines $KFP_VERSION (standalone)"
  run kubectl apply -k "$base/cluster-scoped-resources?ref=$KFP_VERSION"
  run kubectl wait --for condition=established --timeout=120s crd/applications.app.k8s.io
  run kubectl apply -k "$base/env/platform-agnostic?ref=$KFP_VERSION"
  run kubectl -n kubeflow wait --for=condition=available --timeout=600s deployment/ml-pipeline
  say "the UI and API: kubectl -n kubeflow port-forward svc/ml-pipeline-ui 8080:80"
}

install_katib() {
  need kubectl "install kubectl (kubernetes.io/docs/tasks/tools)"
  say "installing Katib $KATIB_VERSION (standalone)"
  run kubectl apply -k \
    "github.com/kubeflow/katib.git/manifests/v1beta1/installs/katib-standalone?ref=$KATIB_VERSION"
  run kubectl -n kubeflow wait --for=condition=available --timeout=600s deployment/katib-controller
}

install_kserve() {
  need kubectl "install kubectl (kubernetes.io/docs/tasks/tools)"
  local releases="https://github.com/kserve/kserve/releases/download/$KSERVE_VERSION"
  say "installing cert-manager $CERT_MANAGER_VERSION"
  run kubectl apply -f \
    "https://github.com/cert-manager/cert-manager/releases/download/$CERT_MANAGER_VERSION/cert-manager.yaml"
  run kubectl -n cert-manager wait --for=condition=available --timeout=300s deployment/cert-manager-webhook
  say "installing KServe $KSERVE_VERSION in raw deployment mode (no Knative or Istio needed)"
  run kubectl apply --server-side -f "$releases/kserve.yaml"
  run kubectl -n kserve wait --for=condition=available --timeout=300s deployment/kserve-controller-manager
  run kubectl apply --server-side -f "$releases/kserve-cluster-resources.yaml"
  run kubectl -n kserve patch configmap inferenceservice-config --type merge \
    -p '{"data":{"deploy":"{\"defaultDeploymentMode\":\"RawDeployment\"}"}}'
}

down() {
  if [[ "${1:-}" == "--gke" ]]; then
    need gcloud "install the Google Cloud CLI"
    : "${PROJECT:?set PROJECT to your Google Cloud project id}"
    say "deleting GKE cluster $CLUSTER"
    run gcloud container clusters delete "$CLUSTER" --project "$PROJECT" --region "$REGION" --quiet
  elif exists kind get kubeconfig --name "$CLUSTER"; then
    say "deleting kind cluster $CLUSTER"
    run kind delete cluster --name "$CLUSTER"
  elif exists minikube status --profile "$CLUSTER"; then
    say "deleting minikube cluster $CLUSTER"
    run minikube delete --profile "$CLUSTER"
  elif [[ "$dry_run" == 1 ]]; then
    run kind delete cluster --name "$CLUSTER"
  else
    say "no kind or minikube cluster named $CLUSTER: nothing to delete"
  fi
}

if [[ "${1:-}" == "--dry-run" ]]; then
  dry_run=1
  shift
fi
command="${1:-}"
shift || true
case "$command" in
  kind) up_kind ;;
  minikube) up_minikube ;;
  gke) up_gke ;;
  kfp) install_kfp ;;
  katib) install_katib ;;
  kserve) install_kserve ;;
  down) down "$@" ;;
  -h | --help | "") sed -n '2,23p' "$0" ;;
  *)
    echo "error: unknown command $command (see $0 --help)" >&2
    exit 2
    ;;
esac
