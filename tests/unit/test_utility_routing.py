"""The one routing rule: utility = success - price_sensitivity x cost / mean candidate cost; escalation by gain
per dollar."""

from __future__ import annotations

import numpy as np
import pytest

from fusiongraph.routing.router import Router, RoutingParams
from fusiongraph.routing.rule import NO_JOINT, JointRates, Prediction, explore_bonus, plan_utility, utilities
from fusiongraph.store.outcomes import OutcomeStore
from fusiongraph.store.types import Outcome

MODELS = ["flash", "mini", "pro", "big"]  # cheapest first
COSTS = {"flash": 0.0001, "mini": 0.0004, "pro": 0.002, "big": 0.01}
KNOWN = 10**6  # outcome count: no exploration bonus to speak of


def preds(p: dict[str, float], n: int = KNOWN, costs=COSTS) -> dict[str, Prediction]:
    return {m: Prediction(p[m], 1.0, cost_usd=costs[m], n_outcomes=n) for m in p}


def test_price_sensitivity_zero_takes_the_best_model_at_any_price():
    p = {"flash": 0.6, "mini": 0.7, "pro": 0.8, "big": 0.85}
    assert plan_utility(MODELS, preds(p), 0.0)[0][0] == "big"


def test_a_big_price_sensitivity_takes_the_cheapest():
    p = {"flash": 0.6, "mini": 0.7, "pro": 0.8, "big": 0.85}
    assert plan_utility(MODELS, preds(p), 5.0)[0][0] == "flash"


def test_the_first_model_is_the_one_with_the_best_utility():
    p = {"flash": 0.5, "mini": 0.55, "pro": 0.9, "big": 0.92}
    lam = 0.03
    scale = np.mean(list(COSTS.values()))
    u = {m: p[m] - lam * COSTS[m] / scale for m in MODELS}
    plan, _ = plan_utility(MODELS, preds(p), lam, explore=0.0)
    assert plan[0] == max(u, key=u.get) == "pro"


def test_scale_free_a_table_ten_times_dearer_routes_the_same():
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = dict(zip(MODELS, rng.random(4)))
        dear = {m: 10 * c for m, c in COSTS.items()}
        assert plan_utility(MODELS, preds(p), 0.02) == plan_utility(MODELS, preds(p, costs=dear), 0.02)


def test_two_models_it_is_a_threshold_on_the_strong_models_advantage():
    two = ["weak", "strong"]
    cost = {"weak": 0.001, "strong": 0.02}
    lam = 0.02
    threshold = lam * (0.02 - 0.001) / ((0.02 + 0.001) / 2)
    for adv in np.linspace(-0.3, 0.3, 61):
        p = {"weak": 0.5, "strong": 0.5 + adv}
        first = plan_utility(two, preds(p, costs=cost), lam, explore=0.0)[0][0]
        if abs(adv - threshold) > 1e-9:
            assert first == ("strong" if adv > threshold else "weak"), adv


def test_escalation_follows_gain_per_dollar_and_stops_when_not_worth_it():
    p = {"flash": 0.7, "mini": 0.72, "pro": 0.9, "big": 0.91}
    plan, skipped = plan_utility(MODELS, preds(p), 0.35, judge_accuracy=0.9, explore=0.0)
    # flash first (pro's +0.2 is not worth 0.35 x its 0.6 mean prices more); after it is rejected mini (the
    # most gain per dollar), then pro; big (+0.01 for 5x pro's price) is not worth it
    assert plan == ["flash", "mini", "pro"] and [s["model"] for s in skipped] == ["big"]
    assert "worth less than its price" in skipped[0]["reason"]
    # pricier: once mini was rejected too, pro is not worth its price either
    plan, skipped = plan_utility(MODELS, preds(p), 1.5, judge_accuracy=0.9, explore=0.0)
    assert plan == ["flash", "mini"] and [s["model"] for s in skipped] == ["pro", "big"]
    # a judge at chance tells nothing: no escalation is worth paying for
    plan_chance, skipped_chance = plan_utility(MODELS, preds(p), 0.05, judge_accuracy=0.5, explore=0.0)
    assert len(plan_chance) == 1
    assert {s["model"] for s in skipped_chance} == set(MODELS) - {plan_chance[0]}
    assert all("worth less" in s["reason"] for s in skipped_chance)


