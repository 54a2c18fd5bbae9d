"""An OpenAI-compatible chat endpoint for the fusion graph, mounted into the LangGraph server
(langgraph.json ``"http": {"app": "./server/openai_app.py:app"}``): ``GET /v1/models``, ``POST /v1/chat/completions``.

The messages become LangChain messages and the graph's input (``{"messages": [...], "tools": ...}``): the last
user message is answered, earlier turns are the history the answering models receive (nodes/standalone.py);
``tools`` / ``tool_choice`` / ``parallel_tool_calls`` / ``response_format`` pass through (validated by
fusiongraph.conversation.make_request), tool calls come back as ``tool_calls`` (``finish_reason: "tool_calls"``,
streamed as OpenAI's tool-call deltas), an answer no model made valid as a ``refusal``.
Knobs (FusionContext fields) come as top-level fields or in a ``fusiongraph`` object (which wins), except the
server-side path knobs; OpenAI parameters the graph does not use are accepted, ignored and listed in
``fusiongraph.ignored_params``; anything else is a 4xx in OpenAI's error format. Streaming forwards a model
run's tokens live only when that run is sure to give the final answer (``synthesize`` of a split query, or
the ``answer`` of the only answering model); otherwise the accepted answer is sent in chunks once known, so a
rejected draft is never shown. See README.md, "OpenAI-compatible endpoint".
"""

import asyncio
import contextlib
import json
import os
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, Literal, get_type_hints

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.types import Overwrite
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import ChoiceDelta
from openai.types.completion_usage import CompletionUsage
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fusiongraph.context import FusionContext
from fusiongraph.conversation import make_request, split_conversation
from fusiongraph.models.roster import CapabilityError
from fusiongraph.records import Attempt, Summary
from fusiongraph.server import auth, metrics
from fusiongraph.text import QueryError, clean_query, redact

MODEL_ID = "fusiongraph"
MODEL_CARD = {"id": MODEL_ID, "object": "model", "created": 1735689600, "owned_by": "fusiongraph"}
HTTP_FORBIDDEN_KNOBS = frozenset({"store_dir", "models_path", "taxonomy_path", "discover_local", "privacy_patterns"})
IGNORED_OPENAI_PARAMS = frozenset(
    {
        "temperature",
        "top_p",
        "seed",
        "stop",
        "user",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "metadata",
        "store",
        "service_tier",
        "reasoning_effort",
        "prompt_cache_key",
        "safety_identifier",
        "verbosity",
        "modalities",
        "logprobs",
        "top_logprobs",
    }
)
# accepted (and ignored) only with a value that asks for nothing (the legacy functions API: use tools)
UNSUPPORTED_PARAMS = ("functions", "function_call", "audio", "prediction")
# passed to the graph (fusiongraph.conversation.make_request validates them)
REQUEST_PARAMS = ("tools", "tool_choice", "parallel_tool_calls", "response_format")
ROLES = {"system": "System", "developer": "System", "user": "User", "assistant": "Assistant", "tool": "Tool"}
STREAM_CHUNK_CHARS = 24
# graph.astream runs the synchronous nodes, and the model calls they block on, in the event loop's default
# executor; asyncio's default (cores + 4 threads) deadlocks once more nodes wait than it has threads.
GRAPH_THREADS = 256
_SECRET_ENV = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)", re.I)
_KNOB_TYPES = get_type_hints(FusionContext)
_HTTP_KNOBS = sorted(set(_KNOB_TYPES) - HTTP_FORBIDDEN_KNOBS)


class RequestError(Exception):
    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None):
        super().__init__(message)
        self.message, self.param, self.status, self.code = message, param, status, code


def error_response(
    message: str,
    status: int = 400,
    param: str | None = None,
    code: str | None = None,
    kind: str = "invalid_request_error",
) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": redact(message, _secrets()), "type": kind, "param": param, "code": code}},
        status_code=status,
    )


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


# --- the request -----------------------------------------------------------------------------------------


def _refuse(message: str, param: str | None, status: int = 400, code: str | None = None) -> PydanticCustomError:
    return PydanticCustomError("request", message, {"param": param, "status": status, "code": code})


