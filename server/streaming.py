"""The streamed response (``"stream": true``): server-sent events of OpenAI's chat completion chunks.

A model run's tokens are forwarded live only when that run is sure to give the final answer (``synthesize`` of
a split query, or the ``answer`` of the only answering model) and the reply is not checked whole first (tools,
a JSON format); otherwise the accepted answer is sent in chunks once known, so a rejected draft is never
shown. Tool calls are sent as OpenAI's tool-call deltas (id and name first, then the arguments), a refusal as
a ``refusal`` delta; the last chunk carries the ``fusiongraph`` field, secrets redacted.

With ``logprobs`` the answer is sent once known, one chunk per token of the answering call with its
``logprobs`` entry (as OpenAI streams them), when those tokens join to the delivered answer; otherwise as
text, and the last chunk's ``fusiongraph.logprobs_note`` says why (as the non-streamed response does).
"""

import asyncio
import json
import time
import uuid

from langgraph.types import Overwrite
from openai.types.chat import ChatCompletionChunk
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import ChoiceDelta, ChoiceLogprobs
from openai.types.completion_usage import CompletionUsage

from fusiongraph.server import admission, auth, runs
from fusiongraph.server.redaction import scrub
from fusiongraph.server.response import (
    cut_at_stop,
    delivered_logprobs,
    finish_reason,
    fusiongraph_field,
    openai_tool_calls,
    usage_of,
)
from fusiongraph.server.schema import MODEL_ID, BaseChatRequest

STREAM_CHUNK_CHARS = 24


def chunk(
    cid: str,
    created: int,
    delta: dict | None = None,
    finish: str | None = None,
    usage: CompletionUsage | None = None,
    logprobs: dict | None = None,
    **extra,
) -> dict:
    """One server-sent event: a ChatCompletionChunk with `delta` (and the `logprobs` of its tokens: OpenAI's
    ``{"content": [...], "refusal": None}``) or, with `usage`, no choices; secrets redacted."""
    lps = ChoiceLogprobs.model_validate(logprobs) if logprobs is not None else None
    choices = (
        [] if usage else [ChunkChoice(index=0, delta=ChoiceDelta(**delta or {}), logprobs=lps, finish_reason=finish)]
    )
    body = ChatCompletionChunk(
        id=cid,
        object="chat.completion.chunk",
        created=created,
        model=MODEL_ID,
        system_fingerprint=None,
        choices=choices,
        **({"usage": usage} if usage else {}),
        **extra,
    )
    return {"data": json.dumps(scrub(body.to_dict()), ensure_ascii=False)}


async def events(req: BaseChatRequest, scope: dict | None = None):
    """The events of one streamed run: the role, the content (live or once accepted), tool-call deltas, a
    refusal, the last chunk with the ``fusiongraph`` field, the usage if asked, ``[DONE]``; a graph failure is
    an error event. The run is settled (charged to the request's key, counted) before the answer is sent."""
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    yield chunk(cid, created, {"role": "assistant", "content": ""})
    out: dict = {}
    sent, live_run, n_subtasks, single = "", None, 0, False
    try:
        graph = await asyncio.to_thread(runs.load_graph)  # the first import loads the graph: not on the event loop
        async with admission.admitted(scope):  # a run slot (server/admission.py) for the whole run
            async for namespace, mode, data in graph.astream(
                req.graph_input,
                context=req.context,
                config=runs.run_config(scope),
                stream_mode=["updates", "messages"],
                subgraphs=True,
            ):
                if mode == "updates" and not namespace and isinstance(data, dict):
                    for node, node_out in data.items():
                        if isinstance(node_out, dict) and node == "decompose":
                            n_subtasks = len(node_out.get("subtasks") or [])
                            single = n_subtasks == 1 and await asyncio.to_thread(runs.single_candidate, req.context)
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
                        and not req.stops  # a stop sequence cuts the whole answer: sent once it is known
                        and not req.wants_logprobs  # sent once known, a chunk per token with its logprob
                        and not tags & {"judge", "decompose", "standalone"}
                        and (("synthesize" in tags and n_subtasks > 1) or ("answer" in tags and single))
                    ):
                        live_run = run_id  # the run that is sure to produce the final answer
                    if text and run_id == live_run:
                        sent += text
                        yield chunk(cid, created, {"content": text})
    except asyncio.CancelledError:  # the client went away: the run stops here, nothing further is spent
        admission.CANCELLED.labels("streaming").inc()
        await asyncio.shield(asyncio.to_thread(auth.settle_cancelled, scope, out))  # what its finished calls cost
        raise
    except admission.Overloaded as exc:
        err = {"error": {"message": str(exc), "type": "requests", "param": None, "code": "rate_limit_exceeded"}}
        yield {"data": json.dumps(err)}
        yield {"data": "[DONE]"}
        return
    except Exception as exc:  # noqa: BLE001 - reported to the client as an error event
        err = {
            "error": {
                "message": f"the graph failed: {type(exc).__name__}: {exc}"[:1000],
                "type": "server_error",
                "param": None,
                "code": None,
            }
        }
        yield {"data": json.dumps(scrub(err))}
        yield {"data": "[DONE]"}
        return
    await asyncio.to_thread(auth.settle, scope, out, "stream")  # charge the API key, record metrics
    calls = openai_tool_calls(out)
    for i, call in enumerate(calls):  # OpenAI's form: id and name first, then the arguments
        head = {
            "index": i,
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""},
        }
        yield chunk(cid, created, {"tool_calls": [head]})
        args = call["function"]["arguments"]
        for j in range(0, len(args), STREAM_CHUNK_CHARS):
            piece = {"index": i, "function": {"arguments": args[j : j + STREAM_CHUNK_CHARS]}}
            yield chunk(cid, created, {"tool_calls": [piece]})
    if out.get("refusal"):
        yield chunk(cid, created, {"refusal": out["refusal"]})
    answer, stopped = cut_at_stop(out.get("answer", "") or "", req.stops)
    note = {}
    if answer.startswith(sent) or answer.strip() == sent.strip():
        rest = answer[len(sent) :] if answer.startswith(sent) else ""
    else:  # the streamed run did not produce the final text (e.g. the synthesiser failed)
        rest = "\n\n" + answer
        note = {"stream_note": "the live-streamed text was replaced by the final answer that follows"}
    tokens, lp_note = None, None
    if req.wants_logprobs and not calls:
        lps, lp_note = delivered_logprobs(out, answer, stopped, getattr(req, "top_logprobs", None))
        if lps is not None and not sent and "".join(t["token"] for t in lps["content"]) == answer:
            tokens = lps["content"]
        elif lps is not None:
            lp_note = "the answering call's tokens do not join to the delivered answer (e.g. cut inside a token)"
    if tokens is not None:  # one chunk per token, with its log-probability (and alternatives)
        for tok in tokens:
            yield chunk(cid, created, {"content": tok["token"]}, logprobs={"content": [tok], "refusal": None})
    else:
        for i in range(0, len(rest), STREAM_CHUNK_CHARS):
            yield chunk(cid, created, {"content": rest[i : i + STREAM_CHUNK_CHARS]})
    field = fusiongraph_field(out, req.ignored) | note | {"streamed_live": bool(sent)}
    field |= {"logprobs_note": lp_note} if lp_note else {}
    yield chunk(cid, created, {}, "stop" if stopped else finish_reason(out), fusiongraph=field)
    if (req.stream_options or {}).get("include_usage"):
        yield chunk(cid, created, usage=usage_of(out, req.prompt_text, answer))
    yield {"data": "[DONE]"}
