"""An OpenAI-compatible chat endpoint for the fusion graph, mounted into the LangGraph server
(langgraph.json ``"http": {"app": "./server/openai_app.py:app"}``): ``GET /v1/models``, ``POST /v1/chat/completions``.

The app and its routes. LangGraph loads this file by path, so it imports the rest of the server absolutely:
the request and its validation (server/schema.py), the graph's output as a chat completion
(server/response.py), the streamed response (server/streaming.py), the graph runs (server/runs.py), redacted
secrets (server/redaction.py), API keys (server/auth.py) and metrics (server/metrics.py). See README.md,
"OpenAI-compatible endpoint".
"""

import asyncio
import contextlib
import functools
import json
from concurrent.futures import ThreadPoolExecutor
from typing import AsyncIterator, Callable

from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fusiongraph.models.roster import CapabilityError
from fusiongraph.server import admission, auth, messages_api, metrics, responses_api, runs, streaming
from fusiongraph.server.redaction import known_secrets, scrub
from fusiongraph.server.response import completion_body
from fusiongraph.server.schema import MODEL_CARD, MODEL_ID, RequestError, parse_request
from fusiongraph.text import QueryError, redact

# graph.astream runs the synchronous nodes, and the model calls they block on, in the event loop's default
# executor; asyncio's default (cores + 4 threads) deadlocks once more nodes wait than it has threads.
GRAPH_THREADS = 256


def error_response(
    message: str,
    status: int = 400,
    param: str | None = None,
    code: str | None = None,
    kind: str = "invalid_request_error",
) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": redact(message, known_secrets()), "type": kind, "param": param, "code": code}},
        status_code=status,
    )


def overloaded(retry_after: int) -> JSONResponse:
    response = error_response(
        f"the server is at capacity; retry after {retry_after} s", 429, None, "rate_limit_exceeded", "requests"
    )
    response.headers["Retry-After"] = str(retry_after)
    return response


def _query_error(exc: QueryError) -> JSONResponse:
    if isinstance(exc, CapabilityError):
        param = {"tools": "tools", "json": "response_format"}.get(exc.capability.split("+")[0], "messages")
        return error_response(str(exc), 400, param, "capability_not_available")
    return error_response(str(exc), 400, "messages")


async def list_models(request: Request) -> JSONResponse:
    return JSONResponse({"object": "list", "data": [MODEL_CARD]})


async def get_model(request: Request) -> JSONResponse:
    if request.path_params["model"] != MODEL_ID:
        return error_response(
            f"the model {request.path_params['model']!r} does not exist", 404, "model", "model_not_found"
        )
    return JSONResponse(MODEL_CARD)


LEFT = object()  # read_json: the client left before its body was read


async def read_json(request: Request):
    """The request's JSON body (None for none; RequestError when it is not JSON); LEFT when the client left
    mid-body."""
    try:
        raw = await request.body()
    except ClientDisconnect:  # the body was cut short: the client is gone, nobody reads a response
        return LEFT
    try:
        return json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(f"the request body is not valid JSON: {exc}") from exc
    except RecursionError:
        raise RequestError("the request body nests JSON too deeply") from None


def full_gate(scope: dict) -> JSONResponse | None:
    """A 429 when every run slot and the queue are taken: answered at once, before any work for the request
    (streamed or not). Otherwise the request's place is taken (server/admission.py) for its run."""
    try:
        admission.admit(scope)
    except admission.Overloaded as exc:
        return overloaded(exc.retry_after)
    return None


class PlaceHoldingStream(EventSourceResponse):
    """A streamed run's response: its admission place is given up when the response ends however it ends (sent,
    failed, cancelled), if its run never started; on the event loop, as the gate's counts are kept there."""

    def __init__(self, events, scope: dict):
        super().__init__(events, sep="\n", headers={"Cache-Control": "no-cache"})
        self.scope = scope

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            admission.release(self.scope)


def streamed(events, scope: dict) -> EventSourceResponse:
    """A streamed response that gives up its request's admission place when it ends (:class:`PlaceHoldingStream`)."""
    return PlaceHoldingStream(events, scope)


def holding_places(handler):
    """A run route: the place its request took (:func:`full_gate`) is given up when the route returns without a
    run under way (a refusal, an error, a finished run); a stream gives its up when it ends (:func:`streamed`)."""

    @functools.wraps(handler)
    async def route(request: Request):
        try:
            response = await handler(request)
        except BaseException:
            admission.release(request.scope)
            raise
        if not isinstance(response, EventSourceResponse):
            admission.release(request.scope)
        return response

    return route