class Message(BaseModel):
    model_config = ConfigDict(strict=True)  # other message fields (name, audio, ...) are ignored
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[dict[str, Any]] | None = None  # an assistant's calls, in OpenAI's form
    tool_call_id: str | None = None  # a tool message: the call it answers
    name: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _parts(cls, v: Any) -> Any:
        if not isinstance(v, list):
            return v
        for i, part in enumerate(v):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                continue
            if kind == "image_url" and isinstance((part.get("image_url") or {}).get("url"), str):
                continue
            raise PydanticCustomError("content_parts", "not a text or image part", {"part": i})
        return v

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(p["text"] for p in self.content if p.get("type") == "text")
        return self.content or ""

    def to_langchain(self, i: int) -> BaseMessage:
        """The LangChain message (RequestError naming the message when it cannot be one)."""
        images = isinstance(self.content, list) and any(p.get("type") == "image_url" for p in self.content)
        if images and self.role != "user":
            raise _refuse(f"messages[{i}]: only user messages may have image parts", f"messages[{i}].content")
        if self.role in ("system", "developer"):
            return SystemMessage(self.text())
        if self.role == "user":
            return HumanMessage(self.content if images else self.text(), **({"name": self.name} if self.name else {}))
        if self.role == "tool":
            if not self.tool_call_id:
                raise _refuse(f"messages[{i}]: a tool message needs tool_call_id", f"messages[{i}].tool_call_id")
            return ToolMessage(self.text(), tool_call_id=self.tool_call_id)
        calls = []
        for j, tc in enumerate(self.tool_calls or []):
            fn = tc.get("function") if isinstance(tc, dict) else None
            try:
                args = json.loads(fn.get("arguments") or "{}") if isinstance(fn, dict) else None
            except (TypeError, ValueError):
                args = None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not isinstance(args, dict):
                raise _refuse(
                    f"messages[{i}].tool_calls[{j}] must be {{id, type: function, function: {{name, arguments: "
                    f"a JSON object as a string}}}}",
                    f"messages[{i}].tool_calls",
                )
            calls.append({"name": fn["name"], "args": args, "id": tc.get("id") or f"call_{i}_{j}"})
        return AIMessage(self.text(), tool_calls=calls)


def _conversation(messages: list[Message]) -> list[BaseMessage]:
    """The LangChain messages of the request: the last user message is answered, earlier turns are history
    (fusiongraph.conversation.split_conversation, the graph's own rule)."""
    for i, m in enumerate(messages):
        if m.role == "user" and not m.text().strip() and not isinstance(m.content, list):
            raise _refuse(f"messages[{i}].content is empty", f"messages[{i}].content")
    converted = [m.to_langchain(i) for i, m in enumerate(messages)]
    if messages[-1].role not in ("user", "tool"):
        raise _refuse(f"the last message must come from the user or a tool, got role {messages[-1].role!r}", "messages")
    try:
        _, last, _ = split_conversation(converted)
        clean_query(last.text)
    except QueryError as exc:
        raise _refuse(str(exc), "messages") from exc
    return converted


def _model_exists(model: str) -> str:
    if model and model != MODEL_ID:
        raise _refuse(
            f"the model {model!r} does not exist; this server offers {MODEL_ID!r}", "model", 404, "model_not_found"
        )
    return model


_STRICT = ConfigDict(strict=True, extra="forbid")
Knobs = create_model("Knobs", __config__=_STRICT, **{k: (_KNOB_TYPES[k], None) for k in _HTTP_KNOBS})


