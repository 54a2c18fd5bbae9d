"""standalone: the conversation's last user message, made to stand alone for classification, routing and
decomposition; and the request's tools / response_format, validated.

The input is a query (it becomes the conversation's next user message) or LangChain messages (a thread
keeps them between runs). The last user message is what is answered; the messages before it go to the
answering models as history, never to be answered again. When there are no earlier turns, or the last
message reads as a request of its own (:func:`fusiongraph.conversation.depends_on_history`), it is used
unchanged with no model call. Otherwise the planner rewrites it (prompts/standalone.md); a rewrite that is
junk, ungrounded in the conversation or drops what the message asks falls back to the message itself,
and the trace says so. The rewrite call is charged to the budget like the plan (fusiongraph/budget.py):
made only if the budget covers its worst case plus the cheapest worst-case answer.
"""

from __future__ import annotations

import time

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.runtime import Runtime
from langgraph.types import Overwrite

from fusiongraph import privacy as pv
from fusiongraph.attempt import cheapest_answer_usd
from fusiongraph.budget import Ledger, charge, counter_for, prompt_bound
from fusiongraph.context import FusionContext, as_context
from fusiongraph.conversation import (
    depends_on_history,
    earlier_turns,
    first_part,
    has_images,
    last_text,
    make_request,
    rewrite_problem,
    split_conversation,
)
from fusiongraph.prompts import load_prompt
from fusiongraph.resources import get_resources
from fusiongraph.state import FusionState
from fusiongraph.text import QueryError, clean_query, redact

REWRITE_MAX_TOKENS = 96
TURN_CHARS = 600  # each earlier turn shown to the rewriter is cut to this
TURNS_SHOWN = 6  # the most recent earlier turns shown to the rewriter


def _turns(history) -> str:
    shown = earlier_turns(history)[-TURNS_SHOWN:]
    return "\n".join(f"{'User' if m.type == 'human' else 'Assistant'}: {m.text[:TURN_CHARS]}" for m in shown)


def rewrite(res, ctx: FusionContext, text: str, history, request, event: dict) -> str:
    """The planner's standalone rewrite of `text`, or `text` itself when the budget cannot cover the call,
    the call fails or the rewrite does not pass :func:`fusiongraph.conversation.rewrite_problem`."""
    available, _ = res.roster.availability(ctx.local_only)
    model_id = res.roster.helper(available, ctx.planner_model, ctx.budget_usd)
    if model_id is None:
        event["rewrite"] = "skipped: no model is available"
        return text
    spec = res.roster[model_id]
    event["model"] = model_id
    started = time.perf_counter()
    try:
        # sensitive values in the conversation: a trusted planner, or the values masked, or no rewrite
        asked = load_prompt("standalone_request").format(turns=_turns(history), last=text)
        guard = pv.guard_helper(res, ctx, available, model_id, asked)
        if guard.event:
            event["privacy"] = guard.event
        if guard.hold:
            event["rewrite"] = "skipped: privacy: the conversation holds sensitive values and no trusted planner"
            return text
        model_id, spec = guard.model_id, res.roster[guard.model_id]
        event["model"] = model_id
        model = res.roster.chat_model(model_id, REWRITE_MAX_TOKENS, ctx.request_timeout_s)
        messages = [SystemMessage(load_prompt("standalone")), HumanMessage(guard.prompt)]
        bound = prompt_bound(messages, counter_for(model))
        event["reserved_usd"] = spec.cost(bound, REWRITE_MAX_TOKENS)
        after = cheapest_answer_usd(res, ctx, text, history, request)
        if not Ledger.for_query(ctx.budget_usd).covers(event["reserved_usd"], keep_usd=after):
            event["rewrite"] = (
                f"skipped: budget: the rewrite could cost up to ${event['reserved_usd']:.6f} and the cheapest "
                f"answer ${after:.6f}; the budget is ${ctx.budget_usd:.6f}"
            )
            return text
        message = model.with_config(run_name="standalone", tags=["standalone"]).invoke(messages)
        event.update(charge(spec, message, messages[-1].text, bound, REWRITE_MAX_TOKENS))
        candidate = first_part(pv.restore(message.text, guard.placeholders), text)
    except Exception as exc:  # noqa: BLE001 - the message itself is a usable query
        event["rewrite"] = "fallback: " + redact(f"{type(exc).__name__}: {exc}", res.roster.secrets())[:300]
        return text
    finally:
        event["latency_s"] = round(time.perf_counter() - started, 3)
    problem = rewrite_problem(candidate, text, history)
    if problem:
        event["rewrite"] = f"fallback: {problem} -> the last message is used as it is"
        event["rejected_rewrite"] = candidate[:300]
        return text
    event["rewrite"] = "rewritten" if candidate != text else "rewritten (unchanged)"
    return clean_query(candidate)


def standalone(state: FusionState, runtime: Runtime[FusionContext]) -> dict:
    ctx = as_context(runtime.context)
    conversation = list(state.get("messages") or [])
    new: list = []
    if state.get("query") is not None or not conversation:  # a query is the conversation's next user message
        new = [HumanMessage(clean_query(state.get("query")))]
        conversation += new
    history, last, tail = split_conversation(conversation)
    text = last_text(last)
    try:
        request = make_request(
            state.get("tools"),
            state.get("tool_choice"),
            state.get("parallel_tool_calls"),
            state.get("response_format"),
            images=any(has_images(m) for m in conversation),  # images anywhere go only to vision models
        )
    except ValueError as exc:
        raise QueryError(str(exc)) from None
    res = get_resources(ctx)
    res.roster.check_capable(ctx.local_only, request["requires"])  # CapabilityError: the client's error
    event: dict = {"node": "standalone", "last_message": text[:300], "earlier_turns": len(earlier_turns(history))}
    if not earlier_turns(history):
        event["rewrite"] = "skipped: no earlier turns"
        query = text
    elif not ctx.rewrite_standalone:
        event["rewrite"] = "skipped: the rewrite_standalone knob is off"
        query = text
    elif not depends_on_history(text):
        event["rewrite"] = "skipped: the last message reads as a request of its own"
        query = text
    else:
        query = rewrite(res, ctx, text, history, request, event)
    event["standalone"] = query[:300]
    return {
        "query": None,  # consumed: a thread's next run starts from its messages or a new query
        "tools": None,
        "tool_choice": None,
        "parallel_tool_calls": None,
        "response_format": None,
        "messages": new,
        "request": request,
        "standalone": query,
        "history": history,
        "tail": tail,
        "last_message": last,
        "results": Overwrite([]),  # a thread's earlier runs' results and trace are not this run's
        "trace": Overwrite([event]),
    }
