"""The neighbours' evidence as arrays (store.outcomes.NeighbourBlock): the store's block is what the
Neighbour dicts say, and Router.predict gives the same from either."""

from __future__ import annotations

import numpy as np
import pytest

from fusiongraph.routing.router import Router
from fusiongraph.store import Outcome, OutcomeStore
from fusiongraph.store.types import NeighbourBlock, Neighbours

DIM = 8
MODELS = ["a", "b", "c"]


def unit(rng):
    v = rng.normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture
def store(tmp_path):
    rng = np.random.default_rng(3)
    s = OutcomeStore(tmp_path / "store", DIM, "test")
    for i in range(40):
        outs = []
        for j, m in enumerate(MODELS):
            if (i + j) % 4 == 0:
                continue  # some models never ran on some subtasks
            cost = 0.001 * (j + 1) * (1 + i % 3)
            outs.append(Outcome(m, float(rng.random() < 0.6), True, cost_usd=cost, tokens_out=10 * (i % 5 + j)))
        if i % 7 == 0:  # a tier tried after a rejection: conditioned, priced, no first-pick evidence
            outs.append(Outcome("c", 1.0, True, cost_usd=0.05, tokens_out=99, after_rejection=True))
        s.record(f"subtask {i}", unit(rng), "math" if i % 2 else "factual_qa", outs)
    yield s
    s.close()


def test_the_stores_block_is_what_its_neighbours_say(store):
    query = unit(np.random.default_rng(9))
    found = store.neighbours(query, 20)
    assert isinstance(found, Neighbours) and found.block is not None and len(found) == 20
    assert any(nb.conditioned for nb in found)  # the conditioned outcomes are among them
    built = NeighbourBlock.of(list(found))
    order = [found.block.models.index(m) for m in built.models]
    for name in ("success", "has", "ran", "cost", "tokens"):
        np.testing.assert_allclose(getattr(found.block, name)[:, order], getattr(built, name), err_msg=name)
    np.testing.assert_allclose(found.block.similarity, built.similarity)
    np.testing.assert_array_equal(found.block.conditioned, built.conditioned)


def test_predict_reads_the_same_from_the_block_or_from_the_dicts(store):
    router = Router(store)
    query = unit(np.random.default_rng(11))
    nbrs = router.neighbours(query, 16, min_similarity=-1.0)
    assert nbrs.block is not None and len(nbrs.block.similarity) == len(nbrs)
    prices = {m: (1.0 + j, 4.0 + j) for j, m in enumerate(MODELS)}
    kw = {"prompt_tokens": 30, "prices": prices, "default_tokens": 64}
    fast = router.predict(MODELS + ["new"], {"math": 0.7, "factual_qa": 0.3}, nbrs, **kw)
    plain = router.predict(MODELS + ["new"], {"math": 0.7, "factual_qa": 0.3}, list(nbrs), **kw)
    for m in MODELS + ["new"]:
        assert fast[m].p_success == pytest.approx(plain[m].p_success, abs=1e-12)
        assert fast[m].evidence_n == pytest.approx(plain[m].evidence_n, abs=1e-12)
        assert fast[m].cost_usd == pytest.approx(plain[m].cost_usd, abs=1e-15)
    assert fast["new"].evidence_n == 0.0  # a model with no neighbour outcome gets no neighbour weight
    # a filter that drops rows keeps the block's rows in step with the list
    close = router.neighbours(query, 16, min_similarity=0.2)
    assert len(close) < len(nbrs) and len(close.block.similarity) == len(close)
    np.testing.assert_allclose(close.block.similarity, [nb.similarity for nb in close])
