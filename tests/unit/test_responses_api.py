"""The Responses API (POST /v1/responses) through the official openai client: text, a function tool and its
result, a conversation continued with previous_response_id, structured output and the streaming events; the
stored conversations in the server's SQLite store (after a restart, per API key, ``store: false``, expiry)."""

import json
import sqlite3

import openai
import pytest
from starlette.testclient import TestClient

from fusiongraph.response_store import ResponseStore, close_stores
from fusiongraph.server.openai_app import app
from tests.unit.test_conversations_tools import WEATHER as CHAT_WEATHER
from tests.unit.test_conversations_tools import call, models
from tests.unit.test_server import KNOBS, one_model

WEATHER = {"type": "function", **CHAT_WEATHER["function"]}  # the Responses API's flat form


@pytest.fixture
def oai():
    with TestClient(app) as client:
        yield openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client, max_retries=0)


def test_a_text_answer_and_a_continued_conversation(oai, fusion):
    spec = one_model()
    fusion(spec)
    first = oai.responses.create(model="fusiongraph", input="Capital of France?", extra_body={"fusiongraph": KNOBS})
    assert first.status == "completed" and first.output_text == "GOOD: Paris"
    assert first.usage.output_tokens > 0 and first.model_extra["fusiongraph"]["results"][0]["answered_by"] == "cheap"
    second = oai.responses.create(
        model="fusiongraph",
        input="And of Italy?",
        instructions="Answer briefly.",
        previous_response_id=first.id,
        extra_body={"fusiongraph": KNOBS},
    )
    assert second.output_text == "GOOD: Paris"
    messages, _ = spec["cheap"][1].seen[-1]  # the answering call saw the earlier turn and its answer
    assert [(type(m).__name__, m.content) for m in messages][-3:] == [
        ("HumanMessage", "Capital of France?"),
        ("AIMessage", "GOOD: Paris"),
        ("HumanMessage", "And of Italy?"),
    ]
    with pytest.raises(openai.NotFoundError):
        oai.responses.create(model="fusiongraph", input="x", previous_response_id="resp_nope")
    with pytest.raises(openai.BadRequestError) as bad:  # not an id at all: the client's error, named
        oai.responses.create(model="fusiongraph", input="x", extra_body={"previous_response_id": 123})
    assert bad.value.body["param"] == "previous_response_id"


def test_a_function_tool_is_called_then_its_output_is_answered(oai, fusion):
    spec, cheap, strong = models(call(city="Paris"), call(city="Paris"))
    fusion(spec)
    r = oai.responses.create(
        model="fusiongraph", input="Weather in Paris?", tools=[WEATHER], tool_choice="required",
        extra_body={"fusiongraph": KNOBS},
    )  # fmt: skip
    (item,) = r.output
    assert (
        item.type == "function_call" and item.name == "get_weather" and json.loads(item.arguments) == {"city": "Paris"}
    )
    _, kwargs = cheap.seen[0]
    assert kwargs["tools"][0]["function"]["name"] == "get_weather"
    reply = "GOOD: it is sunny in Paris, 21 C."
    spec, cheap, strong = models(reply, reply)
    fusion(spec)
    after = oai.responses.create(
        model="fusiongraph",
        previous_response_id=r.id,
        input=[{"type": "function_call_output", "call_id": item.call_id, "output": "sunny, 21 C"}],
        tools=[WEATHER],
        extra_body={"fusiongraph": KNOBS},
    )
    assert after.output_text == reply
    (messages, _), *_ = cheap.seen or strong.seen
    assert [type(m).__name__ for m in messages][-3:] == [
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
    ]  # the call, its result


