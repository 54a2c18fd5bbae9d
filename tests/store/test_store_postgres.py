"""The Postgres outcome store, against a real Postgres (no mock).

Needs a server at $FUSIONGRAPH_TEST_PG (default postgresql://postgres@127.0.0.1:5432/postgres) whose user may
CREATE DATABASE; every test gets a fresh database (fg_test_<random>_<n>), all dropped at the end of the
module. When the server is not reachable the tests FAIL: they are not skipped.
"""

import os
import signal
import threading
import time

import numpy as np
import psycopg
import pytest
from typer.testing import CliRunner

from fusiongraph.store import Outcome, OutcomeStore, StoreError, open_store
from fusiongraph.store.postgres import PostgresBackend
from tests.postgres import db_url
from tests.store.test_store import _writer  # a process recording into a store (tests/store_writer.py)

pytestmark = pytest.mark.timeout(120)


def unit(seed: int, dim: int = 8) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


def wait_for(predicate, timeout: float, step: float = 0.01) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def seed(store) -> None:
    """Varied data: several classes and models, graded and error outcomes, answers, a text seen twice."""
    models = ["m0", "m1", "m2"]
    store.record_many(
        [
            (
                f"task {i}",
                unit(i),
                ["math", "code", None][i % 3],
                [
                    Outcome(
                        m,
                        float((i * (j + 1)) % 3) / 2,
                        bool((i + j) % 2),
                        judges={"rules": 0.5, "j": j},
                        answer=f"answer {i} by {m}",
                        tokens_in=i,
                        tokens_out=10 + j,
                        cost_usd=0.001 * j,
                        latency_s=0.1,
                        run_id=f"run{i % 4}",
                        source=["live", "calibrate"][i % 2],
                        after_rejection=j > 0 and i % 4 == 1,  # tried after a rejected cheaper tier
                    )
                    for j, m in enumerate(models)
                ],
            )
            for i in range(60)
        ]
    )
    store.record("task 7", unit(7), "math", [Outcome("m3", 1.0, True, answer="again")])  # a second visit
    store.record(
        "broken",
        unit(99),
        "math",
        [Outcome("m0", 0.0, False, error="ConnectError"), Outcome("m1", 1.0, True, answer="fine")],
    )
    store.record_many(
        [
            ("dup", unit(100), "code", [Outcome("m0", 1.0, True)]),
            ("dup", unit(100), "code", [Outcome("m1", 0.0, False)]),
        ]
    )  # same text twice in one batch


def snapshot(store) -> dict:
    nbs = {
        s: [
            (
                n.subtask_id,
                n.text,
                n.task_class,
                round(n.similarity, 5),
                n.outcomes,
                n.answers,
                n.costs,
                n.tokens,
                n.conditioned,
            )
            for n in store.neighbours(unit(s), 6, with_answers=True)
        ]
        for s in (1, 7, 50, 99, 100)
    }
    models, given_wrong, given_right, rate = store.joint_rates()
    vectors, classes, per_model = store.training_rows(1000)
    replay = {n: store.replay_rows(["m0", "m1", "m2"], n, seed=3) for n in (20, 100)}  # the operating point's rows
    return {
        "replay": {
            n: {k: (v.round(9).tolist() if isinstance(v, np.ndarray) else v) for k, v in r.items()}
            for n, r in replay.items()
        },
        "counts": store.counts(),
        "neighbours": nbs,
        "class_rates": {c: store.class_rates(c) for c in ("math", "code", None, "")},
        "conditioned": store.conditioned_rates(),
        "joint": (models, given_wrong.round(9).tolist(), given_right.round(9).tolist(), rate.round(9).tolist()),
        "usage": store.model_usage(),
        "folded": store.outcomes_folded,
        "training": (vectors.tobytes(), classes, {m: (r.tolist(), s.tolist()) for m, (r, s) in per_model.items()}),
        "outcomes": store.outcomes(),
        "calibrate": sorted(store.texts_with_source("calibrate")),
        "len": len(store),
    }


