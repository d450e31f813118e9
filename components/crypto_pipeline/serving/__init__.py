"""Serving: a KServe ModelServer that answers KServe's V1 REST protocol.

It is the protocol KServe's TensorFlow runtime speaks on a cluster, so the same requests
work here and there::

    POST /v1/models/crypto:predict    (Content-Type: application/json)
    {"instances": [[open, high, low], ...]}                        -> {"predictions": [close, ...]}
    {"instances": [{"open": o, "high": h, "low": l}, ...]}         (accepted here; see README)

Readiness and health: ``GET /v1/models/crypto`` (``{"name": "crypto", "ready": true}``),
``GET /v1/models``, ``GET /`` (``{"status": "alive"}``), ``GET /v2/health/live`` and
``GET /v2/health/ready``, from KServe. ``GET /metrics`` stays: Prometheus text with
request counts and latencies, no request content, what a cluster's Prometheus scrapes.
Nothing else of KServe's app is open: the model repository's ``load`` and ``unload``
answer 403 (one model, loaded at start, for the server's lifetime: restart the server to
serve another); ``/docs``, ``/openapi.json``, the V2 inference and metadata routes and
``:explain`` answer 404.

Every request is checked before the model sees it, and the server stays up; error
messages quote at most 80 characters of any value they name.

One job per module:

- ``request_rules``: what a request's body and instances may hold (``parse_body``,
  ``parse_instances``, ``RequestError``);
- ``guard``: the ASGI middleware in front of KServe's app: routes, body limits, the bytes
  held at once and their eviction, refusals;
- ``connections``: how many connections, and how long a request may take to arrive
  (uvicorn's protocol, bounded);
- ``logs``: one line per refusal, floods kept to a few lines;
- ``model``: the KServe model around the SavedModel, predicting in worker threads;
- ``server``: ``serve``, KServe's ModelServer put together with all of the above;
- ``client``: ``running_server`` (a server in a subprocess), ``predict`` and ``closes``.

Where the server leans on KServe's internals is ``crypto_pipeline.workarounds.kserve``.
"""
