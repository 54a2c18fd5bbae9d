"""An OpenAI-compatible chat endpoint for the fusion graph, mounted into the LangGraph server.

langgraph.json: ``"http": {"app": "./server/openai_app.py:app"}`` -> ``GET /v1/models`` and
``POST /v1/chat/completions`` are served by ``langgraph dev`` / ``langgraph up`` next to the LangGraph API.

Request -> graph input: the last message must come from the user; it is the query. Earlier turns
(system/developer, user, assistant, tool) are prepended as plain text so that the graph, which takes one
string, sees the conversation::

    Conversation so far:
    System: ...
    User: ...
    Assistant: ...

    User: <last user message>

A single user message is passed through unchanged (so neighbour routing sees the bare question).

Knobs (FusionContext fields) may be given as top-level body fields or in a ``fusiongraph`` object
(the object wins); ``max_tokens`` / ``max_completion_tokens`` map to the knob ``max_tokens``. The path
knobs (store_dir, models_path, taxonomy_path) are server-side settings and refused over HTTP. OpenAI
sampling parameters that the graph does not use (temperature, top_p, seed, stop, user, ...) are accepted
and ignored (listed in the reply's ``fusiongraph.ignored_params``); any other field is a 400.

Streaming (``"stream": true``): server-sent events in OpenAI's ``chat.completion.chunk`` format, ending
with ``data: [DONE]``. The graph runs with ``stream_mode=["updates", "messages"]``; the tokens of the
model run that produces the final answer are forwarded live when that run is known in advance to be the
final one: the ``synthesize`` run when the query splits into several subtasks, or the ``answer`` run of
a single subtask when only one answering model is available (e.g. ``local_only`` with the shipped
local model), so the cascade cannot escalate. When the cascade may still escalate (several models), tokens are held back and the final answer is sent in chunks once it is
known, so a draft that the judges reject is never shown. The last content chunk carries
``finish_reason`` and the routing trace (``fusiongraph``); ``stream_options.include_usage`` adds OpenAI's
usage chunk (empty ``choices``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
import uuid
from typing import Any, get_type_hints

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from fusiongraph.context import FusionContext
from fusiongraph.text import QueryError, clean_query, redact

MODEL_ID = "fusiongraph"
CREATED = 1735689600  # a fixed timestamp for the model listing
HTTP_FORBIDDEN_KNOBS = frozenset({"store_dir", "models_path", "taxonomy_path"})
IGNORED_OPENAI_PARAMS = frozenset({
    "temperature", "top_p", "seed", "stop", "user", "presence_penalty", "frequency_penalty", "logit_bias",
    "metadata", "store", "parallel_tool_calls", "service_tier", "reasoning_effort", "prompt_cache_key",
    "safety_identifier", "verbosity", "modalities", "logprobs", "top_logprobs",
})
ROLES = {"system": "System", "developer": "System", "user": "User", "assistant": "Assistant", "tool": "Tool"}
STREAM_CHUNK_CHARS = 24
_SECRET_ENV = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)", re.I)


class RequestError(Exception):
    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None):
        super().__init__(message)
        self.message, self.param, self.status, self.code = message, param, status, code


def error_response(message: str, status: int = 400, param: str | None = None, code: str | None = None,
                   kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": redact(message, _secrets()), "type": kind, "param": param,
                                   "code": code}}, status_code=status)


# --- secrets -------------------------------------------------------------------------------------------

def _secrets() -> list[str]:
    """Values never to show: the roster's API keys plus any env value that looks like a key/token."""
    values = [v for k, v in os.environ.items() if _SECRET_ENV.search(k) and v and len(v) >= 8]
    try:
        from fusiongraph import resources

        loaded = ([resources._override] if resources._override is not None else []) + list(resources._built.values())
        for res in loaded:
            values += res.roster.secrets()
    except Exception:
        pass
    return sorted(set(values), key=len, reverse=True)


def _scrub(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {k: _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v, secrets) for v in value]
    return value


# --- request parsing -----------------------------------------------------------------------------------

_KNOB_TYPES = get_type_hints(FusionContext)


def _check_knob(name: str, value: Any) -> Any:
    if name in HTTP_FORBIDDEN_KNOBS:
        raise RequestError(f"knob {name!r} is a server-side setting and cannot be set per request",
                           param=name, code="forbidden_knob")
    kind = _KNOB_TYPES[name]
    ok = {bool: isinstance(value, bool),
          int: isinstance(value, int) and not isinstance(value, bool),
          float: isinstance(value, (int, float)) and not isinstance(value, bool),
          str: isinstance(value, str)}[kind]
    if not ok:
        raise RequestError(f"knob {name!r} must be of type {kind.__name__}, got {type(value).__name__}",
                           param=name, code="invalid_type")
    return float(value) if kind is float else value