class _Request(BaseModel):
    """The fields every request has; ChatRequest adds the knobs and the accepted-and-ignored parameters."""

    model_config = _STRICT
    model: Annotated[str, Field(min_length=1), AfterValidator(_model_exists)]
    messages: Annotated[list[Message], Field(min_length=1), AfterValidator(lambda v: _conversation(v) and v)]
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    n: float = Field(1, ge=1, le=1)
    _request: dict = PrivateAttr(default_factory=dict)

    @field_validator("stream_options", mode="before")
    @classmethod
    def _no_options(cls, v: Any) -> Any:
        return v or None

    @field_validator(*UNSUPPORTED_PARAMS, check_fields=False)
    @classmethod
    def _asks_for_nothing(cls, v: Any, info) -> Any:
        if v not in (None, [], {"type": "text"}, "none", "auto"):
            raise _refuse(f"'{info.field_name}' is not supported by the fusiongraph model", info.field_name)
        return v

    @model_validator(mode="after")
    def _request_is_valid(self):
        images = any(
            isinstance(m.content, list) and any(p.get("type") == "image_url" for p in m.content) for m in self.messages
        )
        try:
            self._request = make_request(
                self.tools, self.tool_choice, self.parallel_tool_calls, self.response_format, images=images
            )
        except ValueError as exc:
            param = next((p for p in REQUEST_PARAMS if str(exc).startswith(p)), "messages")
            raise _refuse(str(exc), param) from exc
        return self

    @model_validator(mode="after")
    def _knobs_in_range(self):
        try:
            FusionContext(**self.context)  # range checks (quality_threshold in [0, 1], budget >= 0, ...)
        except (ValueError, TypeError) as exc:
            raise _refuse(str(exc), "fusiongraph") from exc
        return self

    @property
    def request(self) -> dict:
        """The validated tools / response_format (fusiongraph.state.RequestSpec)."""
        return self._request

    @property
    def graph_input(self) -> dict:
        """The graph's input: the conversation as LangChain messages and the request's fields."""
        fields = {k: getattr(self, k) for k in REQUEST_PARAMS if getattr(self, k) is not None}
        return {"messages": _conversation(self.messages), **fields}

    @property
    def last_text(self) -> str:
        return split_conversation(_conversation(self.messages))[1].text

    @property
    def context(self) -> dict:
        top = {k: getattr(self, k) for k in self.model_fields_set if k in _KNOB_TYPES}
        if self.max_completion_tokens is not None:
            top["max_tokens"] = self.max_completion_tokens
        return {k: v for k, v in top.items() if v is not None} | self.fusiongraph.model_dump(exclude_unset=True)

    @property
    def ignored(self) -> list[str]:
        return sorted(self.model_fields_set & (IGNORED_OPENAI_PARAMS | set(UNSUPPORTED_PARAMS)))

    @property
    def structured(self) -> bool:
        """Tools or a JSON format: no draft is streamed live (the reply is checked whole first)."""
        return bool(self.request.get("requires"))


ChatRequest = create_model(
    "ChatRequest",
    __base__=_Request,
    **{k: (_KNOB_TYPES[k], None) for k in _HTTP_KNOBS if k != "max_tokens"},
    max_tokens=(int | None, None),
    max_completion_tokens=(int | None, None),
    **{p: (Any, None) for p in sorted(IGNORED_OPENAI_PARAMS) + list(UNSUPPORTED_PARAMS) + list(REQUEST_PARAMS)},
    fusiongraph=(Knobs, Field(default_factory=Knobs)),
)

_FIXED_MESSAGES = {
    None: "the request body must be a JSON object",
    "model": "'model' is required: use 'fusiongraph'",
    "messages": "'messages' must be a non-empty list of {role, content} objects",
    "n": "only n=1 is supported",
    "stream": "'stream' must be a boolean",
    "stream_options": "'stream_options' must be an object",
    "fusiongraph": "'fusiongraph' must be an object of knobs",
}


def _request_error(exc: ValidationError) -> RequestError:
    """The first validation error as an OpenAI error (message, param, status, code)."""
    e = exc.errors(include_url=False)[0]
    loc, kind, ctx = e["loc"], e["type"], e.get("ctx") or {}
    if kind == "request":
        return RequestError(e["msg"], ctx["param"], ctx["status"], ctx["code"])
    param = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or None
    name, got = str(loc[-1]) if loc else "", type(e["input"]).__name__
    if kind == "extra_forbidden" and name in HTTP_FORBIDDEN_KNOBS:
        return RequestError(
            f"knob {name!r} is a server-side setting and cannot be set per request", name, code="forbidden_knob"
        )
    if kind == "extra_forbidden":
        what = "unknown knob" if len(loc) > 1 else "unknown parameter or knob"
        return RequestError(f"{what} {name!r}; knobs: {_HTTP_KNOBS}", param, code="unknown_parameter")
    if name in _KNOB_TYPES or name == "max_completion_tokens":
        knob = "max_tokens" if name == "max_completion_tokens" else name
        return RequestError(
            f"knob {knob!r} must be of type {_KNOB_TYPES[knob].__name__}, got {got}", knob, code="invalid_type"
        )
    if param in _FIXED_MESSAGES:
        return RequestError(_FIXED_MESSAGES[param], param)
    if kind == "content_parts":
        return RequestError(
            f"{param}[{ctx['part']}]: a part must be {{'type': 'text', 'text': ...}} or "
            f"{{'type': 'image_url', 'image_url': {{'url': ...}}}}",
            param,
        )
    if name == "role":
        role = None if kind == "missing" else e["input"]
        return RequestError(f"{param} must be one of {sorted(ROLES)}, got {role!r}", param)
    if "content" in loc:
        upto = loc[: loc.index("content") + 1]
        param = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in upto).lstrip(".")
        return RequestError(f"{param} must be a string or a list of text / image parts, got {got}", param)
    if name in ("tool_calls", "tool_call_id", "name"):
        return RequestError(f"{param} has the wrong type ({got})", param)
    return RequestError(f"{param} must be an object with 'role' and 'content'", "messages")


