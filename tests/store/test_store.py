"""The outcome store: round trips without pickle, recovery, concurrency."""

import json
import threading

import numpy as np
import pytest

from fusiongraph.store import Outcome, OutcomeStore, StoreError
from fusiongraph.store.index import INDEX_FILE, INDEX_META_FILE


def unit(seed: int, dim: int = 8) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


def test_save_load_round_trip(tmp_path):
    store = OutcomeStore(tmp_path, 8, "test")
    for i in range(20):
        store.record(
            f"task {i}",
            unit(i),
            "math",
            [
                Outcome("a", success=i % 2, accepted=bool(i % 2)),
                Outcome("b", success=0.75, accepted=True, cost_usd=0.01),
            ],
        )
    before = store.neighbours(unit(3), 5)
    store.close()
    assert (tmp_path / INDEX_FILE).exists()
    assert not list(tmp_path.glob("*.pkl"))
    again = OutcomeStore(tmp_path, 8, "test")
    assert again.counts() == {"subtasks": 20, "outcomes": 40, "vectors": 20}
    after = again.neighbours(unit(3), 5)
    assert [(n.subtask_id, n.outcomes) for n in after] == [(n.subtask_id, n.outcomes) for n in before]
    assert after[0].text == "task 3" and after[0].similarity == pytest.approx(1.0, abs=1e-5)
    assert again.class_rates("math")["b"] == (pytest.approx(0.75), 20)


def test_outcomes_committed_after_the_last_index_save_are_not_lost(tmp_path):
    store = OutcomeStore(tmp_path, 8, "test")
    store.record("first", unit(1), None, [Outcome("a", 1.0, True)])
    store.save()
    store.record("second", unit(2), None, [Outcome("a", 0.0, False)])
    # no save: as if the process died here
    again = OutcomeStore(tmp_path, 8, "test")
    assert len(again) == 2
    assert again.neighbours(unit(2), 1)[0].text == "second"


def test_a_corrupt_index_is_rebuilt_from_sqlite(tmp_path):
    store = OutcomeStore(tmp_path, 8, "test")
    store.record("kept", unit(1), None, [Outcome("a", 1.0, True)])
    store.close()
    (tmp_path / INDEX_FILE).write_bytes(b"garbage")
    again = OutcomeStore(tmp_path, 8, "test")
    assert again.neighbours(unit(1), 1)[0].text == "kept"
    (tmp_path / INDEX_META_FILE).write_text(json.dumps({"upto": 1, "count": 99}))
    assert len(OutcomeStore(tmp_path, 8, "test")) == 1


