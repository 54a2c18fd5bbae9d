"""OpenAI's Responses API (``POST /v1/responses``) on the same graph: what the OpenAI Agents SDK's default model
and Codex-style clients speak. A request is translated into the chat request the endpoint already validates
(``input`` items into messages, ``instructions`` into a system message, function tools, ``text.format`` into
``response_format``, ``max_output_tokens``), run the same way (admission, cancellation, settlement), and its
output returned as Response output items (a ``message`` with ``output_text``, or ``function_call`` items),
streamed as the Responses events when asked. ``previous_response_id`` continues a stored conversation: each
response's messages are kept in the server's store (fusiongraph/response_store.py: the SQLite file of the store
directory, or the server's Postgres), so any worker or replica sharing it continues it, after restarts too, for
``$FUSIONGRAPH_RESPONSES_RETENTION_DAYS``. A response belongs to the API key that created it: an id created under
another key, with ``"store": false``, or expired is a 404 exactly like an unknown one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any

from fusiongraph.response_store import response_store
from fusiongraph.server import auth, runs
from fusiongraph.server.redaction import scrub
from fusiongraph.server.response import cut_at_stop, fusiongraph_field, openai_tool_calls, usage_of
from fusiongraph.server.schema import MODEL_ID, RequestError
from fusiongraph.store.backend import StoreError, mask_url

log = logging.getLogger(__name__)

# Responses fields taken as chat knobs or ignored as the chat endpoint does
_PASSTHROUGH = (
    "temperature",
    "top_p",
    "user",
    "metadata",
    "store",
    "parallel_tool_calls",
    "service_tier",
    "truncation",
)


def _text_of(content: Any, where: str) -> str | list[dict]:
    """A Responses content (a string or parts) as chat content."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise RequestError(f"{where}.content must be a string or a list of parts", f"{where}.content")
    parts: list[dict] = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text") and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            parts.append({"type": "image_url", "image_url": {"url": part["image_url"]}})
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            parts.append({"type": "text", "text": part["refusal"]})
        else:
            raise RequestError(f"{where}.content[{i}] is not a text or image part", f"{where}.content")
    if all(p["type"] == "text" for p in parts):
        return "\n".join(p["text"] for p in parts)
    return parts


def input_messages(items: Any) -> list[dict]:
    """Responses ``input`` (a string or a list of items) as chat messages."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    if not isinstance(items, list) or not items:
        raise RequestError("'input' must be a string or a non-empty list of items", "input")
    messages: list[dict] = []
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise RequestError(f"{where} must be an object", where)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise RequestError(f"{where}.role must be user, assistant, system or developer", f"{where}.role")
            messages.append({"role": role, "content": _text_of(item.get("content"), where)})
        elif kind == "function_call":
            if not isinstance(item.get("name"), str) or not isinstance(item.get("call_id"), str):
                raise RequestError(f"{where}: a function_call needs call_id and name", where)
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item.get("arguments") or "{}"},
            }
            if messages and messages[-1]["role"] == "assistant" and messages[-1].get("tool_calls") is not None:
                messages[-1]["tool_calls"].append(call)  # parallel calls: one assistant turn
            else:
                messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
        elif kind == "function_call_output":
            if not isinstance(item.get("call_id"), str):
                raise RequestError(f"{where}: a function_call_output needs call_id", where)
            output = item.get("output")
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": item["call_id"],
                    "content": output if isinstance(output, str) else json.dumps(output),
                }
            )
        elif kind == "reasoning":
            continue  # a previous turn's reasoning summary: nothing to answer
        else:
            raise RequestError(f"{where}: items of type {kind!r} are not supported", f"{where}.type")
    return messages


def key_id(scope: dict | None) -> str | None:
    """The id of the request's API key; None on an open server."""
    key = auth.request_key(scope)
    return key.id if key is not None else None


def _earlier(rid: Any, scope: dict | None) -> list[dict]:
    """The stored conversation of response `rid` of the request's key; a 404 when there is none (unknown, another
    key's, not stored or expired: one answer, so nobody learns that another key's id exists)."""
    try:
        found = response_store().get(rid, key_id(scope)) if isinstance(rid, str) else None
    except StoreError as exc:
        log.error("stored responses unavailable: %s", mask_url(str(exc)))
        raise RequestError(
            f"the stored responses are unavailable ({mask_url(str(exc))[:300]}); retry later",
            "previous_response_id",
            503,
            "store_unavailable",
        ) from None
    if found is None:
        raise RequestError(f"no stored response {rid!r} on this server", "previous_response_id", 404, "not_found")
    return found


