"""The success probe: fitted from the store, generalises past the neighbours, refits as the store grows."""

import time

import numpy as np
import pytest

from fusiongraph.routing.probe import SuccessProbe
from fusiongraph.routing.router import Router, RoutingParams
from fusiongraph.store import Outcome, OutcomeStore

DIM = 8


def unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def fill(store, n, seed=0, start=0, label=lambda x: float(x[0] > 0), cls="math"):
    """n random subtasks; model a succeeds where `label` says, model b always half the time (graded)."""
    rng = np.random.default_rng(seed)
    for i in range(start, start + n):
        x = unit(rng.normal(size=DIM))
        store.record(f"item {i}", x, cls, [Outcome("a", label(x), True), Outcome("b", 0.5, True)])


def test_the_probe_learns_where_a_model_fails():
    store = OutcomeStore(None, DIM, "t")
    fill(store, 400)
    probe = SuccessProbe(store, c=10.0, background=False)
    rng = np.random.default_rng(99)
    xs = [unit(rng.normal(size=DIM)) for _ in range(200)]
    preds = [probe.predict(x, {"math": 1.0}, ["a", "b"]) for x in xs]
    correct = [(p["a"] > 0.5) == (x[0] > 0) for p, x in zip(preds, xs)]
    assert np.mean(correct) > 0.9
    # graded outcomes are soft labels: b succeeds half the time wherever it is asked
    assert np.mean([p["b"] for p in preds]) == pytest.approx(0.5, abs=0.05)


def test_no_fit_below_the_minimum_or_without_failures():
    store = OutcomeStore(None, DIM, "t")
    fill(store, 50)
    probe = SuccessProbe(store, min_outcomes=100, background=False)
    assert probe.predict(unit(np.ones(DIM)), {}, ["a", "b"]) == {}
    always = OutcomeStore(None, DIM, "t")
    fill(always, 150, label=lambda x: 1.0)
    fitted = SuccessProbe(always, min_outcomes=100, background=False).predict(unit(np.ones(DIM)), {}, ["a", "b"])
    assert set(fitted) == {"b"}  # a never failed: nothing to learn, the class rate speaks for it


def test_the_probe_refits_as_the_store_grows_in_line_and_in_the_background():
    store = OutcomeStore(None, DIM, "t")
    fill(store, 200)
    probe = SuccessProbe(store, background=False, refit_growth=0.1)
    first = probe.current()
    assert first is not None and first.outcomes == 400
    fill(store, 10, seed=1, start=1000)  # +5 %: not yet
    assert probe.current() is first
    fill(store, 20, seed=2, start=2000)  # +15 %: refit in line
    assert probe.current().outcomes == 460

    live = SuccessProbe(store, background=True)
    assert live.current() is None  # the first fit runs in a background thread; routing does not wait
    deadline = time.time() + 30
    while live.current() is None and time.time() < deadline:
        time.sleep(0.05)
    assert live.current() is not None and live.current().outcomes == 460


def test_hybrid_prior_is_the_mean_of_class_rate_and_probe_and_shows_in_the_trace():
    store = OutcomeStore(None, DIM, "t")
    fill(store, 300)
    router = Router(store, probe_background=False)
    x = unit([1, 0.2, 0, 0, 0, 0, 0, 0])
    hybrid = router.predict(["a"], {"math": 1.0}, [], mode="hybrid", embedding=x)["a"]
    probe_only = router.predict(["a"], {"math": 1.0}, [], mode="probe", embedding=x)["a"]
    taxonomy = router.predict(["a"], {"math": 1.0}, [], mode="taxonomy", embedding=x)["a"]
    assert probe_only.p_success > 0.8 and 0.3 < taxonomy.p_success < 0.7
    assert hybrid.p_success == pytest.approx(0.5 * (taxonomy.p_success + probe_only.p_success))
    assert hybrid.as_dict()["probe"] == round(probe_only.p_success, 4)
    # without the subtask's embedding there is no probe: the class rate is the prior
    assert router.predict(["a"], {"math": 1.0}, [], embedding=None)["a"].p_success == pytest.approx(taxonomy.p_success)


def test_the_graph_route_uses_the_probe():
    store = OutcomeStore(None, DIM, "t")
    fill(store, 300)
    router = Router(store, probe_background=False)
    good, bad = unit([1, 0.1, 0, 0, 0, 0, 0, 0]), unit([-1, 0.1, 0, 0, 0, 0, 0, 0])
    kw = dict(
        class_confidence=1.0,
        class_candidates=["a", "b"],
        available=["a", "b"],
        params=RoutingParams.from_context(k=0, min_similarity=0.3, min_neighbours=4, price_sensitivity=0.02),
    )
    on_good = router.route(good, {"math": 1.0}, **kw)
    on_bad = router.route(bad, {"math": 1.0}, **kw)
    assert on_good.predictions["a"].p_success > on_bad.predictions["a"].p_success + 0.3
    assert on_good.predictions["a"].probe is not None


def test_a_fit_is_saved_beside_the_store_and_reused_by_the_next_process(tmp_path, monkeypatch, caplog):
    store = OutcomeStore(tmp_path, DIM, "t")
    fill(store, 300)
    x = unit([1, 0.2, 0, 0, 0, 0, 0, 0])
    fitted = SuccessProbe(store, background=False).predict(x, {"math": 1.0}, ["a", "b"])
    assert (tmp_path / "probe.npz").exists()
    store.close()

    reopened = OutcomeStore(tmp_path, DIM, "t")
    monkeypatch.setattr(SuccessProbe, "fit", lambda self: pytest.fail("refitted although a current fit was saved"))
    again = SuccessProbe(reopened, background=False).predict(x, {"math": 1.0}, ["a", "b"])
    assert again == pytest.approx(fitted)
    monkeypatch.undo()

    (tmp_path / "probe.npz").write_bytes(b"not an npz")  # only a cache: ignored, refitted from the store
    probe = SuccessProbe(reopened, background=False)
    assert "unreadable" in caplog.text
    assert probe.predict(x, {"math": 1.0}, ["a", "b"]) == pytest.approx(fitted)


def test_cluster_rates_follow_the_region_a_model_fails_in_and_survive_a_save(tmp_path):
    """Model a fails in one region of embedding space: the k-means cluster rates there say so."""
    store = OutcomeStore(tmp_path, DIM, "t")
    rng = np.random.default_rng(5)
    centres = [unit(rng.normal(size=DIM)) for _ in range(6)]
    for i in range(1200):
        c = i % 6
        x = unit(centres[c] + 0.15 * rng.normal(size=DIM))
        store.record(f"item {i}", x, "math", [Outcome("a", float(c != 0), True), Outcome("b", 1.0, True)])
    store.save()
    probe = SuccessProbe(store, background=False)
    fit = probe.current()
    assert fit.centroids is not None and len(fit.centroids) == 1200 // 150
    bad = fit.cluster_rate(centres[0], ["a", "b"])
    good = fit.cluster_rate(centres[3], ["a", "b"])
    assert bad["a"] < 0.2 < 0.8 < good["a"] and bad["b"] > 0.9
    again = SuccessProbe(store, background=False)._load()  # the saved fit, plain arrays
    assert again.cluster_rate(centres[0], ["a"])["a"] == pytest.approx(bad["a"])
    router = Router(store, probe_background=False)
    pred = router.predict(["a", "b"], {"math": 1.0}, [], embedding=centres[0])
    assert pred["a"].cluster_rate == pytest.approx(bad["a"], abs=1e-6)
    off = SuccessProbe(store, background=False, max_clusters=0).fit()
    assert off.centroids is None
