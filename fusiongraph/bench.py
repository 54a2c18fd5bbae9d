"""Replay benchmark: how well does the graph's routing pick models, on tables of real recorded outcomes?

Every routed strategy is replayed through the one routing code path the graph runs
(:meth:`fusiongraph.routing.Router.neighbours`, :meth:`Router.predict` and
:func:`fusiongraph.routing.plan_utility`), on an in-memory :class:`store.outcomes.OutcomeStore` seeded
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
    ``plan_utility``'s first model: the best ``success - price_sensitivity * log2(cost)``; the bench
    evaluates it vectorised with :func:`fusiongraph.routing.utilities`, the function plan_utility
    maximises (tests check the two agree row by row).
``cascade`` / ``cascade@A``
    the graph's cascade replayed: ``plan_utility``'s whole plan (hybrid predictions, the store's joint
    outcome rates), paying for every model tried, stopping at the first accepted answer; the answer is
    the accepted one, else the last tried. ``cascade`` uses the recorded score as a perfect judge (accept
    iff score >= ``FusionContext.quality_threshold``): an upper bound. ``cascade@A`` uses a judge that
    agrees with that verdict with probability A (seeded), and plans with ``judge_accuracy=A``.

The knob
--------
Curves sweep ``price_sensitivity`` over ``LAMBDAS`` (0 and 33 values from 0.001 to 0.5, log-spaced);
the headline quality/cost of a routed strategy is at the graph's default
(``FusionContext.price_sensitivity``); the oracle's headline is its per-prompt best.

Metrics
-------
Every strategy: ``quality``, ``cost`` (mean per prompt), ``curve`` ((cost, quality) points) and, over
the non-decreasing upper convex hull of its points (what random mixtures of its operating points
reach): ``aiq`` (RouterBench's average improvement in quality: the hull's mean quality over costs from
the cheapest to the costliest single model, 0 below the strategy's cheapest point),
``match_best_cost`` (the least mean cost at which the hull reaches the best single model's quality;
null if never) and ``quality_at_quarter_cost`` (the hull's quality at 25 % of the best single model's
cost). Routed strategies add ``pick_share`` (model -> share of first picks at the default knob); cascades
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
``q_strong - q_weak`` (success plus exploration bonus) exceeds ``price_sensitivity * (log2(c_s + f) -
log2(c_w + f))``: RouteLLM's threshold on the strong model's advantage (the bench checks this against
the vectorised pick at every knob). So each prompt has a routing score ``r = -(q_strong - q_weak)``
and the fine quality vs. % strong calls curve puts a point at every distinct ``r`` (ties switch
together; straight lines between points are random mixtures, as RouteLLM's trapezoids assume).
PGR(x) = (q(x) - q_weak) / (q_strong - q_weak); APGR = (AUC - AUC_weak) / (AUC_strong - AUC_weak) with
trapezoids, exactly as RouteLLM's ``evaluate.py``; CPT(p) = the smallest % of strong calls whose
(linearly interpolated) PGR reaches p, in percent (``null`` if never), on the same test rows. The curve
saved for such tables is the fine curve (at most 201 points).

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
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from platformdirs import user_cache_dir

from fusiongraph.context import FusionContext
from fusiongraph.strategies import STRATEGIES
from fusiongraph.routing import (COST_FLOOR, JointRates, Prediction, Router, explore_bonus, plan_utility,
                                 utilities)
from fusiongraph.tables import OutcomeTable, TableError, load_table, row_outcomes
from store.outcomes import OutcomeStore, text_hash

LAMBDAS = np.round(np.concatenate([[0.0], np.geomspace(0.001, 0.5, 33)]), 6)  # price_sensitivity sweep


def _context_defaults() -> dict:
    """The graph's routing knobs (k, min_similarity, quality_threshold) from FusionContext's defaults."""
    c = FusionContext()
    return {"k": c.k, "min_similarity": c.min_similarity, "accept": c.quality_threshold,
            "price_sensitivity": c.price_sensitivity, "explore": c.explore}


def default_cache_path() -> Path:
    return Path(user_cache_dir("fusiongraph")) / "embeddings.sqlite"


# ---------------------------------------------------------------------------------------------- costs
@dataclass
class CostModel:
    order: list[int]  # model column indices, cheapest first
    per_prompt: np.ndarray  # (n, m) cost of each model's answer on each (test) prompt
    unit: str
    means: np.ndarray  # (m,) each model's mean cost on the training rows

    def models_by_cost(self, models: list[str]) -> list[str]:
        return [models[j] for j in self.order]


def cost_model(train: OutcomeTable, test: OutcomeTable) -> CostModel:
    m = len(train.models)
    n = len(test)

    def filled(matrix: np.ndarray, ref: np.ndarray) -> np.ndarray:
        means = np.nanmean(ref, axis=0)
        means = np.where(np.isnan(means), 0.0, means)
        return np.where(np.isnan(matrix), means, matrix)

    def means(ref: np.ndarray) -> np.ndarray:
        return np.nan_to_num(np.nanmean(ref, axis=0), nan=0.0)

    if train.costs is not None and test.costs is not None:
        order = list(np.argsort(np.nanmean(train.costs, axis=0), kind="stable"))
        return CostModel(order, filled(test.costs, train.costs), "USD per prompt", means(train.costs))
    if m == 2:
        order = list(np.argsort(np.nanmean(train.scores, axis=0), kind="stable"))
        per = np.zeros((n, 2))
        per[:, order[1]] = 1.0
        return CostModel(order, per, "share of calls to the strong model", per[0].copy())
    if train.tokens is not None and test.tokens is not None:
        order = list(np.argsort(np.nanmean(train.tokens, axis=0), kind="stable"))
        return CostModel(order, filled(test.tokens, train.tokens), "output tokens per prompt (cost proxy)",
                         means(train.tokens))
    order = list(np.argsort(np.nanmean(train.scores, axis=0), kind="stable"))
    per = np.zeros((n, m))
    for rank, j in enumerate(order):
        per[:, j] = rank / max(m - 1, 1)
    return CostModel(order, per, "cost rank (0 = cheapest, 1 = costliest)", per[0].copy() if n else np.zeros(m))


# ----------------------------------------------------------------------------------------- metrics
def routellm_metrics(xs: np.ndarray, qs: np.ndarray, q_weak: float, q_strong: float) -> dict:
    """APGR and CPT(50 %), CPT(80 %) of a quality vs. strong-call-fraction curve (xs in [0, 1])."""
    order = np.lexsort((qs, xs))
    xs, qs = np.asarray(xs, float)[order], np.asarray(qs, float)[order]
    gap = q_strong - q_weak
    if abs(gap) < 1e-12 or len(xs) < 2 or xs[-1] - xs[0] < 1e-12:
        return {"apgr": None, "cpt50": None, "cpt80": None}
    auc = np.trapezoid(qs, xs)
    width = xs[-1] - xs[0]
    apgr = (auc - q_weak * width) / (q_strong * width - q_weak * width)
    pgr = (qs - q_weak) / gap
    out = {"apgr": float(apgr)}
    for key, target in (("cpt50", 0.5), ("cpt80", 0.8)):
        hit = np.flatnonzero(pgr >= target - 1e-12)
        if not len(hit):
            out[key] = None
            continue
        i = int(hit[0])
        if i == 0:
            x = xs[0]
        else:
            x0, x1, p0, p1 = xs[i - 1], xs[i], pgr[i - 1], pgr[i]
            x = x0 + (target - p0) / (p1 - p0) * (x1 - x0) if p1 != p0 else x1
        out[key] = float(100.0 * x)
    return out


# ------------------------------------------------------------------------ many-model metrics
def hull(points) -> np.ndarray:
    """The non-decreasing upper convex hull of (cost, quality) points: what mixtures of them can reach."""
    pts = sorted({(float(c), float(q)) for c, q in points})
    best: list[tuple[float, float]] = []
    for c, q in pts:  # non-decreasing: drop points no better than a cheaper one
        if not best or q > best[-1][1] + 1e-12:
            if best and abs(best[-1][0] - c) < 1e-15:
                best.pop()
            best.append((c, q))
    upper: list[tuple[float, float]] = []
    for pt in best:  # upper hull (concave from above), monotone chain
        while len(upper) >= 2:
            (c1, q1), (c2, q2) = upper[-2], upper[-1]
            if (c2 - c1) * (pt[1] - q1) - (q2 - q1) * (pt[0] - c1) >= 0:
                upper.pop()
            else:
                break
        upper.append(pt)
    return np.asarray(upper, dtype=float).reshape(-1, 2)


def hull_quality(h: np.ndarray, cost: float) -> float | None:
    """Best quality reachable at mean cost <= `cost` on hull `h`; None below its cheapest point."""
    if not len(h) or cost < h[0, 0] - 1e-15:
        return None
    return float(np.interp(cost, h[:, 0], h[:, 1]))  # flat past the last point


def many_model_metrics(points, c_min: float, c_max: float, best_quality: float, best_cost: float) -> dict:
    """RouterBench's AIQ, the cost of matching the best single model, and quality at a quarter of its cost.

    AIQ = mean over costs in [c_min, c_max] (cheapest and costliest single model) of the hull's quality,
    0 below the strategy's cheapest point. ``match_best_cost`` = the least mean cost at which the hull
    reaches `best_quality` (None if never); ``quality_at_quarter_cost`` = the hull's quality at 25 % of
    `best_cost` (None when the strategy has no point that cheap).
    """
    h = hull(points)
    out = {"aiq": None, "match_best_cost": None, "quality_at_quarter_cost": None}
    if c_max > c_min:
        grid = np.linspace(c_min, c_max, 2001)
        vals = [hull_quality(h, c) for c in grid]
        out["aiq"] = float(np.trapezoid([0.0 if v is None else v for v in vals], grid) / (c_max - c_min))
    reach = np.flatnonzero(h[:, 1] >= best_quality - 1e-9) if len(h) else []
    if len(reach):
        i = int(reach[0])
        if i == 0:
            out["match_best_cost"] = float(h[0, 0])
        else:
            (c0, q0), (c1, q1) = h[i - 1], h[i]
            out["match_best_cost"] = float(c0 + (best_quality - q0) / (q1 - q0) * (c1 - c0))
    out["quality_at_quarter_cost"] = hull_quality(h, 0.25 * best_cost)
    return out


def routing_score(q: np.ndarray, weak: int, strong: int) -> np.ndarray:
    """Two models: per prompt, the negated predicted advantage of the strong one, -(q_strong - q_weak).

    The utility rule picks the strong model exactly when ``r < -threshold``, threshold =
    ``price_sensitivity * (g_strong - g_weak)`` (module docstring); q is the success with its bonus.
    """
    return -(q[:, strong] - q[:, weak])


def two_model_curve(q: np.ndarray, scores: np.ndarray, weak: int, strong: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fine quality vs. strong-share curve of every threshold (see the module docstring)."""
    r = routing_score(q, weak, strong)
    n = len(r)
    sw, ss = scores[:, weak], scores[:, strong]
    order = np.argsort(r, kind="stable")
    cum = np.concatenate([[0.0], np.cumsum((ss - sw)[order])])
    rs = r[order]
    ends = [0] + [i + 1 for i in range(n) if i + 1 == n or rs[i + 1] != rs[i]]
    xs = np.asarray([c / n for c in ends])
    qs = np.asarray([(sw.sum() + cum[c]) / n for c in ends])
    return r, xs, qs


