"""API keys, budgets and metrics (fusiongraph/keys.py, server/auth.py, server/metrics.py): the key store on
SQLite and a real Postgres (charges shared by processes), the auth handler and the OpenAI app's charge and
metrics in process, and one integration test through a real `langgraph dev`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from starlette.requests import Request
from starlette.testclient import TestClient

from fusiongraph import keys as keys_mod
from fusiongraph.keys import KeyRefused, KeyStore, hash_key, period_start
from fusiongraph.server import auth
from fusiongraph.server.openai_app import app
from fusiongraph.store import StoreError
from fusiongraph.store.postgres_schema import LATEST
from tests.unit.test_server import KNOBS, two_models

ROOT = Path(__file__).resolve().parents[2]
KNOBS_LOCAL = {"local_only": True, "max_tokens": 16}


@pytest.fixture
def server_store(tmp_path, monkeypatch):
    """The store the server's auth uses: a fresh SQLite directory."""
    monkeypatch.delenv("FUSIONGRAPH_STORE_URL", raising=False)
    monkeypatch.delenv(keys_mod.ENV_REQUIRE, raising=False)
    monkeypatch.setenv("FUSIONGRAPH_STORE_DIR", str(tmp_path / "server-store"))
    keys_mod._stores.clear()
    yield tmp_path / "server-store"
    for ks in keys_mod._stores.values():
        ks.close()
    keys_mod._stores.clear()


# --- the key store ---------------------------------------------------------------------------------------


def test_keys_are_hashed_budgeted_and_revocable(tmp_path):
    ks = KeyStore(tmp_path)
    assert not ks.any_keys() and ks.list() == []
    token, key = ks.create("alice", 0.5, "day")
    assert token.startswith("fg-") and len(token) > 40 and ks.any_keys()
    raw = (tmp_path / "outcomes.sqlite").read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("*-wal"))
    assert token.encode() not in raw and hash_key(token).encode() in raw  # only the hash is stored
    assert ks.check(token) == key
    assert ks.charge(key, 0.25) == 0.25 and ks.charge(key, 0.25) == 0.5
    with pytest.raises(KeyRefused) as refused:
        ks.check(token)
    assert refused.value.status == 429 and "alice" in refused.value.message and "per-day" in refused.value.message
    assert [(k.name, spent) for k, spent in ks.list()] == [("alice", 0.5)]
    for bad, code in [(None, "missing_api_key"), ("fg-nope", "invalid_api_key")]:
        with pytest.raises(KeyRefused) as refused:
            ks.check(bad)
        assert (refused.value.status, refused.value.code) == (401, code)
    with pytest.raises(StoreError, match="already exists"):
        ks.create("alice", 1.0)
    with pytest.raises(ValueError):
        ks.create("bob", -1)
    with pytest.raises(ValueError):
        ks.create("bob", 1, "week")
    assert ks.revoke("alice") and not ks.revoke("alice")
    with pytest.raises(KeyRefused) as refused:
        ks.check(token)
    assert refused.value.code == "revoked_api_key" and ks.any_keys()  # revoked keys keep the server closed
    assert period_start("day", 0) == "1970-01-01" and period_start("month", 0) == "1970-01"
    assert period_start("total", 0) == "total"


