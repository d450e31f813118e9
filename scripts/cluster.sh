#!/usr/bin/env bash
# Clusters for the tutorial: a local one (kind, or minikube), or GKE; then Kubeflow
# Pipelines (standalone), Katib and KServe at pinned versions; and tear-down.
#
# Usage: scripts/cluster.sh [--dry-run] COMMAND
#   kind            create a kind cluster with a local registry on localhost:$REGISTRY_PORT
#                   (kind's recipe: kind-registry on the kind network, containerd's
#                   hosts.toml from cluster/containerd-hosts.toml, the local-registry-hosting
#                   ConfigMap); NodePort 30001 on the host
#   minikube        create a minikube cluster instead (no registry: `load-images` puts
#                   the built images into its node)
#   gke             create a GKE cluster with workload identity (needs PROJECT; see below)
#   kfp             install Kubeflow Pipelines standalone ($KFP_VERSION)
#   katib           install Katib standalone ($KATIB_VERSION)
#   kserve          install cert-manager and KServe in Standard mode (plain Deployments):
#                   its CRDs first, then the rest, retried until the webhooks answer
#   rbac            let KFP's pipeline-runner create InferenceServices in $NAMESPACE
#                   (cluster/kserve-rbac.yaml)
#   storage         in $NAMESPACE: the predictor's service account with KFP's object-store
#                   credentials (SeaweedFS, seaweedfs.kubeflow:9000), and the claims
#                   crypto-models and crypto-data (cluster/model-storage.yaml)
#   load-images     put the built step images into the cluster's nodes (kind or minikube),
#                   for a cluster that pulls from no registry of this machine
#   upload-model DIR N   copy a registered model version into pvc://crypto-models/crypto/N
#   upload-data DIR      copy a transform output into pvc://crypto-data (Katib's trials)
#   down            delete the kind or minikube cluster (and kind-registry), or --gke
#   --dry-run       print every command instead of running it
#
# Versions come from cluster/versions.env (Kubeflow 26.03's components, kind, the node
# image by digest); an environment variable of the same name overrides one.
# Other settings (environment variables, with their defaults):
#   CLUSTER=poets  REGISTRY_PORT=5001  NAMESPACE=kubeflow (your profile's on a multi-user
#   Kubeflow: the storage, the role and the models go there)
#   REGISTRY=localhost:$REGISTRY_PORT/kubeflow-for-poets  TAG=the content tag
#   (scripts/image_tag.py): the images that upload and load-images use
#   GKE: PROJECT (required, your Google Cloud project id), ZONE=us-central1-a,
#        MACHINE_TYPE=e2-standard-4, NODES=2. A zonal cluster: NODES machines in all (a
#        regional one would run NODES in each of the region's three zones), and GKE
#        waives the management fee of one zonal cluster per billing account.
# Each command is idempotent: what exists already is left as it is.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=scripts/show.sh
source "$ROOT/scripts/show.sh"
# The project's files as seen from here, so that the commands shown paste anywhere below it.
HERE="$(python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1]))' "$ROOT")/"
HERE="${HERE#./}"
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
KFP_NAMESPACE=kubeflow  # where KFP standalone (and Kubeflow) runs its object store
REGISTRY="${REGISTRY:-localhost:$REGISTRY_PORT/kubeflow-for-poets}"
TAG="${TAG:-$(python3 "$ROOT/scripts/image_tag.py")}"
ZONE="${ZONE:-us-central1-a}"
MACHINE_TYPE="${MACHINE_TYPE:-e2-standard-4}"
NODES="${NODES:-2}"
RETRY_PAUSE="${RETRY_PAUSE:-15}"  # seconds between tries of an apply that waits on webhooks
# Katib injects its metrics collector into trials only in namespaces labelled so.
KATIB_INJECTION=katib.kubeflow.org/metrics-collector-injection=enabled
dry_run=0

say() { echo "==> $*"; }

run() {
  show "$@"
  if [[ "$dry_run" == 0 ]]; then
    "$@"
  fi
}