def parse_request(body: Any) -> _Request:
    try:
        return ChatRequest.model_validate(body)
    except ValidationError as exc:
        raise _request_error(exc) from None


def build_conversation(messages: Any) -> list[BaseMessage]:
    """The graph's messages for a list of OpenAI messages (RequestError if they cannot make a conversation)."""
    return parse_request({"model": MODEL_ID, "messages": messages}).graph_input["messages"]


# --- graph output -> OpenAI ------------------------------------------------------------------------------


def _graph():
    from fusiongraph.graphs.fusion import graph

    return graph


def usage_of(out: dict) -> CompletionUsage:
    summary: Summary | dict = out.get("summary") or {}
    tin, tout = int(summary.get("tokens_in", 0) or 0), int(summary.get("tokens_out", 0) or 0)
    return CompletionUsage(prompt_tokens=tin, completion_tokens=tout, total_tokens=tin + tout)


def _slim_attempt(a: Attempt) -> dict:
    """An attempt (fusiongraph.records.Attempt) for the response: answer and verdict details cut short."""
    keep = {k: v for k, v in a.items() if k not in ("answer", "verdicts")}
    if a.get("answer") is not None:
        keep["answer"] = a["answer"][:500]
    keep["verdicts"] = [
        {k: v for k, v in vd.items() if k != "detail"} | {"detail": str(vd.get("detail", ""))[:200]}
        for vd in a.get("verdicts", [])
        if isinstance(vd, dict)
    ]
    return keep


def fusiongraph_field(out: dict, ignored: list[str]) -> dict:
    """The graph's output for the response: each SubtaskResult without its guides, class scores, and with
    its answer and attempts cut short."""
    results = [
        {k: v for k, v in r.items() if k not in ("attempts", "guides", "class_scores", "answer")}
        | {"answer": (r.get("answer") or "")[:500], "attempts": [_slim_attempt(a) for a in r.get("attempts", [])]}
        for r in out.get("results") or []
    ]
    field = {
        "verified": (out.get("summary") or {}).get("verified", False),
        "standalone": out.get("standalone"),
        "subtasks": out.get("subtasks", []),
        "summary": out.get("summary", {}),
        "results": results,
        "trace": out.get("trace", []),
    }
    field |= {"refusal": out["refusal"]} if out.get("refusal") else {}
    return field | ({"ignored_params": ignored} if ignored else {})


def openai_tool_calls(out: dict) -> list[dict]:
    """The reply's tool calls in OpenAI's form (arguments as a JSON string)."""
    return [
        {
            "id": tc.get("id") or f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {"name": tc["name"], "arguments": json.dumps(tc.get("args") or {}, ensure_ascii=False)},
        }
        for tc in out.get("tool_calls") or []
    ]


def _finish_reason(out: dict) -> str:
    if out.get("tool_calls"):
        return "tool_calls"
    reasons = [
        a.get("finish_reason")
        for r in out.get("results") or []
        for a in r.get("attempts", [])
        if a.get("model") == r.get("answered_by")
    ]
    return "length" if "length" in reasons and len(reasons) == 1 else "stop"