def test_correlated_failures_make_escalation_to_a_similar_model_worth_less():
    p = {"flash": 0.6, "mini": 0.62, "pro": 0.8, "big": 0.82}
    models = list(p)
    m = len(models)
    rate = np.full((m, m), 0.7)
    independent = JointRates(models, rate.copy(), rate.copy(), rate.copy())
    # mini fails whenever flash fails (a copy of it), pro does not care
    wrong = rate.copy()
    wrong[models.index("mini"), models.index("flash")] = 0.0
    copycat = JointRates(models, wrong, rate.copy(), rate.copy())
    for lam in (0.0, 0.005, 0.01):
        plan_i, _ = plan_utility(models, preds(p), lam, judge_accuracy=0.95, explore=0.0, joint=independent)
        plan_c, skipped_c = plan_utility(models, preds(p), lam, judge_accuracy=0.95, explore=0.0, joint=copycat)
        # independent failures: after flash is rejected, mini is still worth a try
        assert "flash" in plan_i and plan_i[plan_i.index("flash") + 1] == "mini", (lam, plan_i)
        # mini fails whenever flash fails: once flash was tried and rejected, mini is worth nothing
        assert "flash" in plan_c and "mini" not in plan_c[plan_c.index("flash") :], (lam, plan_c)
        assert "mini" in {s["model"] for s in skipped_c}


def test_the_budget_bounds_the_plan():
    p = {"flash": 0.3, "mini": 0.4, "pro": 0.8, "big": 0.95}
    plan, skipped = plan_utility(MODELS, preds(p), 0.0, budget_usd=0.0025, explore=0.0)
    assert "big" not in plan and sum(COSTS[m] for m in plan) <= 0.0025
    assert any(s["model"] == "big" and "budget" in s["reason"] for s in skipped)
    # nothing affordable: still one model (the cascade's own budget check has the last word)
    assert plan_utility(MODELS, preds(p), 0.0, budget_usd=1e-9)[0] == ["flash"]


def test_a_new_model_is_explored_then_judged_on_its_record():
    p = {"flash": 0.7, "mini": 0.5, "pro": 0.8, "big": 0.85}
    known = preds(p)
    known["mini"] = Prediction(0.5, 0.0, cost_usd=COSTS["mini"], n_outcomes=0)  # just added: no outcomes
    assert plan_utility(MODELS, known, 0.02)[0][0] == "mini"  # bounded optimism: try it
    known["mini"] = Prediction(0.3, 5.0, cost_usd=COSTS["mini"], n_outcomes=400)  # it failed a lot since
    assert plan_utility(MODELS, known, 0.02)[0][0] != "mini"
    # without exploration it would never have been tried at its prior
    known["mini"] = Prediction(0.5, 0.0, cost_usd=COSTS["mini"], n_outcomes=0)
    assert plan_utility(MODELS, known, 0.02, explore=0.0)[0][0] != "mini"


def test_the_bonus_is_bounded_and_fades():
    assert explore_bonus(0.5, 0, 1.0) == pytest.approx(0.5)
    assert explore_bonus(0.5, 99, 1.0) == pytest.approx(0.05)
    assert explore_bonus(0.5, 0, 0.0) == 0.0
    u = utilities([[0.5, 0.9]], [[0, 0]], [[0.0, 0.0]], 0.02, 1.0)
    assert u.max() <= 0.999


