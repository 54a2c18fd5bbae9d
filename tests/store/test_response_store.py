"""The Responses API's stored conversations (fusiongraph/response_store.py) on SQLite and a real Postgres: kept
per API key, found by another store object (another worker, a restart), expired and pruned; the Postgres table is
a migration that leaves the outcome store to open."""

from __future__ import annotations

import psycopg
import pytest

from fusiongraph.response_store import ResponseStore
from fusiongraph.store import open_store
from fusiongraph.store.postgres_schema import LATEST

DAY = 86400.0
CONVERSATION = [
    {"role": "user", "content": [{"type": "text", "text": "Weather in Paris? é"}]},
    {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w"}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_responses_are_shared_per_key_and_expire(backend, tmp_path, request, monkeypatch):
    monkeypatch.setenv("FUSIONGRAPH_RESPONSES_RETENTION_DAYS", "2")
    target = str(tmp_path / "store") if backend == "sqlite" else request.getfixturevalue("pg")
    t0 = 1_700_000_000.0
    one = ResponseStore(target)
    one.put("resp_a", "key_a", CONVERSATION, now=t0)
    one.put("resp_anon", None, [{"role": "user", "content": "hi"}], now=t0 + 1)
    other = ResponseStore(target)  # another worker or replica, or the same after a restart
    assert other.get("resp_a", "key_a", now=t0 + 10) == CONVERSATION  # the same JSON back
    assert other.get("resp_a", "key_b", now=t0 + 10) is None  # another key's: as if unknown
    assert other.get("resp_a", None, now=t0 + 10) is None  # anonymous sees no key's
    assert other.get("resp_anon", None, now=t0 + 10) == [{"role": "user", "content": "hi"}]
    assert other.get("resp_anon", "key_a", now=t0 + 10) is None  # nor a key the anonymous ones
    assert other.get("resp_nope", "key_a", now=t0 + 10) is None
    assert other.get("resp_a", "key_a", now=t0 + 2.5 * DAY) is None  # expired, even before it is pruned
    one.close()
    other.put("resp_b", "key_a", [], now=t0 + 3 * DAY)  # a write prunes the expired ones
    assert other.prune(now=t0 + 3 * DAY) == 0  # nothing left to prune: they went with the write
    assert other.get("resp_b", "key_a", now=t0 + 3 * DAY) == []
    assert other.prune(now=t0 + 6 * DAY) == 1
    other.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_forget_erases_the_conversations_that_hold_the_text_or_are_older(backend, tmp_path, request, monkeypatch):
    target = str(tmp_path / "store") if backend == "sqlite" else request.getfixturevalue("pg")
    rs = ResponseStore(target)
    t0 = 1_700_000_000.0
    rs.put("r1", "k", CONVERSATION, now=t0)  # "Weather in Paris? é"
    rs.put("r2", "k", [{"role": "user", "content": 'He said "100%_off" at 2pm'}], now=t0 + 10)
    rs.put("r3", None, [{"role": "user", "content": "nothing to see"}], now=t0 + 20)
    assert rs.forget("PARIS? É") == 1 and rs.get("r1", "k", now=t0 + 30) is None  # any case, non-ASCII
    assert rs.forget("1_0") == 0 and rs.forget("10%f") == 0  # LIKE's wildcards are only themselves here
    assert rs.forget('"100%_off"') == 1 and rs.get("r2", "k", now=t0 + 30) is None  # quotes JSON-escaped
    assert rs.forget(None, before=t0 + 15) == 0 and rs.get("r3", None, now=t0 + 30) is not None
    assert rs.forget("nothing", before=t0 + 15) == 0  # both conditions
    assert rs.forget(None, before=t0 + 25) == 1
    rs.put("r5", "k", [{"role": "user", "content": "Call Jürgen MÜLLER"}], now=t0 + 30)
    assert rs.forget("müller") == 1  # any script's case, on SQLite too
    monkeypatch.setenv("FUSIONGRAPH_RETENTION_DAYS", "1")  # the store's own retention, when shorter
    rs.put("r4", "k", [], now=t0)
    assert rs.get("r4", "k", now=t0 + 1.5 * DAY) is None and rs.get("r4", "k", now=t0 + 0.5 * DAY) == []
    rs.close()


def test_postgres_responses_migration_leaves_the_outcome_store_to_open(pg):
    rs = ResponseStore(pg)  # every migration, no outcome-store metadata yet
    rs.put("resp_x", "key_a", CONVERSATION)
    rs.close()
    with psycopg.connect(pg, autocommit=True) as conn:
        assert [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")] == list(
            range(1, LATEST + 1)
        )
        assert conn.execute("SELECT count(*) FROM meta").fetchone()[0] == 0
        assert conn.execute("SELECT key_id, messages::json->2->>'content' FROM responses").fetchall() == [
            ("key_a", "sunny")
        ]  # JSON text
    store = open_store(pg, 8, "test")
    assert store.counts()["outcomes"] == 0
    store.close()
    again = ResponseStore(pg)
    assert again.get("resp_x", "key_a") == CONVERSATION
    again.close()
