"""The default operating point: price_sensitivity chosen on the store's own replay (fusiongraph/routing/operating_point.py)."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

from fusiongraph.context import FusionContext
from fusiongraph.routing.operating_point import (
    DEFAULT_PRICE_SENSITIVITY,
    LAMBDAS,
    MIN_ROWS,
    OperatingPoint,
    cap_for_cascade,
    choose,
    fixed,
    replay_cascade,
)
from fusiongraph.routing.router import Router, RoutingParams
from fusiongraph.routing.rule import NO_JOINT
from fusiongraph.store import Outcome, OutcomeStore

DIM = 16
MODELS = ["cheap", "mid", "dear"]  # cheapest first
PRICE = {"cheap": 0.001, "mid": 0.01, "dear": 0.2}


def params(price_sensitivity=None, judge_accuracy=None):
    """A route's knobs as these tests ask for its operating point: k 32, hybrid, no cap unless judge_accuracy."""
    base = RoutingParams.from_context(None, k=32, min_similarity=0.3, explore=1.0, router="hybrid")
    return dataclasses.replace(base, price_sensitivity=price_sensitivity, judge_accuracy=judge_accuracy, accept=0.5)


def region_table(n: int, seed: int = 0):
    """Three regions of prompts: cheap is good in region 0, mid in 0-1, dear everywhere but less reliably."""
    rng = np.random.default_rng(seed)
    region = np.arange(n) % 3
    good = {"cheap": region == 0, "mid": region <= 1, "dear": np.ones(n, bool)}
    rate = {"cheap": 0.95, "mid": 0.95, "dear": 0.85}
    scores = np.column_stack(
        [np.where(good[m], rng.random(n) < rate[m], rng.random(n) < 0.1).astype(float) for m in MODELS]
    )
    costs = np.tile([PRICE[m] for m in MODELS], (n, 1))
    return region, scores, costs


def region_vectors(region: np.ndarray, seed: int = 1) -> np.ndarray:
    """Prompts of a region near its axis (the same axes for every seed), with per-prompt noise."""
    axes = np.random.default_rng(99).normal(size=(3, DIM))
    v = axes[region] * 3 + np.random.default_rng(seed).normal(size=(len(region), DIM))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def filled_store(n: int, seed: int = 0) -> OutcomeStore:
    region, scores, costs = region_table(n, seed)
    vecs = region_vectors(region, seed + 1)
    store = OutcomeStore(None, DIM, "fake")
    store.record_many(
        [
            (
                f"prompt {seed}-{i} region {region[i]}",
                vecs[i],
                f"r{region[i]}",
                [
                    Outcome(m, float(scores[i, j]), bool(scores[i, j]), cost_usd=float(costs[i, j]))
                    for j, m in enumerate(MODELS)
                ],
            )
            for i in range(n)
        ]
    )
    return store


def test_choose_takes_the_cheapest_point_that_beats_the_best_single_model_by_a_standard_error():
    region, scores, costs = region_table(900)
    p = scores * 0.8 + 0.1  # predictions that know each outcome, a little blurred
    point = choose(p, costs.copy(), np.full(p.shape, 1000), scores, costs, MODELS, explore=1.0)
    assert point.source == "auto" and point.best_model == "dear"
    diff_se = 0.5 / np.sqrt(900)  # a loose bound on the standard error of the paired difference
    assert point.quality >= point.best_quality + diff_se / 2
    assert point.cost < 0.5 * point.best_cost  # the oracle-like predictions buy it cheaply
    # and no cheaper point of the sweep beats the best single model as well
    from fusiongraph.routing.operating_point import LAMBDAS
    from fusiongraph.routing.rule import first_picks

    rows = np.arange(900)
    for lam in LAMBDAS:
        pick = first_picks(p, costs, np.full(p.shape, 1000), lam, 1.0)
        q, c = scores[rows, pick].mean(), costs[rows, pick].mean()
        d = scores[rows, pick] - scores[:, 2]
        if q - point.best_quality >= d.std(ddof=1) / np.sqrt(900):
            assert c >= point.cost - 1e-12


