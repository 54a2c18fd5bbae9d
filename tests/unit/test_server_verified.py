"""The endpoint never passes off a rejected answer as verified: `fusiongraph.verified`, and
`require_verified` answering with a plain message (a normal completion, never a 500)."""

from __future__ import annotations

import json

from fusiongraph.records import UNVERIFIED
from tests.fakes import ScriptedChat

KNOBS = {"planner_model": "planner", "judge_model": "judge", "budget_usd": 0.01, "guides": 0}


def rejected_only():
    """One free model whose answers the judges reject, one too dear for the budget."""
    return {
        "cheap": ({"price_in": 0.0, "price_out": 0.0}, ScriptedChat(script=lambda p: "BAD answer")),
        "strong": ({"price_in": 1000.0, "price_out": 4000.0}, ScriptedChat(script=lambda p: "GOOD answer")),
    }


def ask(client, **knobs):
    body = {
        "model": "fusiongraph",
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "fusiongraph": KNOBS | knobs,
    }
    return client.post("/v1/chat/completions", json=body)


def test_an_unverified_answer_is_marked_so(client, fusion):
    fusion(rejected_only())
    reply = ask(client)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["choices"][0]["message"]["content"] == "BAD answer"
    assert body["fusiongraph"]["verified"] is False
    assert [r["verified"] for r in body["fusiongraph"]["results"]] == [False]


def test_require_verified_answers_with_the_message_as_a_normal_completion(client, fusion):
    fusion(rejected_only())
    reply = ask(client, require_verified=True)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["choices"][0]["message"]["content"] == UNVERIFIED
    assert body["choices"][0]["finish_reason"] == "stop" and body["fusiongraph"]["verified"] is False
    # streamed: the same message, chunk by chunk, and the rejected text is never sent as content
    streamed = client.post(
        "/v1/chat/completions",
        json={
            "model": "fusiongraph",
            "stream": True,
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "fusiongraph": KNOBS | {"require_verified": True},
        },
    )
    assert streamed.status_code == 200
    chunks = [json.loads(line[6:]) for line in streamed.text.splitlines() if line.startswith("data: {")]
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert content == UNVERIFIED


def test_an_accepted_answer_is_verified(client, fusion):
    fusion({"cheap": ({"price_in": 0.0, "price_out": 0.0}, ScriptedChat(script=lambda p: "GOOD: Paris"))})
    body = ask(client, require_verified=True).json()
    assert body["choices"][0]["message"]["content"] == "GOOD: Paris" and body["fusiongraph"]["verified"] is True


def test_discovery_is_a_server_setting_not_a_request_knob(client, fusion):
    fusion(rejected_only())
    reply = ask(client, discover_local=True)
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "discover_local"
