"""Prometheus metrics of the OpenAI-compatible endpoint's requests (prometheus_client, the default registry)
and the ``/metrics`` route; the metrics of finished graph runs are fusiongraph/run_metrics.py's.

Under ``langgraph dev``/``langgraph up`` they are served by LangGraph's own ``GET /metrics`` (it exports the
process's default prometheus_client registry, next to LangGraph's metrics); the app also has a ``/metrics``
route of its own for when it runs outside LangGraph (LangGraph's route shadows it otherwise).

* ``fusiongraph_requests_total{route, method, status, key}`` - requests to the endpoint, refused ones too
  (``key``: the API key's id, ``key_...``, never its name; ``anonymous`` on an open server).
* ``fusiongraph_request_duration_seconds{route}`` - time to the last byte of the response.
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fusiongraph import run_metrics
from fusiongraph.run_metrics import LATENCY_BUCKETS
from fusiongraph.settlement import ANONYMOUS

STARTED = "fusiongraph.started"

REQUESTS = Counter(
    "fusiongraph_requests",
    "Requests to the OpenAI-compatible endpoint, by route, status and key",
    ["route", "method", "status", "key"],
)
REQUEST_SECONDS = Histogram(
    "fusiongraph_request_duration_seconds",
    "Request latency to the last byte, by route",
    ["route"],
    buckets=LATENCY_BUCKETS,
)


def key_label(scope: dict | None) -> str:
    key = (scope or {}).get("fusiongraph.api_key")
    return key.id if key is not None else ANONYMOUS  # the key's id, never its name: /metrics may be public


def count_rejection(scope: dict, status: int) -> None:
    """A request refused by auth (it never reached the route)."""
    route = scope.get("path", "")
    REQUESTS.labels(
        route=route if route.startswith("/v1/") else "other",
        method=scope.get("method", ""),
        status=str(status),
        key=key_label(scope),
    ).inc()


def observe_run(scope: dict | None, out: dict, mode: str) -> None:
    """A finished run of the OpenAI endpoint (json|stream)."""
    started = (scope or {}).get(STARTED)
    run_metrics.observe(out, mode, key_label(scope), None if started is None else time.perf_counter() - started)


def _instrument(route: Route) -> None:
    inner, path = route.app, route.path

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return await inner(scope, receive, send)
        status, started = 500, time.perf_counter()
        scope[STARTED] = started

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await inner(scope, receive, send_status)
        finally:
            REQUESTS.labels(route=path, method=scope.get("method", ""), status=str(status), key=key_label(scope)).inc()
            REQUEST_SECONDS.labels(route=path).observe(time.perf_counter() - started)

    route.app = app


async def metrics_endpoint(request: Request) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def install(app) -> None:
    """Count and time the app's routes, and add ``GET /metrics`` (shadowed by LangGraph's, which serves the
    same registry)."""
    for route in app.routes:
        if isinstance(route, Route):
            _instrument(route)
    app.router.routes.append(Route("/metrics", metrics_endpoint, methods=["GET"]))