def test_choose_never_picks_a_point_dearer_than_the_best_single_model():
    """A dear specialist makes every point that beats the best single model (mid) dearer than it: the choice
    stays at or under mid's cost."""
    rng = np.random.default_rng(2)
    n = 900
    half = np.arange(n) % 2 == 0
    scores = np.column_stack(
        [rng.random(n) < 0.5, rng.random(n) < 0.8, np.where(half, rng.random(n) < 0.98, rng.random(n) < 0.3)]
    ).astype(float)
    costs = np.tile([0.001, 0.01, 0.5], (n, 1))
    p = np.column_stack([np.full(n, 0.5), np.full(n, 0.8), np.where(half, 0.98, 0.3)])
    point = choose(p, costs, np.full(p.shape, 1000), scores, costs, MODELS, explore=1.0)
    assert point.best_model == "mid" and point.cost <= point.best_cost + 1e-12
    at_zero = choose(p, costs, np.full(p.shape, 1000), scores, costs, MODELS, explore=1.0, lambdas=[0.0])
    assert at_zero.price_sensitivity == 0.01 and at_zero.source == "default"  # the only point is 25x dearer


def test_choose_falls_back_when_nothing_beats_the_best_model_within_its_cost_or_data_is_thin():
    region, scores, costs = region_table(600)
    rng = np.random.default_rng(5)
    blind = rng.random(scores.shape)  # predictions that know nothing
    point = choose(blind, costs, np.full(scores.shape, 1000), scores, costs, MODELS, explore=1.0)
    assert point.source == "auto" and "no point" in point.reason
    many = np.full(scores.shape, 1000)
    # predictions that only ever favour the best model: they match it, never beat it; the cheapest match
    loyal = np.tile([0.1, 0.1, 0.9], (len(scores), 1))
    match = choose(loyal, costs, many, scores, costs, MODELS, explore=1.0)
    assert "matches" in match.reason and match.quality == pytest.approx(match.best_quality)
    assert match.cost == pytest.approx(match.best_cost)
    # predictions that are wrong everywhere never match it: the best quality at no more than its cost
    wrong = choose(1.0 - scores, costs, many, scores, costs, MODELS, explore=1.0)
    assert "at no more than its cost" in wrong.reason and wrong.quality < wrong.best_quality
    assert wrong.cost <= wrong.best_cost + 1e-12
    thin = choose(blind[: MIN_ROWS - 1], costs[: MIN_ROWS - 1], blind[: MIN_ROWS - 1], scores[: MIN_ROWS - 1],
                  costs[: MIN_ROWS - 1], MODELS, explore=1.0)  # fmt: skip
    assert thin.source == "default" and thin.price_sensitivity == DEFAULT_PRICE_SENSITIVITY
    assert str(MIN_ROWS) in thin.reason
    free = choose(blind, costs * 0, np.full(scores.shape, 1000), scores, costs * 0, MODELS, explore=1.0)
    assert free.source == "default" and "cost" in free.reason


def test_the_point_is_raised_until_the_judged_cascade_is_within_the_best_single_models_cost():
    """The graph runs the judged cascade at the chosen value: where it would escalate past the best single model's
    cost, the value is raised to the smallest of the sweep at which it does not; where it stays within, the
    value is the router's own."""
    region, scores, costs = region_table(600)
    p = np.full(scores.shape, 0.6)  # predictions that tell nothing: at 0 the cascade tries everything it can
    many = np.full(p.shape, 1000)
    # the router's value 0, and a best single model as dear as "mid" (a cascade may try "dear" after it)
    router_point = OperatingPoint(0.0, "auto", "the router's own", rows=600, models=tuple(MODELS), best_model="mid",
                                  best_quality=float(scores[:, 1].mean()), best_cost=PRICE["mid"])  # fmt: skip

    def cascade_cost(lam):
        return replay_cascade(
            p, costs, many, scores, costs, MODELS, MODELS, lam, 0.5, explore=1.0, judge_accuracy=0.8,
            joints=[NO_JOINT], joint_of=np.zeros(len(p), int), judge_rng=np.random.default_rng(0), plan_accuracy=0.8,
        )[1]  # fmt: skip

    assert cascade_cost(0.0) > router_point.best_cost  # at the router's value: dearer than the best model, "mid"
    capped = cap_for_cascade(router_point, (p, costs, many), scores, costs, MODELS, 1.0,
                             judge_accuracy=0.8, accept=0.5, joint=NO_JOINT)  # fmt: skip
    assert capped.router_price_sensitivity == 0.0 and capped.price_sensitivity > 0.0
    assert capped.cascade_accuracy == 0.8 and capped.cascade_cost <= capped.best_cost
    assert capped.cascade_cost == pytest.approx(cascade_cost(capped.price_sensitivity))
    below = max(x for x in LAMBDAS if x < capped.price_sensitivity)  # the smallest such value: the one below is dearer
    assert cascade_cost(below) > capped.best_cost
    assert "raised" in capped.reason and "cascade" in capped.reason
    # within the cost already: the router's value, with the cascade's replay beside it
    high = dataclasses.replace(router_point, price_sensitivity=float(capped.price_sensitivity))
    kept = cap_for_cascade(high, (p, costs, many), scores, costs, MODELS, 1.0,
                           judge_accuracy=0.8, accept=0.5, joint=NO_JOINT)  # fmt: skip
    assert kept.price_sensitivity == high.price_sensitivity and kept.reason == high.reason
    assert kept.cascade_cost == pytest.approx(capped.cascade_cost)
    # a fixed fallback has nothing to replay
    fallback = fixed(DEFAULT_PRICE_SENSITIVITY, "too few subtasks")
    assert cap_for_cascade(fallback, (p, costs, many), scores, costs, MODELS, 1.0,
                           judge_accuracy=0.8, accept=0.5, joint=NO_JOINT) == fallback  # fmt: skip