def _downsample(xs: np.ndarray, qs: np.ndarray, most: int = 201) -> list[list[float]]:
    if len(xs) > most:
        keep = np.unique(np.round(np.linspace(0, len(xs) - 1, most)).astype(int))
        xs, qs = xs[keep], qs[keep]
    return [[round(float(x), 6), round(float(q), 6)] for x, q in zip(xs, qs)]


# ------------------------------------------------------------------------------------ replaying
@dataclass
class Replay:
    """Pooled out-of-fold predictions for the test rows."""

    p: dict[str, np.ndarray] = field(default_factory=dict)  # mode -> (n, m) predicted success
    c: dict[str, np.ndarray] = field(default_factory=dict)  # mode -> (n, m) predicted cost
    n_out: np.ndarray | None = None  # (n, m) each model's outcome count in the row's training store
    joint: list[JointRates] = field(default_factory=list)  # per training store (fold)
    joint_of: np.ndarray | None = None  # (n,) index into `joint` of the row's store
    router_calls: int = 0

    @classmethod
    def empty(cls, n: int, m: int, modes) -> "Replay":
        return cls({mo: np.zeros((n, m)) for mo in modes}, {mo: np.zeros((n, m)) for mo in modes},
                   np.zeros((n, m), dtype=np.int64), [], np.zeros(n, dtype=int))