def test_round_trip_matches_the_sqlite_backend(pg, tmp_path):
    lite = OutcomeStore(tmp_path / "lite", 8, "test")
    post = open_store(pg, 8, "test")
    seed(lite)
    seed(post)
    expected = snapshot(lite)
    assert expected["counts"] == {"subtasks": 62, "outcomes": 185, "vectors": 62}
    assert sum(r["after_rejection"] for r in expected["outcomes"]) == 30 and expected["conditioned"]
    # replay rows: the 45 subtasks with an unconditioned outcome of every model (15 have conditioned ones), or a
    # seeded sample of them
    every, sample = expected["replay"][100], expected["replay"][20]
    assert len(every["ids"]) == 45 and len(every["vectors"]) == 45 and len(every["classes"]) == 45
    assert every["cost"][0] == [0.0, 0.001, 0.002] and len(sample["ids"]) == 20
    assert set(sample["ids"]) < set(every["ids"])
    assert str(snapshot(post)) == str(expected)  # str: NaNs of the joint rates compare equal
    post.close()
    again = open_store(pg, 8, "test")  # a new worker: aggregates and FAISS index rebuilt from Postgres
    assert str(snapshot(again)) == str(expected)
    with pytest.raises(StoreError, match="8-dimensional"):
        open_store(pg, 16, "other")
    with pytest.raises(ValueError, match="dimensions"):
        again.record("x", np.ones(3), None, [Outcome("a", 1.0, True)])
    assert again.counts()["outcomes"] == 185
    again.close()


def test_a_worker_keeps_its_faiss_index_in_a_cache_dir(databases, tmp_path):
    url = databases()
    store = open_store(url, 8, "test", cache_dir=tmp_path / "cache")
    store.record("cached", unit(1), None, [Outcome("a", 1.0, True)])
    store.close()  # writes index.faiss + index.json, tagged with the database's store id
    assert (tmp_path / "cache" / "index.faiss").exists()
    other = open_store(url, 8, "test")
    other.record("after the save", unit(2), None, [Outcome("a", 1.0, True)])
    other.close()
    again = open_store(url, 8, "test", cache_dir=tmp_path / "cache")
    assert again.counts() == {"subtasks": 2, "outcomes": 2, "vectors": 2}  # loaded, then caught up after the watermark
    assert again.neighbours(unit(2), 1)[0].text == "after the save"
    again.close()
    elsewhere = open_store(databases(), 8, "test", cache_dir=tmp_path / "cache")  # another database: cache not used
    assert elsewhere.counts() == {"subtasks": 0, "outcomes": 0, "vectors": 0}
    elsewhere.close()


def test_an_outcome_recorded_by_one_replica_routes_in_another_within_a_second(pg):
    a = open_store(pg, 8, "test")
    b = open_store(pg, 8, "test")
    assert wait_for(lambda: b.backend.listening, 5)  # from here on b never polls: only LISTEN/NOTIFY wakes it
    for i in range(5):
        start = time.monotonic()
        a.record(f"from a {i}", unit(500 + i), "math", [Outcome("m", 1.0, True)])
        # class_rates reads only memory (no refresh of its own): it changes only if the listener refreshed
        assert wait_for(lambda: b.class_rates("math").get("m", (0, 0))[1] == i + 1, 1.0), "not seen within 1 s"
        assert b.neighbours(unit(500 + i), 1)[0].text == f"from a {i}"
        assert time.monotonic() - start < 1.0
    a.close()
    b.close()


