"""synthesize: fuse the subtask answers into one reply; a single subtask passes through unchanged.

The synthesis runs after every subtask branch, so it may spend what the plan and the branches did not:
``budget_usd - plan - sum(branches)`` (fusiongraph/budget.py). Its worst case is computed from the actual
prompt (token bound, max_tokens out); if that does not fit, the answers are joined in order without a model
call, and the trace says so. The summary reports the run's actual spend by kind of call (`spent_usd`).
"""

from __future__ import annotations

import time

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langgraph.runtime import Runtime

from fusiongraph import privacy as pv
from fusiongraph.budget import PLAN_NODES, Ledger, charge, counter_for, prompt_bound, spent_breakdown
from fusiongraph.context import FusionContext, as_context
from fusiongraph.judging.verifiers import check_output
from fusiongraph.privacy import PrivacyHold
from fusiongraph.prompts import load_prompt
from fusiongraph.records import UNVERIFIED, SubtaskResult, Summary, TraceEvent, new_summary
from fusiongraph.resources import get_resources
from fusiongraph.state import FusionState
from fusiongraph.text import TooLong, estimate_tokens, redact


def _summary(
    results: list[SubtaskResult], overhead: list[TraceEvent], roster, budget_usd: float | None = None, local_only=False
) -> Summary:
    """Totals, what the strongest available model alone would have cost on the same tokens, and the
    actual spend by kind of call (`spent_usd`: plan, answers, judges, synthesis, total) against the budget."""
    return new_summary(results, overhead, roster.strongest_alone(results, local_only=local_only), budget_usd)


class OverBudget(Exception):
    """What is left of the budget cannot cover the synthesis call."""


def _joined(results: list[SubtaskResult]) -> str:
    return "\n\n".join(f"{i + 1}. {r['answer'] or '(no answer)'}" for i, r in enumerate(results))


def reply(result: SubtaskResult, request, verified_only: bool) -> dict:
    """The run's reply for a single subtask: its answer or its tool calls, unless they fail the request's
    output checks (fusiongraph.judging.verifiers.check_output: an invalid tool call, JSON that does not parse or
    validate), which are then refused with the reason, never returned as if valid."""
    calls = result.get("tool_calls") or []
    message = AIMessage(content="" if calls else result["answer"], tool_calls=calls)
    failed = next((c for _, c in check_output(request, message) if c.veto), None)
    if failed is not None:
        what = "tool call" if (request or {}).get("tools") else "JSON"
        refusal = (
            f"fusiongraph: no available model gave a valid {what} for this request ({failed.reason}); "
            "the attempts are in fusiongraph.results"
        )
        return {"answer": "", "refusal": refusal, "messages": [AIMessage(content=refusal)]}
    if verified_only and not result.get("verified"):
        return {"answer": UNVERIFIED, "messages": [AIMessage(content=UNVERIFIED)]}
    out = {"answer": message.text, "messages": [message]}
    return out | ({"tool_calls": calls} if calls else {})


def synthesize(state: FusionState, runtime: Runtime[FusionContext]) -> dict:
    ctx = as_context(runtime.context)
    res = get_resources(ctx)
    results = sorted(state.get("results", []), key=lambda r: r["index"])
    overhead = [e for e in state.get("trace", []) if e.get("node") in PLAN_NODES]
    if len(results) == 1:
        summary = _summary(results, overhead, res.roster, ctx.budget_usd, ctx.local_only)
        return reply(results[0], state.get("request"), ctx.require_verified) | {"summary": summary}
    if ctx.require_verified:  # what no judge accepted is not passed off as an answer
        results = [r if r.get("verified") else {**r, "answer": UNVERIFIED} for r in results]
    available, _ = res.roster.availability(ctx.local_only)
    model_id = res.roster.helper(available, ctx.planner_model, ctx.budget_usd)
    parts = "\n\n".join(
        load_prompt("synthesize_part").format(number=i + 1, subtask=r["subtask"], answer=r["answer"] or "(no answer)")
        for i, r in enumerate(results)
    )
    request = load_prompt("synthesize_request").format(query=state.get("standalone") or state.get("query"), parts=parts)
    # sensitive values in the query or the answers: a trusted synthesiser, the values masked, or a plain join
    guard = pv.guard_helper(res, ctx, available, model_id, request)
    model_id, prompt, placeholders = guard.model_id, guard.prompt, guard.placeholders
    event: dict = {"node": "synthesize"} | ({"privacy": guard.event} if guard.event else {})
    spec = res.roster[model_id]
    event["model"] = model_id
    started = time.perf_counter()
    spent = spent_breakdown(results, overhead)["total"]
    ledger = Ledger.for_query(ctx.budget_usd, spent_usd=spent)
    try:
        if guard.hold:
            raise PrivacyHold("the answers hold sensitive values and no trusted synthesiser is available")
        model = res.roster.chat_model(model_id, ctx.max_tokens, ctx.request_timeout_s)
        room = spec.context - ctx.max_tokens - 200
        if getattr(model, "count_tokens", estimate_tokens)(request) > room:
            # a cut prompt would fuse part of the answers (or echo the cut): join them all instead
            raise TooLong(f"the answers do not fit {model_id}'s context of {spec.context} tokens")
        messages = [SystemMessage(load_prompt("synthesize")), HumanMessage(prompt)]
        bound = prompt_bound(messages, counter_for(model))
        event["reserved_usd"] = spec.cost(bound, ctx.max_tokens)
        if not ledger.covers(event["reserved_usd"]):
            raise OverBudget(
                f"the synthesis could cost up to ${event['reserved_usd']:.6f}; ${max(ledger.left_usd, 0.0):.6f} "
                f"of the ${ctx.budget_usd:.6f} budget is left"
            )
        message = model.with_config(run_name="synthesize", tags=["synthesize"]).invoke(messages)
        event.update(charge(spec, message, prompt, bound, ctx.max_tokens))
        answer = pv.restore(message.text.strip(), placeholders)
        if not answer:
            raise ValueError("the synthesiser returned an empty reply")
    except OverBudget as exc:
        event["fallback"] = f"budget: {exc} -> the answers are joined in order without a model call"
        answer = _joined(results)
    except (TooLong, PrivacyHold) as exc:
        kind = "context" if isinstance(exc, TooLong) else "privacy"
        event["fallback"] = f"{kind}: {exc} -> the answers are joined in order without a model call"
        answer = _joined(results)
    except Exception as exc:
        event["fallback"] = (
            redact(f"{type(exc).__name__}: {exc}", res.roster.secrets())[:300] + " -> the answers are joined in order"
        )
        answer = _joined(results)
    event["latency_s"] = round(time.perf_counter() - started, 3)
    return {
        "answer": answer,
        "messages": [AIMessage(content=answer)],
        "trace": [event],
        "summary": _summary(results, overhead + [event], res.roster, ctx.budget_usd, ctx.local_only),
    }
