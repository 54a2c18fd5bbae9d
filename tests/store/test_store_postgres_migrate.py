"""The Postgres outcome store's schema, against a real Postgres (no mock): ``store migrate`` copying a SQLite
store (outcomes and API keys) into it, the numbered migrations, and its tables beside LangGraph's in one
database or in a schema of their own.

The databases, the seeded data and the snapshot compared across backends are those of tests/store/test_store_postgres.py.
"""

import threading

import psycopg
import pytest
from typer.testing import CliRunner

from fusiongraph.store import Outcome, OutcomeStore, StoreError, migrate_store, open_store
from fusiongraph.store.postgres_schema import LATEST
from tests.store.test_store_postgres import seed, snapshot, unit, wait_for

pytestmark = pytest.mark.timeout(120)


def _sqlite_store(path):
    store = OutcomeStore(path, 8, "test")
    seed(store)
    store.close()
    return OutcomeStore(path, 8, "test")


def test_migrate_copies_a_sqlite_store_without_loss(databases, tmp_path):
    from fusiongraph.cli import app

    lite = _sqlite_store(tmp_path / "lite")
    url = databases()
    done = CliRunner().invoke(app, ["store", "migrate", "--to", url, "--store-dir", str(tmp_path / "lite"), "--json"])
    assert done.exit_code == 0, done.output
    assert '"target": {"subtasks": 62, "outcomes": 185, "vectors": 62}' in done.output
    post = open_store(url, 8, "test")
    assert str(snapshot(post)) == str(snapshot(lite))  # every column, every aggregate
    again = CliRunner().invoke(app, ["store", "migrate", "--to", url, "--store-dir", str(tmp_path / "lite")])
    assert again.exit_code == 2 and "--append" in again.output
    assert post.counts()["outcomes"] == 185  # the refused copy wrote nothing
    result = migrate_store(tmp_path / "lite", url, append=True)
    assert result["copied"] == {
        "subtasks": 0,
        "outcomes": 185,
        "api_keys": 0,
        "api_key_spend": 0,
        "api_key_charges": 0,
        "responses": 0,
    }  # same texts: the subtasks are shared
    assert wait_for(lambda: post.outcomes_folded == 2 * lite.outcomes_folded, 2.0)  # NOTIFY reached it
    assert post.counts() == {"subtasks": 62, "outcomes": 370, "vectors": 62}
    with pytest.raises(StoreError, match="no outcome store"):
        migrate_store(tmp_path / "nothing here", databases())
    post.close()


def test_migrate_copies_the_api_keys_their_spend_and_charges(databases, tmp_path):
    from fusiongraph.cli import app
    from fusiongraph.keys import KeyRefused, KeyStore

    _sqlite_store(tmp_path / "lite").close()
    lite = KeyStore(tmp_path / "lite")
    token, key = lite.create("team-a", 1.0, "month")
    broke_token, broke = lite.create("team-b", 0.5, "total")
    lite.charge(key, 0.25, "run-1")
    lite.charge(broke, 0.5)
    lite.revoke("team-b")
    before = {k.name: (k, spent) for k, spent in lite.list()}
    lite.close()
    from fusiongraph.response_store import ResponseStore

    conversations = ResponseStore(tmp_path / "lite")  # a Responses API conversation moves with its key
    conversations.put("resp_1", key.id, [{"role": "user", "content": "hi é"}, {"role": "assistant", "content": "yo"}])
    conversations.close()

    url = databases()
    done = CliRunner().invoke(app, ["store", "migrate", "--to", url, "--store-dir", str(tmp_path / "lite")])
    assert done.exit_code == 0, done.output
    said = " ".join(done.output.split())
    assert "2 keys, 2 spend rows, 2 charges; 1 stored Responses conversations" in said, done.output
    moved = ResponseStore(url)
    assert moved.get("resp_1", key.id) == [{"role": "user", "content": "hi é"}, {"role": "assistant", "content": "yo"}]
    moved.close()
    pg_keys = KeyStore(url)
    assert {k.name: (k, spent) for k, spent in pg_keys.list()} == before  # ids, budgets, periods, revocation, spend
    assert pg_keys.check(token) == key  # the same token works against the new store (its hash was copied)
    with pytest.raises(KeyRefused) as refused:
        pg_keys.check(broke_token)
    assert refused.value.code == "revoked_api_key"
    assert pg_keys.charge(key, 0.25, "run-1") == 0.25  # the charge log came along: run-1 is not charged twice
    assert pg_keys.charge(key, 0.25, "run-2") == 0.5
    pg_keys.close()

    # a target that already has one of the keys is refused whole, nothing written
    with pytest.raises(StoreError, match="already holds API keys named 'team-a', 'team-b'"):
        migrate_store(tmp_path / "lite", url, append=True)
    check = open_store(url, 8, "test")
    assert check.counts()["outcomes"] == 185
    check.close()


OUR_TABLES = {
    "schema_version",
    "meta",
    "subtasks",
    "outcomes",
    "artifacts",
    "api_keys",
    "api_key_spend",
    "api_key_charges",
    "answer_cache",
    "erasures",
    "responses",
}
# the LangGraph server's own tables on Postgres (langgraph-api: assistants, threads, runs, crons, its migrations;
# the checkpointer's and the long-term store's, created by the server through langgraph-checkpoint-postgres)
LANGGRAPH_SERVER_TABLES = {
    "assistant",
    "assistant_versions",
    "thread",
    "thread_ttl",
    "run",
    "cron",
    "schema_migrations",
}