retry() {  # retry TIMES PAUSE COMMAND...: as upstream's installs do, until it succeeds
  local times="$1" pause="$2" attempt
  shift 2
  for attempt in $(seq 1 "$times"); do
    run "$@" && return 0
    [[ "$attempt" == "$times" ]] && break
    say "not yet (attempt $attempt of $times); again in $pause s"
    sleep "$pause"
  done
  echo "error: failed $times times: $*" >&2
  echo "  fix: look at the controllers (kubectl -n kserve get pods; kubectl -n kserve logs" \
    "deployment/kserve-controller-manager), then run the same command again: it is" \
    "idempotent" >&2
  return 1
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
      --config "${HERE}kubernetes-intro/kind-cluster.yaml"
  fi
  say "pointing each node's containerd at kind-registry for localhost:$REGISTRY_PORT"
  local nodes="$CLUSTER-control-plane"
  [[ "$dry_run" == 1 ]] || nodes=$(kind get nodes --name "$CLUSTER")
  local hosts="/etc/containerd/certs.d/localhost:$REGISTRY_PORT"
  for node in $nodes; do
    run docker exec "$node" mkdir -p "$hosts"
    run docker cp "${HERE}cluster/containerd-hosts.toml" "$node:$hosts/hosts.toml"
  done
  if [[ "$dry_run" == 1 ]] || [[ "$(docker inspect -f '{{json .NetworkSettings.Networks.kind}}' kind-registry)" == null ]]; then
    run docker network connect kind kind-registry
  fi
  say "documenting the registry for tools (KEP-1755: the local-registry-hosting ConfigMap)"
  show_pipe sed "s/localhost:5001/localhost:$REGISTRY_PORT/" "${HERE}cluster/local-registry-hosting.yaml" \
    "|" kubectl apply -f -
  if [[ "$dry_run" == 0 ]]; then
    sed "s/localhost:5001/localhost:$REGISTRY_PORT/" "${HERE}cluster/local-registry-hosting.yaml" \
      | kubectl apply -f -
  fi
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
  say "minikube pulls from no registry of this machine: after scripts/build_images.sh," \
    "put the images into its node with: $0 load-images"
}

load_images() {  # the built step images into the nodes: no registry needed
  local image
  for image in ingest transform train serve; do
    if exists minikube status --profile "$CLUSTER"; then
      run minikube --profile "$CLUSTER" image load "$REGISTRY/$image:$TAG"
    else
      run kind load docker-image --name "$CLUSTER" "$REGISTRY/$image:$TAG"
    fi
  done
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
  if exists kubectl get crd experiments.kubeflow.org; then
    # Both installs apply the kubeflow Namespace; KFP's drops the label Katib's set.
    say "Katib is installed: keeping its metrics-collector label on the kubeflow namespace"
    run kubectl label namespace kubeflow --overwrite "$KATIB_INJECTION"
  fi
  say "the UI and API: kubectl -n kubeflow port-forward svc/ml-pipeline-ui 8080:80"
  say "its object store: SeaweedFS, seaweedfs.$KFP_NAMESPACE:9000 (S3)"
}

install_katib() {
  need kubectl "install kubectl (kubernetes.io/docs/tasks/tools)"
  say "installing Katib $KATIB_VERSION (standalone)"
  run kubectl apply -k \
    "github.com/kubeflow/katib.git/manifests/v1beta1/installs/katib-standalone?ref=$KATIB_VERSION"
  run kubectl -n kubeflow wait --for=condition=available --timeout=600s deployment/katib-controller
  run kubectl label namespace kubeflow --overwrite "$KATIB_INJECTION"
}

