"""Prometheus metrics of finished graph runs (prometheus_client, the default registry), recorded for runs of
the OpenAI-compatible endpoint (server/auth.py) and for runs through LangGraph's own API (the graph's
``settle`` node, via fusiongraph/settlement.py). The request metrics and the ``/metrics`` route are
server/metrics.py's.

Counters (``_total``) and histograms (``_bucket``/``_sum``/``_count``):

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

import logging

from prometheus_client import Counter, Histogram

from fusiongraph.budget import PLAN_NODES

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)

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


def observe(out: dict, mode: str, key: str, seconds: float | None) -> None:
    """A finished graph run: mode json|stream (the OpenAI endpoint) or runs (LangGraph's own API), key the
    label of its API key. Never raises: metrics never fail a request."""
    try:
        _record(out, mode, key, seconds)
    except Exception:  # noqa: BLE001
        log.exception("recording the run's metrics failed")


def _record(out: dict, mode: str, key: str, seconds: float | None) -> None:
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
