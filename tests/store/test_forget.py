"""Erasure (`fusiongraph store forget`, OutcomeStore.forget) and retention: subtasks, outcomes, vectors and
cached answers go together, on SQLite and the real Postgres, and every worker sharing the store drops them."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from fusiongraph import resources
from fusiongraph.cli import app
from fusiongraph.routing.probe import PROBE_FILE
from fusiongraph.store import Outcome, open_store
from fusiongraph.store import outcomes as outcomes_mod

DAY = 86400.0


def vec(i: int) -> np.ndarray:
    v = np.zeros(8, np.float32)
    v[i % 8] = 1.0
    return v


def fill(store, monkeypatch=None, old_at: float | None = None) -> dict[str, int]:
    """Three subtasks: one naming alice, one with alice only in an answer (and cached), one recorded long ago."""
    ids = {
        "named": store.record(
            "Write to alice@example.com about the invoice", vec(0), "factual_qa", [Outcome("m", 1.0, True, answer="ok")]
        ),
        "answered": store.record(
            "Who signed the letter?", vec(1), "factual_qa", [Outcome("m", 1.0, True, answer="Alice did")]
        ),
    }
    store.cache_put(ids["answered"], "-", "m", "fp", "factual_qa", "Alice did")
    if old_at is not None:
        monkeypatch.setattr(outcomes_mod.time, "time", lambda: old_at)
    ids["old"] = store.record(
        "What is the capital of Peru?", vec(2), "factual_qa", [Outcome("m", 1.0, True, answer="Lima")]
    )
    if old_at is not None:
        monkeypatch.undo()
    return ids


def found(store, i: int) -> list[int]:
    return [nb.subtask_id for nb in store.neighbours(vec(i), 3) if nb.similarity > 0.99]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_forget_by_text_erases_subtasks_outcomes_vectors_and_cached_answers(backend, tmp_path, request):
    target = tmp_path / "s" if backend == "sqlite" else request.getfixturevalue("pg")
    store = open_store(target, 8, "t")
    other = open_store(target, 8, "t")  # another worker on the same store
    try:
        ids = fill(store)
        assert found(other, 0) == [ids["named"]]
        counts = store.forget(match="ALICE")  # any case, subtask text or answer
        assert counts == {"subtasks": 2, "outcomes": 2, "cached_answers": 1, "vectors": 2}
        assert found(store, 0) == [] and found(store, 1) == [] and found(store, 2) == [ids["old"]]
        assert store.counts() == {"subtasks": 1, "outcomes": 1, "vectors": 1}
        assert store.cached_answers(vec(1), "-", 0.5, 0.0) == []
        assert "alice" not in json.dumps(store.outcomes()).lower()
        assert store.class_rates("factual_qa")["m"][1] == 1  # the in-memory sums forgot them too
        deadline = time.time() + 5
        while found(other, 0) and time.time() < deadline:  # Postgres: NOTIFY; SQLite: the next read sees it
            time.sleep(0.05)
        assert found(other, 0) == [] and other.counts()["vectors"] == 1
        assert store.forget(match="nobody") == {"subtasks": 0, "outcomes": 0, "cached_answers": 0, "vectors": 0}
    finally:
        other.close()
        store.close()


def test_forget_before_a_date_and_both_together(tmp_path, monkeypatch):
    store = open_store(tmp_path / "s", 8, "t")
    ids = fill(store, monkeypatch, old_at=time.time() - 400 * DAY)
    assert store.forget(match="alice", before=time.time() - 100 * DAY)["subtasks"] == 0  # both must hold
    counts = store.forget(before=time.time() - 100 * DAY)
    assert counts["subtasks"] == 1 and found(store, 2) == [] and found(store, 0) == [ids["named"]]
    with pytest.raises(ValueError, match="a text to match or a date"):
        store.forget()
    with pytest.raises(ValueError, match="empty"):
        store.forget(match="  ")
    store.close()


def test_a_saved_index_from_before_an_erasure_is_rebuilt(tmp_path):
    a = open_store(tmp_path / "s", 8, "t")
    ids = fill(a)
    a.save()
    a.close()
    b = open_store(tmp_path / "s", 8, "t")
    (tmp_path / "s" / PROBE_FILE).write_bytes(b"a fit learnt from the rows")
    b.forget(match="alice")
    assert not (tmp_path / "s" / PROBE_FILE).exists()  # the probe's fit goes too: it is refitted
    b.close()
    c = open_store(tmp_path / "s", 8, "t")
    assert found(c, 0) == [] and found(c, 2) == [ids["old"]] and c.counts()["vectors"] == 1
    c.close()


def test_retention_erases_what_is_older(tmp_path, monkeypatch):
    store = open_store(tmp_path / "s", 8, "t")
    ids = fill(store, monkeypatch, old_at=time.time() - 40 * DAY)
    monkeypatch.setenv(resources.RETENTION_ENV, "30")
    resources._retention_at.clear()
    counts = resources.apply_retention(store)
    assert counts["subtasks"] == 1 and found(store, 2) == [] and found(store, 0) == [ids["named"]]
    assert resources.apply_retention(store) is None  # at most once an hour
    monkeypatch.setenv(resources.RETENTION_ENV, "soon")
    resources._retention_at.clear()
    with pytest.raises(ValueError, match="positive number of days"):
        resources.apply_retention(store)
    store.close()


def test_cli_store_forget_prints_the_counts(tmp_path, monkeypatch):
    monkeypatch.delenv("FUSIONGRAPH_STORE_URL", raising=False)
    emb_dim = resources.default_embedder().dim
    store = open_store(tmp_path / "s", emb_dim, resources.default_embedder().name)
    e = np.zeros(emb_dim, np.float32)
    e[0] = 1
    store.record("Call Bob at +1 415 555 0132", e, "factual_qa", [Outcome("m", 1.0, True, answer="done")])
    store.close()
    from fusiongraph.response_store import ResponseStore

    conversations = ResponseStore(tmp_path / "s")  # a Responses API conversation that names Bob too
    conversations.put("resp_1", None, [{"role": "user", "content": "Call Bob at +1 415 555 0132"}])
    said = CliRunner().invoke(app, ["store", "forget", "--match", "bob", "--store-dir", str(tmp_path / "s")])
    assert said.exit_code == 0, said.output
    assert "erased 1 subtasks, 1 outcomes, 1 vectors, 0 cached answers, and 1 stored Responses" in said.output
    assert conversations.get("resp_1", None) is None
    conversations.close()
    as_json = CliRunner().invoke(
        app, ["store", "forget", "--before", "2000-01-01", "--json", "--store-dir", str(tmp_path / "s")]
    )
    assert json.loads(as_json.output) == {
        "subtasks": 0, "outcomes": 0, "cached_answers": 0, "vectors": 0, "conversations": 0
    }  # fmt: skip
    for bad, msg in [([], "give --match TEXT"), (["--before", "yesterday"], "is not a date")]:
        out = CliRunner().invoke(app, ["store", "forget", *bad, "--store-dir", str(tmp_path / "s")])
        assert out.exit_code == 2 and msg in out.output


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_like_wildcards_in_the_text_are_literal(backend, tmp_path, request):
    target = tmp_path / "s" if backend == "sqlite" else request.getfixturevalue("pg")
    store = open_store(target, 8, "t")
    try:
        store.record("a 50% discount", vec(0), None, [Outcome("m", 1.0, True)])
        store.record("a 500 discount", vec(1), None, [Outcome("m", 1.0, True)])
        store.record("snake_case name", vec(2), None, [Outcome("m", 1.0, True)])
        store.record("snakeXcase name", vec(3), None, [Outcome("m", 1.0, True)])
        assert store.forget(match="0%")["subtasks"] == 1 and store.forget(match="e_c")["subtasks"] == 1
        assert store.counts()["subtasks"] == 2
        store.record("Call Jürgen MÜLLER", vec(4), None, [Outcome("m", 1.0, True)])  # any script's case
        assert store.forget(match="müller")["subtasks"] == 1 and store.counts()["subtasks"] == 2
    finally:
        store.close()
