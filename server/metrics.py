"""Prometheus metrics of the OpenAI-compatible endpoint and of the runs through LangGraph's own API
(prometheus_client, the default registry).

Under ``langgraph dev``/``langgraph up`` they are served by LangGraph's own ``GET /metrics`` (it exports the
process's default prometheus_client registry, next to LangGraph's metrics); the app also has a ``/metrics``
route of its own for when it runs outside LangGraph (LangGraph's route shadows it otherwise).

Counters (``_total``) and histograms (``_bucket``/``_sum``/``_count``):

* ``fusiongraph_requests_total{route, method, status, key}`` - requests to the endpoint, refused ones too.
* ``fusiongraph_request_duration_seconds{route}`` - time to the last byte of the response.
* ``fusiongraph_runs_total{key, mode}`` and ``fusiongraph_run_duration_seconds{mode}`` - finished graph runs;
  mode is json or stream (the OpenAI endpoint) or runs (LangGraph's own API: /runs, the SDK, Studio).
* ``fusiongraph_cost_usd_total{model, key, kind}`` - actual USD by model and key; ``kind`` is plan, answer,
  judge or synthesis (judge calls are labelled ``model="judge"``: an attempt does not name its judge).
* ``fusiongraph_tokens_total{model, direction}`` - tokens in and out of the answering models.
* ``fusiongraph_attempts_total{model, accepted}`` - judged answers; acceptance rate = accepted="true" / all.
* ``fusiongraph_subtasks_total{status}`` (accepted, best_effort, failed, budget_exhausted) and
  ``fusiongraph_escalations_total`` - subtasks that asked more than one model; escalation rate =
  escalations / subtasks.
* ``fusiongraph_model_latency_seconds{model}`` - one model call.
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fusiongraph.budget import PLAN_NODES

ANONYMOUS = "anonymous"
STARTED = "fusiongraph.started"
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)

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
RUNS = Counter(
    "fusiongraph_runs",
    "Finished graph runs, by key and mode (json|stream: the OpenAI endpoint; runs: /runs)",
    ["key", "mode"],
)
RUN_SECONDS = Histogram(
    "fusiongraph_run_duration_seconds",
    "Graph run latency (request start to final answer)",
    ["mode"],
    buckets=LATENCY_BUCKETS,
)
COST = Counter(
    "fusiongraph_cost_usd",
    "Actual USD spent, by model, key and kind of call (plan|answer|judge|synthesis)",
    ["model", "key", "kind"],
)
TOKENS = Counter("fusiongraph_tokens", "Tokens of the answering models, by direction (in|out)", ["model", "direction"])
ATTEMPTS = Counter(
    "fusiongraph_attempts", "Judged answers, by model and whether the judges accepted them", ["model", "accepted"]
)
SUBTASKS = Counter("fusiongraph_subtasks", "Subtasks, by final status", ["status"])
ESCALATIONS = Counter(
    "fusiongraph_escalations", "Subtasks that asked more than one model (a rejected answer escalated)"
)
MODEL_SECONDS = Histogram(
    "fusiongraph_model_latency_seconds", "Latency of one answering model call", ["model"], buckets=LATENCY_BUCKETS
)


def key_label(scope: dict | None) -> str:
    key = (scope or {}).get("fusiongraph.api_key")
    return key.name if key is not None else ANONYMOUS


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
    observe(out, mode, key_label(scope), None if started is None else time.perf_counter() - started)


def observe(out: dict, mode: str, key: str, seconds: float | None) -> None:
    """A finished graph run: mode json|stream (the OpenAI endpoint) or runs (LangGraph's own API)."""
    RUNS.labels(key=key, mode=mode).inc()
    if seconds is not None:
        RUN_SECONDS.labels(mode=mode).observe(max(seconds, 0.0))
    for event in out.get("trace") or []:
        if event.get("node") in (*PLAN_NODES, "synthesize") and event.get("cost_usd"):
            kind = "plan" if event["node"] in PLAN_NODES else "synthesis"
            COST.labels(model=event.get("model") or "unknown", key=key, kind=kind).inc(float(event["cost_usd"]))
    for result in out.get("results") or []:
        attempts = result.get("attempts") or []
        SUBTASKS.labels(status=str(result.get("status") or "unknown")).inc()
        if len(attempts) > 1:
            ESCALATIONS.inc()
        for a in attempts:
            model = str(a.get("model") or "unknown")
            COST.labels(model=model, key=key, kind="answer").inc(max(float(a.get("cost_usd") or 0.0), 0.0))
            if a.get("judge_cost_usd"):
                COST.labels(model="judge", key=key, kind="judge").inc(max(float(a["judge_cost_usd"]), 0.0))
            TOKENS.labels(model=model, direction="in").inc(int(a.get("tokens_in") or 0))
            TOKENS.labels(model=model, direction="out").inc(int(a.get("tokens_out") or 0))
            if a.get("error") is None:
                ATTEMPTS.labels(model=model, accepted=str(bool(a.get("accepted"))).lower()).inc()
            if a.get("latency_s") is not None:
                MODEL_SECONDS.labels(model=model).observe(float(a["latency_s"]))


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