async def admitted_run(req, request: Request):
    """The graph run of a request in a run slot (the output), or the response that replaces it: 429, a 4xx for
    a query the graph refuses, a 500 for a graph failure, 499 for a client that left."""

    partial: dict = {}  # the run's state after each step: what a cancelled run had spent

    async def run():
        await asyncio.to_thread(runs.check_request, req)
        return await runs.run_values(req, request.scope, partial)

    try:
        out = await admission.run_unless_disconnected(run, admission.client_gone(request), request.scope)
    except admission.Overloaded as exc:
        return overloaded(exc.retry_after)
    except QueryError as exc:  # a query no model can read whole, a capability no model has: the client's error
        return _query_error(exc)
    except Exception as exc:  # noqa: BLE001 - a failure of the graph itself, not of the request
        return error_response(f"the graph failed: {type(exc).__name__}: {exc}"[:1000], 500, kind="server_error")
    if out is None:  # the client went away: its run was cancelled; what it spent so far is charged
        await asyncio.to_thread(auth.settle_cancelled, request.scope, partial)
        return Response(status_code=499)
    await asyncio.to_thread(auth.settle, request.scope, out)  # charge the API key, record metrics
    return out


async def gate_then_run(req, request: Request, events: Callable[[], AsyncIterator]):
    """What every run route does once its request is parsed: the gate (429), then the stream of `events()` (a
    query the graph refuses is the client's error before it starts) or the run's output (or the response that
    replaces it, see :func:`admitted_run`)."""
    if refused := full_gate(request.scope):
        return refused
    if req.stream:
        try:  # a query no model can read whole is the client's error (400), before the stream starts
            await asyncio.to_thread(runs.check_request, req)
        except QueryError as exc:
            return _query_error(exc)
        return streamed(events(), request.scope)
    return await admitted_run(req, request)


@holding_places
async def chat_completions(request: Request):
    try:
        body = await read_json(request)
        if body is LEFT:
            return Response(status_code=499)
        req = parse_request(body)
    except RequestError as exc:
        return error_response(exc.message, exc.status, exc.param, exc.code)
    out = await gate_then_run(req, request, lambda: streaming.events(req, request.scope))
    if isinstance(out, Response):
        return out
    return JSONResponse(
        completion_body(
            out, req.ignored, req.stops, req.prompt_text, req.wants_logprobs, getattr(req, "top_logprobs", None)
        )
    )


@holding_places
async def create_response(request: Request):
    """``POST /v1/responses``: the Responses API (server/responses_api.py)."""
    try:
        body = await read_json(request)
        if body is LEFT:
            return Response(status_code=499)
        # previous_response_id is looked up in the store (a blocking database call)
        chat, conversation = await asyncio.to_thread(responses_api.chat_body, body, request.scope)
        req = parse_request(chat)
    except RequestError as exc:
        return error_response(exc.message, exc.status, exc.param, exc.code)
    out = await gate_then_run(req, request, lambda: responses_api.events(req, conversation, request.scope))
    if isinstance(out, Response):
        return out
    rid, created = responses_api.new_id()
    items = responses_api.output_items(out)
    await asyncio.to_thread(responses_api.remember, rid, conversation, items, request.scope)
    return JSONResponse(scrub(responses_api.response_body(rid, out, items, req.prompt_text, req.ignored, created)))


@holding_places
async def create_message(request: Request):
    """``POST /v1/messages``: Anthropic's Messages API (server/messages_api.py), errors in its shape."""
    try:
        body = await read_json(request)
        if body is LEFT:
            return Response(status_code=499)
        req = parse_request(messages_api.chat_body(body))
    except RequestError as exc:
        return messages_api.error(exc.status, exc.message if exc.param is None else f"{exc.param}: {exc.message}")
    out = await gate_then_run(req, request, lambda: messages_api.events(req, request.scope))
    if isinstance(out, JSONResponse):  # a refusal or an error of the chat path, in Anthropic's shape
        return messages_api.from_openai_error(out)
    if isinstance(out, Response):
        return out
    return JSONResponse(scrub(messages_api.message_body(out, req)))


async def method_not_allowed(request: Request) -> JSONResponse:
    response = error_response(
        f"{request.method} is not allowed on {request.url.path}; use POST", 405, None, "method_not_allowed"
    )
    response.headers["Allow"] = "POST"
    return response


async def not_found(request: Request) -> JSONResponse:
    return error_response(f"no route {request.method} {request.url.path}", 404, None, "not_found")


@contextlib.asynccontextmanager
async def lifespan(app: Starlette):
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(GRAPH_THREADS, "fusiongraph"))
    yield


app = Starlette(
    lifespan=lifespan,
    middleware=[  # LangGraph runs these on its own routes too, before its own middleware
        Middleware(admission.DisconnectWatch),  # a client that leaves is noticed (and its run cancelled)
        Middleware(auth.MetricsGuard),  # GET /metrics behind the keys, LangGraph's route too
    ],
    routes=[
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", get_model, methods=["GET"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/chat/completions", method_not_allowed, methods=["GET", "PUT", "PATCH", "DELETE"]),
        Route("/v1/responses", create_response, methods=["POST"]),
        Route("/v1/messages", create_message, methods=["POST"]),
        Route("/v1/{path:path}", not_found, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    ],
)
metrics.install(app)  # request counters and latency, GET /metrics (server/metrics.py)
auth.install(app)  # refused API keys answered in OpenAI's error format (server/auth.py)