def test_vectorised_utilities_pick_what_plan_utility_picks():
    rng = np.random.default_rng(5)
    for _ in range(200):
        p = rng.random(4)
        n = rng.integers(0, 30, 4)
        c = rng.random(4) * np.array([0.0001, 0.001, 0.01, 0.1])
        lam = float(rng.choice([0.0, 0.01, 0.05, 0.2]))
        pr = {m: Prediction(float(p[j]), 1.0, cost_usd=float(c[j]), n_outcomes=int(n[j])) for j, m in enumerate(MODELS)}
        assert plan_utility(MODELS, pr, lam)[0][0] == MODELS[int(np.argmax(utilities(p, n, c, lam, 1.0)))]


def test_no_models_plans_nothing():
    assert plan_utility([], {}, 0.02) == ([], [])


def test_router_predicts_cost_from_prices_and_neighbour_tokens_else_recorded_costs():
    store = OutcomeStore(None, 4, "t")
    e = np.array([1, 0, 0, 0], np.float32)
    for i in range(6):
        store.record(
            f"long answers {i}",
            e,
            "math",
            [
                Outcome("a", 1.0, True, tokens_out=400, cost_usd=0.004),
                Outcome("b", 1.0, True, tokens_out=40, cost_usd=0.0001),
            ],
        )
    router = Router(store, probe_background=False)
    nbrs = router.neighbours(e, k=8, min_similarity=0.1)
    by_price = router.predict(
        ["a", "b", "new"],
        {"math": 1.0},
        nbrs,
        prompt_tokens=100,
        prices={"a": (1.0, 10.0), "b": (1.0, 10.0), "new": (1.0, 10.0)},
        default_tokens=256,
    )
    assert by_price["a"].cost_usd == pytest.approx((100 * 1.0 + 400 * 10.0) / 1e6)
    assert by_price["b"].cost_usd == pytest.approx((100 * 1.0 + 40 * 10.0) / 1e6)
    assert by_price["new"].cost_usd == pytest.approx((100 * 1.0 + 256 * 10.0) / 1e6)  # no record: max tokens
    recorded = router.predict(["a", "b", "new"], {"math": 1.0}, nbrs, cost_hint={"new": 0.5})
    assert recorded["a"].cost_usd == pytest.approx(0.004) and recorded["b"].cost_usd == pytest.approx(0.0001)
    assert recorded["new"].cost_usd == 0.5 and recorded["new"].n_outcomes == 0


def test_joint_rates_from_the_store():
    store = OutcomeStore(None, 4, "t")
    rng = np.random.default_rng(1)
    for i in range(200):
        hard = rng.random() < 0.5
        a = float(not hard or rng.random() < 0.2)
        b = float(not hard or rng.random() < 0.3)
        store.record(
            f"s{i}", rng.normal(size=4).astype(np.float32), None, [Outcome("a", a, a > 0.5), Outcome("b", b, b > 0.5)]
        )
    joint = Router(store, probe_background=False).joint()
    rw, rr = joint.ratios("b", "a")
    assert rw < 0.8 < 1.0 < rr  # when a fails, b fails more often than usual
    assert NO_JOINT.ratios("b", "a") == (1.0, 1.0)