CHARGER = """
import sys
from fusiongraph.keys import KeyStore
ks = KeyStore(sys.argv[1])
key = next(k for k, _ in ks.list() if k.name == "shared")
for _ in range(int(sys.argv[2])):
    ks.charge(key, 0.125)
ks.close()
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_charges_are_shared_by_processes(backend, tmp_path, request):
    target = str(tmp_path / "store") if backend == "sqlite" else request.getfixturevalue("pg")
    ks = KeyStore(target)
    token, key = ks.create("shared", 100.0, "month")
    n = 40
    procs = [subprocess.Popen([sys.executable, "-c", CHARGER, target, str(n)], cwd=ROOT) for _ in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    assert ks.list()[0][1] == 3 * n * 0.125  # no lost update: every charge of every process counted
    # a budget reached by other processes is refused here
    other = KeyStore(target)
    small_token, small = other.create("small", 0.2, "total")
    other.charge(small, 0.25)
    with pytest.raises(KeyRefused) as refused:
        ks.check(small_token)
    assert refused.value.status == 429
    other.close()
    ks.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_run_id_is_charged_at_most_once(backend, tmp_path, request):
    target = str(tmp_path / "store") if backend == "sqlite" else request.getfixturevalue("pg")
    ks = KeyStore(target)
    _, key = ks.create("once", 10.0, "day")
    assert ks.get(key.id) == key and ks.get("key_nope") is None
    assert ks.charge(key, 0.5, "run-a") == 0.5
    assert ks.charge(key, 0.5, "run-a") == 0.5  # the same run again: the spend as it was
    assert ks.charge(key, 0.25, "run-b") == 0.75 and ks.charge(key, 0.25) == 1.0 and ks.charge(key, 0.25) == 1.25
    assert ks.spent(key) == 1.25
    ks.close()


def test_postgres_keys_migration_leaves_the_outcome_store_to_open(pg):
    ks = KeyStore(pg)  # every migration, no outcome-store metadata yet
    ks.create("k", 1.0)
    ks.close()
    with psycopg.connect(pg, autocommit=True) as conn:
        assert [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")] == list(
            range(1, LATEST + 1)
        )
        assert conn.execute("SELECT count(*) FROM meta").fetchone()[0] == 0
    from fusiongraph.store import open_store

    store = open_store(pg, 8, "test")
    assert store.counts()["outcomes"] == 0
    store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_keys_cli_creates_lists_and_revokes(backend, tmp_path, request):
    from typer.testing import CliRunner

    from fusiongraph.cli import app as cli

    target = str(tmp_path / "store") if backend == "sqlite" else request.getfixturevalue("pg")
    runner = CliRunner(env={"COLUMNS": "300"})

    def run(app, args):
        result = runner.invoke(app, args)
        result.said = " ".join(result.output.split())  # rich wraps long lines
        return result

    keys_mod._stores.clear()
    try:
        empty = run(cli, ["keys", "list", "--store-dir", target])
        assert empty.exit_code == 0 and "no keys in" in empty.said and "the server is open" in empty.said
        made = run(cli, ["keys", "create", "team-a", "--budget", "20", "--period", "day", "--store-dir", target])
        assert made.exit_code == 0, made.output
        token = next(line for line in made.output.splitlines() if line.startswith("fg-"))
        assert "created key 'team-a'" in made.said and "$20 per day" in made.said
        shown = json.loads(
            run(cli, ["keys", "create", "team-b", "--budget", "1.5", "--store-dir", target, "--json"]).output
        )
        assert shown["name"] == "team-b" and shown["period"] == "month" and shown["key"].startswith("fg-")
        ks = KeyStore(target)
        assert ks.check(token).name == "team-a" and ks.check(shown["key"]).id == shown["id"]
        ks.charge(ks.check(token), 0.5)

        listed = json.loads(run(cli, ["keys", "list", "--store-dir", target, "--json"]).output)
        assert [(k["name"], k["budget_usd"], k["period"], k["spent_usd"], k["revoked"]) for k in listed] == [
            ("team-a", 20.0, "day", 0.5, False),
            ("team-b", 1.5, "month", 0.0, False),
        ]
        assert all("key_hash" not in k and "key" not in k for k in listed)  # a listed key never shows its token
        table = run(cli, ["keys", "list", "--store-dir", target])
        assert table.exit_code == 0 and "team-a" in table.output and "active" in table.output
        assert token not in table.output and token[:10] in table.output

        assert run(cli, ["keys", "revoke", "team-a", "--store-dir", target]).exit_code == 0
        with pytest.raises(KeyRefused, match="revoked"):
            ks.check(token)
        again = run(cli, ["keys", "revoke", "team-a", "--store-dir", target])
        assert again.exit_code != 0 and "no active key" in again.said
        assert run(cli, ["keys", "revoke", shown["id"], "--store-dir", target]).exit_code == 0  # by id
        assert "revoked" in run(cli, ["keys", "list", "--store-dir", target]).said
        dup = run(cli, ["keys", "create", "team-a", "--budget", "1", "--store-dir", target])
        assert dup.exit_code != 0 and "already exists" in dup.said
        bad = run(cli, ["keys", "create", "team-c", "--budget", "1", "--period", "week", "--store-dir", target])
        assert bad.exit_code != 0 and "period must be one of" in bad.said
        ks.close()
    finally:
        for store in keys_mod._stores.values():
            store.close()
        keys_mod._stores.clear()


# --- the auth handler and the OpenAI app in process -------------------------------------------------------


def keyed(inner):
    """The OpenAI app behind server/auth.py's handler, as LangGraph wires it (auth first, refusals answered by
    the app's exception handler)."""

    async def wrapped(scope, receive, send):
        if scope["type"] == "http" and scope["path"] != "/metrics":  # LangGraph serves /metrics outside auth
            headers = dict(scope["headers"])
            authorization = headers.get(b"authorization")
            try:
                await asyncio.to_thread(auth.authenticate, authorization and authorization.decode(), headers, scope)
            except auth.KeyRejected as exc:
                response = await auth.openai_error(Request(scope), exc)
                return await response(scope, receive, send)
        await inner(scope, receive, send)

    return wrapped


