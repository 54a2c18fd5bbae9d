"""cache: answer a near-identical subtask from the answer cache at $0 (fusiongraph/cache.py).

A hit ends the subtask here (the graph goes straight to `record`, which records no outcome for it): the
answer, the model that gave it and the similarity are in the result's `cache` and the trace.
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from fusiongraph import cache as answer_cache
from fusiongraph import privacy as pv
from fusiongraph.context import FusionContext, as_context
from fusiongraph.resources import get_resources
from fusiongraph.state import SubtaskState


def cache(state: SubtaskState, runtime: Runtime[FusionContext]) -> dict:
    ctx = as_context(runtime.context)
    if not ctx.cache or state.get("sensitive"):
        return {"cache": None}
    res = get_resources(ctx)
    requires = (state.get("request") or {}).get("requires") or []  # tools / JSON / vision, as routing asks
    available, _ = res.roster.availability(ctx.local_only, answering=True, requires=requires)
    try:
        text = pv.routing_text(state)
        hit = answer_cache.lookup(res, ctx, res.embedder.embed_one(text), state["task_class"], available, text)
    except Exception as exc:  # a cache that cannot be read is a miss, never a failed subtask
        return {"cache": None, "trace": [{"node": "cache", "error": f"{type(exc).__name__}: {exc}"[:300]}]}
    if hit is None:
        return {"cache": None}
    answer = hit.pop("answer")
    return {
        "cache": hit,
        "route_source": "cache",
        "predictions": {},
        "candidates": [hit["model"]],
        "skipped": [],
        "guides": [],
        "attempts": [],
        "status": "accepted",
        "answered_by": hit["model"],
        "answer": answer,
        "trace": [{"node": "cache", "hit": dict(hit)}],
    }


def after_cache(state: SubtaskState) -> str:
    """A hit skips routing and the cascade."""
    return "record" if state.get("cache") else "neighbours"