def test_concurrent_writers_leave_no_gap_behind_a_watcher(pg):
    """Ids commit in id order (the advisory write lock), so a watcher's watermark never skips a late commit."""
    watcher = open_store(pg, 8, "test")
    writers = [open_store(pg, 8, "test") for _ in range(4)]

    def work(t):
        for i in range(40):
            writers[t].record(
                f"w{t} task {i}", unit(t * 1000 + i), "math", [Outcome("a", 1.0, True), Outcome("b", 0.0, False)]
            )

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    [t.start() for t in threads]
    while any(t.is_alive() for t in threads):
        watcher.neighbours(unit(0), 3)  # read all along: watermarks move while writers commit
        time.sleep(0.002)
    [t.join() for t in threads]
    assert wait_for(lambda: watcher.outcomes_folded == 320 and len(watcher) == 160, 2.0), watcher.counts()
    assert watcher.class_rates("math") == {"a": (1.0, 160), "b": (0.0, 160)}
    for s in [watcher, *writers]:
        s.close()


def test_processes_recording_at_once_lose_nothing(pg):
    procs = [_writer(pg, f"p{i}", 60) for i in range(4)]
    for p in procs:
        p.communicate(timeout=120)
        assert p.returncode == 0
    store = open_store(pg, 8, "test")
    assert store.counts() == {"subtasks": 240, "outcomes": 240, "vectors": 240}
    store.close()


def test_sigkill_in_the_middle_of_writing_keeps_every_committed_outcome(pg):
    proc = _writer(pg, "killed", 100_000)
    for _ in range(150):
        line = proc.stdout.readline()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    committed = int(line) + 1
    store = open_store(pg, 8, "test")
    counts = store.counts()
    assert counts["subtasks"] == counts["outcomes"] == counts["vectors"] >= committed  # nothing half-written
    assert store.outcomes()[-1]["subtask"].startswith("killed task")
    store.record("after the kill", unit(3), None, [Outcome("a", 1.0, True)])  # the write lock died with it
    assert store.counts()["outcomes"] == counts["outcomes"] + 1
    store.close()


def test_store_json_prints_the_counts_of_the_configured_store(pg, monkeypatch):
    from fusiongraph import resources
    from fusiongraph.cli import app
    from fusiongraph.routing.embeddings import Embedder
    from tests.fakes import BagOfWordsEmbeddings

    embedder = Embedder(BagOfWordsEmbeddings())
    store = open_store(pg, embedder.dim, embedder.name)
    store.record("what is 2 plus 2", embedder.embed_one("what is 2 plus 2"), "math", [Outcome("m", 1.0, True)])
    store.close()
    monkeypatch.setattr(resources, "_embedder", embedder)
    monkeypatch.setattr(resources, "_built", {})
    monkeypatch.setenv("FUSIONGRAPH_STORE_URL", pg)
    done = CliRunner().invoke(app, ["store", "--json"])
    assert done.exit_code == 0, done.output
    import json

    shown = json.loads(done.output)
    assert {k: shown[k] for k in ("subtasks", "outcomes", "vectors")} == {"subtasks": 1, "outcomes": 1, "vectors": 1}
    assert shown["store"] == pg and shown["blind"] == {"sampled": 1, "same_vector": 0, "share": 0.0}
    for res in resources._built.values():
        res.store.close()


def test_an_unreachable_postgres_is_a_clear_store_error(pg):
    start = time.monotonic()
    with pytest.raises(StoreError, match="cannot connect to the outcome store postgresql://postgres@127.0.0.1:1/x"):
        open_store("postgresql://postgres@127.0.0.1:1/x", 8, "test")
    with pytest.raises(StoreError, match="cannot connect.*does not exist"):
        open_store(db_url("fg_no_such_database"), 8, "test")
    with pytest.raises(StoreError, match=r"postgresql://bob:\*\*\*@"):  # no password in messages
        open_store("postgresql://bob:secret@127.0.0.1:1/x", 8, "test")
    assert time.monotonic() - start < 10


