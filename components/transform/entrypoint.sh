#!/bin/sh
# The transform image's entrypoint. As Kubeflow Pipelines' step image it is crypto-pipeline:
#   docker run IMAGE transform --input RAW.csv --output-dir OUT [Beam options]
# With --worker_pool first, as Beam's own SDK images take it, it is instead a Beam SDK
# worker pool on port 50000: the harness that Flink, Spark or Beam's portable job service
# starts workers in, for a pipeline submitted with
#   --runner=PortableRunner --environment_type=EXTERNAL --environment_config=HOST:50000
# Options after --worker_pool go to the pool (--service_port=PORT to listen elsewhere).
set -eu
if [ "${1:-}" = "--worker_pool" ]; then
  shift
  exec python -m apache_beam.runners.worker.worker_pool_main --service_port=50000 "$@"
fi
exec crypto-pipeline "$@"
