"""The records a run produces, in one place: an attempt, a subtask's result, the run's summary.

They are TypedDicts, so the graph's state and its JSON output stay plain dicts (the wire format of
``fusiongraph ask --json``, the endpoint's ``fusiongraph`` field and the outcome store is unchanged), and
each has one constructor (:func:`new_attempt`, :func:`new_result`, :func:`new_summary`) so its keys are
written in one place only. Readers use the TypedDicts as annotations and the helpers below
(:func:`attempt_cost`, ...) for the sums every reader needs.

The TypedDicts are strict for pydantic: ``TypeAdapter(Attempt).validate_python(a)`` fails on a missing
key (``total=True``; keys that are sometimes absent are ``NotRequired``) and on an undocumented one
(``extra="forbid"``), which tests/unit/test_records.py checks on real graph runs.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping, Sequence

from pydantic import ConfigDict, with_config
from typing_extensions import NotRequired, TypedDict

from fusiongraph.budget import spent_breakdown

Status = Literal["accepted", "best_effort", "budget_exhausted", "failed"]
TraceEvent = dict[str, Any]  # {"node": ..., ...}: free-form run events (decompose, synthesize, warnings)

_STRICT = ConfigDict(extra="forbid")


@with_config(_STRICT)
class VerdictRecord(TypedDict):
    """One judge's verdict on one answer (``fusiongraph.judging.base.Verdict.as_dict``)."""

    judge: str  # the registered judge's name (fusiongraph.judging.base.JUDGES)
    score: float | None  # 0-1, rounded to 4 places; None: the judge abstained (re-weighted away)
    veto: bool  # a veto makes the attempt's confidence 0
    detail: str  # why, in a few words (secrets redacted)
    exact: NotRequired[bool]  # True: an exact check (a computed truth) decided; its verdict overrides the others
    tool_loop: NotRequired[bool]  # True: vetoed for repeating the tool call its result had answered


@with_config(_STRICT)
class AcceptanceRecord(TypedDict):
    """How an attempt's P(right) was decided (``fusiongraph.judging.acceptance.decide``)."""

    p_right: float  # the probability of being right that is compared with quality_threshold
    by: Literal["exact", "veto", "calibrated", "prior"]  # an exact check, a veto, the fitted calibrator, fixed weights
    parts: dict[str, float]  # judge -> its part (calibrated: its log-odds contribution; prior: its weighted share)
    no_say: list[str]  # judges that spoke but have no say in this class (at chance in the labelled attempts)


@with_config(_STRICT)
class Usage(TypedDict):
    """What one model call used (``fusiongraph.budget.charge``)."""

    tokens_in: int
    tokens_out: int
    cost_usd: float
    compute_s: NotRequired[float]  # an in-process model's compute seconds (what a model priced by the hour is charged)


