"""The OpenAI-compatible endpoint (server/openai_app.py): fast tests on fake models, and an integration
test against a real `langgraph dev` (LangGraph SDK + the mounted OpenAI endpoint, local model)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from fusiongraph.server.schema import RequestError, build_conversation
from tests.fakes import ScriptedChat

ROOT = Path(__file__).resolve().parents[2]
KNOBS = {"planner_model": "planner", "judge_model": "judge", "budget_usd": 1.0, "guides": 0}


def one_model(reply="GOOD: Paris"):
    return {"cheap": ({"price_in": 0.0, "price_out": 0.0}, ScriptedChat(script=lambda p: reply))}


def two_models(cheap_reply="BAD answer", strong_reply="GOOD answer"):
    cheap = ScriptedChat(script=lambda p: cheap_reply)
    strong = ScriptedChat(script=lambda p: strong_reply)
    return {
        "cheap": ({"price_in": 0.0, "price_out": 0.0}, cheap),
        "strong": ({"price_in": 1.0, "price_out": 4.0}, strong),
    }


def chat(client, content="What is the capital of France?", **extra):
    body = {"model": "fusiongraph", "messages": [{"role": "user", "content": content}], "fusiongraph": dict(KNOBS)}
    body.update(extra)
    return client.post("/v1/chat/completions", json=body)


def sse_events(response) -> list:
    assert response.headers["content-type"].startswith("text/event-stream")
    lines = [line for line in response.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line[6:]) for line in lines[:-1]]


# --- validation -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body,status,param",
    [
        ({"model": "fusiongraph"}, 400, "messages"),
        ({"model": "fusiongraph", "messages": []}, 400, "messages"),
        ({"model": "fusiongraph", "messages": "hi"}, 400, "messages"),
        ({"model": "fusiongraph", "messages": [{"role": "user", "content": "   "}]}, 400, "messages[0].content"),
        ({"model": "fusiongraph", "messages": [{"role": "user", "content": 5}]}, 400, "messages[0].content"),
        ({"model": "fusiongraph", "messages": [{"role": "wizard", "content": "hi"}]}, 400, "messages[0].role"),
        (
            {
                "model": "fusiongraph",
                "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
            },
            400,
            "messages",
        ),
        (
            {
                "model": "fusiongraph",
                "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}],
            },
            400,
            "messages[0].content",
        ),
        (
            {
                "model": "fusiongraph",
                "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "function", "function": {"name": "g"}},
            },
            400,
            "tool_choice",
        ),
        (
            {
                "model": "fusiongraph",
                "messages": [{"role": "user", "content": "hi"}],
                "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 5}}},
            },
            400,
            "response_format",
        ),
        (
            {
                "model": "fusiongraph",
                "messages": [{"role": "user", "content": "hi"}, {"role": "tool", "content": "42"}],
            },
            400,
            "messages[1].tool_call_id",
        ),
        (
            {
                "model": "fusiongraph",
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{nope"}}]},
                    {"role": "tool", "tool_call_id": "c", "content": "42"},
                ],
            },
            400,
            "messages[1].tool_calls",
        ),
        ({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}, 404, "model"),
        ({"messages": [{"role": "user", "content": "hi"}]}, 400, "model"),
        (
            {"model": "fusiongraph", "messages": [{"role": "user", "content": "hi"}], "budget_usd": "lots"},
            400,
            "budget_usd",
        ),
        ({"model": "fusiongraph", "messages": [{"role": "user", "content": "hi"}], "local_only": 1}, 400, "local_only"),
        (
            {"model": "fusiongraph", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0},
            400,
            "max_tokens",
        ),
        (
            {"model": "fusiongraph", "messages": [{"role": "user", "content": "hi"}], "quality_threshold": 3},
            400,
            "quality_threshold",
        ),
        ({"model": "fusiongraph", "messages": [{"role": "user", "content": "hi"}], "bogus": 1}, 400, "bogus"),
        (
            {"model": "fusiongraph", "messages": [{"role": "user", "content": "hi"}], "fusiongraph": {"bogus": 1}},
            400,
            "fusiongraph.bogus",
        ),
        (
            {"model": "fusiongraph", "messages": [{"role": "user", "content": "hi"}], "fusiongraph": [1]},
            400,
            "fusiongraph",
        ),
        (
            {"model": "fusiongraph", "messages": [{"role": "user", "content": "hi"}], "store_dir": "/etc"},
            400,
            "store_dir",
        ),
        ({"model": "fusiongraph", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}, 400, "stream"),
        ({"model": "fusiongraph", "messages": [{"role": "user", "content": "hi"}], "n": 2}, 400, "n"),
        (
            {
                "model": "fusiongraph",
                "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "bogus"}}}],
            },
            400,
            "tools",
        ),
        (
            {"model": "fusiongraph", "messages": [{"role": "user", "content": "hi"}], "functions": [{}]},
            400,
            "functions",
        ),
        ([1, 2], 400, None),
    ],
)
def test_bad_requests_get_a_4xx_openai_error(client, body, status, param):
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["message"] and err["param"] == param


def test_malformed_json_is_a_400(client):
    r = client.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    assert client.post("/v1/chat/completions").status_code == 400


def test_models_listing(client):
    r = client.get("/v1/models")
    assert r.status_code == 200
    assert [m["id"] for m in r.json()["data"]] == ["fusiongraph"]
    assert client.get("/v1/models/fusiongraph").json()["id"] == "fusiongraph"
    assert client.get("/v1/models/gpt-4o").status_code == 404


def test_a_conversation_becomes_langchain_messages_with_the_last_user_turn_last():
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

    assert build_conversation([{"role": "user", "content": "Hi?"}]) == [HumanMessage("Hi?")]
    messages = build_conversation(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "I live in Paris."},
            {"role": "assistant", "content": [{"type": "text", "text": "Nice."}]},
            {"role": "user", "content": "Which country is that in?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": '{"city": "Paris"}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "France"},
        ]
    )
    assert [type(m) for m in messages] == [SystemMessage, HumanMessage, AIMessage, HumanMessage, AIMessage, ToolMessage]
    assert messages[3].text == "Which country is that in?" and messages[2].text == "Nice."
    assert messages[4].tool_calls[0]["args"] == {"city": "Paris"} and messages[5].tool_call_id == "c1"
    with pytest.raises(RequestError):
        build_conversation([{"role": "user", "content": "x" * 10_000_000}])


# --- completions --------------------------------------------------------------------------------------


def test_a_completion_in_openai_format(client, fusion):
    fusion(one_model())
    r = chat(client, temperature=0.2)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == "fusiongraph"
    assert body["id"].startswith("chatcmpl-")
    (choice,) = body["choices"]
    assert choice["message"] == {"role": "assistant", "content": "GOOD: Paris", "refusal": None}
    assert choice["finish_reason"] == "stop"
    fg = body["fusiongraph"]
    assert fg["subtasks"] == ["What is the capital of France?"]
    assert fg["results"][0]["answered_by"] == "cheap"
    assert fg["results"][0]["verified"] is True and fg["verified"] is True  # the judges accepted it
    assert fg["ignored_params"] == ["temperature"]
    assert any(e["node"] == "decompose" for e in fg["trace"])


def test_usage_counts_the_answer_delivered_and_the_summary_every_call(client, fusion):
    from fusiongraph.text import estimate_tokens

    fusion(two_models())
    body = chat(client).json()
    fg = body["fusiongraph"]
    (result,) = fg["results"]
    cheap, strong = result["attempts"]
    assert [cheap["model"], strong["model"]] == ["cheap", "strong"]
    assert body["choices"][0]["message"]["content"] == "GOOD answer"
    # what a client's cost tracker reads: its messages and the answer it got (the strong model's reply)
    prompt = estimate_tokens("What is the capital of France?")
    assert body["usage"] == {
        "prompt_tokens": prompt,
        "completion_tokens": strong["tokens_out"],
        "total_tokens": prompt + strong["tokens_out"],
    }
    # every internal call is in the fusiongraph field: answers, their LLM judges, decompose and synthesize
    overhead = [e for e in fg["trace"] if e["node"] in ("decompose", "synthesize")]
    tokens_in = sum(a["tokens_in"] + a["judge_tokens_in"] for a in result["attempts"]) + sum(
        e.get("tokens_in", 0) for e in overhead
    )
    assert all(a["judge_tokens_in"] > 0 for a in result["attempts"])
    assert fg["summary"]["tokens_in"] == tokens_in >= 500 and fg["summary"]["cost_usd"] > 0


def test_stop_cuts_the_answer_streamed_or_not(client, fusion):
    fusion(two_models(strong_reply="GOOD answer. Observation: more text"))
    body = chat(client, stop=["Observation:"]).json()
    assert body["choices"][0]["message"]["content"] == "GOOD answer. "
    assert body["choices"][0]["finish_reason"] == "stop"
    events = sse_events(chat(client, stream=True, stop="Observation:"))
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e.get("choices"))
    assert text == "GOOD answer. "
    r = chat(client, stop=["a", "b", "c", "d", "e"])
    assert r.status_code == 400 and r.json()["error"]["param"] == "stop"


def test_knobs_reach_the_graph(client, fusion):
    fusion(two_models(strong_reply="GOOD but pricey"))
    # a zero budget stops before the paid model: the cheap draft is the best effort
    body = chat(client, budget_usd=0.0, fusiongraph={**KNOBS, "budget_usd": 0.0}).json()
    assert body["fusiongraph"]["results"][0]["status"] == "budget_exhausted"
    assert body["choices"][0]["message"]["content"] == "BAD answer"
    # max_tokens (OpenAI's own parameter) is the max_tokens knob; the graph validates it too
    assert chat(client, max_tokens=7).status_code == 200


def test_no_secret_in_responses(client, fusion, monkeypatch):
    secret = "zzTopSecretValue12345"
    monkeypatch.setenv("FG_TEST_API_KEY", secret)
    fusion(one_model(reply=f"GOOD: the key is {secret} and sk-abcdefghijklmnop"))
    r = chat(client)
    assert r.status_code == 200
    assert secret not in r.text and "sk-abcdefghijklmnop" not in r.text
    s = chat(client, stream=True)
    assert secret not in s.text and "sk-abcdefghijklmnop" not in s.text


def test_a_graph_failure_is_a_json_500_without_secrets(client, monkeypatch):
    import fusiongraph.server.runs as mod

    secret = "zzTopSecretValue12345"
    monkeypatch.setenv("FG_TEST_API_KEY", secret)

    class Broken:
        async def ainvoke(self, *a, **k):
            raise RuntimeError(f"boom with {secret}")

        async def astream(self, *a, **k):
            raise RuntimeError(f"boom with {secret}")
            yield

    monkeypatch.setattr(mod, "load_graph", lambda: Broken())
    r = chat(client)
    assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
    assert "boom" in r.text and secret not in r.text
    events = sse_events(chat(client, stream=True))
    assert events[-1]["error"]["type"] == "server_error" and secret not in json.dumps(events)


@pytest.mark.timeout(120)
def test_many_slow_subtasks_do_not_starve_the_graph_threads(client, fusion):
    # graph.astream runs the synchronous nodes, and the model calls they block on, in the event loop's
    # default executor: asyncio's default (cores + 4, at most 32 threads) can deadlock on 12 slow subtasks;
    # the app's lifespan enlarges it
    fusion({"cheap": ({"price_in": 0.0, "price_out": 0.0}, ScriptedChat(script=lambda p: time.sleep(0.2) or "GOOD"))})
    query = " AND ".join(f"what is {i} plus {i}" for i in range(12))
    body = chat(client, query, fusiongraph={**KNOBS, "max_subtasks": 12}).json()
    assert len(body["fusiongraph"]["subtasks"]) == 12
    events = sse_events(chat(client, query, stream=True, fusiongraph={**KNOBS, "max_subtasks": 12}))
    assert "fusiongraph" in events[-1], events[-1]
    assert len(events[-1]["fusiongraph"]["results"]) == 12


# --- streaming ----------------------------------------------------------------------------------------


def test_streaming_forwards_the_only_models_tokens_live(client, fusion):
    fusion(one_model())
    events = sse_events(chat(client, stream=True, stream_options={"include_usage": True}))
    assert all(e["object"] == "chat.completion.chunk" and e["model"] == "fusiongraph" for e in events)
    assert len({e["id"] for e in events}) == 1
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    assert text == "GOOD: Paris"
    last = [e for e in events if e["choices"]][-1]
    assert last["choices"][0]["finish_reason"] == "stop"
    assert last["fusiongraph"]["streamed_live"] is True
    usage = events[-1]
    (attempt,) = last["fusiongraph"]["results"][0]["attempts"]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == attempt["tokens_out"] > 0


def test_streaming_never_shows_a_rejected_draft(client, fusion):
    fusion(two_models())
    events = sse_events(chat(client, stream=True))
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events)
    assert text == "GOOD answer" and "BAD" not in json.dumps(events[:-1])
    assert events[-1]["fusiongraph"]["streamed_live"] is False
    assert "usage" not in events[-1]


def test_streaming_a_decomposed_query_streams_the_synthesis(client, fusion):
    fusion(one_model())
    events = sse_events(chat(client, "What is 2 plus 2 AND what is the capital of France", stream=True))
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events)
    assert text == "FUSED: GOOD: Paris | GOOD: Paris"
    assert events[-1]["fusiongraph"]["streamed_live"] is True
    assert len(events[-1]["fusiongraph"]["subtasks"]) == 2


def test_the_official_openai_client(client, fusion):
    import openai  # a dependency (the endpoint's response types): missing, the test fails

    fusion(one_model())
    oai = openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client)
    assert [m.id for m in oai.models.list()] == ["fusiongraph"]
    done = oai.chat.completions.create(
        model="fusiongraph",
        messages=[{"role": "user", "content": "Capital of France?"}],
        extra_body={"fusiongraph": KNOBS},
    )
    assert done.choices[0].message.content == "GOOD: Paris"
    assert done.usage.total_tokens > 0
    assert done.model_extra["fusiongraph"]["results"][0]["answered_by"] == "cheap"
    chunks = list(
        oai.chat.completions.create(
            model="fusiongraph",
            stream=True,
            extra_body={"fusiongraph": KNOBS},
            messages=[{"role": "user", "content": "Capital of France?"}],
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "GOOD: Paris"
    with pytest.raises(openai.NotFoundError):
        oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="unknown knob"):
        oai.chat.completions.create(
            model="fusiongraph", messages=[{"role": "user", "content": "hi"}], extra_body={"fusiongraph": {"nope": 1}}
        )


def test_a_query_longer_than_every_context_is_a_400_streamed_or_not(client, fusion):
    specs = two_models()
    for spec, _ in specs.values():
        spec["context"] = 2000
    fusion(specs)
    for stream in (False, True):
        r = chat(client, content="Summarise: " + "lorem ipsum " * 3000, stream=stream)
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert err["param"] == "messages" and "largest context" in err["message"] and "2,000 tokens" in err["message"]


def test_logprobs_are_the_answering_calls_tokens_or_say_why_not(client, fusion):
    fusion(
        {
            "cheap": (
                {"price_in": 0.0, "price_out": 0.0},
                ScriptedChat(script=lambda p: "GOOD: Paris", logprob=-0.1, token_texts=True),
            )
        }
    )
    body = chat(client, logprobs=True, top_logprobs=2).json()
    content = body["choices"][0]["logprobs"]["content"]
    assert "".join(t["token"] for t in content) == "GOOD: Paris" and all(t["logprob"] == -0.1 for t in content)
    assert "only each chosen token" in body["fusiongraph"]["logprobs_note"]
    assert chat(client).json()["choices"][0]["logprobs"] is None  # not asked: none kept
    cached = chat(client, logprobs=True).json()  # answered from the answer cache: no call gave its tokens
    assert cached["choices"][0]["logprobs"] is None and "answer cache" in cached["fusiongraph"]["logprobs_note"]
    fusion(one_model())  # a model that gives no log-probabilities
    body = chat(client, logprobs=True, cache=False).json()
    assert (
        body["choices"][0]["logprobs"] is None
        and "returns no token log-probabilities" in body["fusiongraph"]["logprobs_note"]
    )
    r = chat(client, top_logprobs=3)
    assert r.status_code == 400 and r.json()["error"]["param"] == "top_logprobs"