def chat_body(body: Any, scope: dict | None = None) -> tuple[dict, list[dict] | None]:
    """The chat request for a Responses request, and the conversation it continues with, to store (None with
    ``"store": false``). Looks up ``previous_response_id`` in the store: blocking (``asyncio.to_thread``)."""
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object", None)
    if body.get("model") not in (MODEL_ID, None):
        raise RequestError(
            f"the model {body.get('model')!r} does not exist; use 'fusiongraph'", "model", 404, "model_not_found"
        )
    unknown = set(body) - {
        "model", "input", "instructions", "tools", "tool_choice", "text", "stream", "previous_response_id",
        "max_output_tokens", "reasoning", "include", "fusiongraph", *_PASSTHROUGH,
    }  # fmt: skip
    if unknown:
        raise RequestError(f"unknown or unsupported parameter(s): {', '.join(sorted(unknown))}", sorted(unknown)[0])
    if body.get("store") is not None and not isinstance(body["store"], bool):
        raise RequestError("'store' must be a boolean", "store")
    earlier: list[dict] = []
    if body.get("previous_response_id") is not None:
        if not isinstance(body["previous_response_id"], str):
            raise RequestError("'previous_response_id' must be a string (a response's id)", "previous_response_id")
        earlier = _earlier(body["previous_response_id"], scope)
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise RequestError("'instructions' must be a string", "instructions")
    new = input_messages(body.get("input"))
    messages = ([{"role": "system", "content": instructions}] if instructions else []) + earlier + new
    chat: dict[str, Any] = {"model": MODEL_ID, "messages": messages, "stream": bool(body.get("stream"))}
    if body.get("tools") is not None:
        if not isinstance(body["tools"], list):
            raise RequestError("'tools' must be a list", "tools")
        tools = []
        for i, tool in enumerate(body["tools"]):
            if not isinstance(tool, dict) or tool.get("type") != "function":
                raise RequestError(f"tools[{i}]: only function tools are supported", f"tools[{i}].type")
            fn = {k: tool[k] for k in ("name", "description", "parameters", "strict") if tool.get(k) is not None}
            tools.append({"type": "function", "function": fn})
        chat["tools"] = tools
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "function":
        chat["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    elif choice is not None:
        chat["tool_choice"] = choice
    fmt = ((body.get("text") or {}) if isinstance(body.get("text"), dict) else {}).get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        chat["response_format"] = {
            "type": "json_schema",
            "json_schema": {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt},
        }
    elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
        chat["response_format"] = {"type": "json_object"}
    if body.get("max_output_tokens") is not None:
        chat["max_completion_tokens"] = body["max_output_tokens"]
    for k in _PASSTHROUGH:
        if k in body and k not in ("store", "truncation", "service_tier"):
            chat[k] = body[k]
    if body.get("fusiongraph") is not None:
        chat["fusiongraph"] = body["fusiongraph"]
    if body.get("store") is False:
        return chat, None
    return chat, [m for m in messages if m["role"] != "system" or not instructions]


def output_items(out: dict) -> list[dict]:
    """The run's output as Responses items: function calls, else one assistant message."""
    calls = openai_tool_calls(out)
    if calls:
        return [
            {
                "type": "function_call",
                "id": f"fc_{uuid.uuid4().hex[:24]}",
                "call_id": c["id"],
                "name": c["function"]["name"],
                "arguments": c["function"]["arguments"],
                "status": "completed",
            }
            for c in calls
        ]
    content = (
        [{"type": "refusal", "refusal": out["refusal"]}]
        if out.get("refusal")
        else [{"type": "output_text", "text": cut_at_stop(out.get("answer") or "", None)[0], "annotations": []}]
    )
    return [
        {
            "type": "message",
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "role": "assistant",
            "status": "completed",
            "content": content,
        }
    ]


def remember(rid: str, conversation: list[dict] | None, items: list[dict], scope: dict | None = None) -> None:
    """Keep the conversation with this response's output in the store, for a later ``previous_response_id`` by
    the same key (nothing kept for ``"store": false``: `conversation` None). Blocking (``asyncio.to_thread``). A
    store that fails is logged, not raised: the answer is already paid for; continuing it is then a 404."""
    if conversation is None:
        return
    reply: list[dict] = []
    for item in items:
        if item["type"] == "function_call":
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            if reply and reply[-1].get("tool_calls") is not None:
                reply[-1]["tool_calls"].append(call)
            else:
                reply.append({"role": "assistant", "content": "", "tool_calls": [call]})
        else:
            text = "".join(p.get("text", p.get("refusal", "")) for p in item["content"])
            reply.append({"role": "assistant", "content": text})
    try:
        response_store().put(rid, key_id(scope), conversation + reply)
    except StoreError as exc:
        log.error("response %s not stored: %s", rid, mask_url(str(exc)))


def response_body(rid: str, out: dict, items: list[dict], prompt_text: str, ignored: list[str], created: int) -> dict:
    usage = usage_of(out, prompt_text)
    return {
        "id": rid,
        "object": "response",
        "created_at": created,
        "status": "completed",
        "model": MODEL_ID,
        "output": items,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": usage.prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": usage.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage.total_tokens,
        },
        "fusiongraph": fusiongraph_field(out, ignored),
    }


