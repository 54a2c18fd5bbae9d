"""An OpenAI-compatible chat endpoint for the fusion graph, mounted into the LangGraph server
(langgraph.json ``"http": {"app": "./server/openai_app.py:app"}``): ``GET /v1/models``, ``POST /v1/chat/completions``.

The last message (from the user) is the query; earlier turns are prepended as ``Conversation so far:`` text.
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
        "parallel_tool_calls",
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
# accepted (and ignored) only with a value that asks for nothing: no tools, plain-text output
UNSUPPORTED_PARAMS = ("tools", "tool_choice", "functions", "function_call", "response_format", "audio", "prediction")
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
    model_config = ConfigDict(strict=True)  # other message fields (name, tool_calls, ...) are ignored
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _join_text_parts(cls, v: Any) -> Any:
        if not isinstance(v, list):
            return v
        for i, part in enumerate(v):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise PydanticCustomError("text_parts", "not a text part", {"part": i})
        return "\n".join(part["text"] for part in v)


def _query(messages: list[Message]) -> str:
    """The graph's query: the last user message, with earlier turns as a plain-text prefix."""
    for i, m in enumerate(messages):
        if m.role == "user" and not (m.content or "").strip():
            raise _refuse(f"messages[{i}].content is empty", f"messages[{i}].content")
    *earlier, last = messages
    if last.role != "user":
        raise _refuse(f"the last message must come from the user, got role {last.role!r}", "messages")
    turns = [f"{ROLES[m.role]}: {m.content.strip()}" for m in earlier if (m.content or "").strip()]
    query = (
        last.content if not turns else "Conversation so far:\n" + "\n".join(turns) + f"\n\nUser: {last.content.strip()}"
    )
    try:
        return clean_query(query)
    except QueryError as exc:
        raise _refuse(str(exc), "messages") from exc


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
    messages: Annotated[list[Message], Field(min_length=1), AfterValidator(lambda v: _query(v) and v)]
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    n: float = Field(1, ge=1, le=1)

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
    def _knobs_in_range(self):
        try:
            FusionContext(**self.context)  # range checks (quality_threshold in [0, 1], budget >= 0, ...)
        except (ValueError, TypeError) as exc:
            raise _refuse(str(exc), "fusiongraph") from exc
        return self

    @property
    def query(self) -> str:
        return _query(self.messages)

    @property
    def context(self) -> dict:
        top = {k: getattr(self, k) for k in self.model_fields_set if k in _KNOB_TYPES}
        if self.max_completion_tokens is not None:
            top["max_tokens"] = self.max_completion_tokens
        return {k: v for k, v in top.items() if v is not None} | self.fusiongraph.model_dump(exclude_unset=True)

    @property
    def ignored(self) -> list[str]:
        return sorted(self.model_fields_set & (IGNORED_OPENAI_PARAMS | set(UNSUPPORTED_PARAMS)))


ChatRequest = create_model(
    "ChatRequest",
    __base__=_Request,
    **{k: (_KNOB_TYPES[k], None) for k in _HTTP_KNOBS if k != "max_tokens"},
    max_tokens=(int | None, None),
    max_completion_tokens=(int | None, None),
    **{p: (Any, None) for p in sorted(IGNORED_OPENAI_PARAMS) + list(UNSUPPORTED_PARAMS)},
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
    if kind == "text_parts":
        return RequestError(
            f"{param}[{ctx['part']}]: only text parts ({{'type': 'text', 'text': ...}}) are supported", param
        )
    if name == "role":
        role = None if kind == "missing" else e["input"]
        return RequestError(f"{param} must be one of {sorted(ROLES)}, got {role!r}", param)
    if name == "content":
        return RequestError(f"{param} must be a string or a list of text parts, got {got}", param)
    return RequestError(f"{param} must be an object with 'role' and 'content'", "messages")


def parse_request(body: Any) -> _Request:
    try:
        return ChatRequest.model_validate(body)
    except ValidationError as exc:
        raise _request_error(exc) from None


def build_query(messages: Any) -> str:
    """The graph's query for a list of OpenAI messages (RequestError if they cannot make one)."""
    return parse_request({"model": MODEL_ID, "messages": messages}).query


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
        "subtasks": out.get("subtasks", []),
        "summary": out.get("summary", {}),
        "results": results,
        "trace": out.get("trace", []),
    }
    return field | ({"ignored_params": ignored} if ignored else {})


def _finish_reason(out: dict) -> str:
    reasons = [
        a.get("finish_reason")
        for r in out.get("results") or []
        for a in r.get("attempts", [])
        if a.get("model") == r.get("answered_by")
    ]
    return "length" if "length" in reasons and len(reasons) == 1 else "stop"


def completion_body(out: dict, ignored: list[str]) -> dict:
    message = ChatCompletionMessage(role="assistant", content=out.get("answer", ""), refusal=None)
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
            {"query": req.query},
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
                        out[k] = out.get(k, []) + v if k in ("results", "trace") else v
            elif mode == "messages":
                message, metadata = data
                tags, text = set((metadata or {}).get("tags") or []), message.text
                run_id = str(message.id or (metadata or {}).get("langgraph_checkpoint_ns") or "")
                if (
                    text
                    and live_run is None
                    and not tags & {"judge", "decompose"}
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


def _check_fits(query: str, context) -> None:
    from fusiongraph.context import as_context
    from fusiongraph.nodes.decompose import check_fits
    from fusiongraph.resources import get_resources

    ctx = as_context(context)
    check_fits(query, get_resources(ctx), ctx)


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
        await asyncio.to_thread(_check_fits, req.query, req.context)
    except QueryError as exc:
        return error_response(str(exc), 400, "messages")
    if req.stream:
        return EventSourceResponse(_events(req, request.scope), sep="\n", headers={"Cache-Control": "no-cache"})
    try:
        graph = await asyncio.to_thread(_graph)
        out = await graph.ainvoke({"query": req.query}, context=req.context, config=_run_config(request.scope))
    except QueryError as exc:
        return error_response(str(exc), 400, "messages")
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