def _predictions(p_row, c_row, n_row, models: list[str]) -> dict[str, Prediction]:
    """The Prediction objects plan_utility reads (success, cost, outcome count)."""
    return {m: Prediction(float(p_row[j]), cost_usd=float(c_row[j]), n_outcomes=int(n_row[j]))
            for j, m in enumerate(models)}


def replay_pick(p: np.ndarray, c: np.ndarray, n_out: np.ndarray, by_cost_idx: list[int], lam: float,
                explore: float) -> np.ndarray:
    """Column index of plan_utility's first model for every row (ties to the cheaper model), among the
    columns of `by_cost_idx` (cheapest first)."""
    order = np.asarray(by_cost_idx)
    u = utilities(p[:, order], n_out[:, order], c[:, order], lam, explore)
    return order[np.argmax(u, axis=1)]


def replay_cascade(p: np.ndarray, c: np.ndarray, n_out: np.ndarray, scores: np.ndarray, costs: np.ndarray,
                   models: list[str], by_cost: list[str], lam: float, accept: float, *, explore: float,
                   judge_accuracy: float, joints: list[JointRates], joint_of: np.ndarray,
                   judge_rng: np.random.Generator | None = None, plan_accuracy: float = 0.8
                   ) -> tuple[float, float, float]:
    """The graph's cascade replayed: plan_utility's plan, each answer judged, paying for every model tried.

    With ``judge_rng`` the judge agrees with the recorded outcome (score >= accept) with probability
    `judge_accuracy`; without it the recorded score is a perfect judge. The answer is the first accepted
    one, else the last tried (the plan ends with its strongest hope). Returns (quality, cost, mean tries).
    """
    col = {m: j for j, m in enumerate(models)}
    total_q = total_c = tries = 0.0
    for i in range(len(p)):
        plan, _ = plan_utility(by_cost, _predictions(p[i], c[i], n_out[i], models), lam,
                               judge_accuracy=plan_accuracy, explore=explore, joint=joints[joint_of[i]])
        answer = None
        for m in plan:
            j = col[m]
            total_c += costs[i, j]
            tries += 1
            right = scores[i, j] >= accept
            accepted = right if judge_rng is None else (right if judge_rng.random() < judge_accuracy else not right)
            answer = scores[i, j]
            if accepted:
                break
        total_q += answer
    n = len(p)
    return total_q / n, total_c / n, tries / n


def _build_store(embedder, texts: list[str], vectors: np.ndarray, classes: list[str | None],
                 scores: np.ndarray, costs: np.ndarray, tokens: np.ndarray | None,
                 models: list[str]) -> tuple[OutcomeStore, dict[str, int]]:
    """An in-memory store seeded with these (training) rows, and its subtask id by prompt-text hash."""
    store = OutcomeStore(None, vectors.shape[1], embedder.name)
    known: dict[str, int] = {}
    _record(store, texts, vectors, classes, scores, costs, tokens, models, known)
    return store, known


def _record(store, texts, vectors, classes, scores, costs, tokens, models, known: dict[str, int]) -> None:
    items = [(text, vectors[i], classes[i],
              row_outcomes(models, scores[i], costs[i] if costs is not None else None,
                           tokens[i] if tokens is not None else None))
             for i, text in enumerate(texts)]
    if items:
        for text, sid in zip(texts, store.record_many(items)):
            known[text_hash(text)] = sid


