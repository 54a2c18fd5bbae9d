"""The LLM judge: a helper model scores the answer 1-10 with the prompt in prompts/judge.md; junk or an
error counts as 0. Not asked after a veto or an exact verdict (an earlier judge's), nor when the LLM judge is
turned off, nor where the calibrated acceptance gives it no say (fusiongraph/judging/acceptance.py).

Its budget reservation is a true worst case (see fusiongraph/budget.py): the judge's prompt bound plus
`JUDGE_MAX_TOKENS` out. The prompt contains the answer, unknown before the call: the reservation allows
`answer_tokens` for it, and :meth:`LLMJudge.judge` trims the answer it reads to that allowance, so the
judge can never cost more than was reserved.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from fusiongraph.budget import charge, counter_for, prompt_bound
from fusiongraph.judging.base import NO_RESERVATION, Judging, Reservation, Verdict, register_judge
from fusiongraph.prompts import load_prompt
from fusiongraph.state import JudgeVerdict
from fusiongraph.text import fit_to_tokens

if TYPE_CHECKING:
    from fusiongraph.context import FusionContext
    from fusiongraph.resources import Resources

JUDGE_MAX_TOKENS = 128  # the judge's max_tokens: its JSON verdict (a score and one sentence) fits easily
ANSWER_TOKENS_PER_TOKEN = 6  # a reader of an answer (the judge) may count 6 of its tokens (bytes, without a
# tokenizer) per answer token: English averages ~4 bytes a token, CJK ~3-6; a longer answer is trimmed for
# the judge only


def judge_request(task: str, answer: str) -> str:
    """The judge's user message (prompts/judge_request.md); with answer "" its fixed part, for the bound."""
    return load_prompt("judge_request").format(task=task, answer=answer)


def llm_verdict(judge_model, task: str, answer: str) -> tuple[Verdict, AIMessage | None]:
    """Ask the judge model; returns the verdict and the raw message (for its token usage and cost)."""
    messages = [SystemMessage(load_prompt("judge")), HumanMessage(judge_request(task, answer))]
    try:
        out = judge_model.with_structured_output(JudgeVerdict, method="function_calling", include_raw=True).invoke(
            messages
        )
    except Exception as exc:  # a judge that fails or returns junk never accepts
        return Verdict("llm", 0.0, False, f"judge failed ({type(exc).__name__}: {str(exc)[:160]}); counted as 0"), None
    raw = out.get("raw")
    parsed = out.get("parsed")
    if parsed is None:
        err = out.get("parsing_error")
        return Verdict("llm", 0.0, False, f"judge returned junk ({str(err)[:160]}); counted as 0"), raw
    return Verdict("llm", (parsed.score - 1) / 9.0, False, f"{parsed.score}/10: {parsed.reason[:200]}"), raw


def judge_bound(
    res: Resources, ctx: FusionContext, judge_id: str, task: str, count: Callable | None = None
) -> tuple[int, int, Callable]:
    """(answer allowance, judge prompt bound with that allowance, the counter) for one judged task; the
    counter is the judge's tokenizer, else the byte bound."""
    if count is None:
        count = counter_for(res.roster.chat_model(judge_id, JUDGE_MAX_TOKENS, ctx.request_timeout_s))
    fixed = prompt_bound([load_prompt("judge"), judge_request(task, "")], count, schema=JudgeVerdict)
    room = res.roster[judge_id].context - JUDGE_MAX_TOKENS - fixed
    allowance = max(min(ANSWER_TOKENS_PER_TOKEN * ctx.max_tokens + 32, room), 0)
    return allowance, fixed + allowance, count


def judge_worst_cost(res: Resources, ctx: FusionContext, judge_id: str | None, task: str) -> float:
    """Most USD the LLM judge of an answer to `task` can cost (0 without a judge)."""
    if judge_id is None:
        return 0.0
    _, bound, _ = judge_bound(res, ctx, judge_id, task)
    return res.roster[judge_id].cost(bound, JUDGE_MAX_TOKENS)


@register_judge
class LLMJudge:
    name = "llm"
    weight = 0.5

    def reserve(self, res, ctx, judge_id, subtask, answer) -> Reservation:
        if judge_id is None:
            return NO_RESERVATION
        allowance, judge_in, _ = judge_bound(res, ctx, judge_id, subtask)
        return Reservation(res.roster[judge_id].cost(judge_in, JUDGE_MAX_TOKENS), allowance)

    def judge(self, j: Judging) -> Verdict | None:
        if j.judge_id is None or j.decided() or self.name in j.skip:
            return None  # turned off, already vetoed or decided exactly, or no say here: not worth a call
        res, spec = j.res, j.res.roster[j.judge_id]
        # the judge's max_tokens is JUDGE_MAX_TOKENS, and it reads at most the reserved allowance of the answer
        judge_model = res.roster.chat_model(j.judge_id, JUDGE_MAX_TOKENS, j.ctx.request_timeout_s)
        allowance, judge_in, count = judge_bound(res, j.ctx, j.judge_id, j.subtask)
        if j.reserved.usd and spec.cost(judge_in, JUDGE_MAX_TOKENS) > j.reserved.usd:
            return Verdict("llm", 0.0, False, "judge skipped: it could cost more than was reserved; counted as 0")
        judged, cut = fit_to_tokens(j.answer, min(allowance, j.reserved.answer_tokens or allowance), count)
        verdict, raw = llm_verdict(judge_model.with_config(run_name="judge", tags=["judge"]), j.subtask, judged)
        verdict.trimmed_chars = cut
        if raw is not None:
            verdict.usage = charge(spec, raw, j.subtask + j.answer, judge_in, JUDGE_MAX_TOKENS)
        return verdict
