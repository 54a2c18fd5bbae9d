"""The endpoint's graph runs: the graph (loaded on first use), a run's config, and what is refused before a run
starts (and before a stream starts), as the graph itself would refuse it."""

import asyncio

from fusiongraph.context import as_context
from fusiongraph.conversation import check_fits
from fusiongraph.resources import get_resources
from fusiongraph.server import admission, auth
from fusiongraph.server.schema import BaseChatRequest


def load_graph():
    """The compiled graph. Imported on first use, not with the app: the import builds the graph, and callers
    run it in a thread, off the event loop. Callers look it up on this module (``runs.load_graph()``), so a
    test can replace it."""
    from fusiongraph.graphs.fusion import graph

    return graph


def run_config(scope: dict | None) -> dict:
    """The run's config: the caller's API key (its id), as LangGraph's auth gives it to its own runs, so the
    answer cache never crosses keys."""
    key = auth.request_key(scope)
    return {"configurable": {"langgraph_auth_user_id": key.id}} if key is not None else {}


def check_request(req: BaseChatRequest) -> None:
    """What the graph would refuse, refused before a run: a query no model can read whole, a request that
    needs a capability (tools, json, vision) no available model has (QueryError / CapabilityError)."""
    ctx = as_context(req.context)
    res = get_resources(ctx)
    res.roster.check_capable(ctx.local_only, req.request["requires"])
    check_fits(req.last_text, res, ctx)


def single_candidate(context: dict) -> bool:
    """One answering model available: the cascade cannot escalate (asked once the graph has loaded)."""
    try:
        ctx = as_context(context)
        return len(get_resources(ctx).roster.availability(ctx.local_only, answering=True)[0]) == 1
    except Exception:  # noqa: BLE001 - when unsure, do not stream drafts live
        return False


async def run_values(req: BaseChatRequest, scope: dict | None, partial: dict) -> dict:
    """The graph's run of a request (the caller holds its run slot): its final state. `partial` holds the state
    after each step, so a cancelled run's finished calls can be charged (auth.settle_cancelled)."""
    graph = await asyncio.to_thread(load_graph)
    config = run_config(scope)
    async for state in graph.astream(req.graph_input, context=req.context, config=config, stream_mode="values"):
        partial.clear()
        partial.update(state)
    return dict(partial)


class RunFailed(Exception):
    """A streamed run that gave no answer: ``kind`` is ``overloaded`` (no room: the gate was full) or ``failed``
    (the graph raised); the message is for the client."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


async def streamed_run(req: BaseChatRequest, scope: dict | None) -> dict:
    """The run of a streamed request whose events are sent once its answer is known (the Responses and Messages
    streams): in its admission place, settled (charged, counted) when done; :class:`RunFailed` when there was
    no room or the graph failed. A client that leaves cancels it: counted, and charged its finished calls."""
    partial: dict = {}
    try:
        async with admission.admitted(scope):
            out = await run_values(req, scope, partial)
    except asyncio.CancelledError:
        admission.CANCELLED.labels("streaming").inc()
        await asyncio.shield(asyncio.to_thread(auth.settle_cancelled, scope, partial))  # not on the event loop
        raise
    except admission.Overloaded as exc:
        raise RunFailed("overloaded", str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - reported to the client in its protocol's shape
        raise RunFailed("failed", f"the graph failed: {type(exc).__name__}: {exc}"[:1000]) from exc
    await asyncio.to_thread(auth.settle, scope, out, "stream")
    return out