def _route_rows(router: Router, models: list[str], vectors: np.ndarray, class_scores: list[dict],
                texts: list[str], rows: np.ndarray, k: int, min_similarity: float, modes, out: Replay,
                known: dict[str, int], cost_hint: dict[str, float] | None = None) -> None:
    """Route each row with the store's outcomes; a stored subtask with the row's exact text is left out."""
    out.joint.append(router.joint())
    fold = len(out.joint) - 1
    for i in rows:
        sid = known.get(text_hash(texts[i]))
        nbrs = router.neighbours(vectors[i], k, min_similarity, exclude_ids={sid} if sid is not None else None)
        for mode in modes:
            preds = router.predict(models, class_scores[i], nbrs, mode=mode, embedding=vectors[i],
                                   cost_hint=cost_hint)
            out.router_calls += 1
            for j, m in enumerate(models):
                out.p[mode][i, j] = preds[m].p_success
                out.c[mode][i, j] = preds[m].cost_usd if preds[m].cost_usd is not None else 0.0
                out.n_out[i, j] = preds[m].n_outcomes
        out.joint_of[i] = fold


def _folds(texts: list[str], folds: int, seed: int) -> np.ndarray:
    groups: dict[str, int] = {}
    gid = np.array([groups.setdefault(t, len(groups)) for t in texts])
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(groups))
    fold_of = np.empty(len(groups), dtype=int)
    fold_of[perm] = np.arange(len(groups)) % folds
    return fold_of[gid]


# ----------------------------------------------------------------------------------------- driver
def _embed(embedder, texts: list[str], desc: str, quiet: bool) -> np.ndarray:
    from tqdm import tqdm

    with tqdm(total=len(texts), desc=desc, unit="prompt", disable=quiet, leave=False) as bar:
        return embedder.embed(texts, progress=bar.update)


def _load(path, label: str) -> tuple[OutcomeTable, int]:
    table = load_table(path, allow_missing=True)
    keep = table.complete_rows()
    dropped = len(table) - len(keep)
    if not len(keep):
        raise TableError(f"{path}: no row has a score for every model")
    return (table.subset(keep) if dropped else table), dropped