def completion_body(out: dict, ignored: list[str]) -> dict:
    calls = openai_tool_calls(out)
    message = ChatCompletionMessage(
        role="assistant",
        content=None if calls or out.get("refusal") else out.get("answer", ""),
        refusal=out.get("refusal"),
        **({"tool_calls": calls} if calls else {}),
    )
    body = ChatCompletion(
        id=f"chatcmpl-{uuid.uuid4().hex}",
        object="chat.completion",
        created=int(time.time()),
        model=MODEL_ID,
        system_fingerprint=None,
        usage=usage_of(out),
        choices=[Choice(index=0, message=message, logprobs=None, finish_reason=_finish_reason(out))],
        fusiongraph=fusiongraph_field(out, ignored),
    )
    return _scrub(body.to_dict(), _secrets())


# --- streaming -----------------------------------------------------------------------------------------


def _single_candidate(context: dict) -> bool:
    """One answering model available: the cascade cannot escalate (asked once the graph has loaded)."""
    try:
        from fusiongraph.context import as_context
        from fusiongraph.resources import get_resources

        ctx = as_context(context)
        return len(get_resources(ctx).roster.availability(ctx.local_only, answering=True)[0]) == 1
    except Exception:  # noqa: BLE001 - when unsure, do not stream drafts live
        return False


def _chunk(
    cid: str,
    created: int,
    delta: dict | None = None,
    finish: str | None = None,
    usage: CompletionUsage | None = None,
    **extra,
) -> dict:
    choices = (
        [] if usage else [ChunkChoice(index=0, delta=ChoiceDelta(**delta or {}), logprobs=None, finish_reason=finish)]
    )
    chunk = ChatCompletionChunk(
        id=cid,
        object="chat.completion.chunk",
        created=created,
        model=MODEL_ID,
        system_fingerprint=None,
        choices=choices,
        **({"usage": usage} if usage else {}),
        **extra,
    )
    return {"data": json.dumps(_scrub(chunk.to_dict(), _secrets()), ensure_ascii=False)}


def _run_config(scope: dict | None) -> dict:
    """The run's config: the caller's API key (its id), as LangGraph's auth gives it to its own runs, so the
    answer cache never crosses keys."""
    key = auth.request_key(scope)
    return {"configurable": {"langgraph_auth_user_id": key.id}} if key is not None else {}


async def _events(req: _Request, scope: dict | None = None):
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    yield _chunk(cid, created, {"role": "assistant", "content": ""})
    out: dict = {}
    sent, live_run, n_subtasks, single = "", None, 0, False
    try:
        graph = await asyncio.to_thread(_graph)  # the first import loads the graph: not on the event loop
        async for namespace, mode, data in graph.astream(
            req.graph_input,
            context=req.context,
            config=_run_config(scope),
            stream_mode=["updates", "messages"],
            subgraphs=True,
        ):
            if mode == "updates" and not namespace and isinstance(data, dict):
                for node, node_out in data.items():
                    if isinstance(node_out, dict) and node == "decompose":
                        n_subtasks = len(node_out.get("subtasks") or [])
                        single = n_subtasks == 1 and await asyncio.to_thread(_single_candidate, req.context)
                    for k, v in node_out.items() if isinstance(node_out, dict) else ():
                        if isinstance(v, Overwrite):  # the standalone node starts the run's results and trace
                            out[k] = list(v.value)
                        elif k == "messages":
                            out[k] = out.get(k, []) + list(v)
                        else:
                            out[k] = out.get(k, []) + v if k in ("results", "trace") else v
            elif mode == "messages":
                message, metadata = data
                tags, text = set((metadata or {}).get("tags") or []), message.text
                run_id = str(message.id or (metadata or {}).get("langgraph_checkpoint_ns") or "")
                if (
                    text
                    and live_run is None
                    and not req.structured  # a tool call or JSON is checked whole before it is sent
                    and not tags & {"judge", "decompose", "standalone"}
                    and (("synthesize" in tags and n_subtasks > 1) or ("answer" in tags and single))
                ):
                    live_run = run_id  # the run that is sure to produce the final answer
                if text and run_id == live_run:
                    sent += text
                    yield _chunk(cid, created, {"content": text})
    except Exception as exc:  # noqa: BLE001 - reported to the client as an error event
        err = {
            "error": {
                "message": f"the graph failed: {type(exc).__name__}: {exc}"[:1000],
                "type": "server_error",
                "param": None,
                "code": None,
            }
        }
        yield {"data": json.dumps(_scrub(err, _secrets()))}
        yield {"data": "[DONE]"}
        return
    await asyncio.to_thread(auth.settle, scope, out, "stream")  # charge the API key, record metrics
    for i, call in enumerate(openai_tool_calls(out)):  # OpenAI's form: id and name first, then the arguments
        head = {
            "index": i,
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""},
        }
        yield _chunk(cid, created, {"tool_calls": [head]})
        args = call["function"]["arguments"]
        for j in range(0, len(args), STREAM_CHUNK_CHARS):
            piece = {"index": i, "function": {"arguments": args[j : j + STREAM_CHUNK_CHARS]}}
            yield _chunk(cid, created, {"tool_calls": [piece]})
    if out.get("refusal"):
        yield _chunk(cid, created, {"refusal": out["refusal"]})
    answer, note = out.get("answer", "") or "", {}
    if answer.startswith(sent) or answer.strip() == sent.strip():
        rest = answer[len(sent) :] if answer.startswith(sent) else ""
    else:  # the streamed run did not produce the final text (e.g. the synthesiser failed)
        rest = "\n\n" + answer
        note = {"stream_note": "the live-streamed text was replaced by the final answer that follows"}
    for i in range(0, len(rest), STREAM_CHUNK_CHARS):
        yield _chunk(cid, created, {"content": rest[i : i + STREAM_CHUNK_CHARS]})
    field = fusiongraph_field(out, req.ignored) | note | {"streamed_live": bool(sent)}
    yield _chunk(cid, created, {}, _finish_reason(out), fusiongraph=field)
    if (req.stream_options or {}).get("include_usage"):
        yield _chunk(cid, created, usage=usage_of(out))
    yield {"data": "[DONE]"}


