"""taxonomy: classify the subtask into a known task class, with a confidence."""

from __future__ import annotations

from langgraph.runtime import Runtime

from fusiongraph.context import FusionContext, as_context
from fusiongraph.resources import get_resources
from fusiongraph.state import SubtaskState


def taxonomy(state: SubtaskState, runtime: Runtime[FusionContext]) -> dict:
    res = get_resources(as_context(runtime.context))
    embedding = res.embedder.embed_one(state["subtask"])
    result = res.taxonomy.classify(embedding, res.embedder)
    top = dict(sorted(result.scores.items(), key=lambda kv: -kv[1])[:3])
    return {"task_class": result.task_class, "class_confidence": round(result.confidence, 4),
            "class_scores": {k: round(v, 4) for k, v in top.items()}}