def test_a_corrupt_database_is_a_clear_error(tmp_path):
    (tmp_path / "outcomes.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="outcomes.sqlite"):
        OutcomeStore(tmp_path, 8, "test")


def test_embedding_dimension_mismatch_is_a_clear_error(tmp_path):
    OutcomeStore(tmp_path, 8, "test").close()
    with pytest.raises(StoreError, match="8-dimensional"):
        OutcomeStore(tmp_path, 16, "other")


def test_bad_outcomes_are_rejected_and_nothing_is_written(tmp_path):
    store = OutcomeStore(tmp_path, 8, "test")
    with pytest.raises(ValueError, match="success"):
        Outcome("a", 1.5, True)
    with pytest.raises(ValueError, match="dimensions"):
        store.record("x", np.ones(3), None, [Outcome("a", 1.0, True)])
    with pytest.raises(ValueError, match="NaN"):
        store.record("x", np.full(8, np.nan), None, [Outcome("a", 1.0, True)])
    assert store.counts() == {"subtasks": 0, "outcomes": 0, "vectors": 0}


def test_threads_recording_at_once_lose_nothing(tmp_path):
    store = OutcomeStore(tmp_path, 8, "test")

    def work(t):
        for i in range(25):
            store.record(f"t{t} task {i}", unit(t * 100 + i), "math", [Outcome("a", 1.0, True)])

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert store.counts() == {"subtasks": 200, "outcomes": 200, "vectors": 200}


def test_a_second_connection_sees_new_outcomes(tmp_path):
    a = OutcomeStore(tmp_path, 8, "test")
    b = OutcomeStore(tmp_path, 8, "test")
    a.record("from a", unit(5), None, [Outcome("m", 1.0, True)])
    assert b.neighbours(unit(5), 1)[0].text == "from a"


def test_error_outcomes_do_not_count_as_model_failures(tmp_path):
    store = OutcomeStore(tmp_path, 8, "test")
    store.record("x", unit(1), "math", [Outcome("m", 0.0, False, error="ConnectError"), Outcome("n", 1.0, True)])
    assert store.neighbours(unit(1), 1)[0].outcomes == {"n": 1.0}
    assert "m" not in store.class_rates("math")


def _writer(tmp_path, name, count):
    import subprocess
    import sys

    return subprocess.Popen(
        [sys.executable, "-m", "tests.store_writer", str(tmp_path), name, str(count)], stdout=subprocess.PIPE, text=True
    )


def test_sigkill_in_the_middle_of_writing_keeps_every_committed_outcome(tmp_path):
    import os
    import signal

    proc = _writer(tmp_path, "killed", 100_000)
    for _ in range(180):  # let it commit a few hundred outcomes and save the index a few times
        line = proc.stdout.readline()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    committed = int(line) + 1
    store = OutcomeStore(tmp_path, 8, "test")
    counts = store.counts()
    assert counts["subtasks"] == counts["outcomes"] == counts["vectors"] >= committed
    last = store.outcomes()[-1]["subtask"]
    assert store.neighbours(store._as_vector(np.ones(8) / np.sqrt(8)), 1)  # searchable
    assert last.startswith("killed task")


def test_processes_recording_at_once_lose_nothing(tmp_path):
    procs = [_writer(tmp_path, f"p{i}", 60) for i in range(4)]
    for p in procs:
        p.communicate(timeout=120)
        assert p.returncode == 0
    store = OutcomeStore(tmp_path, 8, "test")
    assert store.counts() == {"subtasks": 240, "outcomes": 240, "vectors": 240}


def test_outcome_aggregates_grow_with_subtasks_and_models(tmp_path):
    store = OutcomeStore(None, 8, "test")
    models = [f"m{j}" for j in range(6)]
    store.record_many(
        (f"task {i}", unit(i), None, [Outcome(m, float((i + j) % 2), True) for j, m in enumerate(models)])
        for i in range(1500)
    )
    store.record("task 1400", unit(1400), None, [Outcome("m0", 0.0, False)])  # a second outcome, same subtask
    (nb,) = store.neighbours(unit(1400), 1)
    assert nb.text == "task 1400"
    assert nb.outcomes == {"m0": 0.0, "m1": 1.0, "m2": 0.0, "m3": 1.0, "m4": 0.0, "m5": 1.0}
    (first,) = store.neighbours(unit(1401), 1)
    assert first.outcomes["m0"] == 1.0


def test_neighbour_hits_are_read_once_then_served_from_memory(tmp_path, monkeypatch):
    """The text and class of recent hits are cached (rows never change): a repeated look-up reads nothing
    from the database, and the cache stays within its bound."""
    from fusiongraph.store import outcomes

    store = OutcomeStore(tmp_path, 8, "test")
    store.record_many((f"task {i}", unit(i), "math", [Outcome("m", 1.0, True)]) for i in range(20))
    reads: list[list[int]] = []
    real = store._backend.subtask_info
    monkeypatch.setattr(store._backend, "subtask_info", lambda ids: reads.append(list(ids)) or real(ids))
    first = store.neighbours(unit(3), 5)
    assert len(reads) == 1 and first[0].text == "task 3" and first[0].task_class == "math"
    assert store.neighbours(unit(3), 5) == first and len(reads) == 1  # served from memory
    monkeypatch.setattr(outcomes, "HIT_CACHE_ROWS", 6)
    other = store.neighbours(unit(11), 5)
    assert len(reads) == 2 and set(reads[1]) == {n.subtask_id for n in other} - {n.subtask_id for n in first}
    assert len(store._hit_cache) <= 6 and other[0].text == "task 11"
    store.close()
