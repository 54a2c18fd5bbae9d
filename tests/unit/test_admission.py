"""Admission control (server/admission.py): a bounded number of runs in flight and queued per worker, an
immediate 429 with Retry-After past them, cheap routes fast meanwhile, and a client that leaves cancels its
run."""

import asyncio
import time

import httpx
import pytest

import fusiongraph.server.runs as runs
from fusiongraph.server import admission
from fusiongraph.server.openai_app import app

BODY = {"model": "fusiongraph", "messages": [{"role": "user", "content": "What is the capital of France?"}]}


class SlowGraph:
    """A graph whose run takes `seconds` and answers; it notes runs that were cancelled."""

    def __init__(self, seconds: float):
        self.seconds, self.started, self.cancelled = seconds, 0, 0

    async def ainvoke(self, *a, **k):
        self.started += 1
        try:
            await asyncio.sleep(self.seconds)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return {"answer": "Paris", "results": [], "summary": {}, "trace": []}

    async def astream(self, *a, **k):
        """The state after the plan (its call cost $0.001), then after one subtask ($0.002), then the rest."""
        self.started += 1
        plan = [{"node": "decompose", "cost_usd": 0.001}]
        yield {"trace": plan, "results": []}
        yield {"trace": plan, "results": [{"attempts": [{"cost_usd": 0.0015, "judge_cost_usd": 0.0005}]}]}
        try:
            await asyncio.sleep(self.seconds)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        yield {"answer": "Paris", "results": [], "summary": {}, "trace": []}


@pytest.fixture
def slow(monkeypatch, fusion):
    from tests.unit.test_server import two_models

    fusion(two_models())
    graph = SlowGraph(1.0)
    monkeypatch.setattr(runs, "load_graph", lambda: graph)
    monkeypatch.setattr(admission, "_admissions", __import__("weakref").WeakKeyDictionary())
    monkeypatch.setenv("FUSIONGRAPH_MAX_RUNS", "1")
    monkeypatch.setenv("FUSIONGRAPH_MAX_QUEUED", "1")
    return graph


def test_past_the_slots_and_the_queue_a_request_gets_an_immediate_429(slow):
    async def scenario():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            tasks = [asyncio.create_task(c.post("/v1/chat/completions", json=BODY)) for _ in range(2)]
            await asyncio.sleep(0.3)  # one runs, one waits
            started = time.perf_counter()
            refused = await c.post("/v1/chat/completions", json=BODY)
            refused_s = time.perf_counter() - started
            started = time.perf_counter()
            models = await c.get("/v1/models")
            models_s = time.perf_counter() - started
            done = await asyncio.gather(*tasks)
            return refused, refused_s, models, models_s, done

    refused, refused_s, models, models_s, done = asyncio.run(scenario())
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    err = refused.json()["error"]
    assert err["code"] == "rate_limit_exceeded" and err["type"] == "requests" and "capacity" in err["message"]
    assert refused_s < 0.5 and models.status_code == 200 and models_s < 0.5  # answered while two runs hold on
    assert [r.status_code for r in done] == [200, 200] and slow.started == 2


def test_a_client_that_leaves_cancels_its_run_waiting_or_running(slow):
    async def scenario():
        gate = admission.admission()
        left = {"now": False}

        async def gone():
            return left["now"]

        async def work():
            return await slow.ainvoke()

        running = asyncio.create_task(admission.run_unless_disconnected(work, gone))
        waiting = asyncio.create_task(admission.run_unless_disconnected(work, gone))
        await asyncio.sleep(0.2)
        assert gate.running == 1 and gate.waiting == 1
        left["now"] = True
        return await asyncio.gather(running, waiting), gate

    before = {s: admission.CANCELLED.labels(s)._value.get() for s in ("running", "waiting")}
    (first, second), gate = asyncio.run(scenario())
    assert first is None and second is None  # nobody is there to read an answer
    assert slow.started == 1 and slow.cancelled == 1  # the waiting one never started
    assert gate.running == 0 and gate.waiting == 0
    for stage in ("running", "waiting"):
        assert admission.CANCELLED.labels(stage)._value.get() == before[stage] + 1


def test_a_bad_gate_setting_is_refused_naming_it(monkeypatch):
    from fusiongraph.settings import settings

    monkeypatch.setenv("FUSIONGRAPH_MAX_RUNS", "0")
    with pytest.raises(ValueError, match="FUSIONGRAPH_MAX_RUNS"):
        settings()


def test_a_cancelled_run_is_charged_what_its_finished_calls_cost(slow, monkeypatch):
    from types import SimpleNamespace

    from fusiongraph.server import auth, openai_app
    from fusiongraph.server.schema import parse_request

    charged = []
    key = SimpleNamespace(id="key_test", name="test")
    monkeypatch.setattr(auth, "request_key", lambda scope: key)
    monkeypatch.setattr(auth, "charge", lambda key, cost, run_id=None: charged.append((key.id, round(cost, 6))))
    started = time.perf_counter()

    async def gone():  # the client leaves 0.4 s in: the plan and one subtask are done, the rest is running
        return time.perf_counter() - started > 0.4

    request = SimpleNamespace(scope={}, is_disconnected=gone)
    out = asyncio.run(openai_app.admitted_run(parse_request(BODY), request))
    assert out.status_code == 499 and slow.cancelled == 1
    assert charged == [("key_test", 0.003)]  # the plan $0.001 + the finished subtask $0.002


