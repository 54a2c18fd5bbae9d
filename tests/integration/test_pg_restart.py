"""Postgres restarted mid-run, for real: a throwaway cluster of this test's own (tests/pgcluster.py, never the
shared server) backs a `langgraph dev` replica's outcome store (FUSIONGRAPH_STORE_URL) while requests keep
coming; the cluster is restarted (``pg_ctl restart -m fast``), then stopped (requests while it is down),
then started again.

Each request either succeeds or gets a clean OpenAI-format 5xx within a bound (never a hang); nothing is
half-written (every subtask has its outcomes, each run's recorded outcomes are all there or none are);
after the restart the same server process serves and records again without being restarted; and a fresh
worker indexes exactly the subtasks in the database.
"""

from __future__ import annotations

import threading
import time

import httpx
import psycopg
import pytest

from tests.devserver import _free_port, langgraph_exe
from tests.devserver import dev_env as server_env
from tests.integration.test_replicas import _chat, _clean, _db_counts, _events, _start, _stop, _wait_ok
from tests.pgcluster import ThrowawayPostgres

pytestmark = [pytest.mark.integration]
REQUEST_BOUND_S = 90  # a request that takes longer counts as a hang


@pytest.fixture
def cluster():
    pg = ThrowawayPostgres()
    pg.start()
    try:
        yield pg
    finally:
        pg.destroy()


def _recorded(entry: dict) -> bool:
    return bool(entry.get("record")) and all("recorded" in r for r in entry["record"])


def _outcomes_by_text(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT s.text, count(o.id) FROM subtasks s LEFT JOIN outcomes o ON o.subtask_id = s.id GROUP BY s.text"
        ).fetchall()
    return dict(rows)


@pytest.mark.timeout(420)
def test_postgres_restarted_and_stopped_mid_run_fails_cleanly_and_recovers(cluster, tmp_path):
    from fusiongraph.store import open_store

    exe = langgraph_exe()
    env = server_env(FUSIONGRAPH_STORE_URL=cluster.url)
    port = _free_port()
    proc, log_path = _start(exe, port, env, tmp_path / "replica")
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ok(proc, url, log_path)
        warm = _chat(url, "What is 2 plus 2?")  # loads the local model, the embedder and the store
        assert warm.status_code == 200, warm.text[:1000]
        pid = proc.pid

        log: list[dict] = []  # every request: when, how it ended, what it recorded
        stop = threading.Event()
        errors: list[BaseException] = []

        def client() -> None:
            i = 0
            while not stop.is_set():
                i += 1
                query = f"What is {i} times {i + 7}?"
                t0 = time.monotonic()
                try:
                    r = _chat(url, query, timeout=REQUEST_BOUND_S + 30)
                    took = time.monotonic() - t0
                    assert took < REQUEST_BOUND_S, f"{query!r} took {took:.1f} s"
                    entry = {
                        "query": query,
                        "t0": t0,
                        "t1": time.monotonic(),
                        "kind": _clean(r),
                        "status": r.status_code,
                    }
                    if entry["kind"] == "ok":
                        body = r.json()["fusiongraph"]
                        entry["subtasks"] = body["subtasks"]
                        entry["record"] = _events(body, "record")
                        entry["attempts"] = [len(res["attempts"]) for res in body["results"]]
                    else:
                        entry["error"] = r.json()["error"]
                    log.append(entry)
                except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                    errors.append(exc)
                    return
                time.sleep(0.05)

        worker = threading.Thread(target=client)
        worker.start()
        try:

            def served_since(t: float) -> bool:  # a request started after `t` succeeded and recorded
                return any(e["t0"] > t and e["kind"] == "ok" and _recorded(e) for e in list(log))

            def wait(predicate, timeout: float) -> None:
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline and not errors and not predicate():
                    time.sleep(0.25)

            wait(lambda: served_since(0.0), 90)  # a request served before the restart (a busy machine is slow)
            t_restart = time.monotonic()
            cluster.restart("fast")  # every connection of the replica is cut, in-flight requests too
            wait(lambda: served_since(t_restart), 90)  # served again after the restart, no server restart
            t_restarted_ok = served_since(t_restart)
            cluster.stop("fast")
            t_down = time.monotonic()
            time.sleep(6)  # requests while Postgres is down
            t_up = time.monotonic()
            cluster.start()
            wait(lambda: served_since(t_up), 90)  # and again once it is back
        finally:
            stop.set()
            worker.join(timeout=REQUEST_BOUND_S + 60)
        assert not worker.is_alive(), "a request hung"
        assert not errors, errors
        summary = [(round(e["t0"] - t_restart, 1), round(e["t1"] - t_restart, 1), e["status"]) for e in log]
        print(f"\nrequests (start, end: seconds after the restart; status): {summary}")
        print("errors:", sorted({e["error"]["message"][:160] for e in log if e["kind"] == "error"}))
        print("record events:", [r for e in log if e["kind"] == "ok" for r in e["record"]])

        during_down = [e for e in log if e["t0"] > t_down and e["t1"] < t_up]
        assert during_down, f"no request was answered while Postgres was down: {summary}"
        for e in during_down:  # refused cleanly: OpenAI's error body, a 5xx, and the cause named
            assert e["kind"] == "error" and e["status"] in (500, 503), e
            assert "outcome store" in e["error"]["message"] or "key store" in e["error"]["message"], e
        assert t_restarted_ok, f"the replica did not serve and record after the restart: {summary}"
        assert served_since(t_up), f"the replica did not serve and record after Postgres came back: {summary}"
        assert proc.poll() is None and proc.pid == pid  # the same server process, never restarted
        assert any(e["kind"] == "ok" and e["t0"] < t_restart for e in log), summary

        # nothing corrupted or half-written
        counts = _db_counts(cluster.url)
        assert counts["bare"] == 0 and counts["orphans"] == 0, counts
        by_text = _outcomes_by_text(cluster.url)
        for e in log:
            if e["kind"] != "ok":
                continue
            for subtask, rec, n in zip(e["subtasks"], e["record"], e["attempts"]):
                if "recorded" in rec:  # acknowledged: every outcome of the run is there
                    assert by_text.get(subtask) == rec["recorded"], (e, by_text.get(subtask))
                else:  # reported as failed: all or nothing (a commit cut midway may have landed whole)
                    assert by_text.get(subtask, 0) in (0, n), (e, by_text.get(subtask))
        fresh = open_store(cluster.url, int(counts["meta"]["dim"]), counts["meta"].get("embedder", "unknown"))
        try:
            fc = fresh.counts()
            assert fc["subtasks"] == fc["vectors"] == counts["subtasks"], fc
            assert fc["outcomes"] == counts["outcomes"], (fc, counts)
        finally:
            fresh.close()

        # the replica's LISTEN connection came back on its own (backoff at most 10 s)
        def listening() -> int:
            with psycopg.connect(cluster.url, autocommit=True, connect_timeout=5) as conn:
                return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE query ILIKE 'LISTEN%'").fetchone()[0]

        deadline = time.monotonic() + 25
        while listening() < 1 and time.monotonic() < deadline:
            time.sleep(0.25)
        assert listening() >= 1
        assert httpx.get(f"{url}/ok", timeout=5).status_code == 200
    finally:
        _stop(proc)
