"""One judged attempt of one model on one subtask: shared by the cascade node and `fusiongraph calibrate`.

Prepares the prompt (guides as worked examples, trimmed to the model's context, worst-case cost), calls
the model through the caller's `invoke` (the cascade's retried LangGraph task, or a plain call), and
judges the answer (rules, the model's own confidence, the LLM judge).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import httpx
import openai
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from fusiongraph.context import FusionContext
from fusiongraph.judges import aggregate, llm_verdict, rule_verdict, self_verdict
from fusiongraph.resources import Resources
from fusiongraph.text import estimate_tokens, redact, trim_to_tokens
from prompts import load_prompt
from store import Outcome

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


def answer_messages(subtask: str, guides: list[dict]) -> list:
    """System prompt, worked examples from stronger models (RAR guides), then the (self-contained) subtask."""
    messages: list = [SystemMessage(load_prompt("answer"))]
    for g in guides:
        messages += [HumanMessage(g["subtask"]), AIMessage(g["answer"])]
    return messages + [HumanMessage(subtask)]


def guides_for(model: str, guides: list[dict], res: Resources, limit: int) -> list[dict]:
    """Accepted answers of costlier models on similar subtasks: worked examples for a cheaper model."""
    if limit <= 0:
        return []
    order = res.roster.by_cost()
    rank = order.index(model)
    return [g for g in guides if g["model"] in order and order.index(g["model"]) > rank][:limit]


@dataclass
class PreparedCall:
    model_id: str
    messages: list
    prompt_text: str
    subtask: str  # as sent (trimmed if it had to be)
    trimmed_chars: int
    guides: list[dict]
    worst_cost_usd: float  # the call at max_tokens plus its LLM judge


def prepare_call(res: Resources, ctx: FusionContext, model_id: str, subtask: str, guides: list[dict],
                 judge_id: str | None) -> PreparedCall:
    spec = res.roster[model_id]
    guides = guides_for(model_id, guides, res, ctx.guides)
    model = res.roster.chat_model(model_id, ctx.max_tokens, ctx.request_timeout_s)
    counter = getattr(model, "count_tokens", estimate_tokens)
    room = spec.context - ctx.max_tokens - counter(load_prompt("answer")) - 64
    if counter(subtask) + sum(counter(g["subtask"] + g["answer"]) for g in guides) > room:
        guides = []  # the task itself comes before the worked examples
    sent, removed = trim_to_tokens(subtask, room, counter)
    messages = answer_messages(sent, guides)
    prompt_text = "\n".join(m.text for m in messages)
    worst = spec.cost(estimate_tokens(prompt_text), ctx.max_tokens)
    if judge_id is not None:
        worst += res.roster[judge_id].cost(estimate_tokens(prompt_text) + ctx.max_tokens + 200, JUDGE_OUTPUT_TOKENS)
    return PreparedCall(model_id, messages, prompt_text, sent, removed, guides, worst)


def run_attempt(res: Resources, ctx: FusionContext, call: PreparedCall, task: str, task_class: str | None,
                judge_id: str | None, invoke: Callable) -> dict:
    """Call and judge; a failed call (refused, 4xx/5xx, timeout after retries) is an attempt with `error`."""
    secrets = res.roster.secrets()
    spec = res.roster[call.model_id]
    model = res.roster.chat_model(call.model_id, ctx.max_tokens, ctx.request_timeout_s)
    attempt: dict = {"model": call.model_id, "guides": [g["subtask"][:80] for g in call.guides]}
    if call.trimmed_chars:
        attempt["trimmed_chars"] = call.trimmed_chars
    started = time.perf_counter()
    try:
        message = invoke(model.with_config(run_name=f"answer:{call.model_id}", tags=["answer", call.model_id]),
                         call.messages)
    except Exception as exc:
        attempt.update(error=redact(f"{type(exc).__name__}: {exc}", secrets)[:500],
                       latency_s=round(time.perf_counter() - started, 3), confidence=0.0, accepted=False,
                       tokens_in=0, tokens_out=0, cost_usd=0.0, verdicts=[])
        return attempt
    attempt["latency_s"] = round(time.perf_counter() - started, 3)
    attempt.update(spec.usage(message, call.prompt_text))
    answer = message.text
    finish = message.response_metadata.get("finish_reason")
    verdicts = [rule_verdict(task, answer, finish, task_class), self_verdict(message)]
    judge_usage = {"tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0}
    if judge_id is not None and not verdicts[0].veto:
        judge_model = res.roster.chat_model(judge_id, ctx.max_tokens, ctx.request_timeout_s)
        verdict, raw = llm_verdict(judge_model.with_config(run_name="judge", tags=["judge"]), call.subtask, answer)
        verdict.detail = redact(verdict.detail, secrets)
        if raw is not None:
            judge_usage = res.roster[judge_id].usage(raw, call.subtask + answer)
        verdicts.append(verdict)
    confidence = aggregate(verdicts)
    attempt.update(answer=answer, confidence=round(confidence, 4), judge_cost_usd=judge_usage["cost_usd"],
                   judge_tokens_in=judge_usage["tokens_in"], judge_tokens_out=judge_usage["tokens_out"],
                   accepted=confidence >= ctx.quality_threshold, verdicts=[v.as_dict() for v in verdicts],
                   finish_reason=finish)
    return attempt


def outcomes_from_attempts(attempts: list[dict], run_id: str | None, source: str = "live") -> list[Outcome]:
    """What the outcome store keeps of each attempt (the judged confidence is the success)."""
    return [Outcome(model=a["model"], success=float(a.get("confidence", 0.0)), accepted=bool(a.get("accepted")),
                    judges={v["judge"]: v["score"] for v in a.get("verdicts", [])}, answer=a.get("answer"),
                    error=a.get("error"), tokens_in=a.get("tokens_in", 0), tokens_out=a.get("tokens_out", 0),
                    cost_usd=a.get("cost_usd", 0.0) + a.get("judge_cost_usd", 0.0),
                    latency_s=a.get("latency_s", 0.0), source=source, run_id=run_id)
            for a in attempts]


def invoke_with_retries(model, messages, attempts: int = 3, first_wait_s: float = 0.2):
    """A plain call with the cascade's retry rule, for use outside a graph run (calibration)."""
    for i in range(attempts):
        try:
            return model.invoke(messages)
        except Exception as exc:
            if i == attempts - 1 or not is_transient(exc):
                raise
            time.sleep(first_wait_s * 2 ** i)