def test_the_router_chooses_it_on_its_store_when_the_knob_is_left_empty_and_it_holds_on_new_prompts():
    store = filled_store(900)
    router = Router(store, probe_background=False)
    point = router.operating_point(MODELS, params(judge_accuracy=0.8))
    assert point.source == "auto" and point.rows == 900 and point.best_model == "dear"
    assert point.outcomes == store.outcomes_folded
    # the graph runs the judged cascade at it (route's judge_accuracy 0.8): replayed, within the best model's cost
    assert point.cascade_accuracy == 0.8 and point.cascade_cost <= point.best_cost
    assert point.router_price_sensitivity is not None
    # an explicit knob wins
    fixed = router.operating_point(MODELS, params(0.5))
    assert fixed.price_sensitivity == 0.5 and fixed.source == "context"
    # on prompts the store never saw, the chosen knob beats the best single model at less than its cost
    region, scores, costs = region_table(600, seed=7)
    vecs = region_vectors(region, 8)
    rows = np.arange(600)
    picks = []
    for i in rows:
        route = router.route(vecs[i], {f"r{region[i]}": 1.0}, 1.0, MODELS, MODELS, RoutingParams.from_context(k=32, min_similarity=0.3, min_neighbours=4, taxonomy_confidence=0.5, price_sensitivity=None))  # fmt: skip
        assert route.operating_point == point  # cached: not recomputed per subtask
        picks.append(MODELS.index(route.plan[0]))
    picks = np.array(picks)
    assert scores[rows, picks].mean() > scores[:, 2].mean()
    assert costs[rows, picks].mean() < 0.5 * costs[:, 2].mean()
    store.close()


def test_it_is_recomputed_as_the_store_grows_and_chosen_in_the_background_for_a_live_graph():
    store = filled_store(300)
    router = Router(store, probe_background=True)
    first = router.operating_point(MODELS, params())
    assert first.source == "default" and "background" in first.reason  # not blocking the request
    deadline = time.time() + 60
    while time.time() < deadline:
        point = router.operating_point(MODELS, params())
        if point.source == "auto":
            break
        time.sleep(0.05)
    assert point.source == "auto" and point.rows == 300
    # grows by a third: the next call starts a recomputation and serves the last choice meanwhile
    region, scores, costs = region_table(100, seed=3)
    vecs = region_vectors(region, 4)
    store.record_many(
        [
            (f"more {i}", vecs[i], f"r{region[i]}", [Outcome(m, float(scores[i, j]), True, cost_usd=costs[i, j])
                                                     for j, m in enumerate(MODELS)])
            for i in range(100)
        ]
    )  # fmt: skip
    assert router.operating_point(MODELS, params()) == point
    while time.time() < deadline:
        again = router.operating_point(MODELS, params())
        if again.rows == 400:
            break
        time.sleep(0.05)
    assert again.rows == 400 and again.outcomes == store.outcomes_folded
    store.close()