def run_bench(table_path, out_dir, test_path=None, folds: int = 5, online: bool = False, seed: int = 0,
              cache_path=None, *, shuffle_online: bool = False, embedder=None, k: int | None = None,
              min_similarity: float | None = None, router_params: dict | None = None, quiet: bool = False,
              plot: bool = True, progress: Callable[[str], None] | None = None, class_column: bool = False,
              judge_accuracies=(0.85,), price_sensitivity: float | None = None, explore: float | None = None,
              introduce: tuple[str, int] | None = None) -> dict:
    """Replay the routing strategies on an outcome table; write results.json and frontier.png to out_dir.

    ``embedder`` defaults to MiniLM with an on-disk cache at ``cache_path`` (default: the user cache dir);
    ``k``/``min_similarity``/``price_sensitivity``/``explore`` default to FusionContext's; ``router_params``
    override Router's fields. Task classes come from the graph's own taxonomy classifier unless
    ``class_column`` (the table's ``category``, a gold label the live graph does not have). ``cascade@A`` is
    replayed for each A in ``judge_accuracies``. ``introduce=(MODEL, N)`` (online only) hides MODEL's
    outcomes before prompt N, and after it records MODEL's outcome only where the cascade tried it.
    Returns the results dict, also written to ``out_dir/results.json`` as exactly
    ``{"strategies": {NAME: {"quality", "cost", ["apgr", "cpt50", "cpt80",] "curve"}}, ["online": {...}]}``;
    run metadata (models by cost, cost unit, class source, knobs, timings) goes to ``out_dir/info.json``.
    """
    started = time.perf_counter()
    defaults = _context_defaults()
    k = defaults["k"] if k is None else int(k)
    min_similarity = defaults["min_similarity"] if min_similarity is None else float(min_similarity)
    accept = defaults["accept"]
    lam = defaults["price_sensitivity"] if price_sensitivity is None else float(price_sensitivity)
    explore = defaults["explore"] if explore is None else float(explore)
    router_params = dict(router_params or {})
    say = progress or ((lambda s: None) if quiet else (lambda s: print(s, flush=True)))

    train, dropped = _load(table_path, "TABLE")
    if dropped:
        say(f"{table_path}: left out {dropped} row(s) without a score for every model")
    if test_path is not None:
        test, dropped2 = _load(test_path, "TABLE2")
        if dropped2:
            say(f"{test_path}: left out {dropped2} row(s) without a score for every model")
        if set(test.models) != set(train.models):
            raise TableError(f"{test_path}: models {sorted(test.models)} differ from {table_path}'s "
                             f"{sorted(train.models)}")
        test = _reorder(test, train.models)
    else:
        if folds < 2:
            raise ValueError(f"folds must be >= 2, got {folds}")
        if len({*train.prompts}) < folds:
            raise TableError(f"{table_path}: {len(train)} rows are too few for {folds} folds")
        test = train
    models = train.models
    m = len(models)

    if embedder is None:
        from fusiongraph.embeddings import Embedder, MiniLMEmbeddings

        embedder = Embedder(MiniLMEmbeddings(), cache_path=Path(cache_path) if cache_path else default_cache_path())
    t0 = time.perf_counter()
    vec_train = _embed(embedder, train.prompts, "embedding", quiet)
    vec_test = vec_train if test is train else _embed(embedder, test.prompts, "embedding TABLE2", quiet)
    embed_s = time.perf_counter() - t0

    if class_column and (train.categories is None or test.categories is None):
        raise TableError(f"--class-column: {table_path if train.categories is None else test_path} has no "
                         f"'category' column")
    if class_column:
        cls_train = list(train.categories)
        cls_test = list(test.categories)
        scores_test = [{c: 1.0} if c else {} for c in cls_test]
        class_source = "category column (gold labels)"
    else:
        from fusiongraph.taxonomy import Taxonomy
        from store import DEFAULT_TAXONOMY

        taxonomy = Taxonomy.from_yaml(DEFAULT_TAXONOMY)
        c_train = [taxonomy.classify(v, embedder) for v in vec_train]
        c_test = c_train if test is train else [taxonomy.classify(v, embedder) for v in vec_test]
        cls_train = [c.task_class for c in c_train]
        cls_test = [c.task_class for c in c_test]
        scores_test = [c.scores for c in c_test]
        class_source = "taxonomy classifier"

    costs = cost_model(train, test)
    by_cost = costs.models_by_cost(models)
    n = len(test)
    modes = tuple(STRATEGIES)  # every registered routing strategy ("taxonomy", "knn", "probe", "hybrid", ...)
    replay = Replay.empty(n, m, modes)
    hint = None if costs.unit.startswith("USD") else dict(zip(models, costs.means.tolist()))
    if introduce is not None and (not online or introduce[0] not in models or m < 3):
        raise ValueError(f"--introduce needs --online, a table of 3 or more models and one of its models "
                         f"({', '.join(models)}), got {introduce[0]!r}")

    t0 = time.perf_counter()
    if test is train:
        fold_of = _folds(train.prompts, folds, seed)
        for f in range(folds):
            tr, te = np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)
            store, known = _build_store(embedder, [train.prompts[i] for i in tr], vec_train[tr], [cls_train[i] for i in tr],
                                 train.scores[tr], train.costs[tr] if train.costs is not None else None,
                                 train.tokens[tr] if train.tokens is not None else None, models)
            router = Router(store, probe_background=False, **router_params)
            _route_rows(router, models, vec_test, scores_test, test.prompts, te, k, min_similarity, modes, replay,
                        known, hint)
            store.close()
            say(f"fold {f + 1}/{folds}: trained on {len(tr)} rows, tested on {len(te)}")
    else:
        store, known = _build_store(embedder, train.prompts, vec_train, cls_train, train.scores, train.costs,
                                    train.tokens, models)
        router = Router(store, probe_background=False, **router_params)
        _route_rows(router, models, vec_test, scores_test, test.prompts, np.arange(n), k, min_similarity,
                    modes, replay, known, hint)
        store.close()
    route_s = time.perf_counter() - t0

    rng = np.random.default_rng(seed)
    replay.p["random"] = rng.random((n, m))

    strategies = evaluate(test.scores, costs, models, by_cost, replay, accept, judge_accuracies=judge_accuracies,
                          explore=explore, default_lambda=lam, seed=seed)
    results = {"strategies": strategies}
    info = {
        "table": str(table_path), "test_table": str(test_path) if test_path else None,
        "folds": folds if test_path is None else None, "rows": n, "models_by_cost": by_cost,
        "cost_unit": costs.unit, "class_source": class_source,
        "price_sensitivity": lam, "explore": explore, "judge_accuracies": list(judge_accuracies),
        "k": k, "min_similarity": min_similarity, "accept_threshold": accept,
        "router": {f: getattr(Router, f) for f in ("class_prior_strength", "neighbour_prior_strength",
                                                   "similarity_power", "probe_c", "probe_min_outcomes")} | router_params,
        "seed": seed, "router_predict_calls": replay.router_calls,
        "seconds": {"embed": round(embed_s, 2), "route": round(route_s, 2)},
    }
    if online:
        results["online"] = run_online(test if test_path else train, vec_test if test_path else vec_train,
                                       cls_test if test_path else cls_train, scores_test, costs, models,
                                       by_cost, strategies, k, min_similarity, router_params, embedder,
                                       order_seed=seed if shuffle_online else None, lam=lam, explore=explore,
                                       introduce=introduce)
    info["seconds"]["total"] = round(time.perf_counter() - started, 2)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    (out_dir / "info.json").write_text(json.dumps(info, indent=2, default=float))
    if plot:
        plot_frontier(results, out_dir / "frontier.png", info)
        if online:
            plot_learning(results["online"], out_dir / "learning.png")
    if not quiet:
        print_table(results, info)
    return results


def _reorder(table: OutcomeTable, models: list[str]) -> OutcomeTable:
    idx = [table.models.index(m) for m in models]
    return OutcomeTable(table.prompts, table.categories, list(models), table.scores[:, idx],
                        table.costs[:, idx] if table.costs is not None else None,
                        table.tokens[:, idx] if table.tokens is not None else None, table.path)


