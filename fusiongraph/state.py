"""The state types of the fusion graph, in one place; the records it produces (an attempt, a subtask's
result, the summary) are TypedDicts in :mod:`fusiongraph.records`, re-exported here."""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from pydantic import BaseModel, Field, field_validator
from typing_extensions import NotRequired, TypedDict

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

Capability = Literal["tools", "json", "vision"]  # what a request needs of a model (a roster capability)


class ToolCall(TypedDict):
    """A tool call in LangChain's form (``AIMessage.tool_calls``): the reply's ``tool_calls``."""

    name: str
    args: dict[str, Any]
    id: str | None
    type: NotRequired[Literal["tool_call"]]


class RequestSpec(TypedDict):
    """What a run asks of its answer besides text (OpenAI's request fields), validated by nodes/standalone.py."""

    tools: list[dict[str, Any]] | None  # OpenAI function tools: {"type": "function", "function": {name, parameters}}
    tool_choice: str | dict[str, Any] | None  # "none" | "auto" | "required" | {"type": "function", "function": {name}}
    parallel_tool_calls: bool | None
    response_format: dict[str, Any] | None  # {"type": "json_object"} | {"type": "json_schema", "json_schema": {...}}
    requires: list[Capability]  # roster capabilities an answering model must have (tools, json, vision)


class FusionInput(TypedDict, total=False):
    """A query, or a conversation of LangChain messages whose last user message is answered (a thread keeps
    its messages, so the next run continues the conversation); plus OpenAI-style tools / response_format."""

    query: str
    messages: list[AnyMessage]
    tools: list[dict[str, Any]] | None
    tool_choice: str | dict[str, Any] | None
    parallel_tool_calls: bool | None
    response_format: dict[str, Any] | None


class FusionState(TypedDict, total=False):
    """The whole run: the query, its subtasks, each subtask's result, the fused answer."""

    query: str | None  # the input query: consumed by the standalone node (it becomes the last user message)
    messages: Annotated[list[AnyMessage], add_messages]  # the conversation (kept by a thread between runs)
    tools: list[dict[str, Any]] | None  # input fields, consumed into `request` by the standalone node
    tool_choice: str | dict[str, Any] | None
    parallel_tool_calls: bool | None
    response_format: dict[str, Any] | None
    request: RequestSpec
    standalone: str  # the last user message, rewritten to stand alone when it depends on earlier turns
    history: list[AnyMessage]  # the messages before the last user message (system and earlier turns)
    tail: list[AnyMessage]  # the messages after it: the assistant's tool calls and their tool results
    last_message: AnyMessage  # the last user message as sent (its image parts, if any)
    subtasks: list[str]
    results: Annotated[list[SubtaskResult], operator.add]  # one per subtask (fan-in), in any order
    trace: Annotated[list[TraceEvent], operator.add]  # run-level events: decomposition, synthesis, warnings
    answer: str
    summary: Summary


class FusionOutput(TypedDict, total=False):
    answer: str
    messages: list[AnyMessage]  # the conversation, ending with the reply (an AIMessage, with its tool calls)
    standalone: str
    tool_calls: list[ToolCall]  # the reply's tool calls (answer is then "")
    refusal: str  # no model gave an answer that validates (tool call or JSON): why; answer is then ""
    subtasks: list[str]
    results: list[SubtaskResult]
    trace: list[TraceEvent]
    summary: Summary


class SubtaskState(TypedDict, total=False):
    """One subtask on its way through taxonomy -> neighbours -> cascade -> record."""

    index: int
    subtask: str
    n_subtasks: int
    request: RequestSpec
    history: list[AnyMessage]  # sent to the answering models before the subtask
    tail: list[AnyMessage]  # sent after it (tool calls and their results)
    message: AnyMessage | None  # the user message to send instead of the subtask's text (image parts)
    classify_text: str  # what the taxonomy classifies (a tool request: the last user and tool messages)
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
    tool_calls: list[ToolCall]
    trace: Annotated[list[TraceEvent], operator.add]
    results: Annotated[list[SubtaskResult], operator.add]


class SubtaskOutput(TypedDict):
    results: Annotated[list[SubtaskResult], operator.add]


class Decomposition(BaseModel):
    """Structured output of the decomposer, validated before use."""

    subtasks: list[str] = Field(
        description="Self-contained atomic subtasks, in the order to answer them; empty when the request asks for "
        "one thing only (it is then answered as written)."
    )

    @field_validator("subtasks")
    @classmethod
    def _clean(cls, value: list[str]) -> list[str]:
        seen, out = set(), []
        for item in value:
            text = " ".join(str(item).split())
            if text and text.lower() not in seen:
                seen.add(text.lower())
                out.append(text)
        if value and not out:
            raise ValueError("only blank subtasks")
        return out


class JudgeVerdict(BaseModel):
    """Structured output of the LLM judge."""

    reason: str = Field(default="", description="One short sentence, before the score.")
    score: Literal[1, 2, 3, 4, 5, 6, 7, 8, 9, 10] = Field(
        description="1 = wrong or useless, 10 = fully correct and complete."
    )