def _content_text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for i, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise RequestError(f"{where}.content[{i}]: only text parts ({{'type': 'text', 'text': ...}}) "
                                   "are supported", param=f"{where}.content")
            parts.append(part["text"])
        return "\n".join(parts)
    if content is None:
        return ""
    raise RequestError(f"{where}.content must be a string or a list of text parts, got {type(content).__name__}",
                       param=f"{where}.content")


def build_query(messages: Any) -> str:
    """The graph's query: the last user message, with earlier turns as a plain-text prefix."""
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list of {role, content} objects", param="messages")
    turns = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise RequestError(f"{where} must be an object with 'role' and 'content'", param="messages")
        role = m.get("role")
        if role not in ROLES:
            raise RequestError(f"{where}.role must be one of {sorted(ROLES)}, got {role!r}", param=f"{where}.role")
        text = _content_text(m.get("content"), where)
        if role == "user" and not text.strip():
            raise RequestError(f"{where}.content is empty", param=f"{where}.content")
        turns.append((role, text))
    role, last = turns[-1]
    if role != "user":
        raise RequestError(f"the last message must come from the user, got role {role!r}", param="messages")
    earlier = [f"{ROLES[r]}: {t.strip()}" for r, t in turns[:-1] if t.strip()]
    query = last if not earlier else "Conversation so far:\n" + "\n".join(earlier) + f"\n\nUser: {last.strip()}"
    try:
        return clean_query(query)
    except QueryError as exc:
        raise RequestError(str(exc), param="messages") from exc


def parse_request(body: Any) -> dict:
    """Validate the body; returns {query, context, stream, include_usage, ignored}. Raises RequestError."""
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("'model' is required: use 'fusiongraph'", param="model")
    if model != MODEL_ID:
        raise RequestError(f"the model {model!r} does not exist; this server offers {MODEL_ID!r}",
                           param="model", status=404, code="model_not_found")
    query = build_query(body.get("messages"))
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError("'stream' must be a boolean", param="stream")
    opts = body.get("stream_options") or {}
    if not isinstance(opts, dict):
        raise RequestError("'stream_options' must be an object", param="stream_options")
    n = body.get("n", 1)
    if n != 1 or isinstance(n, bool):
        raise RequestError("only n=1 is supported", param="n")
    knobs = set(FusionContext.knob_names())
    context: dict[str, Any] = {}
    ignored = []
    for key, value in body.items():
        if key in ("model", "messages", "stream", "stream_options", "n", "fusiongraph"):
            continue
        if key in ("max_tokens", "max_completion_tokens"):
            if value is not None:
                context["max_tokens"] = _check_knob("max_tokens", value)
        elif key in knobs:
            context[key] = _check_knob(key, value)
        elif key in IGNORED_OPENAI_PARAMS:
            ignored.append(key)
        elif key in ("tools", "tool_choice", "functions", "function_call", "response_format", "audio",
                     "prediction"):
            if value not in (None, [], {"type": "text"}, "none", "auto"):
                raise RequestError(f"'{key}' is not supported by the fusiongraph model", param=key)
            ignored.append(key)
        else:
            raise RequestError(f"unknown parameter or knob {key!r}; knobs: {sorted(knobs - HTTP_FORBIDDEN_KNOBS)}",
                               param=key, code="unknown_parameter")
    extra = body.get("fusiongraph", {})
    if not isinstance(extra, dict):
        raise RequestError("'fusiongraph' must be an object of knobs", param="fusiongraph")
    for key, value in extra.items():
        if key not in knobs:
            raise RequestError(f"unknown knob {key!r}; knobs: {sorted(knobs - HTTP_FORBIDDEN_KNOBS)}",
                               param=f"fusiongraph.{key}", code="unknown_parameter")
        context[key] = _check_knob(key, value)
    try:
        FusionContext(**context)  # range checks (quality_threshold in [0, 1], budget >= 0, ...)
    except (ValueError, TypeError) as exc:
        raise RequestError(str(exc), param="fusiongraph") from exc
    return {"query": query, "context": context, "stream": stream,
            "include_usage": bool(opts.get("include_usage")), "ignored": sorted(ignored)}