def test_auth_is_open_without_keys_and_closed_once_one_exists(server_store, monkeypatch):
    scope: dict = {}
    assert auth.authenticate(None, {}, scope)["identity"] == "anonymous" and scope[auth.SCOPE_KEY] is None
    monkeypatch.setenv(keys_mod.ENV_REQUIRE, "1")
    with pytest.raises(auth.KeyRejected) as refused:
        auth.authenticate(None, {}, {})
    assert refused.value.status_code == 401
    monkeypatch.delenv(keys_mod.ENV_REQUIRE)
    token, key = keys_mod.key_store().create("ci", 1.0)
    with pytest.raises(auth.KeyRejected):
        auth.authenticate("Bearer sk-something-else", {}, {})
    assert auth.authenticate(f"Bearer {token}", {}, scope)["identity"] == key.id and scope[auth.SCOPE_KEY] == key
    assert auth.authenticate(None, {b"x-api-key": token.encode()}, {})["identity"] == key.id  # the LangGraph SDK


def test_a_run_is_charged_to_its_key_and_a_key_over_budget_gets_429(server_store, fusion):
    fusion(two_models())  # the cheap model's answer is rejected, the priced strong one answers: cost > 0
    token, key = keys_mod.key_store().create("tiny", 1e-9, "day")
    body = {
        "model": "fusiongraph",
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "fusiongraph": dict(KNOBS),
    }
    with TestClient(keyed(app)) as client:
        missing = client.post("/v1/chat/completions", json=body)
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
        done = client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {token}"})
        assert done.status_code == 200, done.text
        cost = done.json()["fusiongraph"]["summary"]["spent_usd"]["total"]
        assert cost > 0 and keys_mod.key_store().spent(key) == pytest.approx(cost)
        over = client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {token}"})
        assert over.status_code == 429
        error = over.json()["error"]
        assert error["type"] == error["code"] == "insufficient_quota" and "'tiny' has spent" in error["message"]
        assert client.get("/metrics").status_code == 401  # keys exist: no key, no metrics
        metrics = client.get("/metrics", headers={"Authorization": f"Bearer {token}"}).text  # over budget: may read
    assert f'fusiongraph_runs_total{{key="{key.id}",mode="json"}}' in metrics  # the key's id, never its name
    assert f'fusiongraph_cost_usd_total{{key="{key.id}",kind="answer",model="strong"}}' in metrics
    assert 'key="tiny"' not in metrics
    assert 'fusiongraph_attempts_total{accepted="false",model="cheap"}' in metrics
    assert 'route="/v1/chat/completions",status="429"' in metrics
    assert "fusiongraph_escalations_total" in metrics and "fusiongraph_request_duration_seconds_bucket" in metrics


