"""record: write every judged attempt to the outcome store, so the next similar subtask routes better.

Each outcome keeps its attempt's ``after_rejection`` flag (an earlier tier's answer to the subtask was
rejected first): the router reads only the unconditioned ones as first-pick evidence (fusiongraph/routing/router.py)."""

from __future__ import annotations

import uuid

from langgraph.config import get_config
from langgraph.runtime import Runtime

from fusiongraph import cache as answer_cache
from fusiongraph import privacy as pv
from fusiongraph.attempt import outcomes_from_attempts
from fusiongraph.context import FusionContext, as_context
from fusiongraph.records import new_result
from fusiongraph.resources import apply_retention, get_resources
from fusiongraph.state import SubtaskState


def _run_id() -> str:
    try:
        return str(get_config().get("metadata", {}).get("run_id") or get_config().get("run_id") or uuid.uuid4())
    except RuntimeError:
        return str(uuid.uuid4())


def record(state: SubtaskState, runtime: Runtime[FusionContext]) -> dict:
    ctx = as_context(runtime.context)
    res = get_resources(ctx)
    attempts = state.get("attempts", [])
    trace = list(state.get("trace", []))
    sensitive = bool(state.get("sensitive"))
    if attempts and sensitive and ctx.privacy_store == "none":
        trace.append({"node": "record", "recorded": 0, "detail": "sensitive subtask: not recorded (privacy_store)"})
    elif attempts:
        try:
            apply_retention(res.store)  # $FUSIONGRAPH_RETENTION_DAYS: at most once an hour
        except Exception as exc:  # noqa: BLE001 - a failed erasure must not lose this outcome
            trace.append({"node": "record", "retention_error": f"{type(exc).__name__}: {exc}"[:300]})
        outcomes = outcomes_from_attempts(attempts, _run_id())
        placeholders = state.get("placeholders") or {}
        if sensitive:  # the store keeps the masked subtask, and answers with the values masked too
            for o in outcomes:
                o.answer = pv.mask_known(o.answer, placeholders) if o.answer else o.answer
        text = pv.routing_text(state)
        try:
            subtask_id = res.store.record(text, res.embedder.embed_one(text), state.get("task_class"), outcomes)
            conditioned = sum(o.after_rejection for o in outcomes)  # after a rejected tier: escalation evidence only
            trace.append(
                {
                    "node": "record",
                    "recorded": len(outcomes),
                    **({"after_rejection": conditioned} if conditioned else {}),
                    **({"masked": True} if sensitive else {}),
                }
            )
            if state.get("status") == "accepted" and not sensitive:
                answer_cache.remember(
                    res, ctx, subtask_id, state.get("task_class"), state.get("answered_by"), state.get("answer")
                )
        except Exception as exc:  # the answer still goes out; the failure is visible
            trace.append({"node": "record", "error": f"{type(exc).__name__}: {exc}"[:300]})
    return {"results": [new_result(state, trace)]}
