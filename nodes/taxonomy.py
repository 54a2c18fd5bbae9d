"""taxonomy: classify the subtask into a known task class, with a confidence, and what the class sets:
its answer length (`answer_tokens`) and the verifiers the rules judge applies."""

from __future__ import annotations

from langgraph.runtime import Runtime

from fusiongraph.context import FusionContext, as_context
from fusiongraph.resources import get_resources
from fusiongraph.state import SubtaskState


def taxonomy(state: SubtaskState, runtime: Runtime[FusionContext]) -> dict:
    ctx = as_context(runtime.context)
    res = get_resources(ctx)
    # masked when it holds sensitive values; a tool request is classified from its last user/tool messages
    text = state.get("masked") or state.get("classify_text") or state["subtask"]
    embedding = res.embedder.embed_one(text)
    result = res.taxonomy.classify(embedding, res.embedder)
    top = dict(sorted(result.scores.items(), key=lambda kv: -kv[1])[:3])
    answer_tokens = res.taxonomy.answer_tokens(result.task_class, ctx.max_tokens)
    return {
        "task_class": result.task_class,
        "class_confidence": round(result.confidence, 4),
        "class_scores": {k: round(v, 4) for k, v in top.items()},
        "answer_tokens": answer_tokens,
        "trace": [
            {
                "node": "taxonomy",
                "task_class": result.task_class,
                "answer_tokens": answer_tokens,
                "verifiers": res.taxonomy.verifiers(result.task_class),
                "embedded": res.embedder.describe(text),  # what the router, the cache and the store read
            }
        ],
    }
