"""cascade: cheapest promising model first; escalate while the judges say the answer is not good enough.

Never spends past the subtask's share of the query budget: before each call the worst-case cost
(fusiongraph/attempt.py: the prompt's token bound, max_tokens out, plus the judge's bound and its
max_tokens) is checked against what the share has left, and the cascade stops with the best answer so far.
The calls of one subtask run one after another, so the subtask's actual spend stays within its share.

The share is fixed by decompose (nodes/decompose.py, `fusiongraph.budget.shares`) and reaches the branch as
a "budget" event at the head of its trace; the branches run in parallel and never take from each other.
"""

from __future__ import annotations

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage
from langgraph.func import task
from langgraph.runtime import Runtime
from langgraph.types import RetryPolicy

from fusiongraph import privacy as pv
from fusiongraph.attempt import is_transient, prepare_call, run_attempt
from fusiongraph.budget import Ledger, branch_share
from fusiongraph.context import FusionContext, as_context
from fusiongraph.judging.verifiers import tool_result_answer
from fusiongraph.records import Attempt, Status, TraceEvent, attempt_cost
from fusiongraph.resources import get_resources
from fusiongraph.state import SubtaskState

TRANSIENT_RETRY = RetryPolicy(
    max_attempts=3, initial_interval=0.2, backoff_factor=2.0, max_interval=4.0, jitter=True, retry_on=is_transient
)


@task(retry_policy=TRANSIENT_RETRY)
def call_model(model: BaseChatModel, messages: list) -> AIMessage:
    """One model call, retried by LangGraph only on transient errors."""
    return model.invoke(messages)


def cascade(state: SubtaskState, runtime: Runtime[FusionContext]) -> dict:
    ctx = as_context(runtime.context)
    res = get_resources(ctx)
    # the task class's answer length (never above the run's max_tokens)
    ctx = ctx.replace(
        max_tokens=state.get("answer_tokens") or res.taxonomy.answer_tokens(state.get("task_class"), ctx.max_tokens),
    )
    share = branch_share(state, ctx)
    available, _ = res.roster.availability(ctx.local_only)
    sensitive = state.get("sensitive") or []
    placeholders = state.get("placeholders") or {}
    # the LLM judge reads the subtask and the answer: with sensitive values it must be a trusted model
    judge_id = None
    if ctx.llm_judge:
        trusted = [m for m in available if pv.is_trusted(res.roster[m])] if sensitive and ctx.privacy != "off" else None
        judge_id = res.roster.helper(available if trusted is None else trusted, ctx.judge_model, ctx.budget_usd)
    ledger = Ledger(share)
    attempts: list[Attempt] = []
    trace: list[TraceEvent] = []
    status: Status | None = None
    allowed, _ = pv.allowed(res, ctx, sensitive, list(state.get("candidates", [])))
    history, tail = state.get("history") or (), state.get("tail") or ()
    masked_history, masked_tail = pv.mask_messages(history, placeholders), pv.mask_messages(tail, placeholders)
    for model_id in state.get("candidates", []):
        if model_id not in allowed:  # never reached through the plan, but never sent either way
            continue
        # under privacy="redact" an untrusted model answers the masked subtask; its answer gets the values back
        masked = bool(sensitive) and ctx.privacy == "redact" and not pv.is_trusted(res.roster[model_id])
        text = state["masked"] if masked else state["subtask"]
        call = prepare_call(
            res,
            ctx,
            model_id,
            text,
            state.get("guides", []),
            judge_id,
            masked_history if masked else history,
            masked_tail if masked else tail,
            state.get("message"),
            state.get("request"),
            task_class=state.get("task_class"),
        )
        if call.history_dropped:
            trace.append(
                {
                    "node": "cascade",
                    "model": model_id,
                    "event": "history trimmed",
                    "detail": f"{call.history_dropped} earlier message(s) left out to fit the context",
                }
            )
        if call.trimmed_chars:  # a truncated subtask would be answered as something else: never sent
            trace.append(
                {
                    "node": "cascade",
                    "model": model_id,
                    "event": "context skip",
                    "detail": f"the subtask does not fit its context of {res.roster[model_id].context} tokens "
                    f"({call.trimmed_chars} characters would have to be cut)",
                }
            )
            continue
        if not ledger.covers(call.worst_cost_usd):
            status = "budget_exhausted"
            trace.append(
                {
                    "node": "cascade",
                    "model": model_id,
                    "event": "budget stop",
                    "detail": f"a call could cost up to ${call.worst_cost_usd:.6f}; ${ledger.left_usd:.6f} of "
                    f"this subtask's ${share:.6f} share is left",
                }
            )
            break
        attempt = run_attempt(
            res,
            ctx,
            call,
            text,
            state.get("task_class"),
            judge_id,
            lambda model, messages: call_model(model, messages).result(),
            earlier=attempts,
        )
        if masked and attempt.get("answer"):
            attempt["answer"] = pv.restore(attempt["answer"], placeholders)
            trace.append({"node": "cascade", "model": model_id, "event": "redacted", "placeholders": len(placeholders)})
        attempts.append(attempt)
        ledger.charge(attempt_cost(attempt))
        if attempt["accepted"]:
            status = "accepted"
            break
    answered = [a for a in attempts if a.get("answer")]
    best = max(answered, key=lambda a: a["confidence"], default=None)
    if status != "accepted" and status is None and any(s.get("kind") == "budget" for s in state.get("skipped", [])):
        status = "budget_exhausted"  # the route left out models whose predicted cost would pass the budget
        trace.append(
            {
                "node": "cascade",
                "event": "budget stop",
                "detail": "no answer was accepted; costlier models were left out of the plan by the budget",
            }
        )
    if status != "accepted":
        status = status or ("best_effort" if best else "failed")
        if best is None:
            trace.append(
                {"node": "cascade", "event": "no answer", "detail": "every model failed or none could be afforded"}
            )
    answer, tool_calls = (best["answer"], best.get("tool_calls", [])) if best else ("", [])
    if status != "accepted" and best is not None and repeated_call(best):
        answer, tool_calls = tool_result_answer([*history, *tail]) or answer, []
        trace.append(
            {
                "node": "cascade",
                "event": "tool result used",
                "detail": "no model used the tool result (each repeated the call): answered with the result itself",
            }
        )
    return {
        "attempts": attempts,
        "status": status,
        "answered_by": best["model"] if best else None,
        "answer": answer,
        "tool_calls": tool_calls,
        "trace": trace,
    }


def repeated_call(attempt: dict) -> bool:
    """The attempt repeated the tool call its tool result had answered (the rules judge's veto)."""
    return any(v.get("veto") and v.get("tool_loop") for v in attempt.get("verdicts", []))