def evaluate(scores: np.ndarray, costs: CostModel, models: list[str], by_cost: list[str], replay: Replay,
             accept: float, *, judge_accuracies=(0.85,), explore: float = 1.0, default_lambda: float | None = None,
             seed: int = 0) -> dict:
    """Headline (at the default price_sensitivity), curve (sweeping it) and metrics of every strategy."""
    default_lambda = _context_defaults()["price_sensitivity"] if default_lambda is None else default_lambda
    n, m = scores.shape
    rows = np.arange(n)
    per = costs.per_prompt
    out: dict[str, dict] = {}
    two = m == 2
    singles = {j: (float(scores[:, j].mean()), float(per[:, j].mean())) for j in range(m)}
    best_j = max(singles, key=lambda j: (singles[j][0], -singles[j][1]))
    best_q, best_c = singles[best_j]
    c_min, c_max = min(c for _, c in singles.values()), max(c for _, c in singles.values())
    weak, strong = (costs.order[0], costs.order[-1])
    q_weak, q_strong = float(scores[:, weak].mean()), float(scores[:, strong].mean())

    def metrics(points) -> dict:
        return many_model_metrics(points, c_min, c_max, best_q, best_c)

    for j, name in enumerate(models):
        q, c = singles[j]
        entry = {"quality": q, "cost": c, "curve": [[round(c, 6), round(q, 6)]], **metrics([(c, q)])}
        if two:
            entry.update(apgr=None, cpt50=None, cpt80=None)
        out[f"single:{name}"] = entry

    lambdas = sorted({*LAMBDAS.tolist(), float(default_lambda)})
    no_bonus = np.full((n, m), 10 ** 9, dtype=np.int64)
    sources = {"random": (replay.p["random"], replay.c["hybrid"], replay.n_out),
               "oracle": (scores, per, no_bonus)}
    sources.update({mode: (replay.p[mode], replay.c[mode], replay.n_out) for mode in replay.p if mode != "random"})
    for name, (p, c, n_out) in sources.items():
        sweep = []
        for lam in lambdas:
            pick = replay_pick(p, c, n_out, costs.order, lam, explore)
            sweep.append((lam, float(scores[rows, pick].mean()), float(per[rows, pick].mean())))
            if two:
                _check_two_model(p, c, n_out, pick, weak, strong, lam, explore)
        head = next(s for s in sweep if abs(s[0] - default_lambda) < 1e-12)
        entry = {"quality": head[1], "cost": head[2]}
        pick = replay_pick(p, c, n_out, costs.order, default_lambda, explore)
        entry["pick_share"] = {models[j]: round(float((pick == j).mean()), 4) for j in range(m) if (pick == j).any()}
        if name == "oracle":  # headline: the cheapest model with the best score on each prompt
            best = scores.max(axis=1, keepdims=True)
            rank = np.empty(m, int)
            rank[costs.order] = np.arange(m)
            pick = np.argmin(np.where(scores >= best - 1e-12, rank[None, :], m + 1), axis=1)
            entry = {"quality": float(scores[rows, pick].mean()), "cost": float(per[rows, pick].mean()),
                     "pick_share": {models[j]: round(float((pick == j).mean()), 4) for j in range(m) if (pick == j).any()}}
        pts = sorted({(round(c_, 6), round(q_, 6)) for _, q_, c_ in sweep})
        entry["curve"] = [list(pt) for pt in pts]
        entry.update(metrics(pts))
        if two:
            q_eff = np.minimum(p + explore_bonus(p, n_out, explore), 0.999)
            _, xs, qs = two_model_curve(q_eff, scores, weak, strong)
            entry["curve"] = _downsample(xs, qs)
            entry.update(routellm_metrics(xs, qs, q_weak, q_strong))
        out[name] = entry

    if "hybrid" in replay.p:
        p, c = replay.p["hybrid"], replay.c["hybrid"]
        cascade_lambdas = sorted({*LAMBDAS[::3].tolist(), float(default_lambda)})
        for acc in (None, *judge_accuracies):
            name = "cascade" if acc is None else f"cascade@{acc:g}"
            sweep = []
            for lam in cascade_lambdas:
                rng = None if acc is None else np.random.default_rng(seed)
                q, cst, tries = replay_cascade(p, c, replay.n_out, scores, per, models, by_cost, lam, accept,
                                               explore=explore, judge_accuracy=acc or 1.0, joints=replay.joint,
                                               joint_of=replay.joint_of, judge_rng=rng,
                                               plan_accuracy=0.999 if acc is None else acc)
                sweep.append((lam, q, cst, tries))
            head = next(s for s in sweep if abs(s[0] - default_lambda) < 1e-12)
            pts = sorted({(round(c_, 6), round(q_, 6)) for _, q_, c_, _ in sweep})
            entry = {"quality": head[1], "cost": head[2], "tries": round(head[3], 4), "curve": [list(x) for x in pts],
                     **metrics(pts)}
            if two:
                xs = np.array([0.0, *[x for x, _ in pts], 1.0])
                qs = np.array([q_weak, *[y for _, y in pts], q_strong])
                entry.update(routellm_metrics(xs, qs, q_weak, q_strong))
            out[name] = entry
    return out


def _check_two_model(p, c, n_out, pick, weak, strong, lam, explore) -> None:
    """With two models the utility rule must be RouteLLM's threshold on the strong model's advantage."""
    q = np.minimum(p + explore_bonus(p, n_out, explore), 0.999)
    cc = np.nan_to_num(c, nan=0.0)
    top = cc.max(axis=1)
    floor = np.where(top > 0, COST_FLOOR * top, 1.0)
    threshold = lam * (np.log2(cc[:, strong] + floor) - np.log2(cc[:, weak] + floor))
    expected = np.where(routing_score(q, weak, strong) < -threshold - 1e-12, strong, weak)
    close = np.abs(routing_score(q, weak, strong) + threshold) < 1e-9  # float ties may go either way
    bad = np.flatnonzero((expected != pick) & ~close)
    if len(bad):
        i = int(bad[0])
        raise AssertionError(f"two-model threshold rule disagrees with plan_utility at price_sensitivity={lam} "
                             f"on row {i}: q={q[i].tolist()}, cost={cc[i].tolist()}")


