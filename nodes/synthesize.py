"""synthesize: fuse the subtask answers into one reply; a single subtask passes through unchanged."""

from __future__ import annotations

import time

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.runtime import Runtime

from fusiongraph.context import FusionContext, as_context
from fusiongraph.resources import get_resources
from fusiongraph.state import FusionState
from fusiongraph.text import redact, trim_to_tokens
from prompts import load_prompt


def _summary(results: list[dict], overhead: list[dict], roster) -> dict:
    """Totals, and what the strongest configured model alone would have cost on the same tokens."""
    strongest = roster[roster.strongest()]
    final = [next((a for a in r["attempts"] if a["model"] == r.get("answered_by")), None) for r in results]
    tokens_in = sum(a["tokens_in"] for a in final if a)
    tokens_out = sum(a["tokens_out"] for a in final if a)
    return {
        "cost_usd": sum(r["cost_usd"] for r in results) + sum(e.get("cost_usd", 0.0) for e in overhead),
        "tokens_in": sum(r["tokens_in"] for r in results) + sum(e.get("tokens_in", 0) for e in overhead),
        "tokens_out": sum(r["tokens_out"] for r in results) + sum(e.get("tokens_out", 0) for e in overhead),
        "strongest_model": strongest.id,
        "strongest_alone_cost_usd": strongest.cost(tokens_in, tokens_out),
        "statuses": {r["index"]: r["status"] for r in results},
    }


def synthesize(state: FusionState, runtime: Runtime[FusionContext]) -> dict:
    ctx = as_context(runtime.context)
    res = get_resources(ctx)
    results = sorted(state.get("results", []), key=lambda r: r["index"])
    overhead = [e for e in state.get("trace", []) if e.get("node") == "decompose"]
    if len(results) == 1:
        return {"answer": results[0]["answer"],
                "summary": _summary(results, overhead, res.roster)}
    available, _ = res.roster.availability(ctx.local_only)
    model_id = res.roster.helper(available, ctx.planner_model)
    spec = res.roster[model_id]
    parts = "\n\n".join(f"Part {i + 1}: {r['subtask']}\nAnswer: {r['answer'] or '(no answer)'}"
                        for i, r in enumerate(results))
    prompt, removed = trim_to_tokens(f"Request: {state['query']}\n\n{parts}", spec.context - ctx.max_tokens - 200)
    event: dict = {"node": "synthesize", "model": model_id}
    if removed:
        event["trimmed_chars"] = removed
    started = time.perf_counter()
    try:
        model = res.roster.chat_model(model_id, ctx.max_tokens, ctx.request_timeout_s)
        message = model.with_config(run_name="synthesize", tags=["synthesize"]).invoke(
            [SystemMessage(load_prompt("synthesize")), HumanMessage(prompt)])
        event.update(spec.usage(message, prompt))
        answer = message.text.strip()
        if not answer:
            raise ValueError("the synthesiser returned an empty reply")
    except Exception as exc:
        event["fallback"] = redact(f"{type(exc).__name__}: {exc}", res.roster.secrets())[:300] + \
            " -> the answers are joined in order"
        answer = "\n\n".join(f"{i + 1}. {r['answer'] or '(no answer)'}" for i, r in enumerate(results))
    event["latency_s"] = round(time.perf_counter() - started, 3)
    return {"answer": answer, "trace": [event],
            "summary": _summary(results, overhead + [event], res.roster)}