@with_config(_STRICT)
class Attempt(TypedDict):
    """One judged call of one model on one subtask (``fusiongraph.attempt.run_attempt``).

    A failed call (refused, 4xx/5xx, a timeout after retries) has ``error`` and none of the keys marked
    "a returned call"; a call that returned has ``answer`` and those keys, and no ``error``."""

    model: str  # the roster id
    guides: list[str]  # the worked examples given (the first 80 characters of each one's subtask)
    # True: an earlier tier's answer to the same subtask was judged and rejected before this call (its outcome
    # is selected on that rejection: "conditioned"); False: the first answer tried (a failed call is no rejection)
    after_rejection: bool
    trimmed_chars: NotRequired[int]  # characters cut from the subtask to fit the model's context (when > 0)
    error: NotRequired[str]  # a failed call: the exception, secrets redacted, at most 500 characters
    latency_s: float  # wall time of the answer call, retries included
    tokens_in: int  # of the answer call (0 for a failed call)
    tokens_out: int
    cost_usd: float  # of the answer call only (the judges' cost is judge_cost_usd)
    reserved_usd: NotRequired[float]  # a returned call: its worst case (answer + judges) reserved beforehand
    answer: NotRequired[str]  # a returned call: the model's reply (tool calls rendered as text)
    tool_calls: NotRequired[list[dict[str, Any]]]  # a returned call that called tools: {name, args, id, type}
    finish_reason: NotRequired[str | None]  # a returned call: "stop", "length" (truncated), ... or None
    confidence: (
        float  # P(right) from the judges (fusiongraph.judging.acceptance; 0 after a veto or a failed call), 4 places
    )
    accepted: bool  # confidence >= quality_threshold
    acceptance: NotRequired[AcceptanceRecord]  # a returned call: how the confidence was decided
    verdicts: list[VerdictRecord]  # one per judge that was asked, in registry order (empty for a failed call)
    judge_cost_usd: NotRequired[float]  # a returned call: what its judges' model calls cost
    judge_tokens_in: NotRequired[int]
    judge_tokens_out: NotRequired[int]
    judge_trimmed_chars: NotRequired[int]  # characters of the answer a judge did not read (its reserved allowance)
    compute_s: NotRequired[float]  # a returned call: in-process compute seconds of its answer and judges
    # with the logprobs knob: [token text, log-probability] of each answer token, and with top_logprobs (where
    # the model gives them) a third element, that step's most likely tokens: [[text, log-probability], ...]
    logprobs: NotRequired[list[list[Any]]]


class Skip(TypedDict):
    """A model left out of a subtask's plan, or a note about the plan (``model`` None)."""

    model: str | None
    reason: str
    kind: NotRequired[str]  # budget | price (routing's reasons); absent for availability and roster notes


class PredictionRecord(TypedDict):
    """The router's prediction for one model (``fusiongraph.routing.rule.Prediction.as_dict``)."""

    p_success: float
    neighbour_weight: float
    class_rate: float | None
    class_n: int
    probe: float | None
    cost_usd: float | None
    n_outcomes: int  # its unconditioned outcomes (the first-pick evidence)
    cluster_rate: float | None
    n_conditioned: NotRequired[int]  # its outcomes recorded after an earlier tier was rejected (escalation only)
    explore_n: NotRequired[float | None]  # the outcomes that count against exploring it here (routing.local_outcomes)


@with_config(_STRICT)
class SubtaskResult(TypedDict):
    """One subtask's route, attempts and answer (``nodes/record.py``); the graph's ``results`` holds one each."""

    index: int  # position in the decomposition (results arrive in any order: sort by it)
    subtask: str
    task_class: str  # the taxonomy class
    class_confidence: float
    class_scores: dict[str, float]  # the top 3 classes' scores
    answer_tokens: int  # the class's answer length (max_tokens of the answer calls)
    route_source: str  # taxonomy | neighbours | both
    predictions: dict[str, PredictionRecord]  # model -> the router's prediction
    candidates: list[str]  # the cascade's plan, in order
    skipped: list[Skip]
    attempts: list[Attempt]  # in the order they were made
    status: Status
    answered_by: str | None  # the accepted model, else the best-scored one; None when nothing answered
    answer: str  # "" when nothing answered
    tool_calls: NotRequired[list[dict[str, Any]]]  # the answering attempt's tool calls, when it called tools
    verified: bool  # an attempt was accepted by the judges (status "accepted"); else the answer is unverified
    cost_usd: float  # the attempts' answers and judges
    tokens_in: int  # the attempts' answers and judges
    tokens_out: int
    latency_s: float  # the attempts' summed latency
    compute_s: float  # the attempts' summed in-process compute seconds (answers and judges)
    trace: list[TraceEvent]  # the subtask's events (budget, taxonomy, neighbours, cascade, record)
    sensitive: NotRequired[list[dict]]  # what the privacy detectors found ({detector, kind, chars}; no values)
    cache: NotRequired[dict]  # answered from the answer cache: {subtask_id, similarity, model, age_s}