# ------------------------------------------------------------------------------------------ online
def run_online(table: OutcomeTable, vectors: np.ndarray, classes: list, class_scores: list[dict],
               costs: CostModel, models: list[str], by_cost: list[str], strategies: dict, k: int,
               min_similarity: float, router_params: dict, embedder, windows: int = 20,
               order_seed: int | None = None, *, lam: float, explore: float,
               introduce: tuple[str, int] | None = None) -> dict:
    """Replay the table in order (or shuffled by `order_seed`), routing each window with only the outcomes
    recorded before it. With `introduce` = (MODEL, N): MODEL's outcomes are hidden before prompt N; from N
    on, MODEL's outcome is recorded only on prompts where the cascade plan (at `lam`) tried it, as the live
    graph records only what it ran (bandit feedback) -- so a new model is learnt only if it is explored."""
    n, m = table.scores.shape
    two = m == 2
    best_single = max((s for s in strategies if s.startswith("single:")), key=lambda s: strategies[s]["quality"])
    budget = 0.5 if two else 0.5 * strategies[best_single]["cost"]
    store = OutcomeStore(None, vectors.shape[1], embedder.name)
    known: dict[str, int] = {}
    router = Router(store, probe_background=False, **router_params)
    size = max(1, math.ceil(n / windows))
    per = costs.per_prompt
    hint = None if costs.unit.startswith("USD") else dict(zip(models, costs.means.tolist()))
    points = []
    replay = Replay.empty(n, m, ("hybrid",))
    seen_outcomes = 0
    new_j = models.index(introduce[0]) if introduce else None
    without_new = [j for j in costs.order if j != new_j]
    order = np.arange(n) if order_seed is None else np.random.default_rng(order_seed).permutation(n)
    for start in range(0, n, size):
        rows = order[start:start + size]
        _route_rows(router, models, vectors, class_scores, table.prompts, rows, k, min_similarity, ("hybrid",),
                    replay, known, hint)
        p, c, n_out = replay.p["hybrid"][rows], replay.c["hybrid"][rows], replay.n_out[rows]
        sc = table.scores[rows].copy()
        pc = per[rows]
        idx = np.arange(len(rows))
        point = {"prompts_seen": int(start), "outcomes_seen": int(seen_outcomes), "window": len(rows)}
        # before its introduction the new model is not in the roster: it is never picked
        usable = without_new if new_j is not None and start < introduce[1] else costs.order
        if two:
            weak, strong = costs.order
            q_eff = np.minimum(p + explore_bonus(p, n_out, explore), 0.999)
            _, xs, qs = two_model_curve(q_eff, sc, weak, strong)
            point["quality"] = float(np.interp(budget, xs, qs))
            point["random_quality"] = float((1 - budget) * sc[:, weak].mean() + budget * sc[:, strong].mean())
            point.update(routellm_metrics(xs, qs, float(sc[:, weak].mean()), float(sc[:, strong].mean())))
        else:
            curve = []
            for knob in LAMBDAS:
                pick = replay_pick(p, c, n_out, usable, float(knob), explore)
                curve.append((float(pc[idx, pick].mean()), float(sc[idx, pick].mean())))
            within = [q for c_, q in curve if c_ <= budget + 1e-12]
            point["quality"] = float(max(within)) if within else float(min(curve)[1])
            afford = [j for j in range(m) if per[rows, j].mean() <= budget + 1e-12]
            point["random_quality"] = float(sc[:, afford].mean()) if afford else None
        pick = replay_pick(p, c, n_out, usable, lam, explore)
        point["default_quality"] = float(sc[idx, pick].mean())
        point["default_cost"] = float(pc[idx, pick].mean())
        if new_j is not None:
            point["introduced_share"] = float((pick == new_j).mean())
            if start < introduce[1]:
                sc[:, new_j] = np.nan
            else:  # only where the cascade's plan would have run it
                tried = np.zeros(len(rows), bool)
                for r, i in enumerate(rows):
                    plan, _ = plan_utility(by_cost, _predictions(p[r], c[r], n_out[r], models), lam,
                                           explore=explore, joint=router.joint())
                    tried[r] = introduce[0] in plan
                sc[~tried, new_j] = np.nan
                point["introduced_tried"] = float(tried.mean())
        points.append(point)
        _record(store, [table.prompts[i] for i in rows], vectors[rows], [classes[i] for i in rows], sc,
                per[rows] if costs.unit.startswith("USD") else None,
                table.tokens[rows] if table.tokens is not None else None, models, known)
        seen_outcomes += int((~np.isnan(sc)).sum())
    store.close()
    out = {"mode": "hybrid", "order": "table" if order_seed is None else f"shuffled (seed {order_seed})",
           "cost": budget, "window": size, "best_single": best_single,
           "best_single_quality": strategies[best_single]["quality"], "points": points}
    if introduce is not None:
        out["introduce"] = introduced_summary(introduce, points, strategies, models)
    return out


def introduced_summary(introduce: tuple[str, int], points: list[dict], strategies: dict, models: list[str]) -> dict:
    """How long until routing uses a model introduced at prompt N as it would with every outcome known.

    ``prompts_until_used``: prompts from N to the end of the first window whose default-knob share of the
    model is between half and twice its share in the offline hybrid replay, and whose mean share over the
    rest of the replay is at least half of it (so the blind burst of optimism right after N does not count).
    """
    model, at = introduce
    reference = strategies.get("hybrid", {}).get("pick_share", {}).get(model)
    after = [pt for pt in points if pt["prompts_seen"] >= at]
    shares = [pt.get("introduced_share", 0.0) for pt in after]
    used = None
    if reference:
        for i, pt in enumerate(after):
            if 0.5 * reference <= shares[i] <= 2 * reference and np.mean(shares[i:]) >= 0.5 * reference:
                used = pt["prompts_seen"] + pt["window"] - at
                break
    return {"model": model, "at": at, "offline_share": reference, "prompts_until_used": used,
            "shares_after": [round(x, 4) for x in shares]}


