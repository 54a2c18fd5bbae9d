"""The semantic answer cache (fusiongraph/cache.py, nodes/cache.py): a near-identical subtask is answered
at $0 from an accepted answer, within the TTL, never across an API key or a privacy boundary, never after
the answering model's roster entry changed; on SQLite and on the real Postgres."""

from __future__ import annotations

import time

import numpy as np
import pytest

from fusiongraph import cache as answer_cache
from fusiongraph.graphs.fusion import graph
from fusiongraph.store import Outcome, open_store
from tests.conftest import ctx
from tests.fakes import ScriptedChat

Q = "What is the capital of France?"


def one_model(fusion, reply="GOOD: Paris", price=0.5):
    chat = ScriptedChat(script=lambda p: reply)
    res = fusion({"api": ({"price_in": price, "price_out": price * 4}, chat)})
    return res, chat


def as_key(key_id: str) -> dict:
    return {"configurable": {"langgraph_auth_user_id": key_id}}


def test_the_same_question_twice_is_answered_from_the_cache_at_zero_cost(fusion):
    res, chat = one_model(fusion)
    first = graph.invoke({"query": Q}, context=ctx())
    assert first["summary"]["cache_hits"] == 0 and first["summary"]["cost_usd"] > 0
    calls = len(chat.calls)
    second = graph.invoke({"query": Q}, context=ctx())
    (r,) = second["results"]
    assert len(chat.calls) == calls  # no model was called
    assert r["answer"] == "GOOD: Paris" and r["verified"] is True and r["status"] == "accepted"
    assert r["cache"]["model"] == "api" and r["cache"]["similarity"] > 0.99 and r["attempts"] == []
    assert second["summary"]["cache_hits"] == 1 and second["summary"]["cost_usd"] == 0.0
    assert any(e["node"] == "cache" and "hit" in e for e in r["trace"])
    # a paraphrase close enough hits too; another question does not
    again = graph.invoke({"query": "What is the capital of France ?"}, context=ctx())
    assert again["summary"]["cache_hits"] == 1
    other = graph.invoke({"query": "What is the capital of Peru?"}, context=ctx())
    assert other["summary"]["cache_hits"] == 0


def test_the_knob_turns_it_off_and_the_ttl_expires(fusion, monkeypatch):
    res, chat = one_model(fusion)
    graph.invoke({"query": Q}, context=ctx())
    assert graph.invoke({"query": Q}, context=ctx(cache=False))["summary"]["cache_hits"] == 0
    assert graph.invoke({"query": Q}, context=ctx(cache_ttl_s=0))["summary"]["cache_hits"] == 0
    later = time.time() + 3600
    monkeypatch.setattr(answer_cache.time, "time", lambda: later)
    assert graph.invoke({"query": Q}, context=ctx(cache_ttl_s=60))["summary"]["cache_hits"] == 0
    assert graph.invoke({"query": Q}, context=ctx(cache_ttl_s=7200))["summary"]["cache_hits"] == 1


def test_never_across_an_api_key(fusion):
    res, chat = one_model(fusion)
    graph.invoke({"query": Q}, context=ctx(), config=as_key("key-a"))
    assert graph.invoke({"query": Q}, context=ctx(), config=as_key("key-b"))["summary"]["cache_hits"] == 0
    assert graph.invoke({"query": Q}, context=ctx())["summary"]["cache_hits"] == 0  # nor into the open scope
    assert graph.invoke({"query": Q}, context=ctx(), config=as_key("key-a"))["summary"]["cache_hits"] == 1


def test_a_changed_roster_entry_drops_its_answers(fusion):
    res, chat = one_model(fusion)
    graph.invoke({"query": Q}, context=ctx())
    assert graph.invoke({"query": Q}, context=ctx())["summary"]["cache_hits"] == 1
    res.roster.specs["api"] = res.roster.specs["api"].model_copy(update={"price_in": 0.7})
    fresh = graph.invoke({"query": Q}, context=ctx())
    assert fresh["summary"]["cache_hits"] == 0 and fresh["results"][0]["attempts"]
    # the entry made under the new roster entry is used from then on
    assert graph.invoke({"query": Q}, context=ctx())["summary"]["cache_hits"] == 1