@pytest.mark.parametrize(
    "path, body",
    [
        ("/v1/chat/completions", BODY | {"stream": True}),
        ("/v1/responses", {"model": "fusiongraph", "input": "What is the capital of France?", "stream": True}),
        ("/v1/messages", {"model": "fusiongraph", "max_tokens": 64, "stream": True, "messages": BODY["messages"]}),
    ],
)
def test_a_burst_of_streams_gets_real_429s_never_an_error_after_a_200(slow, path, body):
    """Streams sent together: as many as there are places start (200), every other one is an HTTP 429 before
    its stream starts, and no place is left taken once they are done."""

    async def scenario():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            replies = await asyncio.gather(*(c.post(path, json=body) for _ in range(6)))
        return replies, admission.admission()

    replies, gate = asyncio.run(scenario())
    codes = sorted(r.status_code for r in replies)
    assert codes == [200, 200, 429, 429, 429, 429], codes  # one running, one queued
    for r in replies:
        if r.status_code == 200:
            assert "rate_limit" not in r.text and "error" not in r.text.lower().split("data:")[1]
        else:
            assert int(r.headers["Retry-After"]) >= 1
    assert gate.running == 0 and gate.waiting == 0 and slow.started == 2


def test_a_place_is_given_up_by_a_refused_or_failed_request(slow, monkeypatch):
    """A stream refused before it starts (the query is the client's error) or a run that fails keeps no place."""
    from fusiongraph.text import QueryError

    def refuse(req):
        raise QueryError("no model can read this query whole")

    async def scenario():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            monkeypatch.setattr(runs, "check_request", refuse)
            first = [await c.post("/v1/chat/completions", json=BODY | {"stream": s}) for s in (True, False, True)]
            monkeypatch.undo()
            return first, admission.admission()

    replies, gate = asyncio.run(scenario())
    assert [r.status_code for r in replies] == [400, 400, 400]
    assert gate.running == 0 and gate.waiting == 0


def test_a_ticket_never_run_gives_its_place_back_once():
    async def scenario():
        gate = admission.Admission(1, 1)
        first = gate.enter()
        second = gate.enter()
        with pytest.raises(admission.Overloaded):
            gate.enter()
        async with first.run():
            assert gate.running == 1 and gate.waiting == 1
        second.release()
        second.release()  # idempotent
        assert gate.waiting == 0 and gate.running == 0
        with pytest.raises(RuntimeError, match="done"):
            async with second.run():
                pass
        third = gate.enter()
        async with third.run():
            third.release()  # a running ticket is not given back twice
            assert gate.running == 1 and gate.waiting == 0
        return gate

    gate = asyncio.run(scenario())
    assert gate.running == 0 and gate.waiting == 0


def test_metrics_paths_under_a_prefix_are_guarded_too():
    from fusiongraph.server.auth import is_metrics_path

    for path in ("/metrics", "/metrics/", "/api/metrics", "/pfx/metrics/"):
        assert is_metrics_path({"path": path}), path
    for path in ("/v1/models", "/metricsx", "/ok", "/"):
        assert not is_metrics_path({"path": path}), path


def test_a_disconnect_after_the_body_cancels_a_non_streamed_run_through_the_middleware(slow):
    """At the ASGI level, as uvicorn delivers it: the body, then (0.3 s later) the client's disconnect; the
    app's DisconnectWatch notices it and the run (1 s) is cancelled, whatever middleware stands in between."""
    import json as _json

    async def scenario():
        messages = [{"type": "http.request", "body": _json.dumps(BODY).encode(), "more_body": False}]

        async def receive():
            if messages:
                return messages.pop(0)
            await asyncio.sleep(0.3)
            return {"type": "http.disconnect"}

        sent = []

        async def send(message):
            sent.append(message)

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "root_path": "", "query_string": b"",
            "headers": [(b"content-type", b"application/json")], "client": ("t", 1), "server": ("t", 80),
            "state": {},
        }  # fmt: skip
        started = time.perf_counter()
        await app(scope, receive, send)
        return sent, time.perf_counter() - started

    sent, seconds = asyncio.run(scenario())
    assert slow.cancelled == 1 and seconds < 0.9  # not the run's whole second
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 499


def test_the_watch_sees_a_disconnect_that_a_base_http_middleware_hides():
    """LangGraph's stack has a BaseHTTPMiddleware between uvicorn and the route: there, Starlette's
    is_disconnected never turns true for a non-streamed request; DisconnectWatch's flag does."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.base import BaseHTTPMiddleware
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    class PassThrough(BaseHTTPMiddleware):
        async def dispatch(self, request, call_next):
            return await call_next(request)

    seen = {}

    async def route(request):
        await request.body()
        for _ in range(20):
            if await admission.client_gone(request)():
                seen["gone"] = True
                break
            await asyncio.sleep(0.05)
        seen["starlette"] = await request.is_disconnected()
        return JSONResponse({})

    async def scenario(middleware):
        seen.clear()
        demo = Starlette(routes=[Route("/v1/x", route, methods=["POST"])], middleware=middleware)
        messages = [{"type": "http.request", "body": b"{}", "more_body": False}]

        async def receive():
            if messages:
                return messages.pop(0)
            await asyncio.sleep(0.1)
            return {"type": "http.disconnect"}

        async def send(message):
            pass

        scope = {"type": "http", "method": "POST", "path": "/v1/x", "headers": [], "query_string": b"",
                 "root_path": "", "scheme": "http", "server": ("t", 80)}  # fmt: skip
        await demo(scope, receive, send)
        return dict(seen)

    hidden = asyncio.run(scenario([Middleware(PassThrough)]))
    assert "gone" not in hidden and hidden["starlette"] is False  # the disconnect is hidden from the route
    watched = asyncio.run(scenario([Middleware(admission.DisconnectWatch), Middleware(PassThrough)]))
    assert watched["gone"] is True