def test_a_roster_with_a_model_just_added_routes_at_the_fixed_default_until_it_is_covered():
    """The replay can vouch only for the roster it can replay: a model with few outcomes means the fixed
    default (a point chosen without it misroutes the roster with it), and the reason names it."""
    store = filled_store(400)
    vec = region_vectors(np.array([0]))[0]
    store.record("one new prompt", vec, "r0", [Outcome("newbie", 1.0, True, cost_usd=0.5)])
    router = Router(store, probe_background=False)
    point = router.operating_point([*MODELS, "newbie"], params())
    assert point.source == "default" and point.price_sensitivity == DEFAULT_PRICE_SENSITIVITY
    assert "newbie" in point.reason
    assert router.operating_point(MODELS, params()).source == "auto"
    region, scores, costs = region_table(400)

    def newbie_on(rows):
        store.record_many(
            [
                (f"prompt 0-{i} region {region[i]}", region_vectors(region, 1)[i], f"r{region[i]}",
                 [Outcome("newbie", float(scores[i, 0]), True, cost_usd=0.0005)])
                for i in rows
            ]
        )  # fmt: skip
        return router.operating_point([*MODELS, "newbie"], params())

    # outcomes on three quarters of the subtasks: covered, but those are a part, not a fair sample to replay
    part = newbie_on(range(300))
    assert part.source == "default" and "300 of the 400" in part.reason and "selected" in part.reason
    # on (nearly) all of them, as a calibration gives: the roster with it is replayed (a new router: the last
    # choice is cached until the store grows by 10%)
    newbie_on(range(300, 400))
    router = Router(store, probe_background=False)
    every = router.operating_point([*MODELS, "newbie"], params())
    assert every.source == "auto" and every.models == (*MODELS, "newbie") and every.rows == 400
    store.close()


def test_live_traffic_beside_an_imported_table_keeps_the_replay_of_the_import():
    """A live run records one unconditioned outcome per subtask (its first pick; escalations after a rejection
    are conditioned): an import followed by live traffic half its size is still replayed on the import, and
    the live subtasks are not counted as a selected part. Escalations count as conditioned, not as coverage."""
    store = filled_store(400)
    region, scores, costs = region_table(200, seed=5)
    vecs = region_vectors(region, 6)
    store.record_many(
        [
            (f"live {i}", vecs[i], f"r{region[i]}", [
                Outcome(MODELS[i % 3], float(scores[i, i % 3]), bool(scores[i, i % 3]), cost_usd=float(costs[i, i % 3])),
                Outcome("dear", float(scores[i, 2]), bool(scores[i, 2]), cost_usd=float(costs[i, 2]), after_rejection=True),
            ])
            for i in range(200)
        ]
    )  # fmt: skip
    data = store.replay_rows(MODELS, 1000)
    assert data["complete"] == 400 and data["covered"] == 400  # the live subtasks compared no two models
    router = Router(store, probe_background=False)
    point = router.operating_point(MODELS, params())
    assert point.source == "auto" and point.rows == 400, point.reason
    # a subtask where two candidates were compared but not the third does count: the share rule still bites
    store.record_many(
        [
            (f"pair {i}", vecs[i], f"r{region[i]}",
             [Outcome(m, float(scores[i, j]), bool(scores[i, j]), cost_usd=float(costs[i, j])) for j, m in enumerate(MODELS[:2])])
            for i in range(100)
        ]
    )  # fmt: skip
    assert store.replay_rows(MODELS, 1000)["covered"] == 500
    fresh = Router(store, probe_background=False).operating_point(MODELS, params())
    assert fresh.source == "default" and "400 of the 500" in fresh.reason
    store.close()


def test_the_context_knob_defaults_to_auto_and_keeps_its_range():
    assert FusionContext().price_sensitivity is None
    assert FusionContext(price_sensitivity=0.2).price_sensitivity == 0.2
    with pytest.raises(ValueError, match="price_sensitivity"):
        FusionContext(price_sensitivity=11.0)


def test_the_best_single_model_is_told_apart_on_every_complete_subtask_not_only_the_sample():
    region, scores, costs = region_table(600)
    p = scores * 0.8 + 0.1
    many = np.full(p.shape, 1000)
    on_sample = choose(p, costs, many, scores, costs, MODELS, explore=1.0)
    assert on_sample.best_model == "dear"
    # over the whole store mid is the better model (say): the comparison is with mid, on the sample's rows
    told = choose(p, costs, many, scores, costs, MODELS, explore=1.0, mean_success=[0.5, 0.95, 0.9])
    assert told.best_model == "mid" and told.best_quality == pytest.approx(scores[:, 1].mean())
    store = filled_store(300)
    data = store.replay_rows(MODELS, 100)
    assert data["complete"] == 300 and len(data["ids"]) == 100
    np.testing.assert_allclose(data["mean_success"], region_table(300)[1].mean(axis=0))
    store.close()