def new_id() -> tuple[str, int]:
    return f"resp_{uuid.uuid4().hex}", int(time.time())


# ----------------------------------------------------------------------------------------------- streaming


async def events(req, conversation: list[dict] | None, scope: dict | None):
    """The Responses streaming events of one run: created, in progress, then (once the answer is accepted; a
    rejected draft is never shown) the output items with their deltas, and completed; a failure is
    ``response.failed``. The run holds an admission slot; a client that leaves cancels it."""
    rid, created = new_id()
    seq = iter(range(1_000_000))

    def ev(kind: str, **data) -> dict:
        return {
            "event": kind,
            "data": json.dumps(scrub({"type": kind, "sequence_number": next(seq), **data}), ensure_ascii=False),
        }

    base = {
        "id": rid,
        "object": "response",
        "created_at": created,
        "status": "in_progress",
        "model": MODEL_ID,
        "output": [],
    }
    yield ev("response.created", response=base)
    yield ev("response.in_progress", response=base)
    try:
        out = await runs.streamed_run(req, scope)
    except runs.RunFailed as exc:
        if exc.kind == "overloaded":
            yield ev("error", code="rate_limit_exceeded", message=str(exc), param=None)
        else:
            error = {"code": "server_error", "message": str(exc)}
            yield ev("response.failed", response=base | {"status": "failed", "error": error})
        return
    items = output_items(out)
    await asyncio.to_thread(remember, rid, conversation, items, scope)
    for index, item in enumerate(items):
        if item["type"] == "function_call":
            yield ev(
                "response.output_item.added", output_index=index, item=item | {"arguments": "", "status": "in_progress"}
            )
            yield ev(
                "response.function_call_arguments.delta",
                output_index=index,
                item_id=item["id"],
                delta=item["arguments"],
            )
            yield ev(
                "response.function_call_arguments.done",
                output_index=index,
                item_id=item["id"],
                arguments=item["arguments"],
            )
        else:
            yield ev(
                "response.output_item.added", output_index=index, item=item | {"content": [], "status": "in_progress"}
            )
            for c, part in enumerate(item["content"]):
                empty = {"type": part["type"], "text": "", "annotations": []} if part["type"] == "output_text" else part
                yield ev(
                    "response.content_part.added", output_index=index, item_id=item["id"], content_index=c, part=empty
                )
                text = part.get("text", "")
                for i in range(0, len(text), 24):
                    yield ev(
                        "response.output_text.delta", output_index=index, item_id=item["id"], content_index=c,
                        delta=text[i : i + 24], logprobs=[],
                    )  # fmt: skip
                if part["type"] == "output_text":
                    yield ev(
                        "response.output_text.done", output_index=index, item_id=item["id"], content_index=c,
                        text=text, logprobs=[],
                    )  # fmt: skip
                yield ev(
                    "response.content_part.done", output_index=index, item_id=item["id"], content_index=c, part=part
                )
        yield ev("response.output_item.done", output_index=index, item=item)
    body = response_body(rid, out, items, req.prompt_text, req.ignored, created)
    yield ev("response.completed", response=body)