def _tables(url: str, schema: str = "public") -> set[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,))
        return {r[0] for r in rows}


def test_the_store_shares_a_database_with_langgraphs_checkpointer_and_store(pg):
    """The outcome store and LangGraph's Postgres checkpointer and long-term store (the tables the LangGraph
    server keeps threads' state and its store in) in one database: no table in common, both work."""
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.graph import END, START, StateGraph
    from langgraph.store.postgres import PostgresStore
    from typing_extensions import TypedDict

    from fusiongraph.keys import KeyStore

    with PostgresSaver.from_conn_string(pg) as saver, PostgresStore.from_conn_string(pg) as lg_store:
        saver.setup()
        lg_store.setup()
        theirs = _tables(pg)
        store = open_store(pg, 8, "test")
        seed(store)
        KeyStore(pg).create("team", 1.0)
        ours = _tables(pg) - theirs
        assert ours == OUR_TABLES and not ours & (theirs | LANGGRAPH_SERVER_TABLES), (ours, theirs)
        assert {"checkpoints", "checkpoint_writes", "checkpoint_blobs", "store"} <= theirs

        class S(TypedDict):
            n: int

        builder = StateGraph(S)
        builder.add_node("inc", lambda s: {"n": s["n"] + 1})
        builder.add_edge(START, "inc")
        builder.add_edge("inc", END)
        graph = builder.compile(checkpointer=saver, store=lg_store)
        config = {"configurable": {"thread_id": "t1"}}
        assert graph.invoke({"n": 1}, config) == {"n": 2}
        lg_store.put(("users", "u1"), "prefs", {"colour": "blue"})
        store.record("after langgraph", unit(99), "math", [Outcome("m0", 1.0, True)])
        assert graph.get_state(config).values == {"n": 2}
        assert lg_store.get(("users", "u1"), "prefs").value == {"colour": "blue"}
        fresh = open_store(pg, 8, "test")
        assert fresh.counts() == store.counts() and fresh.counts()["vectors"] == fresh.counts()["subtasks"]
        fresh.close()
        store.close()


def test_the_store_can_live_in_its_own_schema(pg):
    """``?options=-csearch_path%3Dfusiongraph``: every table of the store (keys too) in that schema."""
    from fusiongraph.keys import KeyStore

    with psycopg.connect(pg, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA fusiongraph")
    url = pg + "?options=-csearch_path%3Dfusiongraph"
    store = open_store(url, 8, "test")
    seed(store)
    token, _ = KeyStore(url).create("team", 1.0)
    assert _tables(pg, "fusiongraph") == OUR_TABLES and not _tables(pg) & OUR_TABLES
    other = open_store(url, 8, "test")  # LISTEN/NOTIFY and the advisory locks work as in the public schema
    store.record("in a schema", unit(7), "math", [Outcome("m0", 1.0, True)])
    assert wait_for(lambda: other.counts() == store.counts(), 3)
    assert KeyStore(url).check(token).name == "team"
    other.close()
    store.close()


def test_migrations_are_versioned_and_applied_once(databases):
    url = databases()
    errors = []

    def open_close():
        try:
            open_store(url, 8, "test").close()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_close) for _ in range(4)]  # first opens race: the lock orders them
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    with psycopg.connect(url, autocommit=True) as conn:
        assert [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")] == list(
            range(1, LATEST + 1)
        )
        assert conn.execute("SELECT count(*) FROM meta WHERE key = 'store_id'").fetchone()[0] == 1
        conn.execute("INSERT INTO schema_version (version, description) VALUES (99, 'from the future')")
    with pytest.raises(StoreError, match="schema version 99.*upgrade fusiongraph"):
        open_store(url, 8, "test")


def test_migration_7_adds_after_rejection_and_older_rows_are_unconditioned(pg):
    from fusiongraph.store.postgres_schema import MIGRATIONS

    with psycopg.connect(pg, autocommit=True) as conn:  # a database as fusiongraph left it at schema version 6
        conn.execute(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, description TEXT NOT NULL,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        for version, description, ddl in MIGRATIONS[:6]:
            conn.execute(ddl)
            conn.execute("INSERT INTO schema_version (version, description) VALUES (%s, %s)", (version, description))
        conn.execute("INSERT INTO meta VALUES ('dim', '8'), ('embedder', 'test'), ('version', '1')")
        conn.execute("INSERT INTO subtasks VALUES (1, 'h', 'old task', 'math', %s, 0)", (unit(1).tobytes(),))
        conn.execute(
            "INSERT INTO outcomes (subtask_id, model, task_class, success, accepted, created_at)"
            " VALUES (1, 'a', 'math', 1, true, 0)"
        )
        conn.execute("SELECT setval(pg_get_serial_sequence('subtasks', 'id'), 1)")
    store = open_store(pg, 8, "test")
    assert store.backend.schema_version() == LATEST >= 7
    assert [r["after_rejection"] for r in store.outcomes()] == [False]
    store.record("new task", unit(2), "math", [Outcome("a", 0.0, False, after_rejection=True)])
    store.close()
    again = open_store(pg, 8, "test")
    assert [r["after_rejection"] for r in again.outcomes()] == [False, True]
    assert again.class_rates("math") == {"a": (1.0, 1)} and again.conditioned_rates() == {"a": (0.0, 1)}
    again.close()
