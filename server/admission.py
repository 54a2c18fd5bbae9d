"""Admission control: a bounded number of graph runs in flight per worker and a bounded queue before them;
past both, an immediate 429 with ``Retry-After`` (OpenAI's error shape, ``rate_limit_exceeded``), so a burst
of clients gets answers or a clear refusal instead of timing out while the worker drowns. A client that
disconnects while its run waits or runs cancels it: no further node of it runs, so nothing further is spent.

Knobs (fusiongraph/settings.py): ``FUSIONGRAPH_MAX_RUNS`` (runs in flight; default 2, as many as 2 shared cores
keep busy with local models) and ``FUSIONGRAPH_MAX_QUEUED`` (runs waiting; default 8). Metrics: queue depth
and runs in flight (gauges), rejections and cancellations (counters).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from typing import AsyncIterator, Awaitable, Callable

from prometheus_client import Counter, Gauge

from fusiongraph.settings import settings

QUEUED = Gauge("fusiongraph_queued_runs", "Chat runs waiting for a slot")
RUNNING = Gauge("fusiongraph_running_runs", "Chat runs in flight")
REJECTED = Counter("fusiongraph_rejected_runs", "Chat requests refused with a 429: every slot and the queue full")
CANCELLED = Counter("fusiongraph_cancelled_runs", "Chat runs cancelled because their client went away", ["stage"])

DISCONNECT_POLL_S = 0.25
TICKET = "fusiongraph.admission_ticket"  # the request's place, in its ASGI scope


class Overloaded(Exception):
    """Every run slot and the queue are full: answer 429, come back after `retry_after` seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"the server is at capacity; retry after {retry_after} s")
        self.retry_after = retry_after


class Ticket:
    """A request's place: counted as waiting from the moment it is admitted (:meth:`Admission.enter`, no await
    between the check and the count, so a burst cannot slip past a full gate), then as running for the block of
    :meth:`run`. :meth:`release` gives up a place never used (idempotent)."""

    def __init__(self, gate: "Admission"):
        self.gate, self.state = gate, "waiting"

    def release(self) -> None:
        if self.state == "waiting":
            self.state = "done"
            self.gate._left_queue()

    @contextlib.asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        """Hold a run slot for the block (waiting for one first). Cancelled while waiting (the client left), it
        gives up its place."""
        if self.state != "waiting":
            raise RuntimeError(f"this admission ticket is {self.state}")
        gate = self.gate
        try:
            await gate._slots.acquire()
        except BaseException:
            self.release()
            raise
        self.state = "running"
        gate._left_queue()
        gate.running += 1
        RUNNING.set(gate.running)
        try:
            yield
        finally:
            self.state = "done"
            gate.running -= 1
            RUNNING.set(gate.running)
            gate._slots.release()


class Admission:
    """At most `max_runs` runs at once and `max_queued` waiting (asyncio: one per event loop)."""

    def __init__(self, max_runs: int, max_queued: int):
        self.max_runs, self.max_queued = max_runs, max_queued
        self.running = self.waiting = 0
        self._slots = asyncio.Semaphore(max_runs)

    def retry_after(self) -> int:
        return max(1, (self.waiting + 1) // max(self.max_runs, 1))

    def enter(self) -> Ticket:
        """A place for a run, or :class:`Overloaded` at once when every slot and the queue are taken (places
        taken count whether or not their run has started)."""
        if self.running + self.waiting >= self.max_runs + self.max_queued:
            REJECTED.inc()
            raise Overloaded(self.retry_after())
        self.waiting += 1
        QUEUED.set(self.waiting)
        return Ticket(self)

    def _left_queue(self) -> None:
        self.waiting -= 1
        QUEUED.set(self.waiting)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a run slot for the block; raise :class:`Overloaded` at once when none is free and the queue is
        full."""
        async with self.enter().run():
            yield


_admissions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def admission() -> Admission:
    """This event loop's admission (sized by the settings when first asked)."""
    loop = asyncio.get_running_loop()
    if loop not in _admissions:
        s = settings()
        _admissions[loop] = Admission(s.max_runs, s.max_queued)
    return _admissions[loop]


def admit(scope: dict) -> None:
    """Take the request's place before its response starts (a stream's too: its 429 is a real HTTP 429, not an
    error event after a 200); :class:`Overloaded` when there is none. The run then holds it with
    :func:`admitted`; :func:`release` gives it up if the run never starts (call it when the response ends)."""
    scope[TICKET] = admission().enter()


def release(scope: dict | None) -> None:
    ticket = (scope or {}).get(TICKET)
    if ticket is not None:
        ticket.release()


def admitted(scope: dict | None):
    """The run slot of a request: its place taken by :func:`admit`, else a new one (Overloaded when full)."""
    ticket = (scope or {}).pop(TICKET, None)
    return ticket.run() if ticket is not None else admission().slot()


GONE = "fusiongraph.client_gone"  # the request's asyncio.Event, set when its client disconnects


class DisconnectWatch:
    """ASGI middleware (outermost: LangGraph runs the mounted app's middleware before its own): it notices a
    client that leaves once its request body is read, and says so in the scope (:data:`GONE`).

    Under LangGraph, ``request.is_disconnected()`` never sees the disconnect of a non-streamed request: a
    ``BaseHTTPMiddleware`` of LangGraph's stack stands between uvicorn and the route. So, once the body is read,
    this reads the server's ``receive`` itself, and hands the disconnect to whoever asks for the next message
    (a streamed response's listener)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope.get("path", "").startswith("/v1/"):
            return await self.app(scope, receive, send)
        gone = asyncio.Event()
        scope[GONE] = gone
        state: dict = {"read": False, "watch": None, "last": {"type": "http.disconnect"}}

        async def watch():
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    state["last"] = message
                    gone.set()
                    return

        async def watched_receive():
            if state["read"]:  # the body is in: the next message is the disconnect, when it comes
                await gone.wait()
                return state["last"]
            message = await receive()
            if message["type"] == "http.disconnect":
                gone.set()
            elif not message.get("more_body"):
                state["read"] = True
                state["watch"] = asyncio.ensure_future(watch())
            return message

        try:
            await self.app(scope, watched_receive, send)
        finally:
            if state["watch"] is not None:
                state["watch"].cancel()


def client_gone(request) -> Callable[[], Awaitable[bool]]:
    """How to ask whether the request's client has left: :class:`DisconnectWatch`'s flag where it runs,
    else Starlette's ``is_disconnected``."""
    gone = request.scope.get(GONE)
    if gone is None:
        return request.is_disconnected

    async def left() -> bool:
        return gone.is_set()

    return left


async def until_disconnected(is_disconnected: Callable[[], Awaitable[bool]]) -> None:
    while not await is_disconnected():
        await asyncio.sleep(DISCONNECT_POLL_S)


async def run_unless_disconnected(
    work: Callable[[], Awaitable], is_disconnected: Callable[[], Awaitable[bool]], scope: dict | None = None
):
    """Run `work()` in a run slot (the place :func:`admit` took for `scope`, else a new one); if the client
    disconnects first (waiting or running), cancel it and return None. :class:`Overloaded` when there is no
    room."""
    stage = ["waiting"]

    async def admitted_work():
        async with admitted(scope):
            stage[0] = "running"
            return await work()

    task = asyncio.ensure_future(admitted_work())
    watch = asyncio.ensure_future(until_disconnected(is_disconnected))
    try:
        done, _ = await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        watch.cancel()
        raise
    if task in done:
        watch.cancel()
        return task.result()
    task.cancel()
    CANCELLED.labels(stage[0]).inc()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    return None