def test_streaming_events_in_the_responses_shape(oai, fusion):
    fusion(one_model())
    events = list(
        oai.responses.create(
            model="fusiongraph", input="Capital of France?", stream=True, extra_body={"fusiongraph": KNOBS}
        )
    )
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds and "response.output_item.done" in kinds
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "GOOD: Paris" and events[-1].response.output_text == "GOOD: Paris"
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_bad_responses_requests_are_openai_errors(oai, fusion):
    fusion(one_model())
    with pytest.raises(openai.BadRequestError) as bad:
        oai.responses.create(model="fusiongraph", input=[{"type": "web_search_call"}])
    assert bad.value.body["param"] == "input[0].type"
    with pytest.raises(openai.BadRequestError) as bad:
        oai.responses.create(model="fusiongraph", input="x", tools=[{"type": "web_search"}])
    assert bad.value.body["param"] == "tools[0].type"


# --- stored conversations (fusiongraph/response_store.py): the server's store, per API key ----------------------


@pytest.fixture(autouse=True)
def server_store(tmp_path, monkeypatch):
    """The server's store (stored responses, API keys): a fresh SQLite directory, its stores closed after."""
    from fusiongraph import keys as keys_mod

    monkeypatch.delenv("FUSIONGRAPH_STORE_URL", raising=False)
    monkeypatch.delenv(keys_mod.ENV_REQUIRE, raising=False)
    monkeypatch.setenv("FUSIONGRAPH_STORE_DIR", str(tmp_path / "server-store"))
    close_stores()
    keys_mod._stores.clear()
    yield tmp_path / "server-store"
    close_stores()
    for ks in keys_mod._stores.values():
        ks.close()
    keys_mod._stores.clear()


def _rows(store_dir) -> list[tuple]:
    """The stored responses in the store's file (none before the file exists)."""
    if not (store_dir / "outcomes.sqlite").exists():
        return []
    db = sqlite3.connect(store_dir / "outcomes.sqlite")
    try:
        return db.execute("SELECT id, key_id, messages FROM responses ORDER BY created_at").fetchall()
    finally:
        db.close()


def test_a_conversation_continues_after_a_restart_from_the_store_file(oai, fusion, server_store):
    spec = one_model()
    fusion(spec)
    first = oai.responses.create(model="fusiongraph", input="Capital of France?", extra_body={"fusiongraph": KNOBS})
    ((rid, key_id, messages),) = _rows(server_store)
    assert rid == first.id and key_id is None  # an open server: anonymous
    assert json.loads(messages) == [  # JSON text
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "GOOD: Paris"},
    ]
    close_stores()  # a restart (or another worker): a new store object on the same file
    second = oai.responses.create(
        model="fusiongraph", input="And of Italy?", previous_response_id=first.id, extra_body={"fusiongraph": KNOBS}
    )
    assert second.output_text == "GOOD: Paris"
    messages, _ = spec["cheap"][1].seen[-1]
    assert [m.content for m in messages][-3:] == ["Capital of France?", "GOOD: Paris", "And of Italy?"]
    assert ResponseStore(server_store).get(second.id, None)[-2:] == [
        {"role": "user", "content": "And of Italy?"},
        {"role": "assistant", "content": "GOOD: Paris"},
    ]


def test_a_streamed_response_is_stored_too(oai, fusion):
    spec = one_model()
    fusion(spec)
    events = list(
        oai.responses.create(
            model="fusiongraph", input="Capital of France?", stream=True, extra_body={"fusiongraph": KNOBS}
        )
    )
    close_stores()
    after = oai.responses.create(
        model="fusiongraph", input="And of Italy?", previous_response_id=events[-1].response.id,
        extra_body={"fusiongraph": KNOBS},
    )  # fmt: skip
    assert after.status == "completed"
    messages, _ = spec["cheap"][1].seen[-1]
    assert [m.content for m in messages][-3:] == ["Capital of France?", "GOOD: Paris", "And of Italy?"]


