#!/usr/bin/env bash
# Clusters for the tutorial: a local one (kind, or minikube), or GKE; then Kubeflow
# Pipelines (standalone), Katib and KServe at pinned versions; and tear-down.
#
# Usage: scripts/cluster.sh [--dry-run] COMMAND
#   kind            create a kind cluster with a local registry on localhost:5001 (kind's
#                   recipe: kind-registry on the kind network, containerd's hosts.toml,
#                   the local-registry-hosting ConfigMap); NodePort 30001 on the host
#   minikube        create a minikube cluster instead
#   gke             create a GKE cluster with workload identity (needs PROJECT; see below)
#   kfp             install Kubeflow Pipelines standalone ($KFP_VERSION)
#   katib           install Katib standalone ($KATIB_VERSION)
#   kserve          install cert-manager and KServe in Standard mode (plain Deployments)
#   rbac            let KFP's pipeline-runner create InferenceServices (cluster/kserve-rbac.yaml)
#   storage         the predictor's service account with KFP's MinIO credentials, and the
#                   claims crypto-models and crypto-data (cluster/model-storage.yaml)
#   upload-model DIR N   copy a registered model version into pvc://crypto-models/crypto/N
#   upload-data DIR      copy a transform output into pvc://crypto-data (Katib's trials)
#   down            delete the kind or minikube cluster (and kind-registry), or --gke
#   --dry-run       print every command instead of running it
#
# Versions come from cluster/versions.env (Kubeflow 26.03's components, kind, the node
# image by digest); an environment variable of the same name overrides one.
# Other settings (environment variables, with their defaults):
#   CLUSTER=poets  REGISTRY_PORT=5001  NAMESPACE=kubeflow
#   GKE: PROJECT (required, your Google Cloud project id), ZONE=us-central1-a,
#        MACHINE_TYPE=e2-standard-4, NODES=2. A zonal cluster: NODES machines in all (a
#        regional one would run NODES in each of the region's three zones), and GKE
#        waives the management fee of one zonal cluster per billing account.
# Each command is idempotent: what exists already is left as it is.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
for setting in $(grep -oE '^[A-Z_]+=' "$ROOT/cluster/versions.env" | tr -d =); do
  [[ -n "${!setting:-}" ]] && declare "PINNED_$setting=${!setting}"
done
# shellcheck disable=SC1091  # plain KEY=value lines
source "$ROOT/cluster/versions.env"
for override in ${!PINNED_*}; do  # what the caller set wins over the file
  declare "${override#PINNED_}=${!override}"
done
CLUSTER="${CLUSTER:-poets}"
REGISTRY_PORT="${REGISTRY_PORT:-5001}"
NAMESPACE="${NAMESPACE:-kubeflow}"
ZONE="${ZONE:-us-central1-a}"
MACHINE_TYPE="${MACHINE_TYPE:-e2-standard-4}"
NODES="${NODES:-2}"
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
  need kind "install kind $KIND_VERSION from the kind releases (kind.sigs.k8s.io)"
  need docker "install Docker"
  if exists docker inspect kind-registry; then
    say "registry kind-registry runs on localhost:$REGISTRY_PORT"
  else
    say "starting the local registry kind-registry on localhost:$REGISTRY_PORT"
    run docker run -d --restart=always -p "127.0.0.1:$REGISTRY_PORT:5000" --network bridge \
      --name kind-registry "$REGISTRY_IMAGE"
  fi
  if exists kind get kubeconfig --name "$CLUSTER"; then
    say "kind cluster $CLUSTER exists"
  else
    say "creating kind cluster $CLUSTER ($KIND_NODE_IMAGE)"
    run kind create cluster --name "$CLUSTER" --image "$KIND_NODE_IMAGE" \
      --config "$ROOT/kubernetes-intro/kind-cluster.yaml"
  fi
  say "pointing each node's containerd at kind-registry for localhost:$REGISTRY_PORT"
  local nodes="$CLUSTER-control-plane"
  [[ "$dry_run" == 1 ]] || nodes=$(kind get nodes --name "$CLUSTER")
  local hosts="/etc/containerd/certs.d/localhost:$REGISTRY_PORT"
  for node in $nodes; do
    run docker exec "$node" mkdir -p "$hosts"
    run docker exec "$node" sh -c "printf '[host.\"http://kind-registry:5000\"]\\n' > $hosts/hosts.toml"
  done
  if [[ "$dry_run" == 1 ]] || [[ "$(docker inspect -f '{{json .NetworkSettings.Networks.kind}}' kind-registry)" == null ]]; then
    run docker network connect kind kind-registry
  fi
  say "documenting the registry for tools (KEP-1755: the local-registry-hosting ConfigMap)"
  run kubectl apply -f "$ROOT/cluster/local-registry-hosting.yaml"
  say "now: REGISTRY=localhost:$REGISTRY_PORT/kubeflow-for-poets scripts/build_images.sh --push"
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
  if exists gcloud container clusters describe "$CLUSTER" --project "$PROJECT" --zone "$ZONE"; then
    say "GKE cluster $CLUSTER exists"
  else
    say "creating GKE cluster $CLUSTER in $PROJECT/$ZONE (workload identity on)"
    say "it costs money while it runs: $NODES x $MACHINE_TYPE (about \$0.13 an hour each" \
      "on demand in us-central1), plus disks; delete it when done: PROJECT=$PROJECT $0 down --gke"
    run gcloud container clusters create "$CLUSTER" --project "$PROJECT" --zone "$ZONE" \
      --machine-type "$MACHINE_TYPE" --num-nodes "$NODES" \
      --workload-pool "$PROJECT.svc.id.goog"
  fi
  run gcloud container clusters get-credentials "$CLUSTER" --project "$PROJECT" --zone "$ZONE"
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
  say "installing KServe $KSERVE_VERSION in Standard mode (plain Deployments: no Knative or Istio needed)"
  run kubectl apply --server-side -f "$releases/kserve.yaml"
  run kubectl -n kserve wait --for=condition=available --timeout=300s deployment/kserve-controller-manager
  run kubectl apply --server-side -f "$releases/kserve-cluster-resources.yaml"
  run kubectl -n kserve patch configmap inferenceservice-config --type merge \
    -p '{"data":{"deploy":"{\"defaultDeploymentMode\":\"Standard\"}"}}'
}

