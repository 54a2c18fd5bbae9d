"""One judged attempt of one model on one subtask: shared by the cascade node and `fusiongraph calibrate`.

Prepares the prompt (guides as worked examples, trimmed to the model's context, worst-case cost), calls
the model through the caller's `invoke` (the cascade's retried LangGraph task, or a plain call), and
judges the answer (rules, the model's own confidence, the LLM judge).

The worst case (`PreparedCall.worst_cost_usd`) is a true upper bound of what the attempt can cost (see
fusiongraph/budget.py): the answer's prompt bound at the model's input price plus `max_tokens` out, and
the judge's prompt bound plus `JUDGE_MAX_TOKENS` out. The judge's prompt contains the answer, unknown
before the call: the reservation allows `judge_answer_tokens` for it, and `run_attempt` trims the answer
the judge reads to that allowance, so the judge can never cost more than was reserved.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import httpx
import openai
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from fusiongraph.budget import charge, counter_for, prompt_bound, token_bound
from fusiongraph.context import FusionContext
from fusiongraph.judges import Verdict, aggregate, llm_verdict, rule_verdict, self_verdict
from fusiongraph.resources import Resources
from fusiongraph.state import JudgeVerdict
from fusiongraph.text import estimate_tokens, fit_to_tokens, redact, trim_to_tokens
from prompts import load_prompt
from store import Outcome

JUDGE_MAX_TOKENS = 128  # the judge's max_tokens: its JSON verdict (a score and one sentence) fits easily
JUDGE_OUTPUT_TOKENS = JUDGE_MAX_TOKENS  # the old name
ANSWER_TOKENS_PER_TOKEN = 6  # a reader of an answer (the judge) may count 6 of its tokens (bytes, without a
# tokenizer) per answer token: English averages ~4 bytes a token, CJK ~3-6; a longer answer is trimmed for
# the judge only
JUDGE_FRAMING = "Task:\n{task}\n\nCandidate answer:\n"  # judges.llm_verdict's user message, without the answer
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
    worst_cost_usd: float  # the call at max_tokens plus its LLM judge: never exceeded (see the module doc)
    answer_worst_usd: float = 0.0
    judge_worst_usd: float = 0.0
    prompt_bound: int = 0  # most input tokens of the answer call
    judge_answer_tokens: int = 0  # the judge reads at most this many (judge-counted) tokens of the answer


def judge_bound(res: Resources, ctx: FusionContext, judge_id: str, task: str,
                count: Callable | None = None) -> tuple[int, int, Callable]:
    """(answer allowance, judge prompt bound with that allowance, the counter) for one judged task; the
    counter is the judge's tokenizer, else the byte bound."""
    if count is None:
        count = counter_for(res.roster.chat_model(judge_id, JUDGE_MAX_TOKENS, ctx.request_timeout_s))
    fixed = prompt_bound([load_prompt("judge"), JUDGE_FRAMING.format(task=task)], count, schema=JudgeVerdict)
    room = res.roster[judge_id].context - JUDGE_MAX_TOKENS - fixed
    allowance = max(min(ANSWER_TOKENS_PER_TOKEN * ctx.max_tokens + 32, room), 0)
    return allowance, fixed + allowance, count


def judge_worst_cost(res: Resources, ctx: FusionContext, judge_id: str | None, task: str) -> float:
    """Most USD the LLM judge of an answer to `task` can cost (0 without a judge)."""
    if judge_id is None:
        return 0.0
    _, bound, _ = judge_bound(res, ctx, judge_id, task)
    return res.roster[judge_id].cost(bound, JUDGE_MAX_TOKENS)


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
    bound = prompt_bound(messages, counter_for(model))
    answer_worst = spec.cost(bound, ctx.max_tokens)
    allowance, judge_worst = 0, 0.0
    if judge_id is not None:
        allowance, judge_in, _ = judge_bound(res, ctx, judge_id, sent)
        judge_worst = res.roster[judge_id].cost(judge_in, JUDGE_MAX_TOKENS)
    return PreparedCall(model_id, messages, prompt_text, sent, removed, guides, answer_worst + judge_worst,
                        answer_worst, judge_worst, bound, allowance)


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
    attempt.update(charge(spec, message, call.prompt_text, call.prompt_bound or token_bound(call.prompt_text),
                          ctx.max_tokens))
    attempt["reserved_usd"] = call.worst_cost_usd
    answer = message.text
    finish = message.response_metadata.get("finish_reason")
    verdicts = [rule_verdict(task, answer, finish, res.taxonomy.classes.get(task_class, task_class)), self_verdict(message)]
    judge_usage = {"tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0}
    if judge_id is not None and not verdicts[0].veto:
        # the judge's max_tokens is JUDGE_MAX_TOKENS, and it reads at most the reserved allowance of the answer
        judge_model = res.roster.chat_model(judge_id, JUDGE_MAX_TOKENS, ctx.request_timeout_s)
        allowance, judge_in, count = judge_bound(res, ctx, judge_id, call.subtask)
        if call.judge_worst_usd and res.roster[judge_id].cost(judge_in, JUDGE_MAX_TOKENS) > call.judge_worst_usd:
            verdict, raw = Verdict("llm", 0.0, False, "judge skipped: it could cost more than was reserved; "
                                                      "counted as 0"), None
        else:
            judged, cut = fit_to_tokens(answer, min(allowance, call.judge_answer_tokens or allowance), count)
            if cut:
                attempt["judge_trimmed_chars"] = cut
            verdict, raw = llm_verdict(judge_model.with_config(run_name="judge", tags=["judge"]), call.subtask,
                                       judged)
        verdict.detail = redact(verdict.detail, secrets)
        if raw is not None:
            judge_usage = charge(res.roster[judge_id], raw, call.subtask + answer, judge_in, JUDGE_MAX_TOKENS)
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