def test_sensitive_subtasks_are_never_cached(fusion):
    chat = ScriptedChat(script=lambda p: "GOOD: blocked")
    res = fusion({"local": ({"price_in": 0.0, "price_out": 0.0, "trusted": True}, chat)})
    for m in ("planner", "judge"):
        res.roster.specs[m] = res.roster.specs[m].model_copy(update={"trusted": True})
    q = "Block card 4111 1111 1111 1111 now"
    graph.invoke({"query": q}, context=ctx())
    second = graph.invoke({"query": q}, context=ctx())
    assert second["summary"]["cache_hits"] == 0 and second["results"][0]["attempts"]


def test_an_unaccepted_answer_is_not_cached(fusion):
    res, chat = one_model(fusion, reply="BAD answer")
    graph.invoke({"query": Q}, context=ctx())
    assert graph.invoke({"query": Q}, context=ctx())["summary"]["cache_hits"] == 0


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_store_keeps_entries_by_scope_class_and_age(backend, tmp_path, request):
    target = tmp_path / "s" if backend == "sqlite" else request.getfixturevalue("pg")
    store = open_store(target, 4, "t")
    try:
        e = np.array([1, 0, 0, 0], np.float32)
        sid = store.record("q", e, "factual_qa", [Outcome("m", 1.0, True, answer="A")])
        store.cache_put(sid, "k1", "m", "fp1", "factual_qa", "A")
        store.cache_put(sid, "k1", "m", "fp1", "factual_qa", "A2")  # replaced, not duplicated
        near = np.array([0.99, 0.14, 0, 0], np.float32)
        (hit,) = store.cached_answers(near, "k1", 0.97, 0.0)
        assert hit["answer"] == "A2" and hit["subtask_id"] == sid and hit["task_class"] == "factual_qa"
        assert store.cached_answers(near, "k2", 0.97, 0.0) == []
        assert store.cached_answers(np.array([0, 1, 0, 0], np.float32), "k1", 0.97, 0.0) == []
        assert store.cached_answers(near, "k1", 0.97, time.time() + 10) == []  # older than `since`
        assert store.cache_drop_model("m", "fp1") == 0 and store.cache_drop_model("m", "fp2") == 1
        assert store.cached_answers(near, "k1", 0.97, 0.0) == []
    finally:
        store.close()


def test_never_across_task_classes_nor_to_a_model_the_subtask_may_not_use(fusion):
    res, chat = one_model(fusion)
    emb = res.embedder.embed_one(Q)
    sid = res.store.record(Q, emb, "math", [Outcome("api", 1.0, True, answer="42")])
    res.store.cache_put(sid, answer_cache.OPEN_SCOPE, "api", res.roster["api"].fingerprint(), "math", "42")
    assert answer_cache.lookup(res, ctx(), emb, "math", ["api"])["answer"] == "42"
    assert answer_cache.lookup(res, ctx(), emb, "factual_qa", ["api"]) is None
    assert answer_cache.lookup(res, ctx(), emb, "math", []) is None  # e.g. not available to this run


def test_a_near_duplicate_with_other_numbers_is_not_the_same_question(fusion):
    assert answer_cache.same_question("What is the capital of France?", "what is the capital of france ?")
    assert answer_cache.same_question("What is 17 times 23?", "Please answer: what is 17 times 23")
    assert not answer_cache.same_question("Interest at 12% for 3 years?", "Interest at 14% for 3 years?")
    assert not answer_cache.same_question("Which is a mammal? A. cat B. trout", "Which is a mammal? A. shark B. trout")
    res, chat = one_model(fusion)
    graph.invoke({"query": "A loan of $100 at 12% for 3 years: what is the interest?"}, context=ctx())
    other = graph.invoke({"query": "A loan of $100 at 14% for 3 years: what is the interest?"}, context=ctx())
    assert other["summary"]["cache_hits"] == 0  # the embeddings are close; the numbers differ
