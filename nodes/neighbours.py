"""neighbours: FAISS nearest past subtasks predict each model's success; with the taxonomy, pick the plan."""

from __future__ import annotations

from langgraph.runtime import Runtime

from fusiongraph import privacy as pv
from fusiongraph.budget import branch_share
from fusiongraph.context import FusionContext, as_context
from fusiongraph.resources import get_resources
from fusiongraph.routing.router import RoutingParams
from fusiongraph.state import SubtaskState
from fusiongraph.text import estimate_tokens


def neighbours(state: SubtaskState, runtime: Runtime[FusionContext]) -> dict:
    ctx = as_context(runtime.context)
    res = get_resources(ctx)
    requires = (state.get("request") or {}).get("requires") or []
    available, unavailable = res.roster.availability(ctx.local_only, answering=True, requires=requires)
    available, private = pv.allowed(res, ctx, state.get("sensitive") or [], available)
    unavailable = unavailable + private
    text = pv.routing_text(state)
    task_class = res.taxonomy.classes[state["task_class"]]
    route = res.router.route(
        res.embedder.embed_one(text),
        state["class_scores"],
        state["class_confidence"],
        task_class.candidates,
        available,
        RoutingParams.from_context(ctx),
        budget_usd=branch_share(state, ctx),
        prompt_tokens=estimate_tokens(text),
        prices={m: (res.roster[m].price_in, res.roster[m].price_out) for m in available},
        default_tokens=res.taxonomy.answer_tokens(task_class.name, ctx.max_tokens),
    )
    guides = sorted(
        (
            {"subtask": nb.text, "model": model, "answer": answer, "similarity": round(nb.similarity, 4)}
            for nb in route.neighbours
            for model, answer in nb.answers.items()
        ),
        key=lambda g: -g["similarity"],
    )
    return {
        "route_source": route.source,
        "predictions": {m: p.as_dict() for m, p in route.predictions.items()},
        "candidates": route.plan,
        "skipped": res.taxonomy.skipped_candidates(task_class.name, res.roster.ids()) + unavailable + route.skipped,
        "guides": guides[: 4 * max(ctx.guides, 0)],
        "trace": [
            {
                "node": "neighbours",
                "neighbours": len(route.neighbours),
                "operating_point": route.operating_point.as_dict() if route.operating_point else None,
                "nearest": [
                    {
                        "subtask": nb.text[:120],
                        "similarity": round(nb.similarity, 4),
                        "outcomes": {m: round(s, 3) for m, s in nb.outcomes.items()},
                    }
                    for nb in route.neighbours[:3]
                ],
            }
        ],
    }
