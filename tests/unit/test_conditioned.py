"""Outcomes recorded after a rejection ("conditioned") are kept apart, and first-pick routing does not read them.

A cascade runs a costly model mostly after cheaper tiers were rejected, i.e. on prompts that are hard for the
others: its outcomes there are a biased sample. These tests check the flag (attempt, record node, SQLite,
the bench's online replay) and that the router's first-pick estimate of such a model is its unconditioned one.
"""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from fusiongraph.attempt import after_rejection
from fusiongraph.eval.bench.online import cascade_reach
from fusiongraph.graphs.fusion import graph
from fusiongraph.routing.router import Router
from fusiongraph.store import Outcome, OutcomeStore, migrate_store
from fusiongraph.store.sqlite import DB_FILE
from tests.conftest import ctx
from tests.unit.test_graph import cheap_strong


def unit(rng, dim=8) -> np.ndarray:
    v = rng.normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


def test_the_after_rejection_rule():
    assert after_rejection([]) is False and after_rejection(None) is False
    assert after_rejection([{"model": "a", "error": "Timeout", "accepted": False}]) is False  # no judgement
    assert after_rejection([{"model": "a", "answer": "x", "accepted": False}]) is True
    # the bench's online replay walks a plan with the same rule
    assert cascade_reach(["a", "new"], "new", lambda m: False) == (True, True)
    assert cascade_reach(["new", "a"], "new", lambda m: False) == (True, False)
    assert cascade_reach(["a", "new"], "new", lambda m: m == "a") == (False, False)
    assert cascade_reach(["a"], "new", lambda m: False) == (False, False)


def test_the_store_keeps_conditioned_outcomes_apart():
    store = OutcomeStore(None, 4, "t")
    e = np.array([1, 0, 0, 0], np.float32)
    store.record(
        "x",
        e,
        "math",
        [Outcome("cheap", 0.0, False, cost_usd=0.001), Outcome("big", 0.0, False, cost_usd=0.01, after_rejection=True)],
    )
    store.record("y", np.array([0.9, 0.1, 0, 0], np.float32), "math", [Outcome("big", 1.0, True, cost_usd=0.03)])
    x, y = sorted(store.neighbours(e, 2), key=lambda n: n.text)
    assert x.outcomes == {"cheap": 0.0} and x.conditioned == {"big": 0.0}
    assert x.costs == {"cheap": 0.001, "big": 0.01}  # costs are of every answer
    assert y.outcomes == {"big": 1.0} and y.conditioned == {}
    assert store.class_rates("math")["big"] == (1.0, 1)  # the first-pick rates: unconditioned only
    assert store.conditioned_rates() == {"big": (0.0, 1)}
    assert store.outcomes_folded == 3 and store.model_usage()["big"][2] == 2
    _, per_model = store.training_rows(10)[1:]
    assert len(per_model["big"][0]) == 1  # the probe is fitted on the unconditioned outcome only
    models, given_wrong, _, _ = store.joint_rates()  # escalation reads both
    assert given_wrong[models.index("big"), models.index("cheap")] == 0.0
    assert [r["after_rejection"] for r in store.outcomes()] == [False, True, False]