# --- endpoints -----------------------------------------------------------------------------------------


async def list_models(request: Request) -> JSONResponse:
    return JSONResponse({"object": "list", "data": [MODEL_CARD]})


async def get_model(request: Request) -> JSONResponse:
    if request.path_params["model"] != MODEL_ID:
        return error_response(
            f"the model {request.path_params['model']!r} does not exist", 404, "model", "model_not_found"
        )
    return JSONResponse(MODEL_CARD)


def _check_fits(req: _Request) -> None:
    """What the graph would refuse, refused before a run (and before a stream starts): a query no model can
    read whole, a request that needs a capability (tools, json, vision) no available model has."""
    from fusiongraph.context import as_context
    from fusiongraph.nodes.decompose import check_fits
    from fusiongraph.resources import get_resources

    ctx = as_context(req.context)
    res = get_resources(ctx)
    res.roster.check_capable(ctx.local_only, req.request["requires"])
    check_fits(req.last_text, res, ctx)


def _query_error(exc: QueryError) -> JSONResponse:
    if isinstance(exc, CapabilityError):
        param = {"tools": "tools", "json": "response_format"}.get(exc.capability.split("+")[0], "messages")
        return error_response(str(exc), 400, param, "capability_not_available")
    return error_response(str(exc), 400, "messages")


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
    try:  # a query no model can read whole is the client's error (400), also before a stream starts
        await asyncio.to_thread(_check_fits, req)
    except QueryError as exc:
        return _query_error(exc)
    if req.stream:
        return EventSourceResponse(_events(req, request.scope), sep="\n", headers={"Cache-Control": "no-cache"})
    try:
        graph = await asyncio.to_thread(_graph)
        out = await graph.ainvoke(req.graph_input, context=req.context, config=_run_config(request.scope))
    except QueryError as exc:
        return _query_error(exc)
    except Exception as exc:  # noqa: BLE001 - a failure of the graph itself, not of the request
        return error_response(f"the graph failed: {type(exc).__name__}: {exc}"[:1000], 500, kind="server_error")
    await asyncio.to_thread(auth.settle, request.scope, out)  # charge the API key, record metrics
    return JSONResponse(completion_body(out, req.ignored))


@contextlib.asynccontextmanager
async def lifespan(app: Starlette):
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(GRAPH_THREADS, "fusiongraph"))
    yield


app = Starlette(
    lifespan=lifespan,
    routes=[
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", get_model, methods=["GET"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    ],
)
metrics.install(app)  # request counters and latency, GET /metrics (server/metrics.py)
auth.install(app)  # refused API keys answered in OpenAI's error format (server/auth.py)
