"""Conversations and what a request asks of its answer, shared by the graph (nodes/standalone.py) and the
OpenAI endpoint (server/schema.py, server/runs.py), so both accept and refuse the same things.

- :func:`split_conversation`: the last user message is what is answered; the messages before it are the
  history (system and earlier turns), the ones after it the tail (the assistant's tool calls and their
  results, in a tool loop).
- :func:`depends_on_history`: a cheap test of whether the last message needs earlier turns to be
  understood ("and in French?"); only then is the planner asked for a standalone rewrite.
- :func:`make_request`: tools, tool_choice, parallel_tool_calls and response_format validated (each tool's
  parameters and a json_schema must be valid JSON schemas, checked with ``jsonschema``), and the roster
  capabilities the answer needs (tools, json, vision).
- :func:`check_fits`: a query no available answering model can read whole is refused (QueryError).
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from fusiongraph.context import FusionContext
from fusiongraph.judging.verifiers import check_schema
from fusiongraph.state import RequestSpec
from fusiongraph.text import QueryError, clean_query, content_words, estimate_tokens, grounding

IMAGE_PART_TYPES = ("image_url", "image", "input_image")


def has_images(message: BaseMessage) -> bool:
    content = message.content
    return isinstance(content, list) and any(isinstance(p, dict) and p.get("type") in IMAGE_PART_TYPES for p in content)


def split_conversation(messages: Sequence[BaseMessage]) -> tuple[list[BaseMessage], HumanMessage, list[BaseMessage]]:
    """(history, last user message, tail). QueryError when there is no user message to answer, or when the
    conversation ends with the assistant's own reply."""
    last = next((i for i in range(len(messages) - 1, -1, -1) if isinstance(messages[i], HumanMessage)), None)
    if last is None:
        raise QueryError("the conversation has no user message to answer")
    tail = list(messages[last + 1 :])
    for m in tail:
        if not isinstance(m, (AIMessage, ToolMessage, SystemMessage)):
            raise QueryError(f"unexpected {m.type} message after the last user message")
    if tail and isinstance(tail[-1], AIMessage) and not tail[-1].tool_calls:
        raise QueryError(
            "the conversation ends with the assistant's reply: nothing to answer (add a user or tool message)"
        )
    if tail and not any(isinstance(m, ToolMessage) for m in tail):
        raise QueryError("the assistant's tool calls after the last user message have no tool results")
    return list(messages[:last]), messages[last], tail


def last_text(message: BaseMessage) -> str:
    """The text of the last user message (its text parts), cleaned; QueryError when it is empty."""
    return clean_query(message.text)


def earlier_turns(history: Sequence[BaseMessage]) -> list[BaseMessage]:
    """The user and assistant turns of the history (system messages are not turns)."""
    return [m for m in history if not isinstance(m, SystemMessage)]


_CONTINUATION = re.compile(
    r"^\s*(and|but|or|so|then|also|too|what about|how about|why|why not|how come|what if|same|ok|okay|"
    r"in|into|for|with|without|instead|again|more|shorter|longer|another)\b",
    re.IGNORECASE,
)
_ANAPHORA = re.compile(
    r"\b(it|its|it's|this|that|these|those|them|they|their|he|him|his|she|her|hers|there|same|former|"
    r"latter|above|previous|again|else|another|one|ones|instead)\b",
    re.IGNORECASE,
)


def depends_on_history(text: str) -> bool:
    """Does the last message point back to earlier turns? A connective opening ("and in French?", "what
    about Spain?"), a pronoun or reference ("translate it", "the same for Rome"), or barely any content of
    its own. A message that reads as a request of its own ("Now say goodbye in French.") does not."""
    return bool(_CONTINUATION.match(text) or _ANAPHORA.search(text) or len(content_words(text)) <= 1)


_SENTENCE_END = re.compile(r"(?<=[.?!])\s")


def first_part(rewrite: str, last: str) -> str:
    """What of a model's rewrite is the rewrite: its first line and, when the last message is one sentence,
    its first sentence (a small model goes on, echoing the prompt or earlier turns)."""
    line = next((ln.strip() for ln in rewrite.splitlines() if ln.strip()), "")
    if len(_SENTENCE_END.split(last.strip())) == 1:
        line = _SENTENCE_END.split(line, maxsplit=1)[0]
    return line.strip().strip('"').strip()


def rewrite_problem(rewrite: str, last: str, history: Sequence[BaseMessage]) -> str | None:
    """Why a standalone rewrite cannot be used (junk, ungrounded, asks an earlier turn again), else None."""
    text = " ".join(rewrite.split())
    if not text or not content_words(text):
        return "the rewrite is empty"
    if len(text) > 2 * len(last) + 120:
        return f"the rewrite is {len(text)} characters for a {len(last)}-character message"
    if re.search(r"\b(conversation|last message|rewritten)\s*:", text, re.IGNORECASE):
        return "the rewrite echoes the prompt"
    context = " ".join([m.text for m in history] + [last])
    if grounding(text, context) < 0.5:
        return "the rewrite is not grounded in the conversation (under half its content words occur in it)"
    if content_words(last) and grounding(last, text) < 0.5:
        return "the rewrite drops what the last message asks (under half its content words are kept)"
    for m in earlier_turns(history):
        turn = " ".join(m.text.split()).lower()
        if isinstance(m, HumanMessage) and turn and (turn == text.lower() or (len(turn) >= 8 and turn in text.lower())):
            return "the rewrite repeats an earlier user turn"
    return None