# --- graph output -> OpenAI ------------------------------------------------------------------------------

def _graph():
    from graphs.fusion import graph

    return graph


def usage_of(out: dict) -> dict:
    summary = out.get("summary") or {}
    tin, tout = int(summary.get("tokens_in", 0) or 0), int(summary.get("tokens_out", 0) or 0)
    return {"prompt_tokens": tin, "completion_tokens": tout, "total_tokens": tin + tout}


def _slim_attempt(a: dict) -> dict:
    keep = {k: v for k, v in a.items() if k not in ("answer", "verdicts")}
    if a.get("answer") is not None:
        keep["answer"] = a["answer"][:500]
    keep["verdicts"] = [{k: v for k, v in vd.items() if k != "detail"} | {"detail": str(vd.get("detail", ""))[:200]}
                        for vd in a.get("verdicts", []) if isinstance(vd, dict)]
    return keep


def fusiongraph_field(out: dict, ignored: list[str]) -> dict:
    results = []
    for r in out.get("results") or []:
        slim = {k: v for k, v in r.items() if k not in ("attempts", "guides", "class_scores", "answer")}
        slim["answer"] = (r.get("answer") or "")[:500]
        slim["attempts"] = [_slim_attempt(a) for a in r.get("attempts", [])]
        results.append(slim)
    field = {"subtasks": out.get("subtasks", []), "summary": out.get("summary", {}), "results": results,
             "trace": out.get("trace", [])}
    if ignored:
        field["ignored_params"] = ignored
    return field


def _finish_reason(out: dict) -> str:
    reasons = [a.get("finish_reason") for r in out.get("results") or [] for a in r.get("attempts", [])
               if a.get("model") == r.get("answered_by")]
    return "length" if "length" in reasons and len(reasons) == 1 else "stop"


def completion_body(out: dict, ignored: list[str]) -> dict:
    body = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": MODEL_ID, "system_fingerprint": None,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": out.get("answer", ""),
                                                 "refusal": None},
                         "logprobs": None, "finish_reason": _finish_reason(out)}],
            "usage": usage_of(out), "fusiongraph": fusiongraph_field(out, ignored)}
    return _scrub(body, _secrets())


# --- streaming -----------------------------------------------------------------------------------------

class _LiveFilter:
    """Decides which model runs' tokens go to the client live (see the module docstring)."""

    def __init__(self, context: dict) -> None:
        self.context = context
        self._single: bool | None = None
        self.n_subtasks: int | None = None
        self.live_run: str | None = None
        self.sent = ""

    def update(self, namespace: tuple, data: Any) -> None:
        if not namespace and isinstance(data, dict) and isinstance(data.get("decompose"), dict):
            self.n_subtasks = len(data["decompose"].get("subtasks") or [])

    def wants(self, message: Any, metadata: dict) -> bool:
        tags = set(metadata.get("tags") or [])
        run_id = str(getattr(message, "id", None) or metadata.get("langgraph_checkpoint_ns") or "")
        if "judge" in tags or "decompose" in tags:
            return False
        if self.live_run is not None:
            return run_id == self.live_run
        if "synthesize" in tags and (self.n_subtasks or 0) > 1:
            self.live_run = run_id
            return True
        if "answer" in tags and self.n_subtasks == 1 and self.single_candidate():
            self.live_run = run_id
            return True
        return False

    def single_candidate(self) -> bool:
        """One answering model available: the cascade cannot escalate (asked once the graph has loaded)."""
        if self._single is None:
            self._single = _single_candidate(self.context)
        return self._single


def _single_candidate(context: dict) -> bool:
    try:
        from fusiongraph.context import as_context
        from fusiongraph.resources import get_resources

        ctx = as_context(context)
        available, _ = get_resources(ctx).roster.availability(ctx.local_only, answering=True)
        return len(available) == 1
    except Exception:  # noqa: BLE001 - when unsure, do not stream drafts live
        return False


def _chunk(cid: str, created: int, delta: dict, finish: str | None = None, **extra) -> str:
    body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": MODEL_ID,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}
    return "data: " + json.dumps(_scrub(body, _secrets()), ensure_ascii=False) + "\n\n"


