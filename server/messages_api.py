"""Anthropic's Messages API (``POST /v1/messages``) on the same graph, for coding agents built for it: a
request is translated into the chat request the endpoint already validates (``system``, ``messages`` with
text, image, ``tool_use`` and ``tool_result`` blocks, ``tools`` with ``input_schema``, ``tool_choice``,
``max_tokens``, ``stop_sequences``, structured outputs' ``output_config.format``), run the same way (admission, cancellation, settlement), and returned as an
Anthropic message (``text`` and ``tool_use`` content blocks, ``stop_reason``, ``usage``), or as its streaming
events. Errors are in Anthropic's shape: ``{"type": "error", "error": {"type", "message"}}``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from starlette.responses import JSONResponse

from fusiongraph.server import runs
from fusiongraph.server.redaction import scrub
from fusiongraph.server.response import cut_at_stop, finish_reason, fusiongraph_field, usage_of
from fusiongraph.server.schema import MODEL_ID, RequestError

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    429: "rate_limit_error",
    499: "invalid_request_error",
}


def error(status: int, message: str) -> JSONResponse:
    kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return JSONResponse({"type": "error", "error": {"type": kind, "message": message}}, status_code=status)


def from_openai_error(response: JSONResponse) -> JSONResponse:
    """An error response of the chat path in Anthropic's shape (the status and headers kept)."""
    body = json.loads(response.body or b"{}")
    out = error(response.status_code, (body.get("error") or {}).get("message") or "error")
    for k in ("Retry-After",):
        if k in response.headers:
            out.headers[k] = response.headers[k]
    return out


def _blocks(content: Any, where: str) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise RequestError(f"{where}.content must be a string or a list of content blocks", f"{where}.content")
    return content


def chat_body(body: Any) -> dict:
    """The chat request for a Messages request."""
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object", None)
    known = {"model", "messages", "system", "max_tokens", "tools", "tool_choice", "stop_sequences", "stream",
             "temperature", "top_p", "top_k", "metadata", "fusiongraph", "thinking", "service_tier",
             "output_config", "output_format"}  # fmt: skip
    if unknown := set(body) - known:
        raise RequestError(f"unknown or unsupported parameter(s): {', '.join(sorted(unknown))}", sorted(unknown)[0])
    if not isinstance(body.get("max_tokens"), int) or isinstance(body.get("max_tokens"), bool):
        raise RequestError("'max_tokens' is required: a whole number", "max_tokens")
    messages: list[dict] = []
    system = body.get("system")
    if isinstance(system, list):
        system = "\n".join(b.get("text", "") for b in system if isinstance(b, dict))
    if system is not None and not isinstance(system, str):
        raise RequestError("'system' must be a string or a list of text blocks", "system")
    if system:
        messages.append({"role": "system", "content": system})
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        raise RequestError("'messages' must be a non-empty list of {role, content}", "messages")
    for i, m in enumerate(body["messages"]):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            raise RequestError(f"{where}.role must be user or assistant", f"{where}.role")
        text, images, calls, results = [], [], [], []
        for j, b in enumerate(_blocks(m.get("content"), where)):
            kind = b.get("type") if isinstance(b, dict) else None
            if kind == "text" and isinstance(b.get("text"), str):
                text.append(b["text"])
            elif kind == "image" and isinstance(b.get("source"), dict) and b["source"].get("type") == "base64":
                src = b["source"]
                images.append(
                    {
                        "type": "image_url",
                        "image_url": {"url": f"data:{src.get('media_type')};base64,{src.get('data')}"},
                    }
                )
            elif kind == "tool_use" and m["role"] == "assistant" and isinstance(b.get("name"), str):
                args = json.dumps(b.get("input") or {}, ensure_ascii=False)
                calls.append(
                    {
                        "id": b.get("id") or f"toolu_{i}_{j}",
                        "type": "function",
                        "function": {"name": b["name"], "arguments": args},
                    }
                )
            elif kind == "tool_result" and m["role"] == "user" and isinstance(b.get("tool_use_id"), str):
                inner = b.get("content")
                if isinstance(inner, list):
                    inner = "\n".join(x.get("text", "") for x in inner if isinstance(x, dict))
                results.append(
                    {
                        "role": "tool",
                        "tool_call_id": b["tool_use_id"],
                        "content": ("error: " if b.get("is_error") else "") + str(inner or ""),
                    }
                )
            elif kind in ("thinking", "redacted_thinking"):
                continue
            else:
                raise RequestError(f"{where}.content[{j}]: a {kind!r} block is not supported here", f"{where}.content")
        messages.extend(results)  # a tool's results come first in the user turn that carries them
        if m["role"] == "assistant":
            messages.append(
                {"role": "assistant", "content": "\n".join(text), **({"tool_calls": calls} if calls else {})}
            )
        elif text or images:
            content = images + [{"type": "text", "text": t} for t in text] if images else "\n".join(text)
            messages.append({"role": "user", "content": content})
    chat: dict[str, Any] = {
        "model": MODEL_ID,
        "messages": messages,
        "max_completion_tokens": body["max_tokens"],
        "stream": bool(body.get("stream")),
    }
    if body.get("tools") is not None:
        if not isinstance(body["tools"], list):
            raise RequestError("'tools' must be a list", "tools")
        tools = []
        for i, t in enumerate(body["tools"]):
            if not isinstance(t, dict) or not isinstance(t.get("name"), str) or t.get("type") not in (None, "custom"):
                raise RequestError(
                    f"tools[{i}]: only client tools {{name, description, input_schema}} are supported", f"tools[{i}]"
                )
            fn = {"name": t["name"], "parameters": t.get("input_schema") or {"type": "object"}}
            fn |= {"description": t["description"]} if t.get("description") else {}
            tools.append({"type": "function", "function": fn})
        chat["tools"] = tools
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        mapped = {"auto": "auto", "any": "required", "none": "none"}.get(choice.get("type"))
        chat["tool_choice"] = mapped or {"type": "function", "function": {"name": choice.get("name")}}
    if (fmt := output_format(body)) is not None:
        chat["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt}}
    if body.get("stop_sequences"):
        chat["stop"] = body["stop_sequences"]
    for k in ("temperature", "top_p", "metadata"):
        if k in body:
            chat[k] = body[k]
    if body.get("fusiongraph") is not None:
        chat["fusiongraph"] = body["fusiongraph"]
    return chat


def output_format(body: dict) -> dict | None:
    """The JSON schema of Anthropic's structured outputs: ``output_config.format`` (``output_format``, its beta
    name, too), ``{"type": "json_schema", "schema": {...}}``; the answer is a text block holding the JSON."""
    config = body.get("output_config")
    if config is not None and not isinstance(config, dict):
        raise RequestError("'output_config' must be an object", "output_config")
    fmt, where = ((config or {}).get("format"), "output_config.format")
    if fmt is None and body.get("output_format") is not None:
        fmt, where = body["output_format"], "output_format"
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
        raise RequestError(f'\'{where}\' must be {{"type": "json_schema", "schema": {{...}}}}', where)
    return fmt["schema"]


def content_blocks(out: dict, stops: list[str] | None) -> tuple[list[dict], str, str | None]:
    """The run's answer as content blocks, its stop_reason and the stop sequence met."""
    calls = out.get("tool_calls") or []
    if calls:
        blocks = [
            {
                "type": "tool_use",
                "id": c.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
                "name": c["name"],
                "input": c.get("args") or {},
            }
            for c in calls
        ]
        return blocks, "tool_use", None
    answer = out.get("refusal") or out.get("answer") or ""
    text, stopped = cut_at_stop(answer, stops)
    met = next((s for s in stops or [] if s in answer and answer.find(s) == len(text)), None) if stopped else None
    reason = "stop_sequence" if stopped else "max_tokens" if finish_reason(out) == "length" else "end_turn"
    return [{"type": "text", "text": text}], reason, met


def message_body(out: dict, req) -> dict:
    blocks, reason, met = content_blocks(out, req.stops)
    text = "".join(b.get("text", "") for b in blocks)
    usage = usage_of(out, req.prompt_text, text)
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": MODEL_ID,
        "content": blocks,
        "stop_reason": reason,
        "stop_sequence": met,
        "usage": {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens},
        "fusiongraph": fusiongraph_field(out, req.ignored),
    }


