"""record: write every judged attempt to the outcome store, so the next similar subtask routes better."""

from __future__ import annotations

import uuid

from langgraph.config import get_config
from langgraph.runtime import Runtime

from fusiongraph.attempt import outcomes_from_attempts
from fusiongraph.context import FusionContext, as_context
from fusiongraph.records import RESULT_STATE_KEYS, new_result
from fusiongraph.resources import get_resources
from fusiongraph.state import SubtaskState

RESULT_KEYS = RESULT_STATE_KEYS  # the old name


def _run_id() -> str:
    try:
        return str(get_config().get("metadata", {}).get("run_id") or get_config().get("run_id") or uuid.uuid4())
    except RuntimeError:
        return str(uuid.uuid4())


def record(state: SubtaskState, runtime: Runtime[FusionContext]) -> dict:
    res = get_resources(as_context(runtime.context))
    attempts = state.get("attempts", [])
    trace = list(state.get("trace", []))
    if attempts:
        outcomes = outcomes_from_attempts(attempts, _run_id())
        try:
            res.store.record(
                state["subtask"], res.embedder.embed_one(state["subtask"]), state.get("task_class"), outcomes
            )
            trace.append({"node": "record", "recorded": len(outcomes)})
        except Exception as exc:  # the answer still goes out; the failure is visible
            trace.append({"node": "record", "error": f"{type(exc).__name__}: {exc}"[:300]})
    return {"results": [new_result(state, trace)]}