apply_rbac() {
  need kubectl "install kubectl (kubernetes.io/docs/tasks/tools)"
  say "letting pipeline-runner (KFP standalone) create InferenceServices"
  run kubectl apply -f "$ROOT/cluster/kserve-rbac.yaml"
}

apply_storage() {
  need kubectl "install kubectl (kubernetes.io/docs/tasks/tools)"
  say "KServe's access to KFP's MinIO: a Secret made from KFP's own credentials"
  # The keys go from one Secret to the other through a pipe, never through arguments.
  echo "+ kubectl -n $NAMESPACE create secret generic crypto-minio (keys from mlpipeline-minio-artifact)"
  if [[ "$dry_run" == 0 ]]; then
    kubectl -n "$NAMESPACE" get secret mlpipeline-minio-artifact -o go-template='AWS_ACCESS_KEY_ID={{.data.accesskey | base64decode}}{{"\n"}}AWS_SECRET_ACCESS_KEY={{.data.secretkey | base64decode}}{{"\n"}}' \
      | kubectl -n "$NAMESPACE" create secret generic crypto-minio --from-env-file=/dev/stdin \
        --dry-run=client -o yaml \
      | kubectl apply -f -
  fi
  run kubectl -n "$NAMESPACE" annotate --overwrite secret crypto-minio \
    serving.kserve.io/s3-endpoint="minio-service.$NAMESPACE:9000" \
    serving.kserve.io/s3-usehttps=0 serving.kserve.io/s3-region=us-east-1
  run kubectl apply -f "$ROOT/cluster/model-storage.yaml"
}

upload() {  # upload CLAIM DIR TARGET: copy DIR into the claim at TARGET with a helper pod
  need kubectl "install kubectl (kubernetes.io/docs/tasks/tools)"
  local claim="$1" dir="$2" target="$3" pod="upload-$1"
  if [[ "$dry_run" == 0 && ! -d "$dir" ]]; then
    echo "error: no folder $dir to upload" >&2
    exit 1
  fi
  say "copying $dir into pvc://$claim/$target"
  run kubectl -n "$NAMESPACE" run "$pod" --restart=Never \
    --image="localhost:$REGISTRY_PORT/kubeflow-for-poets/serve:0.1.0" \
    --overrides="{\"spec\":{\"securityContext\":{\"fsGroup\":10001},\"volumes\":[{\"name\":\"v\",\"persistentVolumeClaim\":{\"claimName\":\"$claim\"}}],\"containers\":[{\"name\":\"$pod\",\"image\":\"localhost:$REGISTRY_PORT/kubeflow-for-poets/serve:0.1.0\",\"command\":[\"sleep\",\"600\"],\"volumeMounts\":[{\"name\":\"v\",\"mountPath\":\"/mnt/claim\"}]}]}}"
  run kubectl -n "$NAMESPACE" wait --for=condition=Ready --timeout=120s "pod/$pod"
  run kubectl -n "$NAMESPACE" exec "$pod" -- mkdir -p "/mnt/claim/$target"
  run kubectl -n "$NAMESPACE" cp "$dir/." "$pod:/mnt/claim/$target"
  run kubectl -n "$NAMESPACE" delete pod "$pod" --wait=false
}

down() {
  if [[ "${1:-}" == "--gke" ]]; then
    need gcloud "install the Google Cloud CLI"
    : "${PROJECT:?set PROJECT to your Google Cloud project id}"
    say "deleting GKE cluster $CLUSTER"
    run gcloud container clusters delete "$CLUSTER" --project "$PROJECT" --zone "$ZONE" --quiet
  elif exists kind get kubeconfig --name "$CLUSTER"; then
    say "deleting kind cluster $CLUSTER and its registry"
    run kind delete cluster --name "$CLUSTER"
    run docker rm -f kind-registry
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
  rbac) apply_rbac ;;
  storage) apply_storage ;;
  upload-model)
    [[ $# == 2 ]] || { echo "usage: $0 upload-model DIR VERSION (e.g. runs/models/crypto/1 1)" >&2; exit 2; }
    upload crypto-models "$1" "crypto/$2"
    ;;
  upload-data)
    [[ $# == 1 ]] || { echo "usage: $0 upload-data DIR (a transform output folder)" >&2; exit 2; }
    upload crypto-data "$1" .
    ;;
  down) down "$@" ;;
  -h | --help | "") sed -n '2,30p' "$0" ;;
  *)
    echo "error: unknown command $command (see $0 --help)" >&2
    exit 2
    ;;
esac