async def events(req, scope: dict | None):
    """The Messages streaming events of one run, sent once the answer is accepted: message_start, each
    content block (start, deltas, stop), message_delta with the stop reason, message_stop; a failure is an
    ``error`` event."""

    def ev(kind: str, **data) -> dict:
        return {"event": kind, "data": json.dumps(scrub({"type": kind, **data}), ensure_ascii=False)}

    try:
        out = await runs.streamed_run(req, scope)
    except runs.RunFailed as exc:
        kind = "rate_limit_error" if exc.kind == "overloaded" else "api_error"
        yield ev("error", error={"type": kind, "message": str(exc)})
        return
    body = message_body(out, req)
    start = body | {
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": body["usage"]["input_tokens"], "output_tokens": 0},
    }
    yield ev("message_start", message={k: v for k, v in start.items() if k != "fusiongraph"})
    for index, block in enumerate(body["content"]):
        if block["type"] == "tool_use":
            yield ev("content_block_start", index=index, content_block=block | {"input": {}})
            yield ev(
                "content_block_delta",
                index=index,
                delta={"type": "input_json_delta", "partial_json": json.dumps(block["input"])},
            )
        else:
            yield ev("content_block_start", index=index, content_block={"type": "text", "text": ""})
            for i in range(0, len(block["text"]), 24):
                yield ev(
                    "content_block_delta", index=index, delta={"type": "text_delta", "text": block["text"][i : i + 24]}
                )
        yield ev("content_block_stop", index=index)
    delta = {"stop_reason": body["stop_reason"], "stop_sequence": body["stop_sequence"]}
    yield ev(
        "message_delta",
        delta=delta,
        usage={"output_tokens": body["usage"]["output_tokens"]},
        fusiongraph=body["fusiongraph"],
    )
    yield ev("message_stop")