def _run_stream(query: str, context: dict, emit, stop: threading.Event) -> None:
    """In a worker thread: run the graph, emit ("token", text) / ("done", output) / ("error", exc)."""
    try:
        graph = _graph()
        live = _LiveFilter(context)
        out: dict = {}
        for namespace, mode, data in graph.stream({"query": query}, context=context,
                                                  stream_mode=["updates", "messages"], subgraphs=True):
            if stop.is_set():
                return
            if mode == "updates":
                live.update(namespace, data)
                if not namespace and isinstance(data, dict):
                    for node_out in data.values():
                        if isinstance(node_out, dict):
                            for k, v in node_out.items():
                                if k in ("results", "trace"):
                                    out.setdefault(k, []).extend(v)
                                else:
                                    out[k] = v
            elif mode == "messages":
                message, metadata = data
                text = getattr(message, "text", None)  # a str (subclass) in langchain-core >= 1
                if isinstance(text, str) and text and live.wants(message, metadata or {}):
                    live.sent += str(text)
                    emit(("token", str(text)))
        emit(("done", (out, live.sent)))
    except Exception as exc:  # noqa: BLE001 - reported to the client as an error event
        emit(("error", exc))


async def _sse(query: str, context: dict, include_usage: bool, ignored: list[str]):
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    stop = threading.Event()
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    worker = threading.Thread(target=_run_stream, daemon=True, name="fusiongraph-stream",
                              args=(query, context, lambda item: loop.call_soon_threadsafe(queue.put_nowait, item),
                                    stop))
    worker.start()
    try:
        yield _chunk(cid, created, {"role": "assistant", "content": ""})
        while True:
            kind, payload = await queue.get()
            if kind == "token":
                yield _chunk(cid, created, {"content": payload})
            elif kind == "error":
                err = {"error": {"message": f"the graph failed: {type(payload).__name__}: {payload}"[:1000],
                                 "type": "server_error", "param": None, "code": None}}
                yield "data: " + json.dumps(_scrub(err, _secrets())) + "\n\n"
                break
            else:
                out, sent = payload
                answer = out.get("answer", "") or ""
                extra: dict = {}
                if not sent:
                    rest = answer
                elif answer.startswith(sent) or answer.strip() == sent.strip():
                    rest = answer[len(sent):] if answer.startswith(sent) else ""
                else:  # the streamed run did not produce the final text (e.g. the synthesiser failed)
                    rest = "\n\n" + answer
                    extra["stream_note"] = "the live-streamed text was replaced by the final answer that follows"
                for i in range(0, len(rest), STREAM_CHUNK_CHARS):
                    yield _chunk(cid, created, {"content": rest[i:i + STREAM_CHUNK_CHARS]})
                field = fusiongraph_field(out, ignored) | extra
                field["streamed_live"] = bool(sent)
                yield _chunk(cid, created, {}, _finish_reason(out), fusiongraph=field)
                if include_usage:
                    body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": MODEL_ID,
                            "system_fingerprint": None, "choices": [], "usage": usage_of(out)}
                    yield "data: " + json.dumps(body) + "\n\n"
                break
        yield "data: [DONE]\n\n"
    finally:
        stop.set()  # the client went away or we are done: the worker stops at its next event


# --- endpoints -----------------------------------------------------------------------------------------

async def list_models(request: Request) -> JSONResponse:
    return JSONResponse({"object": "list", "data": [
        {"id": MODEL_ID, "object": "model", "created": CREATED, "owned_by": "fusiongraph"}]})


async def get_model(request: Request) -> JSONResponse:
    if request.path_params["model"] != MODEL_ID:
        return error_response(f"the model {request.path_params['model']!r} does not exist", 404,
                              "model", "model_not_found")
    return JSONResponse({"id": MODEL_ID, "object": "model", "created": CREATED, "owned_by": "fusiongraph"})


async def chat_completions(request: Request):
    try:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except (ValueError, UnicodeDecodeError) as exc:
            raise RequestError(f"the request body is not valid JSON: {exc}") from exc
        req = parse_request(body)
    except RequestError as exc:
        return error_response(exc.message, exc.status, exc.param, exc.code)
    if req["stream"]:
        return StreamingResponse(_sse(req["query"], req["context"], req["include_usage"], req["ignored"]),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    try:
        out = await run_in_threadpool(_graph().invoke, {"query": req["query"]}, context=req["context"])
    except QueryError as exc:
        return error_response(str(exc), 400, "messages")
    except Exception as exc:  # noqa: BLE001 - a failure of the graph itself, not of the request
        return error_response(f"the graph failed: {type(exc).__name__}: {exc}"[:1000], 500, kind="server_error")
    return JSONResponse(completion_body(out, req["ignored"]))


app = Starlette(routes=[
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{model:path}", get_model, methods=["GET"]),
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
])
