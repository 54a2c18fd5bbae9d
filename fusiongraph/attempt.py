"""One judged attempt of one model on one subtask: shared by the cascade node and `fusiongraph calibrate`.

Prepares the prompt (guides as worked examples, trimmed to the model's context, worst-case cost), calls
the model through the caller's `invoke` (the cascade's retried LangGraph task, or a plain call), and
judges the answer with every registered judge (:data:`fusiongraph.judging.base.JUDGES`: rules, the model's own
confidence, the LLM judge), and builds the :class:`fusiongraph.records.Attempt`.

The worst case (`PreparedCall.worst_cost_usd`) is a true upper bound of what the attempt can cost (see
fusiongraph/budget.py): the answer's prompt bound at the model's input price plus `max_tokens` out, plus
what each judge reserves (`Judge.reserve`; the LLM judge: its prompt bound plus `JUDGE_MAX_TOKENS` out).
The judge's prompt contains the answer, unknown before the call: the reservation allows an answer
allowance for it, and the LLM judge trims the answer it reads to that allowance, so it can never cost more
than was reserved (fusiongraph/judging/kinds/llm.py).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from fusiongraph.budget import PER_MESSAGE_TOKENS, charge, counter_for, message_text, prompt_bound, token_bound
from fusiongraph.context import FusionContext
from fusiongraph.judging.acceptance import current_fit, decide, without_say
from fusiongraph.judging.base import JUDGES, NO_RESERVATION, AnswerCall, Judging, Reservation, Verdict
from fusiongraph.judging.kinds.key_confidence import token_entries
from fusiongraph.judging.kinds.llm import JUDGE_MAX_TOKENS, judge_bound
from fusiongraph.models.kinds import is_transient  # RetryPolicy retry_on: each model kind names its transient errors
from fusiongraph.prompts import load_prompt
from fusiongraph.records import Attempt, attempt_cost, attempt_scores, new_attempt
from fusiongraph.resources import Resources
from fusiongraph.store import Outcome
from fusiongraph.text import estimate_tokens, redact, trim_to_tokens


def answer_messages(
    subtask: str,
    guides: list[dict],
    history: Sequence[BaseMessage] = (),
    tail: Sequence[BaseMessage] = (),
    message: BaseMessage | None = None,
    system: str = "answer",
) -> list:
    """System prompt (prompts/<system>.md: the task class's), worked examples from stronger models (RAR guides), the conversation's earlier
    messages (`history`: system and earlier turns), the (self-contained) subtask, or the user's own
    `message` when it is sent whole (image parts), then `tail` (the tool calls and results after it)."""
    messages: list = [SystemMessage(load_prompt(system))]
    for g in guides:
        messages += [HumanMessage(g["subtask"]), AIMessage(g["answer"])]
    return messages + list(history) + [message if message is not None else HumanMessage(subtask)] + list(tail)


def fit_history(history: Sequence[BaseMessage], room: int, counter) -> tuple[list[BaseMessage], int]:
    """The history that fits in `room` tokens: the oldest non-system turns dropped first (how many: the
    second value). Earlier turns are context; the subtask itself is never dropped for them."""
    kept = list(history)
    dropped = 0

    def size() -> int:
        return sum(counter(message_text(m)) + PER_MESSAGE_TOKENS for m in kept)

    while kept and size() > room:
        i = next((i for i, m in enumerate(kept) if not isinstance(m, SystemMessage)), 0)
        del kept[i]
        dropped += 1
    return kept, dropped


def bind_request(model, request: Mapping | None):
    """The chat model with the request's tools (tool_choice, parallel_tool_calls) and response_format."""
    if not request:
        return model
    if request.get("tools") and request.get("tool_choice") != "none":
        extra = (
            {}
            if request.get("parallel_tool_calls") is None
            else {"parallel_tool_calls": request["parallel_tool_calls"]}
        )
        model = model.bind_tools(request["tools"], tool_choice=request.get("tool_choice") or "auto", **extra)
    fmt = request.get("response_format")
    if fmt and fmt.get("type") in ("json_object", "json_schema"):
        model = model.bind(response_format=fmt)
    return model


def tool_calls_of(message) -> list[dict]:
    """The reply's tool calls as plain dicts (LangChain's form: name, args, id, type)."""
    return [
        {"name": tc["name"], "args": tc.get("args") or {}, "id": tc.get("id"), "type": "tool_call"}
        for tc in getattr(message, "tool_calls", None) or []
    ]


def render_tool_calls(calls: list[dict]) -> str:
    """Tool calls as one readable line each (what judges, the trace and the store see of them)."""
    return "\n".join(f"tool call: {c['name']}({json.dumps(c.get('args'), ensure_ascii=False)})" for c in calls)


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
    worst_cost_usd: float  # the call at max_tokens plus its judges: never exceeded (see the module doc)
    answer_worst_usd: float = 0.0
    judge_worst_usd: float = 0.0  # what the judges reserved together
    prompt_bound: int = 0  # most input tokens of the answer call
    judge_reserved: dict[str, Reservation] = field(default_factory=dict)  # judge name -> its reservation
    request: Mapping[str, Any] | None = None  # the run's tools / response_format (fusiongraph.state.RequestSpec)
    history_dropped: int = 0  # earlier turns left out to fit the model's context
    skip: frozenset[str] = frozenset()  # judges with no say on this subtask's class: neither reserved nor asked

    @property
    def judge_answer_tokens(self) -> int:
        """The LLM judge reads at most this many (judge-counted) tokens of the answer."""
        return self.judge_reserved.get("llm", NO_RESERVATION).answer_tokens


def prepare_call(
    res: Resources,
    ctx: FusionContext,
    model_id: str,
    subtask: str,
    guides: list[dict],
    judge_id: str | None,
    history: Sequence[BaseMessage] = (),
    tail: Sequence[BaseMessage] = (),
    message: BaseMessage | None = None,
    request: Mapping[str, Any] | None = None,
    task_class: str | None = None,
    measure: bool = False,
) -> PreparedCall:
    """The answer call and its judges' reservations. The judges with no say on `task_class` (the calibrated
    acceptance's, fusiongraph/judging/acceptance.py) reserve nothing and are not asked, unless `measure` (judge-eval:
    every judge speaks, to be measured)."""
    spec = res.roster[model_id]
    guides = guides_for(model_id, guides, res, ctx.guides)
    model = res.roster.chat_model(model_id, ctx.max_tokens, ctx.request_timeout_s)
    counter = getattr(model, "count_tokens", estimate_tokens)
    extra = sum(counter(message_text(m)) + PER_MESSAGE_TOKENS for m in tail)
    extra += counter(json.dumps(request.get("tools") or [])) if request else 0
    system = res.taxonomy.answer_prompt(task_class)
    room = spec.context - ctx.max_tokens - counter(load_prompt(system)) - 64 - extra
    history, dropped = fit_history(history, room - counter(subtask), counter)
    room -= sum(counter(message_text(m)) + PER_MESSAGE_TOKENS for m in history)
    if counter(subtask) + sum(counter(g["subtask"] + g["answer"]) for g in guides) > room:
        guides = []  # the task itself comes before the worked examples
    sent, removed = trim_to_tokens(subtask, room, counter)
    messages = answer_messages(sent, guides, history, tail, message if not removed else None, system)
    prompt_text = "\n".join(message_text(m) for m in messages)
    bound = prompt_bound(messages, counter_for(model), request=request)
    answer_worst = spec.cost(bound, ctx.max_tokens)
    skip = frozenset() if measure else without_say(current_fit(res.store), task_class)
    answer = AnswerCall(model_id, bound, answer_worst)
    reserved = {
        name: NO_RESERVATION if name in skip else judge.reserve(res, ctx, judge_id, sent, answer)
        for name, judge in JUDGES.items()
    }
    judge_worst = sum((r.usd for r in reserved.values()), 0.0)
    return PreparedCall(
        model_id,
        messages,
        prompt_text,
        sent,
        removed,
        guides,
        answer_worst + judge_worst,
        answer_worst,
        judge_worst,
        bound,
        reserved,
        request,
        dropped,
        skip,
    )


def after_rejection(earlier: Sequence[Mapping[str, Any]] | None) -> bool:
    """Whether a call made after these `earlier` attempts on the same subtask is *conditioned*: an earlier
    tier returned an answer and the judges rejected it. Its outcome is then selected on that rejection (on
    the other models' outcomes, not only on the subtask), which the router must not read as the model's
    first-pick success (fusiongraph/routing/router.py). A failed call (error) rejected nothing about the subtask.

    The one rule for the flag: the live cascade (through :func:`run_attempt`) and the bench's online replay
    (:func:`fusiongraph.eval.bench.online.run_online`) both use it."""
    return any("answer" in a and not a.get("accepted") for a in earlier or ())


def run_attempt(
    res: Resources,
    ctx: FusionContext,
    call: PreparedCall,
    task: str,
    task_class: str | None,
    judge_id: str | None,
    invoke: Callable,
    earlier: list[Attempt] | None = None,
) -> Attempt:
    """Call and judge; a failed call (refused, 4xx/5xx, timeout after retries) is an attempt with `error`.

    The registered judges run in order, each seeing the verdicts before it; the judges' model calls are
    charged to the attempt (`judge_cost_usd`). The confidence is P(right) (fusiongraph/judging/acceptance.py: an
    exact check, else the calibrated acceptance saved beside the store, else the fixed weights).
    `earlier`: the attempts of cheaper tiers on this subtask (the consistency judge compares with them; a
    rejected one makes this attempt ``after_rejection``, see :func:`after_rejection`)."""
    conditioned = after_rejection(earlier)
    secrets = res.roster.secrets()
    spec = res.roster[call.model_id]
    model = res.roster.chat_model(call.model_id, ctx.max_tokens, ctx.request_timeout_s)
    guides = [g["subtask"][:80] for g in call.guides]
    bound = bind_request(model, call.request)
    if ctx.logprobs and (spec.logprobs or spec.model_kind.local):
        # the kind asks its model for token log-probabilities (and ctx.top_logprobs alternatives); an API model
        # only when its roster entry says it returns them (many reject the parameter)
        bound = spec.model_kind.with_logprobs(bound, ctx.top_logprobs)
    started = time.perf_counter()
    try:
        message = invoke(
            bound.with_config(run_name=f"answer:{call.model_id}", tags=["answer", call.model_id]),
            call.messages,
        )
    except Exception as exc:
        return new_attempt(
            call.model_id,
            guides,
            round(time.perf_counter() - started, 3),
            trimmed_chars=call.trimmed_chars,
            error=redact(f"{type(exc).__name__}: {exc}", secrets)[:500],
            after_rejection=conditioned,
        )
    latency_s = round(time.perf_counter() - started, 3)
    usage = charge(spec, message, call.prompt_text, call.prompt_bound or token_bound(call.prompt_text), ctx.max_tokens)
    calls = tool_calls_of(message)
    answer = message.text or render_tool_calls(calls)
    finish = message.response_metadata.get("finish_reason")
    verdicts: list[Verdict] = []
    klass = res.taxonomy.classes.get(task_class, task_class)  # the TaskClass (its verifiers), else the name
    for name, judge in JUDGES.items():
        verdict = judge.judge(
            Judging(
                task=task,
                subtask=call.subtask,
                answer=answer,
                finish_reason=finish,
                task_class=klass,
                message=message,
                res=res,
                ctx=ctx,
                judge_id=judge_id,
                reserved=call.judge_reserved.get(name, NO_RESERVATION),
                verdicts=verdicts,
                request=call.request,
                model_id=call.model_id,
                messages=call.messages,
                prompt_text=call.prompt_text,
                prompt_bound=call.prompt_bound or token_bound(call.prompt_text),
                earlier=[(a["model"], a["answer"]) for a in earlier or [] if a.get("answer")],
                skip=call.skip,
            )
        )
        if verdict is not None:
            verdict.detail = redact(verdict.detail, secrets)
            verdicts.append(verdict)
    judge_usage = {"tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0}
    compute_s = usage.get("compute_s", 0.0)
    for v in verdicts:
        if v.usage is not None:
            judge_usage = {k: judge_usage[k] + v.usage[k] for k in judge_usage}
            compute_s += v.usage.get("compute_s", 0.0)
    acceptance = decide(current_fit(res.store), verdicts, getattr(klass, "name", klass), call.model_id, answer, finish)
    confidence = acceptance["p_right"]
    return new_attempt(
        call.model_id,
        guides,
        latency_s,
        trimmed_chars=call.trimmed_chars,
        usage=usage,
        reserved_usd=call.worst_cost_usd,
        answer=answer,
        finish_reason=finish,
        verdicts=[v.as_dict() for v in verdicts],
        confidence=round(confidence, 4),
        accepted=confidence >= ctx.quality_threshold,
        judge_usage=judge_usage,
        judge_trimmed_chars=sum(v.trimmed_chars for v in verdicts),
        tool_calls=calls,
        acceptance=acceptance,
        after_rejection=conditioned,
        compute_s=compute_s,
        logprobs=token_entries(message) if ctx.logprobs else (),
    )


def outcomes_from_attempts(attempts: list[Attempt], run_id: str | None, source: str = "live") -> list[Outcome]:
    """What the outcome store keeps of each attempt (the judged confidence is the success)."""
    return [
        Outcome(
            model=a["model"],
            success=float(a.get("confidence", 0.0)),
            accepted=bool(a.get("accepted")),
            judges=attempt_scores(a),
            answer=a.get("answer"),
            error=a.get("error"),
            tokens_in=a.get("tokens_in", 0),
            tokens_out=a.get("tokens_out", 0),
            cost_usd=attempt_cost(a),
            latency_s=a.get("latency_s", 0.0),
            source=source,
            run_id=run_id,
            after_rejection=bool(a.get("after_rejection", False)),
        )
        for a in attempts
    ]


def invoke_with_retries(model, messages, attempts: int = 3, first_wait_s: float = 0.2):
    """A plain call with the cascade's retry rule (transient errors, exponential backoff), for use outside a
    graph run (calibration, judge-eval, eval)."""
    retrying = Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=first_wait_s, min=first_wait_s),
        retry=retry_if_exception(is_transient),
        reraise=True,
    )
    return retrying(model.invoke, messages)


def cheapest_answer_usd(res, ctx, query: str, history=(), request=None, tail=()) -> float:
    """Worst case of the cheapest answer (and its judge) to the whole query, by the byte bound, each prompt
    capped at the model's context (longer prompts are trimmed to it): what must stay after the plan."""
    requires = (request or {}).get("requires") or []
    answering, _ = res.roster.availability(ctx.local_only, answering=True, requires=requires)
    if not answering:
        return 0.0
    available, _ = res.roster.availability(ctx.local_only)
    judge_id = res.roster.helper(available, ctx.judge_model, ctx.budget_usd) if ctx.llm_judge else None
    judge = 0.0
    if judge_id is not None:
        spec = res.roster[judge_id]
        judge = spec.cost(min(judge_bound(res, ctx, judge_id, query, token_bound)[1], spec.context), JUDGE_MAX_TOKENS)
    bound = prompt_bound(answer_messages(query, [], history, tail), request=request)
    return judge + min(res.roster[m].cost(min(bound, res.roster[m].context), ctx.max_tokens) for m in answering)