def make_request(
    tools: Any = None,
    tool_choice: Any = None,
    parallel_tool_calls: Any = None,
    response_format: Any = None,
    images: bool = False,
) -> RequestSpec:
    """The validated request; ValueError naming the field for anything malformed."""
    if tools is not None:
        if not isinstance(tools, list):
            raise ValueError("tools must be a list of {type: function, function: {name, parameters}}")
        names = set()
        for i, tool in enumerate(tools):
            fn = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(tool, dict) or tool.get("type", "function") != "function" or not isinstance(fn, dict):
                raise ValueError(f"tools[{i}] must be {{'type': 'function', 'function': {{name, parameters}}}}")
            name = fn.get("name")
            if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
                raise ValueError(f"tools[{i}].function.name must be 1-64 letters, digits, _ or -, got {name!r}")
            if name in names:
                raise ValueError(f"tools[{i}].function.name {name!r} is given twice")
            names.add(name)
            check_schema(fn.get("parameters", {"type": "object"}), f"tools[{i}].function.parameters")
        tools = [{"type": "function", "function": t["function"]} for t in tools] or None
    if tool_choice is not None:
        if isinstance(tool_choice, dict):
            name = (tool_choice.get("function") or {}).get("name") if tool_choice.get("type") == "function" else None
            if not isinstance(name, str):
                raise ValueError("tool_choice must be none, auto, required or {type: function, function: {name}}")
            if name not in {t["function"]["name"] for t in tools or []}:
                raise ValueError(f"tool_choice names {name!r}, which is not one of the tools")
            tool_choice = {"type": "function", "function": {"name": name}}
        elif tool_choice not in ("none", "auto", "required"):
            raise ValueError(f"tool_choice must be none, auto, required or a named function, got {tool_choice!r}")
        elif tool_choice == "required" and not tools:
            raise ValueError("tool_choice is 'required' but no tools are given")
    if parallel_tool_calls is not None and not isinstance(parallel_tool_calls, bool):
        raise ValueError("parallel_tool_calls must be a boolean")
    if response_format is not None:
        kind = response_format.get("type") if isinstance(response_format, dict) else None
        if kind not in ("text", "json_object", "json_schema"):
            raise ValueError("response_format.type must be text, json_object or json_schema")
        if kind == "json_schema":
            spec = response_format.get("json_schema")
            if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
                raise ValueError("response_format.json_schema must be an object with a name and a schema")
            check_schema(spec.get("schema", {}), "response_format.json_schema.schema")
            if "strict" in spec and not isinstance(spec["strict"], bool):
                raise ValueError("response_format.json_schema.strict must be a boolean")
        response_format = None if kind == "text" else response_format
    requires: list = []
    if tools and tool_choice != "none":
        requires.append("tools")
    if response_format is not None:
        requires.append("json")
    if images:
        requires.append("vision")
    return {
        "tools": tools,
        "tool_choice": tool_choice,
        "parallel_tool_calls": parallel_tool_calls,
        "response_format": response_format,
        "requires": requires,
    }


def answered_whole(request: RequestSpec | None) -> str | None:
    """Why a request is one subtask, not decomposed (tools, a response format, images), else None."""
    requires = (request or {}).get("requires") or []
    reasons = {"tools": "tools", "json": "a JSON response_format", "vision": "image parts"}
    named = [reasons[r] for r in requires if r in reasons]
    return f"a request with {' and '.join(named)} is answered whole (one subtask)" if named else None


def classify_text(standalone: str, tail: Sequence[BaseMessage]) -> str:
    """What the taxonomy classifies: the last user message and, in a tool loop, the tool results after it."""
    results = [m.text for m in tail if isinstance(m, ToolMessage) and m.text]
    return "\n".join([standalone, *results])[:4000]


def check_fits(query: str, res, ctx: FusionContext) -> None:
    """A query no available answering model can read whole is a clear error naming the limit (CLI exit 2,
    HTTP 400): answering a truncated query would answer another question."""
    answering, _ = res.roster.availability(ctx.local_only, answering=True)
    if not answering:
        return
    largest = max(answering, key=lambda m: res.roster[m].context)
    room = res.roster[largest].context - ctx.max_tokens - 200
    tokens = estimate_tokens(query)
    if tokens > room:
        raise QueryError(
            f"the query is about {tokens:,} tokens, more than the largest context of the available models can "
            f"take with an answer ({largest}: {res.roster[largest].context:,} tokens, {room:,} for the query); "
            f"shorten it or configure a model with a longer context"
        )