def _terminate(url, pid):
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_a_connection_killed_while_idle_loses_no_write_and_reads_reconnect(pg):
    store = open_store(pg, 8, "test")
    other = open_store(pg, 8, "test")
    store.record("before", unit(1), None, [Outcome("a", 1.0, True)])
    _terminate(pg, store.backend._conn.info.backend_pid)
    store.record("after the outage", unit(2), None, [Outcome("a", 1.0, True)])  # pinged, replaced, written
    store.record("reconnected", unit(3), None, [Outcome("a", 1.0, True)])
    assert store.counts() == {"subtasks": 3, "outcomes": 3, "vectors": 3}
    _terminate(pg, store.backend._conn.info.backend_pid)
    assert store.counts()["outcomes"] == 3  # a read is retried once on a fresh connection
    # the listener's connection too: it reconnects, catches up, and NOTIFY works again
    assert wait_for(lambda: other.backend.listening, 5)
    with psycopg.connect(pg, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
            " AND query LIKE 'LISTEN%%' AND pid <> pg_backend_pid()"
        )
    wait_for(lambda: not other.backend.listening, 3)  # it may have reconnected already
    store.record("while reconnecting", unit(4), "math", [Outcome("a", 1.0, True)])
    assert wait_for(lambda: other.class_rates("math").get("a", (0, 0))[1] == 1, 5)
    store.close()
    other.close()


def test_artifacts_are_shared_through_the_database(pg):
    a = open_store(pg, 8, "test")
    b = open_store(pg, 8, "test")
    assert b.get_artifact("probe.npz") is None
    a.put_artifact("probe.npz", b"\x00fit\xff" * 1000)
    assert b.get_artifact("probe.npz") == b"\x00fit\xff" * 1000
    a.put_artifact("probe.npz", b"newer")
    assert b.get_artifact("probe.npz") == b"newer"
    assert isinstance(b.backend, PostgresBackend)
    a.close()
    b.close()


def test_the_success_probe_fit_is_shared_through_postgres(pg):
    """No store directory: the probe's fit (plain arrays) is saved in the database and a new worker reuses it."""
    from fusiongraph.routing.probe import SuccessProbe
    from fusiongraph.store import Outcome

    store = open_store(pg, 8, "test")
    assert store.shares_artifacts and store.directory is None
    for i in range(240):
        x = unit(1000 + i)
        store.record(f"p{i}", x, "math", [Outcome("a", float(x[0] > 0), True), Outcome("b", 0.5, True)])
    fit = SuccessProbe(store, background=False).fit()
    other = SuccessProbe(open_store(pg, 8, "test"), background=False)
    loaded = other._load()
    assert loaded is not None and loaded.outcomes == fit.outcomes
    x = unit(7)
    assert other.predict(x, {"math": 1.0}, ["a"]) == pytest.approx(
        SuccessProbe(store, background=False).predict(x, {"math": 1.0}, ["a"])
    )


def test_the_acceptance_fit_and_its_labels_are_shared_through_postgres(pg):
    """The calibrated acceptance saved by one worker (plain arrays in the artifacts table) is the one
    another worker decides with; the labelled attempts it was fitted on are kept there too."""
    from fusiongraph.judging import acceptance
    from fusiongraph.judging.base import JUDGES
    from tests.fakes import labelled_attempts

    a, b = open_store(pg, 8, "test"), open_store(pg, 8, "test")
    assert acceptance.current_fit(b) is None
    rows = labelled_attempts(120, 0, {"self": {"math"}, "llm": set()}, classes=("math",))
    fit, where = acceptance.refit(a, rows)
    assert where == "artifact acceptance.npz" and a.get_artifact(acceptance.ACCEPTANCE_FILE) == fit.to_bytes()
    acceptance._cache.clear()  # another worker: nothing cached yet
    shared = acceptance.current_fit(b)
    assert shared is not None and shared.rows == 120 and shared.summary() == fit.summary()
    assert len(acceptance.load_labels(b)) == 120
    assert not shared.has_say("llm", "math") and shared.has_say("self", "math")
    assert shared.judges == [j for j in JUDGES if j in ("self", "llm")]  # in the registry's order
    a.close()
    b.close()