def hard_prompt_table(seed=0, n=400):
    """Prompts with a shared difficulty; 'cheap' is right on easy ones, 'big' on most. Returns rows of
    (embedding, hard, cheap right, big right)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        hard = rng.random() < 0.5
        rows.append((unit(rng), hard, rng.random() < (0.1 if hard else 0.9), rng.random() < (0.55 if hard else 0.95)))
    return rows


def test_a_model_reached_only_after_rejections_is_not_estimated_below_its_unconditioned_rate():
    """'big' runs first on a random 15% of the prompts (selection on nothing) and otherwise only after
    'cheap' was rejected (the hard prompts): its estimate must be its unconditioned rate (~0.75), not the
    rate of the hard prompts (~0.55) that most of its outcomes come from."""
    rows = hard_prompt_table()
    store = OutcomeStore(None, 8, "t")
    rng = np.random.default_rng(1)
    first = 0
    for i, (emb, _, c, b) in enumerate(rows):
        outs = [Outcome("cheap", float(c), c)]
        if rng.random() < 0.15:
            outs.append(Outcome("big", float(b), b))
            first += 1
        elif not c:
            outs.append(Outcome("big", float(b), b, after_rejection=True))
        store.record(f"p{i}", emb, None, outs)
    assert store.conditioned_rates()["big"][1] > 2 * first  # most of its outcomes are conditioned
    truth = np.mean([b for *_, b in rows])
    router = Router(store, probe_background=False)
    test = hard_prompt_table(seed=2, n=60)
    p_big = []
    for emb, *_ in test:
        nbrs = router.neighbours(emb, 64, 0.0)
        pred = router.predict(["cheap", "big"], {}, nbrs, mode="knn", embedding=emb)["big"]
        p_big.append(pred.p_success)
        assert pred.n_outcomes == first and pred.n_conditioned > first
    assert np.mean(p_big) == pytest.approx(truth, abs=0.06)
    # far above the rate of the prompts it reached after rejections, which every outcome alike tends to
    assert np.mean(p_big) > np.mean([b for (_, _, c, b) in rows if not c]) + 0.1


def test_exploration_counts_only_the_evidence_the_first_pick_uses():
    """Near a subtask where 'big' ran only after rejections it counts as unexplored."""
    store = OutcomeStore(None, 4, "t")
    e = np.array([1, 0, 0, 0], np.float32)
    for i in range(30):
        v = e + 0.01 * i * np.array([0, 1, 0, 0], np.float32)
        store.record(
            f"p{i}",
            v / np.linalg.norm(v),
            None,
            [Outcome("cheap", 0.0, False), Outcome("big", 0.0, False, after_rejection=True)],
        )
    for i in range(30):  # big's unconditioned outcomes are elsewhere
        store.record(f"q{i}", np.array([0, 0, 1, 0.01 * i], np.float32), None, [Outcome("big", 1.0, True)])
    router = Router(store, probe_background=False)
    preds = router.predict(["cheap", "big"], {}, router.neighbours(e, 16, 0.5), mode="knn", embedding=e)
    assert preds["cheap"].evidence_n == 30 and preds["big"].evidence_n == 0.0
    assert preds["big"].n_outcomes == 30 and preds["big"].n_conditioned == 30
    assert preds["big"].p_success > 0.5  # not dragged to 0 by the 30 failures after rejections


def test_the_graph_flags_an_answer_tried_after_a_rejection(fusion):
    models, cheap, strong = cheap_strong()  # cheap: rejected; strong: accepted
    res = fusion(models)
    out = graph.invoke({"query": "What is the capital of France?"}, context=ctx())
    (r,) = out["results"]
    assert [(a["model"], a["after_rejection"]) for a in r["attempts"]] == [("cheap", False), ("strong", True)]
    assert [(row["model"], row["after_rejection"]) for row in res.store.outcomes()] == [
        ("cheap", False),
        ("strong", True),
    ]
    (rec,) = [e for e in r["trace"] if e.get("node") == "record"]
    assert rec["recorded"] == 2 and rec["after_rejection"] == 1
    assert r["predictions"]["strong"]["n_conditioned"] == 0  # predicted before anything was recorded


OLD_OUTCOMES = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE subtasks (id INTEGER PRIMARY KEY, text_hash TEXT NOT NULL UNIQUE, text TEXT NOT NULL,
    task_class TEXT, embedding BLOB NOT NULL, created_at REAL NOT NULL);
CREATE TABLE outcomes (id INTEGER PRIMARY KEY, subtask_id INTEGER NOT NULL REFERENCES subtasks(id),
    model TEXT NOT NULL, task_class TEXT, success REAL NOT NULL CHECK (success >= 0 AND success <= 1),
    accepted INTEGER NOT NULL, judges TEXT NOT NULL DEFAULT '{}', answer TEXT, error TEXT,
    tokens_in INTEGER NOT NULL DEFAULT 0, tokens_out INTEGER NOT NULL DEFAULT 0, cost_usd REAL NOT NULL DEFAULT 0,
    latency_s REAL NOT NULL DEFAULT 0, source TEXT NOT NULL DEFAULT 'live', run_id TEXT, created_at REAL NOT NULL);
INSERT INTO meta VALUES ('dim', '4'), ('embedder', 't'), ('version', '1');
"""


def old_sqlite_store(directory):
    """A store file as fusiongraph wrote it before the after_rejection column, with one outcome."""
    directory.mkdir()
    db = sqlite3.connect(directory / DB_FILE)
    db.executescript(OLD_OUTCOMES)
    db.execute(
        "INSERT INTO subtasks VALUES (1, 'h', 'old task', 'math', ?, 0)",
        (np.array([1, 0, 0, 0], np.float32).tobytes(),),
    )
    db.execute(
        "INSERT INTO outcomes (subtask_id, model, task_class, success, accepted, created_at) VALUES (1, 'a', 'math', 1, 1, 0)"
    )
    db.commit()
    db.close()


def test_an_older_sqlite_store_gains_the_column_and_its_rows_are_unconditioned(tmp_path):
    old_sqlite_store(tmp_path / "old")
    # copying from an older store that was never opened (so not migrated) works too
    copied = migrate_store(tmp_path / "old", tmp_path / "copy")
    assert copied["copied"]["outcomes"] == 1
    for where in ("copy", "old"):
        store = OutcomeStore(tmp_path / where, 4, "t")
        assert [r["after_rejection"] for r in store.outcomes()] == [False]
        store.record(
            "new task", np.array([0, 1, 0, 0], np.float32), None, [Outcome("a", 0.0, False, after_rejection=True)]
        )
        store.close()
        again = OutcomeStore(tmp_path / where, 4, "t")  # the flag round-trips through the file
        assert [r["after_rejection"] for r in again.outcomes()] == [False, True]
        assert again.conditioned_rates() == {"a": (0.0, 1)} and again.class_rates(None) == {"a": (1.0, 1)}
        again.close()


def test_escalation_still_reads_what_follows_a_rejection():
    """The joint rates (escalation) use conditioned outcomes: after 'cheap' fails, 'big' fails more."""
    rows = hard_prompt_table(seed=3)
    store = OutcomeStore(None, 8, "t")
    for i, (emb, _, c, b) in enumerate(rows):
        outs = [Outcome("cheap", float(c), c), Outcome("big", float(b), b, after_rejection=not c)]
        store.record(f"p{i}", emb, None, outs)
    router = Router(store, probe_background=False)
    rw, rr = router.joint().ratios("big", "cheap")
    assert rw < 0.9 < 1.0 < rr