def test_metrics_are_open_without_keys_and_behind_them_once_one_exists(server_store, monkeypatch):
    with TestClient(keyed(app)) as client:
        assert client.get("/metrics").status_code == 200  # an open dev server
        token, key = keys_mod.key_store().create("reader", 1.0)
        refused = client.get("/metrics")
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
        assert refused.json()["error"]["code"] == "missing_api_key" and "fusiongraph_" not in refused.text
        assert client.get("/metrics", headers={"Authorization": "Bearer fg-not-a-key"}).status_code == 401
        assert client.get("/metrics/", headers={"x-api-key": "fg-not-a-key"}).status_code == 401
        assert client.get("/metrics", headers={"x-api-key": token}).status_code == 200
        keys_mod.key_store().revoke("reader")
        assert client.get("/metrics", headers={"x-api-key": token}).json()["error"]["code"] == "revoked_api_key"
        monkeypatch.setenv("FUSIONGRAPH_METRICS_KEY", "scrape-secret")  # the metrics key alone reads them
        other, _ = keys_mod.key_store().create("other", 1.0)
        assert client.get("/metrics", headers={"Authorization": f"Bearer {other}"}).status_code == 401
        scraped = client.get("/metrics", headers={"Authorization": "Bearer scrape-secret"})
        assert scraped.status_code == 200 and "fusiongraph_requests_total" in scraped.text
        assert client.get("/v1/models", headers={"Authorization": f"Bearer {other}"}).status_code == 200


def test_a_streamed_run_is_charged_too(server_store, fusion):
    fusion(two_models())
    token, key = keys_mod.key_store().create("streamer", 10.0, "total")
    body = {
        "model": "fusiongraph",
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "fusiongraph": dict(KNOBS),
        "stream": True,
    }
    with TestClient(keyed(app)) as client:
        response = client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    final = [
        json.loads(line[6:])
        for line in response.text.splitlines()
        if line.startswith("data: {") and '"fusiongraph"' in line
    ][-1]
    assert keys_mod.key_store().spent(key) == pytest.approx(final["fusiongraph"]["summary"]["spent_usd"]["total"])
    assert keys_mod.key_store().spent(key) > 0


def test_a_langgraph_api_run_is_charged_once_to_its_key_by_the_settle_node(server_store, fusion):
    """What LangGraph's server does for /runs: the authenticated user in the run's config, the run id in its
    metadata. The graph's settle node charges the run's actual cost, once per run id; a run without an auth
    user (the CLI, the OpenAI endpoint's in-process runs) is not charged by the graph."""
    from prometheus_client import REGISTRY, generate_latest

    from fusiongraph.graphs.fusion import graph

    fusion(two_models())
    token, key = keys_mod.key_store().create("sdk", 10.0, "total")
    user = {"identity": key.id, "key_name": key.name, "permissions": []}
    query = {"query": "What is the capital of France?"}

    def run(run_id: str | None, configurable: dict) -> dict:
        config = {"configurable": configurable, "metadata": {"run_id": run_id} if run_id else {}}
        return graph.invoke(query, config, context=dict(KNOBS) | {"cache": False})  # every run pays

    out = run("run-1", {"langgraph_auth_user": user, "__request_start_time_ms__": 1})
    cost = out["summary"]["spent_usd"]["total"]
    assert cost > 0 and keys_mod.key_store().spent(key) == pytest.approx(cost)
    run("run-1", {"langgraph_auth_user": user})  # the same run id again (a retried run): not charged twice
    assert keys_mod.key_store().spent(key) == pytest.approx(cost)
    run("run-2", {"langgraph_auth_user": user})
    assert keys_mod.key_store().spent(key) == pytest.approx(2 * cost)
    run(None, {})  # no auth user: not a LangGraph API run, the graph charges nothing
    run(None, {"langgraph_auth_user": {"identity": "anonymous"}})  # an open server: counted, not charged
    assert keys_mod.key_store().spent(key) == pytest.approx(2 * cost)
    charges = keys_mod.key_store().backend._db.execute("SELECT run_id FROM api_key_charges ORDER BY id").fetchall()
    assert charges == [("run-1",), ("run-2",)]
    metrics = generate_latest(REGISTRY).decode()
    assert f'fusiongraph_runs_total{{key="{key.id}",mode="runs"}} 3.0' in metrics
    assert f'fusiongraph_cost_usd_total{{key="{key.id}",kind="answer",model="strong"}}' in metrics
    assert 'fusiongraph_runs_total{key="anonymous",mode="runs"}' in metrics
    assert 'fusiongraph_run_duration_seconds_count{mode="runs"}' in metrics


# --- a real langgraph dev ----------------------------------------------------------------------------------