install_kserve() {
  need kubectl "install kubectl (kubernetes.io/docs/tasks/tools)"
  need curl "install curl"
  local releases="https://github.com/kserve/kserve/releases/download/$KSERVE_VERSION"
  local dir="${HERE}build/kserve-$KSERVE_VERSION"
  say "installing cert-manager $CERT_MANAGER_VERSION"
  run kubectl apply --server-side --force-conflicts -f \
    "https://github.com/cert-manager/cert-manager/releases/download/$CERT_MANAGER_VERSION/cert-manager.yaml"
  run kubectl -n cert-manager wait --for=condition=available --timeout=300s deployment/cert-manager-webhook
  say "installing KServe $KSERVE_VERSION in Standard mode (plain Deployments: no Knative or Istio needed)"
  run mkdir -p "$dir"
  run curl -fsSL -o "$dir/kserve.yaml" "$releases/kserve.yaml"
  run curl -fsSL -o "$dir/kserve-cluster-resources.yaml" "$releases/kserve-cluster-resources.yaml"
  # Its kserve.yaml holds CRDs and objects of their kinds (LLMInferenceServiceConfig): a
  # single apply cannot map those before the CRDs exist. The CRDs go first; the default
  # deployment mode is set in the file, not patched afterwards, so that applying it again
  # changes nothing and meets no field-ownership conflict.
  show "${HERE}scripts/cluster.sh" split-crds "$dir/kserve.yaml" "$dir/crds.yaml" "$dir/rest.yaml"
  if [[ "$dry_run" == 0 ]]; then
    split_crds "$dir/kserve.yaml" "$dir/crds.yaml" "$dir/rest.yaml"
  fi
  run kubectl apply --server-side --force-conflicts -f "$dir/crds.yaml"
  run kubectl wait --for condition=established --timeout=120s -f "$dir/crds.yaml"
  # The first apply creates the controllers; objects their webhooks check wait for them.
  run kubectl apply --server-side --force-conflicts -f "$dir/rest.yaml" \
    || say "some objects wait for KServe's webhooks: again once the controllers run"
  run kubectl -n kserve wait --for=condition=available --timeout=600s \
    deployment/kserve-controller-manager deployment/llmisvc-controller-manager
  retry 10 "$RETRY_PAUSE" kubectl apply --server-side --force-conflicts -f "$dir/rest.yaml"
  retry 10 "$RETRY_PAUSE" kubectl apply --server-side --force-conflicts -f "$dir/kserve-cluster-resources.yaml"
}

split_crds() {  # split_crds IN CRDS REST: CRDs to one file, the rest (Standard mode) to another
  awk -v crds="$2" -v rest="$3" '
    function flush() { if (doc != "") printf "%s---\n", doc > (is_crd ? crds : rest); doc = ""; is_crd = 0 }
    /^---/ { flush(); next }
    /^kind: CustomResourceDefinition$/ { is_crd = 1 }
    { doc = doc $0 "\n" }
    END { flush() }
  ' "$1"
  if ! grep -q '"defaultDeploymentMode": "Serverless"' "$3"; then
    echo "error: KServe $KSERVE_VERSION's kserve.yaml no longer sets defaultDeploymentMode as" \
      "this script expects; fix: set it to Standard in $3 by hand, then apply that file" >&2
    exit 1
  fi
  sed -i.orig 's/"defaultDeploymentMode": "Serverless"/"defaultDeploymentMode": "Standard"/' "$3"
}

apply_rbac() {
  need kubectl "install kubectl (kubernetes.io/docs/tasks/tools)"
  check_namespace
  say "letting pipeline-runner (KFP standalone) create InferenceServices in $NAMESPACE"
  run kubectl -n "$NAMESPACE" apply -f "${HERE}cluster/kserve-rbac.yaml"
}

# KFP standalone keeps its object store's keys, and admits its clients, in kubeflow only;
# a multi-user Kubeflow copies the keys into each profile's namespace and admits those.
check_namespace() {
  [[ "$dry_run" == 1 || "$NAMESPACE" == "$KFP_NAMESPACE" ]] && return 0
  local part_of
  part_of=$(kubectl get namespace "$NAMESPACE" \
    -o jsonpath='{.metadata.labels.app\.kubernetes\.io/part-of}' 2> /dev/null) || true
  if [[ "$part_of" != kubeflow-profile ]]; then
    echo "error: $NAMESPACE is not a Kubeflow profile's namespace (or does not exist)," \
      "and KFP standalone serves its object store to $KFP_NAMESPACE and profiles only" >&2
    echo "  fix: on KFP standalone leave NAMESPACE unset ($KFP_NAMESPACE); on a multi-user" \
      "Kubeflow use your profile's namespace (kubectl get profiles)" >&2
    exit 1
  fi
}

