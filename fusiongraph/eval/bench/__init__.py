"""Replay benchmark: how well does the graph's routing pick models, on tables of real recorded outcomes?

Every routed strategy is replayed through the one routing code path the graph runs
(:meth:`fusiongraph.routing.router.Router.neighbours`, :meth:`Router.predict` and
:func:`fusiongraph.routing.rule.plan_utility`), on an in-memory :class:`store.outcomes.OutcomeStore` seeded
only with *training* rows: k-fold cross-validation over the table (folds grouped by prompt text, so a
prompt that occurs twice never sits on both sides), or train on TABLE and test on TABLE2 (a test
prompt that also occurs in TABLE is excluded from its own neighbours). Nothing is evaluated on a row
the router was trained on.

Strategies
----------
``single:<model>``
    always that model.
``random``
    uniform random predicted successes (seeded) with the hybrid's predicted costs, through the same rule.
``oracle``
    headline: the cheapest model with the best recorded score on each prompt. Its curve puts the
    recorded scores and costs through the rule.
``taxonomy`` / ``knn`` / ``probe`` / ``hybrid``
    ``Router.predict(mode=...)``: class rates only / neighbours only / the success probe only / the graph's
    hybrid, each with its predicted cost per model (the neighbours' recorded cost shrunk toward the model's
    mean; tables without ``cost:`` columns use the cost proxy below as a per-model hint). The task class is
    the graph's own taxonomy classifier (its class scores; training rows are recorded under the top class),
    as the live graph runs; ``class_column=True`` (``--class-column``) uses the table's ``category``
    instead: gold labels the live graph does not have, and figures made with them say so. The pick is
    ``plan_utility``'s first model: the best ``success - price_sensitivity * cost / mean candidate cost``; the bench
    evaluates it vectorised with :func:`fusiongraph.routing.rule.utilities`, the function plan_utility
    maximises (tests check the two agree row by row).
``cascade`` / ``cascade@A``
    the graph's cascade replayed: ``plan_utility``'s whole plan (hybrid predictions, the store's joint
    outcome rates), paying for every model tried, stopping at the first accepted answer; the answer is
    the accepted one, else the last tried. ``cascade`` uses the recorded score as a perfect judge (accept
    iff score >= ``FusionContext.quality_threshold``): an upper bound. ``cascade@A`` uses a judge that
    agrees with that verdict with probability A (seeded), and plans with ``judge_accuracy=A``.

The knob
--------
Curves sweep ``price_sensitivity`` over ``LAMBDAS`` (0 and 41 values from 0.001 to 10, log-spaced);
the headline quality/cost of a routed strategy is at the graph's default: with the knob left empty
(``FusionContext.price_sensitivity`` None), each fold's training store chooses its operating point with the
live router's own code (:mod:`fusiongraph.routing.operating_point`: the cheapest point of the store's leave-one-out
replay that beats its best single model by a standard error), per strategy; a cascade uses the hybrid's,
raised where the judged cascade replayed on the same store (its own judge accuracy) would cost more than the
best single model (:func:`fusiongraph.routing.operating_point.cap_for_cascade`, as the live graph does);
``price_sensitivity=X`` (``--price-sensitivity``) fixes it. ``info.json`` lists each fold's choice and why.
The oracle's headline is its per-prompt best.

Metrics
-------
Every strategy: ``quality``, ``cost`` (mean per prompt), ``curve`` ((cost, quality) points) and, over
the non-decreasing upper convex hull of its points (what random mixtures of its operating points
reach): ``aiq`` (RouterBench's average improvement in quality: the hull's mean quality over costs from
the cheapest to the costliest single model, 0 below the strategy's cheapest point),
``match_best_cost`` (the least mean cost at which the hull reaches the best single model's quality;
null if never) and ``quality_at_quarter_cost`` (the hull's quality at 25 % of the best single model's
cost), ``oracle_choice`` (how often its pick is the oracle's: the cheapest model with the best score). Routed strategies add
``pick_share`` (model -> share of first picks at the default knob); cascades
add ``tries`` (models called per prompt at the default).

Cost
----
Mean USD per prompt when the table has ``cost:`` columns. Otherwise, for a two-model table, the share of
prompts that call the costlier model (RouteLLM's x-axis); otherwise mean output tokens (``tokens:``
columns) as a proxy; otherwise the model's cost rank scaled to [0, 1]. Models are ordered by cost by
their mean ``cost:``; without costs, in a two-model table the model with the higher mean score is the
costly ("strong") one; with more models, mean ``tokens:``, else mean score.

Two-model tables: RouteLLM's metrics (arXiv 2406.18665)
--------------------------------------------------------
With two models the rule picks the strong model exactly when its predicted advantage
``q_strong - q_weak`` (success plus exploration bonus) exceeds ``price_sensitivity * (c_s - c_w) /
((c_s + c_w) / 2)``: RouteLLM's threshold on the strong model's advantage (the bench checks this against
the vectorised pick at every knob). So each prompt has a routing score ``r = -(q_strong - q_weak)``
and the fine quality vs. % strong calls curve puts a point at every distinct ``r`` (ties switch
together; straight lines between points are random mixtures, as RouteLLM's trapezoids assume).
PGR(x) = (q(x) - q_weak) / (q_strong - q_weak); APGR = (AUC - AUC_weak) / (AUC_strong - AUC_weak) with
trapezoids, exactly as RouteLLM's ``evaluate.py``; CPT(p) = the smallest % of strong calls whose
(linearly interpolated) PGR reaches p, in percent (``null`` if never), on the same test rows. Routed
strategies save that fine curve as ``routellm_curve`` (x: share of strong calls, at most 201 points) beside
``curve`` (the knob sweep in the table's cost unit); cascades are scored on the share of prompts on which
the strong model ran (``strong_share`` at the default), so USD-priced tables give the same APGR at any
price level.

Online mode
-----------
``online=True`` also replays the table in its order (``shuffle_online=True``: shuffled by ``seed``) with
an initially empty store: each window of prompts is routed (hybrid) with only the outcomes recorded
before it, then recorded; per window: the best quality within half the best single model's mean cost
(50 % strong calls on two-model tables), a random router's at that cost, the quality/cost at the default
knob, and on two-model tables the window's APGR (``results["online"]``, ``learning.png``).
``introduce=(MODEL, N)`` hides MODEL's outcomes before prompt N and from then on records its outcome only
where the cascade's plan tried it (the live graph's bandit feedback), and reports how many prompts pass
until routing uses it at half its share in the offline replay (``results["online"]["introduce"]``).

Modules
-------
:mod:`~fusiongraph.eval.bench.metrics` (cost model, RouteLLM and RouterBench metrics),
:mod:`~fusiongraph.eval.bench.replay` (stores, routing, picks, cascade, evaluation),
:mod:`~fusiongraph.eval.bench.online` (online replay), :mod:`~fusiongraph.eval.bench.plots` (plots and the console
table) and :mod:`~fusiongraph.eval.bench.run` (``run_bench``). Everything is re-exported here.
"""

