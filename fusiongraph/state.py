"""The state types of the fusion graph, in one place; the records it produces (an attempt, a subtask's
result, the summary) are TypedDicts in :mod:`fusiongraph.records`, re-exported here."""

from __future__ import annotations

import operator
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator
from typing_extensions import TypedDict

from fusiongraph.records import (  # noqa: F401  (the record types, in one place)
    Attempt,
    PredictionRecord,
    Skip,
    SpentUSD,
    Status,
    SubtaskResult,
    Summary,
    TraceEvent,
    Usage,
    VerdictRecord,
)


class FusionInput(TypedDict):
    query: str


class FusionState(TypedDict, total=False):
    """The whole run: the query, its subtasks, each subtask's result, the fused answer."""

    query: str
    subtasks: list[str]
    results: Annotated[list[SubtaskResult], operator.add]  # one per subtask (fan-in), in any order
    trace: Annotated[list[TraceEvent], operator.add]  # run-level events: decomposition, synthesis, warnings
    answer: str
    summary: Summary


class FusionOutput(TypedDict, total=False):
    answer: str
    subtasks: list[str]
    results: list[SubtaskResult]
    trace: list[TraceEvent]
    summary: Summary


class SubtaskState(TypedDict, total=False):
    """One subtask on its way through taxonomy -> neighbours -> cascade -> record."""

    index: int
    subtask: str
    n_subtasks: int
    share_usd: float  # this subtask's fixed share of the query budget (set by decompose)
    task_class: str
    answer_tokens: int  # the task class's answer length (capped by max_tokens)
    class_confidence: float
    class_scores: dict[str, float]
    route_source: str  # taxonomy | neighbours | both
    predictions: dict[str, PredictionRecord]  # model -> the router's prediction
    candidates: list[str]  # the cascade's plan, in order
    skipped: list[Skip]  # models left out, with the reason (no key, local only, predicted to fail)
    guides: list[dict]
    attempts: list[Attempt]
    status: Status
    answered_by: str | None  # the accepted model, or the best-scored one when none was accepted
    answer: str
    sensitive: list[dict]  # the privacy detectors' findings ({detector, kind, chars}; never the values)
    masked: str | None  # the subtask with its sensitive values replaced by placeholders (None: nothing found)
    placeholders: dict[str, str]  # placeholder -> value, to restore an answer given to the masked text
    cache: dict | None  # a cache hit: {subtask_id, similarity, model, age_s}
    trace: Annotated[list[TraceEvent], operator.add]
    results: Annotated[list[SubtaskResult], operator.add]


class SubtaskOutput(TypedDict):
    results: Annotated[list[SubtaskResult], operator.add]


class Decomposition(BaseModel):
    """Structured output of the decomposer, validated before use."""

    subtasks: list[str] = Field(description="Self-contained atomic subtasks, in the order to answer them.")

    @field_validator("subtasks")
    @classmethod
    def _clean(cls, value: list[str]) -> list[str]:
        seen, out = set(), []
        for item in value:
            text = " ".join(str(item).split())
            if text and text.lower() not in seen:
                seen.add(text.lower())
                out.append(text)
        if not out:
            raise ValueError("no non-empty subtasks")
        return out


class JudgeVerdict(BaseModel):
    """Structured output of the LLM judge."""

    reason: str = Field(default="", description="One short sentence, before the score.")
    score: Literal[1, 2, 3, 4, 5, 6, 7, 8, 9, 10] = Field(
        description="1 = wrong or useless, 10 = fully correct and complete."
    )
