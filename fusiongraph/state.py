"""The state types of the fusion graph, in one place."""

from __future__ import annotations

import operator
from typing import Annotated, Literal, TypedDict

from pydantic import BaseModel, Field, field_validator


class FusionInput(TypedDict):
    query: str


class FusionState(TypedDict, total=False):
    """The whole run: the query, its subtasks, each subtask's result, the fused answer."""

    query: str
    subtasks: list[str]
    results: Annotated[list[dict], operator.add]  # one SubtaskResult dict per subtask (fan-in)
    trace: Annotated[list[dict], operator.add]  # run-level events: decomposition, synthesis, warnings
    answer: str
    summary: dict


class FusionOutput(TypedDict, total=False):
    answer: str
    subtasks: list[str]
    results: list[dict]
    trace: list[dict]
    summary: dict


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
    predictions: dict[str, dict]  # model -> {p_success, support, class_rate}
    candidates: list[str]  # the cascade's plan, in order
    skipped: list[dict]  # models left out, with the reason (no key, local only, predicted to fail)
    guides: list[dict]
    attempts: list[dict]
    status: str  # accepted | best_effort | budget_exhausted | failed
    answered_by: str | None  # the accepted model, or the best-scored one when none was accepted
    answer: str
    trace: Annotated[list[dict], operator.add]
    results: Annotated[list[dict], operator.add]


class SubtaskOutput(TypedDict):
    results: Annotated[list[dict], operator.add]


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
        description="1 = wrong or useless, 10 = fully correct and complete.")