apply_storage() {
  need kubectl "install kubectl (kubernetes.io/docs/tasks/tools)"
  check_namespace
  if [[ "$dry_run" == 0 ]] && ! kubectl -n "$NAMESPACE" get secret mlpipeline-minio-artifact \
    > /dev/null 2>&1; then
    echo "error: no Secret mlpipeline-minio-artifact in $NAMESPACE: Kubeflow Pipelines'" \
      "object-store keys are not there" >&2
    echo "  fix: install Kubeflow Pipelines first ($0 kfp); on a multi-user Kubeflow, its" \
      "profile controller copies the Secret into each profile's namespace" >&2
    exit 1
  fi
  say "KServe's access to KFP's object store (SeaweedFS): a Secret in $NAMESPACE made from" \
    "KFP's own credentials there"
  # The keys go from one Secret to the other through a pipe, never through arguments.
  local keys='AWS_ACCESS_KEY_ID={{.data.accesskey | base64decode}}{{"\n"}}AWS_SECRET_ACCESS_KEY={{.data.secretkey | base64decode}}{{"\n"}}'
  show_pipe kubectl -n "$NAMESPACE" get secret mlpipeline-minio-artifact -o go-template="$keys" \
    "|" kubectl -n "$NAMESPACE" create secret generic crypto-minio --from-env-file=/dev/stdin \
    --dry-run=client -o yaml "|" kubectl apply -f -
  if [[ "$dry_run" == 0 ]]; then
    kubectl -n "$NAMESPACE" get secret mlpipeline-minio-artifact -o go-template="$keys" \
      | kubectl -n "$NAMESPACE" create secret generic crypto-minio --from-env-file=/dev/stdin \
        --dry-run=client -o yaml \
      | kubectl apply -f -
  fi
  run kubectl -n "$NAMESPACE" annotate --overwrite secret crypto-minio \
    serving.kserve.io/s3-endpoint="seaweedfs.$KFP_NAMESPACE:9000" \
    serving.kserve.io/s3-usehttps=0 serving.kserve.io/s3-region=us-east-1
  run kubectl -n "$NAMESPACE" apply -f "${HERE}cluster/model-storage.yaml"
}

upload() {  # upload CLAIM DIR TARGET: copy DIR into the claim at TARGET with a helper pod
  need kubectl "install kubectl (kubernetes.io/docs/tasks/tools)"
  local claim="$1" dir="$2" target="$3" pod="upload-$1"
  if [[ "$dry_run" == 0 && ! -d "$dir" ]]; then
    echo "error: no folder $dir to upload" >&2
    exit 1
  fi
  say "copying $dir into pvc://$claim/$target"
  run kubectl -n "$NAMESPACE" delete pod "$pod" --ignore-not-found --wait  # an earlier copy's
  run kubectl -n "$NAMESPACE" run "$pod" --restart=Never \
    --image="$REGISTRY/serve:$TAG" \
    --overrides="{\"spec\":{\"securityContext\":{\"fsGroup\":10001},\"volumes\":[{\"name\":\"v\",\"persistentVolumeClaim\":{\"claimName\":\"$claim\"}}],\"containers\":[{\"name\":\"$pod\",\"image\":\"$REGISTRY/serve:$TAG\",\"command\":[\"sleep\",\"600\"],\"volumeMounts\":[{\"name\":\"v\",\"mountPath\":\"/mnt/claim\"}]}]}}"
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
    say "deleting kind cluster $CLUSTER"
    run kind delete cluster --name "$CLUSTER"
    if [[ -z "$(kind get clusters 2> /dev/null)" ]]; then
      say "no kind cluster is left: deleting the registry kind-registry"
      run docker rm -f kind-registry
    else
      say "other kind clusters use kind-registry: keeping it"
    fi
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
  load-images) load_images ;;
  split-crds)  # split-crds IN CRDS REST: the kserve command's own step, shown so it can be pasted
    [[ $# == 3 ]] || { echo "usage: $0 split-crds KSERVE_YAML CRDS_OUT REST_OUT" >&2; exit 2; }
    split_crds "$@"
    ;;
  upload-model)
    [[ $# == 2 ]] || { echo "usage: $0 upload-model DIR VERSION (e.g. runs/models/crypto/1 1)" >&2; exit 2; }
    upload crypto-models "$1" "crypto/$2"
    ;;
  upload-data)
    [[ $# == 1 ]] || { echo "usage: $0 upload-data DIR (a transform output folder)" >&2; exit 2; }
    upload crypto-data "$1" .
    ;;
  down) down "$@" ;;
  -h | --help | "") awk 'NR > 1 && /^set -euo/ { exit } NR > 1' "$0" ;;
  *)
    echo "error: unknown command $command (see $0 --help)" >&2
    exit 2
    ;;
esac