# ------------------------------------------------------------------------------------------ output
def plot_frontier(results: dict, path: Path, info: dict | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    info = info or {}
    unit = info.get("cost_unit", "")
    strategies = results["strategies"]
    fig, ax = plt.subplots(figsize=(9, 6))
    singles = {k: v for k, v in strategies.items() if k.startswith("single:")}
    ax.scatter([v["cost"] for v in singles.values()], [v["quality"] for v in singles.values()], c="grey",
               s=18, zorder=3, label="single models")
    ranked = sorted(singles, key=lambda s: -singles[s]["quality"])
    for name in ranked[:5] if len(singles) > 5 else ranked:
        ax.annotate(name.split(":", 1)[1], (singles[name]["cost"], singles[name]["quality"]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    styles = {"random": ":", "oracle": "--"}
    routed = [n for n in strategies if not n.startswith("single:")]
    for name in routed:
        v = strategies[name]
        xs = [c for c, _ in v["curve"]]
        qs = [q for _, q in v["curve"]]
        label = name + (f" (APGR {v['apgr']:.3f})" if v.get("apgr") is not None
                        else f" (AIQ {v['aiq']:.3f})" if v.get("aiq") is not None else "")
        if name.startswith("cascade@"):
            styles[name] = "-."
        line, = ax.plot(xs, qs, styles.get(name, "-"), label=label, lw=1.4)
        ax.plot([v["cost"]], [v["quality"]], "o", color=line.get_color(), ms=5)
    costs = [v["cost"] for v in singles.values() if v["cost"] > 0]
    if unit.startswith("USD") and costs and max(costs) > 20 * min(costs):
        ax.set_xscale("log")  # list prices span orders of magnitude
        unit += ", log scale"
    ax.set_xlabel(f"cost ({unit}); dots: the default knob")
    ax.set_ylabel("quality (mean score)")
    ax.set_title(f"Routing frontier: {Path(info.get('table', '')).name}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_learning(online: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = online["points"]
    fig, ax = plt.subplots(figsize=(8, 5))
    xs = [p["outcomes_seen"] for p in pts]
    ax.plot(xs, [p["quality"] for p in pts], "-o", ms=3, label=f"hybrid, quality at cost {online['cost']:.4g}")
    ax.plot(xs, [np.nan if p.get("random_quality") is None else p["random_quality"] for p in pts], "--", ms=3,
            color="C2", label="random at that cost")
    ax.axhline(online["best_single_quality"], color="grey", ls="--", label=online["best_single"])
    if pts and pts[0].get("apgr") is not None:
        ax2 = ax.twinx()
        ax2.plot(xs, [p["apgr"] if p["apgr"] is not None else np.nan for p in pts], ":", color="C1", label="APGR")
        ax2.set_ylabel("APGR of the window")
        ax2.legend(loc="lower right", fontsize=8)
    ax.set_xlabel("outcomes seen")
    ax.set_ylabel("quality")
    ax.set_title(f"Online replay ({online.get('order', 'table')} order): routing with only the outcomes seen so far")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def print_table(results: dict, info: dict | None = None, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    strategies = results["strategies"]
    info = info or {}
    two = any("apgr" in v for v in strategies.values())
    t = Table(title=f"routing replay: {Path(info.get('table', '')).name} ({info.get('rows', '?')} test rows)")
    cols = ["strategy", "quality", "cost", "AIQ", "match best at", "q @ 1/4 cost"]
    if two:
        cols += ["APGR", "CPT(50%)", "CPT(80%)"]
    for c in cols:
        t.add_column(c, justify="left" if c == "strategy" else "right")
    fmt = lambda v, f, suffix="": "-" if v is None else format(v, f) + suffix  # noqa: E731
    singles = sorted((s for s in strategies if s.startswith("single:")), key=lambda s: -strategies[s]["quality"])
    shown = singles if len(singles) <= 8 else singles[:5] + [min(singles, key=lambda s: strategies[s]["cost"])]
    best = strategies[singles[0]] if singles else {"cost": None}
    for name in [s for s in strategies if not s.startswith("single:")] + list(dict.fromkeys(shown)):
        v = strategies[name]
        share = (None if v.get("match_best_cost") is None or not best["cost"]
                 else 100.0 * v["match_best_cost"] / best["cost"])
        row = [name, f"{v['quality']:.4f}", f"{v['cost']:.4g}", fmt(v.get("aiq"), ".4f"),
               fmt(share, ".1f", "%"), fmt(v.get("quality_at_quarter_cost"), ".4f")]
        if two:
            row += [fmt(v.get("apgr"), ".3f"), fmt(v.get("cpt50"), ".1f", "%"), fmt(v.get("cpt80"), ".1f", "%")]
        t.add_row(*row)
    console.print(t)
    if len(singles) > len(set(shown)):
        console.print(f"({len(singles) - len(set(shown))} more single models in results.json)")
    console.print(f"cost: {info.get('cost_unit')}; headline at price_sensitivity={info.get('price_sensitivity')}; "
                  f"'match best at' = cost to reach the best single model's quality, as % of its cost; "
                  f"classes from the {info.get('class_source')}; "
                  f"k={info.get('k')}, min_similarity={info.get('min_similarity')}")
