"""Judges: several kinds of evidence that an answer is good, aggregated into one confidence.

One registry (:data:`JUDGES`), as routing has for its strategies. Each judge is a small module in
:mod:`fusiongraph.judging.kinds`, a class decorated ``@register_judge``; they run in registration order:

- rules (kinds/rules.py): cheap checks (empty, refusal, truncation, JSON when asked) and the task
  class's verifiers (:mod:`fusiongraph.judging.verifiers`); an empty answer, a refusal or a failed exact check vetoes.
- self (kinds/self_confidence.py): the answering model's own confidence, exp(mean token
  log-probability), where the model returns them.
- key (kinds/key_confidence.py): the probability of the least likely token of the answer's key (its
  option letter, final number or entity), where the model returns its tokens' text and log-probabilities.
- focus (kinds/focus.py): the share of the question's content words that the answer's first sentence
  takes up (a direct answer does; an evasion that talks about something near it does not).
- llm (kinds/llm.py): an LLM judge scoring 1-10 with the prompt in prompts/judge.md; junk or an
  error counts as low confidence. Not asked after a veto or an exact verdict, nor when the LLM judge is
  turned off, nor where the calibrated acceptance gives it no say.
- consistency (kinds/consistency.py): agreement of a few short samples of the same model (temperature
  > 0) with the answer, and with the answers of cheaper tiers already tried; works for any model, offline.
- crosscheck (kinds/crosscheck.py): how likely a second local model (Gemma 3 270M, a base model) finds
  the answer's key as the answer to the question; in-process, free, not asked where it has no say.

A judge that cannot speak (no log-probabilities) abstains (score None). The decision is
:mod:`fusiongraph.judging.acceptance`: an exact check decides where it applies; else a calibrated probability of
being right fitted from labelled attempts (saved beside the store), and before any fit (cold start) the
weighted mean of the registered judges' ``weight`` (:func:`aggregate`). `fusiongraph ask` shows one score
per registered judge and `fusiongraph judge-eval` measures each.

Adding a judge is a new file in fusiongraph/judging/kinds/ with a class decorated ``@register_judge`` and
one line in fusiongraph/judging/kinds/__init__.py (the run order).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Protocol

from langchain_core.messages import AIMessage

if TYPE_CHECKING:
    from fusiongraph.context import FusionContext
    from fusiongraph.records import Usage, VerdictRecord
    from fusiongraph.resources import Resources


@dataclass
class Verdict:
    judge: str
    score: float | None  # None: abstained
    veto: bool = False
    detail: str = ""
    exact: bool = False  # decided by an exact check (a computed truth): a pass overrides the soft judges
    usage: Usage | None = None  # a judge that called a model: what the call used (charged to the attempt)
    trimmed_chars: int = 0  # a judge that read a trimmed answer: the characters it did not read
    tool_loop: bool = False  # the veto is for repeating a tool call just answered (the cascade then uses the result)

    def as_dict(self) -> VerdictRecord:
        record: VerdictRecord = {
            "judge": self.judge,
            "score": None if self.score is None else round(self.score, 4),
            "veto": self.veto,
            "detail": self.detail,
        }
        if self.exact:
            record["exact"] = True
        if self.tool_loop:
            record["tool_loop"] = True
        return record


@dataclass(frozen=True)
class Reservation:
    """What a judge reserves of the budget before the answer call (its worst case; see fusiongraph/budget.py)."""

    usd: float = 0.0
    answer_tokens: int = 0  # the judge reads at most this many (of its own tokens) of the answer


NO_RESERVATION = Reservation()


@dataclass(frozen=True)
class AnswerCall:
    """The answer call a judge reserves for (:meth:`Judge.reserve`): its model and its worst case."""

    model_id: str
    prompt_bound: int = 0  # most input tokens of the answer call
    worst_usd: float = 0.0  # the answer call at max_tokens: a judge that re-asks the model costs at most this a call


@dataclass
class Judging:
    """What a judge may look at for one answer."""

    task: str  # the subtask as given
    subtask: str  # the subtask as sent to the model (trimmed if it had to be)
    answer: str
    finish_reason: str | None
    task_class: Any  # the taxonomy's TaskClass (its verifiers), or the class name when unknown, or None
    message: AIMessage  # the answering model's reply (its metadata: log-probabilities, usage)
    res: Resources
    ctx: FusionContext
    judge_id: str | None  # the LLM judge's model (None: the LLM judge is turned off)
    reserved: Reservation = NO_RESERVATION  # what this judge reserved for this answer (Judge.reserve)
    verdicts: list[Verdict] = field(default_factory=list)  # of the judges that ran before this one
    request: Any = None  # the run's RequestSpec (tools, response_format), None for a plain text request
    model_id: str = ""  # the answering model
    messages: list = field(default_factory=list)  # the answer call's messages (a judge may re-ask the model)
    prompt_text: str = ""  # their text (for a usage estimate)
    prompt_bound: int = 0  # most input tokens of the answer call
    earlier: list[tuple[str, str]] = field(default_factory=list)  # (model, answer) of cheaper tiers tried before
    skip: frozenset[str] = frozenset()  # judges with no say here (acceptance): not worth a model call

    def decided(self) -> bool:
        """An earlier judge vetoed or an exact check decided: a model-calling judge is not asked."""
        return any(v.veto or v.exact for v in self.verdicts)


class Judge(Protocol):
    name: str  # the verdicts' "judge", the CLI's column, judge-eval's row
    weight: float  # its weight in the aggregate (re-normalised over the judges that spoke)

    def reserve(
        self, res: Resources, ctx: FusionContext, judge_id: str | None, subtask: str, answer: AnswerCall
    ) -> Reservation:
        """Worst-case USD (and answer allowance) to reserve before the answer call `answer`: a true upper
        bound of what :meth:`judge` can then cost. Judges that call no model reserve nothing."""
        ...

    def judge(self, j: Judging) -> Verdict | None:
        """The verdict on `j.answer`; None when the judge is not asked (then it has no verdict at all)."""
        ...


class CallsNoModel:
    """Base of the judges that read only the answer and its metadata: they reserve nothing of the budget."""

    def reserve(self, res, ctx, judge_id, subtask, answer) -> Reservation:
        return NO_RESERVATION


JUDGES: dict[str, Judge] = {}


def register_judge(cls):
    """Class decorator: add a judge (an instance of the class) to the registry under its ``name``."""
    JUDGES[cls.name] = cls()
    return cls


def judge_weights() -> dict[str, float]:
    """The aggregate's weights: each registered judge's ``weight``."""
    return {name: j.weight for name, j in JUDGES.items()}


def aggregate(verdicts: list[Verdict], weights: Mapping[str, float] | None = None) -> float:
    """The cold-start prior: the weighted mean of the judges that spoke; any veto makes the confidence 0,
    an exact pass 1."""
    if any(v.veto for v in verdicts):
        return 0.0
    if any(v.exact for v in verdicts):
        return 1.0
    weights = judge_weights() if weights is None else weights
    spoken = [(weights.get(v.judge, 0.0), v.score) for v in verdicts if v.score is not None]
    total = sum(w for w, _ in spoken)
    return sum(w * s for w, s in spoken) / total if total else 0.0
