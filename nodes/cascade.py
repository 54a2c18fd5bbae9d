"""cascade: cheapest promising model first; escalate while the judges say the answer is not good enough.

Never spends past the subtask's share of the query budget: before each call the worst-case cost
(full prompt, max_tokens out, plus the judge) is checked, and the cascade stops with the best answer so far.
"""

from __future__ import annotations

import time

import httpx
import openai
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langgraph.func import task
from langgraph.runtime import Runtime
from langgraph.types import RetryPolicy

from fusiongraph.context import FusionContext, as_context
from fusiongraph.judges import aggregate, llm_verdict, rule_verdict, self_verdict
from fusiongraph.resources import Resources, get_resources
from fusiongraph.state import SubtaskState
from fusiongraph.text import estimate_tokens, redact, trim_to_tokens
from prompts import load_prompt

JUDGE_OUTPUT_TOKENS = 60
MAX_RETRY_AFTER_S = 10.0


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: rate limits (honouring a short Retry-After), server errors, timeouts. A refused
    connection, a 4xx or a malformed response is not: the cascade moves on at once."""
    if isinstance(exc, openai.RateLimitError):
        retry_after = exc.response.headers.get("retry-after") if exc.response is not None else None
        try:
            wait = float(retry_after) if retry_after is not None else 0.0
        except ValueError:
            wait = 0.0
        if wait > MAX_RETRY_AFTER_S:
            return False
        time.sleep(wait)  # then RetryPolicy's own (short) backoff
        return True
    return isinstance(exc, (openai.InternalServerError, openai.APITimeoutError, httpx.TimeoutException,
                            TimeoutError))


TRANSIENT_RETRY = RetryPolicy(max_attempts=3, initial_interval=0.2, backoff_factor=2.0, max_interval=4.0,
                              jitter=True, retry_on=is_transient)


@task(retry_policy=TRANSIENT_RETRY)
def call_model(model: BaseChatModel, messages: list) -> AIMessage:
    """One model call, retried by LangGraph only on transient errors."""
    return model.invoke(messages)


def _messages(subtask: str, guides: list[dict]) -> list:
    """System prompt, worked examples from stronger models (RAR guides), then the (self-contained) subtask."""
    messages: list = [SystemMessage(load_prompt("answer"))]
    for g in guides:
        messages += [HumanMessage(g["subtask"]), AIMessage(g["answer"])]
    return messages + [HumanMessage(subtask)]


def _guides_for(model: str, guides: list[dict], res: Resources, limit: int) -> list[dict]:
    """Accepted answers of costlier models on similar subtasks: worked examples for a cheaper model."""
    if limit <= 0:
        return []
    order = res.roster.by_cost()
    rank = order.index(model)
    return [g for g in guides if g["model"] in order and order.index(g["model"]) > rank][:limit]


def cascade(state: SubtaskState, runtime: Runtime[FusionContext]) -> dict:
    ctx = as_context(runtime.context)
    res = get_resources(ctx)
    secrets = res.roster.secrets()
    share = ctx.budget_usd / max(state.get("n_subtasks", 1), 1)
    available, _ = res.roster.availability(ctx.local_only)
    judge_id = res.roster.helper(available, ctx.judge_model) if ctx.llm_judge else None
    judge_spec = res.roster[judge_id] if judge_id else None
    spent = 0.0
    attempts: list[dict] = []
    trace: list[dict] = []
    status = None
    for model_id in state.get("candidates", []):
        spec = res.roster[model_id]
        guides = _guides_for(model_id, state.get("guides", []), res, ctx.guides)
        model = res.roster.chat_model(model_id, ctx.max_tokens, ctx.request_timeout_s)
        counter = getattr(model, "count_tokens", estimate_tokens)
        room = spec.context - ctx.max_tokens - counter(load_prompt("answer")) - 64
        if counter(state["subtask"]) + sum(counter(g["subtask"] + g["answer"]) for g in guides) > room:
            guides = []  # the task itself comes before the worked examples
        subtask, removed = trim_to_tokens(state["subtask"], room, counter)
        messages = _messages(subtask, guides)
        prompt_text = "\n".join(m.text for m in messages)
        worst = spec.cost(estimate_tokens(prompt_text), ctx.max_tokens)
        if judge_spec is not None:
            worst += judge_spec.cost(estimate_tokens(prompt_text) + ctx.max_tokens + 200, JUDGE_OUTPUT_TOKENS)
        if spent + worst > share + 1e-12:
            status = "budget_exhausted"
            trace.append({"node": "cascade", "model": model_id, "event": "budget stop",
                          "detail": f"a call could cost up to ${worst:.6f}; ${share - spent:.6f} of this "
                                    f"subtask's ${share:.6f} share is left"})
            break
        attempt: dict = {"model": model_id, "guides": [g["subtask"][:80] for g in guides]}
        if removed:
            attempt["trimmed_chars"] = removed
        started = time.perf_counter()
        try:
            message = call_model(model.with_config(run_name=f"answer:{model_id}", tags=["answer", model_id]),
                                 messages).result()
        except Exception as exc:  # connection refused, 4xx/5xx, timeout: record it and move on
            attempt.update(error=redact(f"{type(exc).__name__}: {exc}", secrets)[:500],
                           latency_s=round(time.perf_counter() - started, 3), confidence=0.0, accepted=False,
                           tokens_in=0, tokens_out=0, cost_usd=0.0, verdicts=[])
            attempts.append(attempt)
            continue
        attempt["latency_s"] = round(time.perf_counter() - started, 3)
        attempt.update(spec.usage(message, prompt_text))
        answer = message.text
        verdicts = [rule_verdict(state["subtask"], answer, message.response_metadata.get("finish_reason"),
                                 state.get("task_class")), self_verdict(message)]
        judge_usage = {"tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0}
        if judge_spec is not None and not verdicts[0].veto:
            judge_model = res.roster.chat_model(judge_id, ctx.max_tokens, ctx.request_timeout_s)
            verdict, raw = llm_verdict(judge_model.with_config(run_name="judge", tags=["judge"]), subtask, answer)
            verdict.detail = redact(verdict.detail, secrets)
            if raw is not None:
                judge_usage = judge_spec.usage(raw, subtask + answer)
            verdicts.append(verdict)
        confidence = aggregate(verdicts)
        spent += attempt["cost_usd"] + judge_usage["cost_usd"]
        attempt.update(answer=answer, confidence=round(confidence, 4), judge_cost_usd=judge_usage["cost_usd"],
                       judge_tokens_in=judge_usage["tokens_in"], judge_tokens_out=judge_usage["tokens_out"],
                       accepted=confidence >= ctx.quality_threshold, verdicts=[v.as_dict() for v in verdicts],
                       finish_reason=message.response_metadata.get("finish_reason"))
        attempts.append(attempt)
        if attempt["accepted"]:
            status = "accepted"
            break
    answered = [a for a in attempts if a.get("answer")]
    best = max(answered, key=lambda a: a["confidence"], default=None)
    if status != "accepted":
        status = status or ("best_effort" if best else "failed")
        if best is None:
            trace.append({"node": "cascade", "event": "no answer",
                          "detail": "every model failed or none could be afforded"})
    return {"attempts": attempts, "status": status, "answered_by": best["model"] if best else None,
            "answer": best["answer"] if best else "", "trace": trace}
