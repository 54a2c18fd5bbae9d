"""The synthetic tables' Bayes-router bound (benchmarks/synth_bound.py): its expectations match the table."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import synth_bound as sb  # noqa: E402
import synth_tables as st  # noqa: E402


def test_expected_success_and_cost_match_what_the_table_recorded():
    table = st.generate(5, 1500)
    q, c = sb.expected(table, draws=300)
    assert q.shape == c.shape == table["scores"].shape
    assert ((q > 0) & (q < 1)).all()
    # per model, the mean expected success is the mean recorded score (1500 Bernoulli rows: sd ~0.012)
    assert np.abs(q.mean(0) - table["scores"].mean(0)).max() < 0.045
    # and the expected cost the recorded mean cost, within 10 %
    assert np.abs(c.mean(0) / table["costs"].mean(0) - 1).max() < 0.10


def test_the_bound_routes_better_than_a_single_model_and_its_frontier_grows_with_spend():
    table = st.generate(6, 1500)
    q, c = sb.expected(table, draws=200)
    curve = sb.frontier(table, q, c, points=60)
    costs = [x for x, _ in curve]
    # a higher price of quality spends less (recorded costs: close picks may swap by a hair)
    assert all(b <= a * 1.02 for a, b in zip(costs, costs[1:])) and costs[-1] < costs[0] / 10
    best = table["scores"].mean(0).max()
    assert max(y for _, y in curve) > best  # knowing the generator beats every single model
    r = sb.bound(6, 1500, draws=200)
    assert r["bayes_router"]["top_quality"] > r["best_single"]["quality"]
    assert r["bayes_router"]["match_best_cost_pct"] is not None and r["bayes_router"]["match_best_cost_pct"] < 100
