"""Replicas for real: two `langgraph dev` servers on different ports sharing one Postgres outcome store.

* An outcome recorded through one replica routes a similar subtask in the other: the second replica's
  `neighbours` trace event lists the first one's subtask (delivered by LISTEN/NOTIFY, no restart).
* The store's Postgres connections are killed server-side mid-run (``pg_terminate_backend`` on the test
  database only, the same effect on the workers as a Postgres restart, without disturbing other users of
  the cluster): requests succeed or fail cleanly (never hang), nothing is half-written, and the replicas
  recover without a restart.

Needs a real Postgres at $FUSIONGRAPH_TEST_PG (as tests/store/test_store_postgres.py) and the shipped local model.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.devserver import _free_port, dev_env, langgraph_exe
from tests.devserver import stop as _stop
from tests.devserver import wait_ok as _wait_ok

ROOT = Path(__file__).resolve().parents[2]
ADMIN_URL = os.environ.get("FUSIONGRAPH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
CONTEXT = {"local_only": True, "max_tokens": 16}
pytestmark = [pytest.mark.integration]


def _db_url(name: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


def _start(exe: str, port: int, env: dict, workdir: Path) -> tuple[subprocess.Popen, Path]:
    workdir.mkdir(parents=True, exist_ok=True)
    # langgraph.json with absolute paths: `langgraph dev` resolves some of them (http.app) against its cwd
    config = json.loads((ROOT / "langgraph.json").read_text())
    config["dependencies"] = [str(ROOT)]
    config["graphs"] = {
        gid: str(ROOT / spec.split(":")[0]) + ":" + spec.split(":")[1] for gid, spec in config["graphs"].items()
    }
    app_path, _, app_obj = config["http"]["app"].partition(":")
    config["http"]["app"] = f"{ROOT / app_path}:{app_obj}"
    (workdir / "langgraph.json").write_text(json.dumps(config, indent=2))
    log_path = workdir / "langgraph-dev.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                str(exe),
                "dev",
                "--no-browser",
                "--no-reload",
                "--config",
                str(workdir / "langgraph.json"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=workdir,  # each replica keeps its own .langgraph_api (threads, runs); only the store is shared
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc, log_path


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    """A fresh database and two `langgraph dev` replicas (ports A, B) whose store is that database."""
    exe = langgraph_exe()
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"these tests need a real Postgres at {ADMIN_URL} (set FUSIONGRAPH_TEST_PG): {exc}")
    name = f"fg_replicas_{uuid.uuid4().hex[:10]}"
    admin.execute(f"CREATE DATABASE {name}")
    tmp = tmp_path_factory.mktemp("replicas")
    env = dev_env(FUSIONGRAPH_STORE_URL=_db_url(name))
    procs = []
    try:
        urls = []
        for label in ("a", "b"):
            port = _free_port()
            proc, log_path = _start(exe, port, env, tmp / label)
            procs.append((proc, log_path))
            urls.append(f"http://127.0.0.1:{port}")
        for (proc, log_path), url in zip(procs, urls):
            _wait_ok(proc, url, log_path)
        yield {"name": name, "url": _db_url(name), "admin": admin, "servers": urls, "logs": [p[1] for p in procs]}
    finally:
        for proc, _ in procs:
            _stop(proc)
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def _run(url: str, query: str, timeout: float = 120) -> dict:
    """A stateless run through the LangGraph API (runs/wait)."""
    r = httpx.post(
        f"{url}/runs/wait",
        json={"assistant_id": "fusion", "input": {"query": query}, "context": CONTEXT},
        timeout=timeout,
    )
    assert r.status_code == 200, r.text[:2000]
    out = r.json()
    assert isinstance(out, dict) and "results" in out, out
    return out


def _events(out: dict, node: str) -> list[dict]:
    return [e for r in out["results"] for e in r.get("trace", []) if e.get("node") == node]


def _db_counts(db_url: str) -> dict:
    with psycopg.connect(db_url, autocommit=True, connect_timeout=5) as conn:
        subtasks = conn.execute("SELECT count(*) FROM subtasks").fetchone()[0]
        outcomes = conn.execute("SELECT count(*) FROM outcomes").fetchone()[0]
        # every subtask row is written in the same transaction as its outcomes: none may lack one
        bare = conn.execute(
            "SELECT count(*) FROM subtasks s WHERE NOT EXISTS (SELECT 1 FROM outcomes o WHERE o.subtask_id = s.id)"
        ).fetchone()[0]
        orphans = conn.execute(
            "SELECT count(*) FROM outcomes o WHERE NOT EXISTS (SELECT 1 FROM subtasks s WHERE s.id = o.subtask_id)"
        ).fetchone()[0]
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    return {"subtasks": subtasks, "outcomes": outcomes, "bare": bare, "orphans": orphans, "meta": meta}


def _kill_store_connections(admin, name: str) -> int:
    rows = admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        (name,),
    ).fetchall()
    return sum(1 for (ok,) in rows if ok)


@pytest.mark.timeout(300)
def test_an_outcome_recorded_through_one_replica_routes_in_the_other(replicas):
    a, b = replicas["servers"]
    # warm both replicas (the first run loads the local model, the embedder and the store) on an unrelated
    # subtask, so the timed part below is only the cross-replica propagation
    _run(b, "Write a haiku about rain.")
    first = _run(a, "What is the capital of France?")
    recorded = _events(first, "record")
    assert recorded and all("recorded" in e for e in recorded), recorded
    subtask = first["results"][0]["subtask"] if "subtask" in first["results"][0] else first["subtasks"][0]

    # B's run streamed: the wall-clock moment its neighbours node reported, against the commit time A wrote
    # with the outcome (one machine, one clock): an upper bound on how stale B's index was when it looked
    seen_at, event = _neighbours_seen(b, "What is the capital city of France?")
    nearest = [n["subtask"] for n in event["nearest"]]
    assert subtask[:120] in nearest, (subtask, event)
    hit = event["nearest"][nearest.index(subtask[:120])]
    assert hit["similarity"] > 0.7 and hit["outcomes"], hit  # A's judged outcome, visible to B
    with psycopg.connect(replicas["url"], autocommit=True) as conn:
        (written_at,) = conn.execute(
            "SELECT max(o.created_at) FROM outcomes o JOIN subtasks s ON s.id = o.subtask_id WHERE s.text = %s",
            (subtask,),
        ).fetchone()
    lag_bound = seen_at - written_at
    print(f"\nB's neighbours lookup found A's outcome at most {lag_bound:.2f} s after A wrote it")
    # B's lookup came after its own decomposition (a local model call); well inside the 30 s safety refresh,
    # so only LISTEN/NOTIFY (or polling while it is down) can have brought the outcome in
    assert 0 < lag_bound < 20, lag_bound
    counts = _db_counts(replicas["url"])
    assert counts["bare"] == 0 and counts["orphans"] == 0, counts


def _neighbours_seen(url: str, query: str, timeout: float = 120) -> tuple[float, dict]:
    """Stream a stateless run (the subgraph's updates too): when the neighbours node finished (time.time()
    at the arrival of its update, which carries no state: the subgraph's channels are private) and its trace
    event (from the branch's result, in the record node's update)."""
    body = {
        "assistant_id": "fusion",
        "input": {"query": query},
        "context": CONTEXT,
        "stream_mode": ["updates"],
        "stream_subgraphs": True,
    }
    seen_at, trace = None, None
    with httpx.stream("POST", f"{url}/runs/stream", json=body, timeout=timeout) as r:
        assert r.status_code == 200, r.read()[:2000]
        event = ""
        for line in r.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "error":
                pytest.fail(f"the run failed: {line[:1000]}")
            elif line.startswith("data:") and event.startswith("updates|subtask"):
                data = json.loads(line[5:])
                if "neighbours" in data and seen_at is None:
                    seen_at = time.time()
                elif isinstance(data.get("record"), dict):
                    (result,) = data["record"]["results"]
                    (trace,) = [e for e in result["trace"] if e["node"] == "neighbours"]
    assert seen_at is not None and trace is not None, "no neighbours update or record result in the stream"
    return seen_at, trace


def _chat(url: str, content: str, timeout: float = 90) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": "fusiongraph", "messages": [{"role": "user", "content": content}], **CONTEXT},
        timeout=timeout,
    )


def _clean(r: httpx.Response) -> str:
    """'ok' for a 200 completion, 'error' for a clean JSON error; anything else fails the test."""
    if r.status_code == 200:
        body = r.json()
        assert body["choices"][0]["message"]["content"] is not None
        return "ok"
    assert r.status_code >= 500 or r.status_code == 503, r.text[:1000]
    err = r.json()["error"]  # an OpenAI-style error body, not an HTML page or a traceback
    assert err["message"] and err["type"], err
    return "error"


@pytest.mark.timeout(300)
def test_store_connections_killed_mid_run_fail_cleanly_and_recover(replicas):
    from fusiongraph.store import open_store

    a, b = replicas["servers"]
    admin, name = replicas["admin"], replicas["name"]
    _run(a, "What is 2 plus 2?")  # warm both (also when this test runs alone)
    _run(b, "What is 3 plus 3?")

    # requests through both replicas while the store's connections are killed again and again
    outcomes: list[tuple[str, str]] = []
    records: list[dict] = []
    stop = threading.Event()

    def client(url: str, tag: str) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            t0 = time.monotonic()
            r = _chat(url, f"What is {i} times {i + 3}? ({tag})")
            assert time.monotonic() - t0 < 90  # never a hang
            kind = _clean(r)
            outcomes.append((tag, kind))
            if kind == "ok":
                records.extend(_events(r.json()["fusiongraph"], "record"))

    errors: list[BaseException] = []

    def guarded(*args):
        try:
            client(*args)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(u, t)) for u, t in ((a, "A"), (b, "B"))]
    for t in threads:
        t.start()
    killed = 0
    end = time.monotonic() + 12
    while time.monotonic() < end:
        killed += _kill_store_connections(admin, name)
        time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a request hung"
    assert not errors, errors
    assert killed > 0 and outcomes and records, (killed, outcomes, records)
    print(f"\nkilled {killed} store connections; requests: {outcomes}; record events: {records}")

    # nothing half-written: every subtask has its outcomes, and a fresh worker indexes exactly the subtasks
    counts = _db_counts(replicas["url"])
    assert counts["bare"] == 0 and counts["orphans"] == 0, counts
    fresh = open_store(replicas["url"], int(counts["meta"]["dim"]), counts["meta"].get("embedder", "unknown"))
    try:
        fc = fresh.counts()
        assert fc["subtasks"] == fc["vectors"] == counts["subtasks"] and fc["outcomes"] == counts["outcomes"], fc
    finally:
        fresh.close()

    # both replicas' LISTEN connections come back on their own (backoff at most 10 s)
    def listeners() -> int:
        return admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND query ILIKE 'LISTEN%%'", (name,)
        ).fetchone()[0]

    deadline = time.monotonic() + 25
    while listeners() < 2 and time.monotonic() < deadline:
        time.sleep(0.25)
    assert listeners() >= 2, listeners()

    # recovery without a restart: the next requests succeed and record, and the other replica sees them
    # (its LISTEN connection was killed too and must have come back, or it polls)
    r = _chat(a, "What is the boiling point of water at sea level?")
    if r.status_code != 200:  # at most one request may still trip over a connection killed just before
        r = _chat(a, "What is the boiling point of water at sea level?")
    assert r.status_code == 200, r.text[:1000]
    rec = _events(r.json()["fusiongraph"], "record")
    if any("error" in e for e in rec):  # the first write after the outage may report the lost connection
        r = _chat(a, "What is the boiling point of water at sea level?")
        rec = _events(r.json()["fusiongraph"], "record")
    assert rec and all("recorded" in e for e in rec), rec
    subtask = r.json()["fusiongraph"]["subtasks"][0]
    second = _run(b, "At sea level, what is the boiling point of water?")
    nearest = [n["subtask"] for e in _events(second, "neighbours") for n in e["nearest"]]
    assert subtask[:120] in nearest, (subtask, nearest)
    after = _db_counts(replicas["url"])
    assert after["bare"] == 0 and after["orphans"] == 0, after
    assert after["subtasks"] > counts["subtasks"], (counts, after)