def test_a_registered_strategy_is_used_by_the_router_knob_and_the_bench(tmp_path):
    import fusiongraph.eval.bench as bench
    from fusiongraph.context import FusionContext
    from fusiongraph.routing.embeddings import Embedder
    from fusiongraph.routing.strategies import STRATEGIES, register
    from tests.unit.test_bench import TopicEmbeddings, three_model_table

    @register
    class PreferB:  # a strategy in one class and one decorator
        name = "prefer-b-test"
        uses_probe = False
        uses_clusters = False

        def success(self, ev, neighbour_prior_strength):
            return 0.9 if ev.model == "b" else 0.1

    try:
        store = OutcomeStore(None, 4, "t")
        e = np.array([1, 0, 0, 0], np.float32)
        store.record("x", e, "math", [Outcome("a", 1.0, True), Outcome("b", 0.0, False)])
        router = Router(store, probe_background=False)
        route = router.route(
            e,
            {"math": 1.0},
            1.0,
            ["a", "b"],
            ["a", "b"],
            RoutingParams.from_context(
                k=4,
                min_similarity=0.1,
                min_neighbours=1,
                taxonomy_confidence=0.5,
                price_sensitivity=0.0,
                router="prefer-b-test",
            ),
        )
        assert route.plan[0] == "b" and route.predictions["b"].p_success == 0.9
        assert (
            router.route(
                e,
                {"math": 1.0},
                1.0,
                ["a", "b"],
                ["a", "b"],
                RoutingParams.from_context(
                    k=4, min_similarity=0.1, min_neighbours=1, taxonomy_confidence=0.5, price_sensitivity=0.0
                ),
            ).plan[0]
            == "a"
        )  # hybrid: a succeeded
        assert FusionContext(router="prefer-b-test").router == "prefer-b-test"
        with pytest.raises(ValueError, match="router must be one of"):
            FusionContext(router="nope")
        with pytest.raises(ValueError, match="unknown routing strategy"):
            router.predict(["a"], {}, [], mode="nope")
        res = bench.run_bench(
            three_model_table(tmp_path / "t.csv", n=60),
            tmp_path / "out",
            folds=3,
            embedder=Embedder(TopicEmbeddings()),
            quiet=True,
            plot=False,
        )
        assert "prefer-b-test" in res["strategies"] and "hybrid" in res["strategies"]
    finally:
        STRATEGIES.pop("prefer-b-test")


def test_a_model_untried_near_this_subtask_is_explored_here_not_judged_by_its_count_elsewhere():
    from fusiongraph.routing.rule import local_outcomes

    # a full table: every model covered by the same neighbours -> each model's own count, unchanged
    assert local_outcomes({"a": 500, "b": 80}, {"a": 3.0, "b": 3.0}) == {"a": 500.0, "b": 80.0}
    # no neighbours at all: the store-wide counts
    assert local_outcomes({"a": 500, "b": 80}, {"a": 0.0, "b": 0.0}) == {"a": 500.0, "b": 80.0}
    # "new" has 400 outcomes, all on other kinds of subtask: here it counts as untried
    here = local_outcomes({"old": 400, "new": 400}, {"old": 6.0, "new": 0.0})
    assert here == {"old": 400.0, "new": 0.0}
    p = {"flash": 0.6, "mini": 0.7, "pro": 0.8, "big": 0.85}
    known = preds(p)
    for m in known:
        known[m].explore_n = here["old"]
    known["mini"].explore_n = here["new"]  # tried often, but never near this subtask
    plan, _ = plan_utility(MODELS, known, 0.01, explore=1.0)
    assert plan[0] == "mini"  # optimism where it has no record: it is tried here first
    known["mini"].explore_n = None  # judged by its store-wide count instead: the best utility wins
    assert plan_utility(MODELS, known, 0.01, explore=1.0)[0][0] != "mini"


def test_router_predictions_carry_the_local_count():
    """Router.predict fills explore_n from the neighbours (the graph and the bench read the same): b ran
    only on other kinds of subtask, so near this one it counts as untried."""
    store = OutcomeStore(None, 4, "t")
    here, there = np.array([1, 0, 0, 0], np.float32), np.array([0, 1, 0, 0], np.float32)
    for i in range(6):
        store.record(f"here {i}", here, "math", [Outcome("a", 1.0, True)])
        store.record(f"there {i}", there, "math", [Outcome("a", 1.0, True), Outcome("b", 1.0, True)])
    router = Router(store, probe_background=False)
    near = router.predict(["a", "b"], {"math": 1.0}, router.neighbours(here, k=6, min_similarity=0.5))
    assert near["a"].n_outcomes == 12 and near["b"].n_outcomes == 6
    assert near["a"].explore_n == 12 and near["b"].explore_n == 0.0
    far = router.predict(["a", "b"], {"math": 1.0}, router.neighbours(there, k=6, min_similarity=0.5))
    assert far["a"].explore_n == 12 and far["b"].explore_n == 6  # both covered there: their own counts