def test_another_keys_response_is_a_404_exactly_like_an_unknown_one(fusion, server_store):
    from fusiongraph.keys import key_store
    from tests.store.test_keys import keyed

    fusion(one_model())
    alice, alice_key = key_store().create("alice", 10.0)
    bob, _ = key_store().create("bob", 10.0)
    body = {"model": "fusiongraph", "input": "Capital of France?", "fusiongraph": KNOBS}
    with TestClient(keyed(app)) as client:

        def post(token, **more):
            return client.post("/v1/responses", json=body | more, headers={"Authorization": f"Bearer {token}"})

        first = post(alice)
        assert first.status_code == 200, first.text
        rid = first.json()["id"]
        assert [(r[0], r[1]) for r in _rows(server_store)] == [(rid, alice_key.id)]
        theirs, unknown = post(bob, previous_response_id=rid), post(bob, previous_response_id="resp_" + "0" * 32)
        assert theirs.status_code == unknown.status_code == 404
        assert theirs.json()["error"] == unknown.json()["error"] | {
            "message": unknown.json()["error"]["message"].replace("resp_" + "0" * 32, rid)
        }  # nothing tells that it exists
        assert theirs.json()["error"]["code"] == "not_found"
        assert post(alice, previous_response_id=rid).status_code == 200  # its own key continues it


def test_store_false_keeps_nothing(oai, fusion, server_store):
    fusion(one_model())
    kept = dict(model="fusiongraph", input="Capital of France?", extra_body={"fusiongraph": KNOBS})
    unkept = oai.responses.create(**kept, store=False)
    streamed = list(oai.responses.create(**kept, store=False, stream=True))[-1].response
    assert unkept.status == streamed.status == "completed"
    assert _rows(server_store) == []
    for rid in (unkept.id, streamed.id):
        with pytest.raises(openai.NotFoundError):
            oai.responses.create(model="fusiongraph", input="more", previous_response_id=rid)
    with pytest.raises(openai.BadRequestError) as bad:
        oai.responses.create(**kept, store="no")
    assert bad.value.body["param"] == "store"


def test_old_responses_expire_and_are_pruned_on_write(tmp_path, monkeypatch):
    monkeypatch.setenv("FUSIONGRAPH_RESPONSES_RETENTION_DAYS", "1")
    day = 86400.0
    store = ResponseStore(tmp_path / "s")
    store.put("resp_old", "key_a", [{"role": "user", "content": "old"}], now=1000.0)
    store.put("resp_new", "key_a", [{"role": "user", "content": "new"}], now=1000.0 + 0.5 * day)
    assert store.get("resp_old", "key_a", now=1000.0 + 0.9 * day) == [{"role": "user", "content": "old"}]
    assert store.get("resp_old", "key_a", now=1000.0 + 1.1 * day) is None  # expired, even before it is pruned
    assert store.get("resp_new", "key_b", now=1000.0 + 0.5 * day) is None  # another key's
    assert store.get("resp_new", None, now=1000.0 + 0.5 * day) is None  # nor anonymous
    assert len(_rows(tmp_path / "s")) == 2
    store.put("resp_later", None, [], now=1000.0 + 1.2 * day)  # a write deletes the expired ones
    assert [r[0] for r in _rows(tmp_path / "s")] == ["resp_new", "resp_later"]
    store.close()
    again = ResponseStore(tmp_path / "s")  # another worker: the same rows
    assert again.get("resp_new", "key_a", now=1000.0 + 1.2 * day) == [{"role": "user", "content": "new"}]
    assert again.prune(now=1000.0 + 10 * day) == 2 and _rows(tmp_path / "s") == []
    again.close()


def test_a_store_that_fails_is_a_503_on_lookup_and_no_error_after_a_run(oai, fusion, monkeypatch):
    from fusiongraph.server import responses_api
    from fusiongraph.store import StoreError

    def down(*a, **k):
        raise StoreError("cannot connect to the outcome store postgresql://fg:***@db/fg")

    fusion(one_model())
    monkeypatch.setattr(responses_api, "response_store", down)
    answered = oai.responses.create(model="fusiongraph", input="Capital of France?", extra_body={"fusiongraph": KNOBS})
    assert answered.output_text == "GOOD: Paris"  # paid for: answered, just not kept
    with pytest.raises(openai.InternalServerError) as failed:
        oai.responses.create(model="fusiongraph", input="more", previous_response_id=answered.id)
    assert failed.value.status_code == 503 and failed.value.body["code"] == "store_unavailable"