@with_config(_STRICT)
class SpentUSD(TypedDict):
    """The run's actual spend by kind of call (``fusiongraph.budget.spent_breakdown``)."""

    plan: float
    answers: float
    judges: float
    synthesis: float
    total: float


@with_config(_STRICT)
class Summary(TypedDict):
    """The run's totals (``nodes/synthesize.py``)."""

    budget_usd: float | None
    spent_usd: SpentUSD
    within_budget: bool | None  # spent_usd.total <= budget_usd (None without a budget)
    cost_usd: float  # every call: plan, answers, judges, synthesis
    compute_s: float  # every in-process call's compute seconds (what local models priced by the hour are charged)
    tokens_in: int
    tokens_out: int
    strongest_model: str  # the costliest answering model: the baseline
    strongest_alone_tokens_in: NotRequired[int]  # its tokens, estimated per subtask (fusiongraph.models.roster)
    strongest_alone_tokens_out: NotRequired[int]
    strongest_alone_cost_usd: float  # what it alone would have cost
    statuses: dict[int, Status]  # subtask index -> status
    verified: bool  # every subtask's answer was accepted by the judges
    cache_hits: int  # subtasks answered from the answer cache (at $0)


# ------------------------------------------------------------------------------------------ constructors


def new_attempt(
    model: str,
    guides: list[str],
    latency_s: float,
    *,
    trimmed_chars: int = 0,
    error: str | None = None,
    usage: Mapping[str, Any] | None = None,
    reserved_usd: float | None = None,
    answer: str | None = None,
    finish_reason: str | None = None,
    verdicts: Sequence[VerdictRecord] = (),
    confidence: float = 0.0,
    accepted: bool = False,
    judge_usage: Mapping[str, Any] | None = None,
    judge_trimmed_chars: int = 0,
    tool_calls: Sequence[Mapping[str, Any]] = (),
    acceptance: AcceptanceRecord | None = None,
    after_rejection: bool = False,
    compute_s: float = 0.0,
    logprobs: Sequence[tuple] = (),
) -> Attempt:
    """The one place an :class:`Attempt` is built: a failed call when `error` is given, else a judged answer."""
    attempt: dict[str, Any] = {"model": model, "guides": list(guides), "after_rejection": bool(after_rejection)}
    if trimmed_chars:
        attempt["trimmed_chars"] = trimmed_chars
    if error is not None:
        attempt.update(
            error=error,
            latency_s=latency_s,
            confidence=0.0,
            accepted=False,
            tokens_in=0,
            tokens_out=0,
            cost_usd=0.0,
            verdicts=[],
        )
        return attempt  # type: ignore[return-value]
    usage = usage or {}
    judge_usage = judge_usage or {}
    attempt.update(
        latency_s=latency_s,
        tokens_in=int(usage.get("tokens_in", 0)),
        tokens_out=int(usage.get("tokens_out", 0)),
        cost_usd=float(usage.get("cost_usd", 0.0)),
        reserved_usd=float(reserved_usd or 0.0),
    )
    if judge_trimmed_chars:
        attempt["judge_trimmed_chars"] = judge_trimmed_chars
    if compute_s:
        attempt["compute_s"] = round(float(compute_s), 4)
    if acceptance is not None:
        attempt["acceptance"] = acceptance
    attempt.update(
        answer=answer if answer is not None else "",
        confidence=confidence,
        judge_cost_usd=float(judge_usage.get("cost_usd", 0.0)),
        judge_tokens_in=int(judge_usage.get("tokens_in", 0)),
        judge_tokens_out=int(judge_usage.get("tokens_out", 0)),
        accepted=accepted,
        verdicts=list(verdicts),
        finish_reason=finish_reason,
    )
    if tool_calls:
        attempt["tool_calls"] = [dict(tc) for tc in tool_calls]
    if logprobs:  # (text, logprob) or (text, logprob, alternatives) per token
        alts = any(len(e) > 2 and e[2] for e in logprobs)
        attempt["logprobs"] = [
            [str(e[0]), round(float(e[1]), 6)]
            + ([[[str(a), round(float(alp), 6)] for a, alp in (e[2] if len(e) > 2 else ())]] if alts else [])
            for e in logprobs
        ]
    return attempt  # type: ignore[return-value]