from __future__ import annotations

from fusiongraph.eval.bench.metrics import (
    CostModel,
    _downsample,
    cost_model,
    hull,
    hull_quality,
    many_model_metrics,
    routellm_metrics,
    routing_score,
    two_model_curve,
)
from fusiongraph.eval.bench.online import introduced_summary, run_online
from fusiongraph.eval.bench.plots import plot_frontier, plot_learning, print_table
from fusiongraph.eval.bench.replay import (
    LAMBDAS,
    Replay,
    _build_store,
    _check_two_model,
    _folds,
    _record,
    _route_rows,
    evaluate,
    replay_pick,
)
from fusiongraph.eval.bench.run import _embed, _load, _reorder, default_cache_path, run_bench
from fusiongraph.eval.tables import TableError
from fusiongraph.routing.operating_point import _predictions, replay_cascade

__all__ = [
    "LAMBDAS",
    "CostModel",
    "Replay",
    "TableError",
    "cost_model",
    "default_cache_path",
    "evaluate",
    "hull",
    "hull_quality",
    "introduced_summary",
    "many_model_metrics",
    "plot_frontier",
    "plot_learning",
    "print_table",
    "replay_cascade",
    "replay_pick",
    "routellm_metrics",
    "routing_score",
    "run_bench",
    "run_online",
    "two_model_curve",
    # private helpers, re-exported for the tests
    "_build_store",
    "_check_two_model",
    "_downsample",
    "_embed",
    "_folds",
    "_load",
    "_predictions",
    "_record",
    "_reorder",
    "_route_rows",
]