# the keys of a SubtaskResult copied from the subtask's state
RESULT_STATE_KEYS = (
    "index",
    "subtask",
    "task_class",
    "class_confidence",
    "class_scores",
    "route_source",
    "predictions",
    "candidates",
    "skipped",
    "attempts",
    "status",
    "answered_by",
    "answer",
    "answer_tokens",
)


def new_result(state: Mapping[str, Any], trace: list[TraceEvent]) -> SubtaskResult:
    """The one place a :class:`SubtaskResult` is built: the subtask's state plus its attempts' totals."""
    attempts: list[Attempt] = state.get("attempts") or []
    result: dict[str, Any] = {k: state.get(k) for k in RESULT_STATE_KEYS}
    result["cost_usd"] = sum(attempt_cost(a) for a in attempts)
    result["tokens_in"] = sum(a.get("tokens_in", 0) + a.get("judge_tokens_in", 0) for a in attempts)
    result["tokens_out"] = sum(a.get("tokens_out", 0) + a.get("judge_tokens_out", 0) for a in attempts)
    result["latency_s"] = round(sum(a.get("latency_s", 0.0) for a in attempts), 3)
    result["compute_s"] = round(sum(a.get("compute_s", 0.0) for a in attempts), 3)
    if state.get("tool_calls"):
        result["tool_calls"] = list(state["tool_calls"])
    result["verified"] = state.get("status") == "accepted"
    result["trace"] = trace
    for key in ("sensitive", "cache"):
        if state.get(key):
            result[key] = state[key]
    return result  # type: ignore[return-value]


def new_summary(
    results: list[SubtaskResult],
    overhead: list[TraceEvent],
    strongest_alone: Mapping[str, Any],
    budget_usd: float | None = None,
) -> Summary:
    """The one place a :class:`Summary` is built: totals of the results and of the run-level calls
    (`overhead`: the decompose and synthesize events), `strongest_alone` (``Roster.strongest_alone``) and
    the actual spend by kind of call against the budget."""
    spent = spent_breakdown(results, overhead)
    return {
        "budget_usd": budget_usd,
        "spent_usd": spent,
        "within_budget": None if budget_usd is None else spent["total"] <= budget_usd,
        "cost_usd": sum(r["cost_usd"] for r in results) + sum(e.get("cost_usd", 0.0) for e in overhead),
        "compute_s": round(
            sum(r.get("compute_s", 0.0) for r in results) + sum(e.get("compute_s", 0.0) for e in overhead), 3
        ),
        "tokens_in": sum(r["tokens_in"] for r in results) + sum(e.get("tokens_in", 0) for e in overhead),
        "tokens_out": sum(r["tokens_out"] for r in results) + sum(e.get("tokens_out", 0) for e in overhead),
        **strongest_alone,
        "statuses": {r["index"]: r["status"] for r in results},
        "verified": all(r.get("verified", False) for r in results),
        "cache_hits": sum(1 for r in results if r.get("cache")),
    }  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------- readers
UNVERIFIED = "not verified: no configured model gave an answer that passed the judges; add a model: README, Models"


def attempt_cost(attempt: Attempt) -> float:
    """USD of an attempt: its answer call and its judges."""
    return attempt.get("cost_usd", 0.0) + attempt.get("judge_cost_usd", 0.0)


def attempt_scores(attempt: Attempt) -> dict[str, float | None]:
    """Scores by judge name of the judges that were asked (an abstention is None)."""
    return {v["judge"]: v["score"] for v in attempt.get("verdicts", [])}
