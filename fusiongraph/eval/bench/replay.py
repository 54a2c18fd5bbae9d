"""Replaying the graph's routing on recorded outcomes: the price_sensitivity sweep, the in-memory training
stores, routing every test row through :class:`fusiongraph.routing.router.Router`, the vectorised pick, the cascade
replayed through ``plan_utility``, and every strategy's headline, curve and metrics (see
:mod:`fusiongraph.eval.bench`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from fusiongraph.eval.bench.metrics import (
    CostModel,
    _downsample,
    many_model_metrics,
    routellm_metrics,
    routing_score,
    two_model_curve,
)
from fusiongraph.eval.tables import row_outcomes
from fusiongraph.routing.operating_point import (
    DEFAULT_PRICE_SENSITIVITY,
    LAMBDAS,
    OperatingPoint,
    cap_for_cascade,
    choose_on,
    replay_cascade,
    replay_store,
)
from fusiongraph.routing.router import Router, RoutingParams
from fusiongraph.routing.rule import JointRates, explore_bonus, first_picks, plan_utility, price_scale
from fusiongraph.store.outcomes import OutcomeStore
from fusiongraph.store.types import text_hash


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
    # per training store (fold): each strategy's operating point chosen on that store (empty: a fixed knob)
    points: list[dict[str, OperatingPoint]] = field(default_factory=list)

    @classmethod
    def empty(cls, n: int, m: int, modes) -> "Replay":
        return cls(
            {mo: np.zeros((n, m)) for mo in modes},
            {mo: np.zeros((n, m)) for mo in modes},
            np.zeros((n, m)),
            [],
            np.zeros(n, dtype=int),
        )


def replay_pick(
    p: np.ndarray, c: np.ndarray, n_out: np.ndarray, by_cost_idx: list[int], lam: float, explore: float
) -> np.ndarray:
    """Column index of plan_utility's first model for every row (ties to the cheaper model), among the
    columns of `by_cost_idx` (cheapest first)."""
    order = np.asarray(by_cost_idx)
    return order[first_picks(p[:, order], c[:, order], n_out[:, order], lam, explore)]


def fold_points(
    router: Router,
    by_cost: list[str],
    modes,
    k: int,
    min_similarity: float,
    explore: float,
    *,
    cascades: dict[str, float | None] | None = None,
    accept: float = 0.5,
) -> dict:
    """Each strategy's operating point chosen on this training store, by the graph's own code
    (:func:`fusiongraph.routing.operating_point.replay_store` and :func:`~fusiongraph.routing.operating_point.choose_on`, as
    :class:`~fusiongraph.routing.operating_point.OperatingPoints` does for the live router), over every model; and
    for each cascade of `cascades` (name -> judge accuracy, None: perfect), the hybrid's point capped so that
    the judged cascade is never dearer than the best single model (:func:`cap_for_cascade`, as the live graph
    does with its `judge_accuracy`)."""
    data, preds = replay_store(router, by_cost, modes=modes, k=k, min_similarity=min_similarity)
    seen = router.store.outcomes_folded
    points = {
        mode: dataclasses.replace(choose_on(data, pcn, by_cost, explore), outcomes=seen) for mode, pcn in preds.items()
    }
    if "hybrid" in points:
        for name, acc in (cascades or {}).items():
            points[name] = cap_for_cascade(
                points["hybrid"], preds["hybrid"], data["success"], data["cost"], by_cost, explore,
                judge_accuracy=acc, accept=accept, joint=router.joint(), plan=plan_utility,
            )  # fmt: skip
    return points


def cascade_name(judge_accuracy: float | None) -> str:
    return "cascade" if judge_accuracy is None else f"cascade@{judge_accuracy:g}"


def _headline_lambdas(replay: Replay, name: str, n: int, default_lambda: float | None) -> np.ndarray:
    """Each row's headline price_sensitivity: the fixed knob, or its fold's operating point for the strategy
    (the hybrid's for random; a cascade's own, the hybrid's capped for it, when the fold chose one)."""
    if default_lambda is not None:
        return np.full(n, float(default_lambda))
    per_fold = np.array([pts.get(name, pts["hybrid"]).price_sensitivity for pts in replay.points])
    return per_fold[replay.joint_of[:n]]


def _pick_rows(p, c, n_out, order, lams: np.ndarray, explore: float) -> np.ndarray:
    """replay_pick with a price_sensitivity per row."""
    pick = np.zeros(len(p), dtype=int)
    for lam in np.unique(lams):
        rows = np.flatnonzero(lams == lam)
        pick[rows] = replay_pick(p[rows], c[rows], n_out[rows], order, float(lam), explore)
    return pick


def _build_store(
    embedder,
    texts: list[str],
    vectors: np.ndarray,
    classes: list[str | None],
    scores: np.ndarray,
    costs: np.ndarray,
    tokens: np.ndarray | None,
    models: list[str],
) -> tuple[OutcomeStore, dict[str, int]]:
    """An in-memory store seeded with these (training) rows, and its subtask id by prompt-text hash."""
    store = OutcomeStore(None, vectors.shape[1], embedder.name)
    known: dict[str, int] = {}
    _record(store, texts, vectors, classes, scores, costs, tokens, models, known)
    return store, known


def _record(
    store, texts, vectors, classes, scores, costs, tokens, models, known: dict[str, int], after_rejection=None
) -> None:
    """Record these rows' outcomes; `after_rejection` (rows x models, bool) flags the conditioned ones."""
    items = [
        (
            text,
            vectors[i],
            classes[i],
            row_outcomes(
                models,
                scores[i],
                costs[i] if costs is not None else None,
                tokens[i] if tokens is not None else None,
                after_rejection=after_rejection[i] if after_rejection is not None else None,
            ),
        )
        for i, text in enumerate(texts)
    ]
    if items:
        for text, sid in zip(texts, store.record_many(items)):
            known[text_hash(text)] = sid


def _route_rows(
    router: Router,
    models: list[str],
    vectors: np.ndarray,
    class_scores: list[dict],
    texts: list[str],
    rows: np.ndarray,
    k: int,
    min_similarity: float,
    modes,
    out: Replay,
    known: dict[str, int],
    cost_hint: dict[str, float] | None = None,
) -> None:
    """Route each row with the store's outcomes; a stored subtask with the row's exact text is left out."""
    out.joint.append(router.joint())
    fold = len(out.joint) - 1
    for i in rows:
        sid = known.get(text_hash(texts[i]))
        nbrs = router.neighbours(vectors[i], k, min_similarity, exclude_ids={sid} if sid is not None else None)
        for mode in modes:
            preds = router.predict(models, class_scores[i], nbrs, mode=mode, embedding=vectors[i], cost_hint=cost_hint)
            out.router_calls += 1
            for j, m in enumerate(models):
                out.p[mode][i, j] = preds[m].p_success
                out.c[mode][i, j] = preds[m].cost_usd if preds[m].cost_usd is not None else 0.0
                out.n_out[i, j] = preds[m].evidence_n  # every mode sees the same neighbours: one count
        out.joint_of[i] = fold


def _folds(texts: list[str], folds: int, seed: int) -> np.ndarray:
    groups: dict[str, int] = {}
    gid = np.array([groups.setdefault(t, len(groups)) for t in texts])
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(groups))
    fold_of = np.empty(len(groups), dtype=int)
    fold_of[perm] = np.arange(len(groups)) % folds
    return fold_of[gid]


def evaluate(
    scores: np.ndarray,
    costs: CostModel,
    models: list[str],
    by_cost: list[str],
    replay: Replay,
    accept: float,
    *,
    judge_accuracies=(0.85,),
    explore: float = 1.0,
    default_lambda: float | None = None,
    seed: int = 0,
) -> dict:
    """Headline (at the default price_sensitivity), curve (sweeping it) and metrics of every strategy.

    `default_lambda` None: each fold's operating point chosen on its training store (``replay.points``), as the
    live graph chooses it when the knob is left empty; with no points, the fixed fallback."""
    if default_lambda is None and not replay.points:
        default_lambda = RoutingParams.from_context().price_sensitivity
        default_lambda = DEFAULT_PRICE_SENSITIVITY if default_lambda is None else default_lambda
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

    rank = np.empty(m, int)
    rank[costs.order] = np.arange(m)
    # the oracle's choice per prompt: the cheapest model with the best recorded score (`oracle_choice`: how
    # often a strategy's pick is it)
    oracle = np.argmin(np.where(scores >= scores.max(axis=1, keepdims=True) - 1e-12, rank[None, :], m + 1), axis=1)

    def metrics(points) -> dict:
        return many_model_metrics(points, c_min, c_max, best_q, best_c)

    for j, name in enumerate(models):
        q, c = singles[j]
        entry = {"quality": q, "cost": c, "curve": [[round(c, 6), round(q, 6)]], **metrics([(c, q)])}
        if two:
            entry.update(apgr=None, cpt50=None, cpt80=None)
        out[f"single:{name}"] = entry

    lambdas = sorted({*LAMBDAS.tolist(), *([float(default_lambda)] if default_lambda is not None else [])})
    no_bonus = np.full((n, m), 10**9, dtype=np.int64)
    sources = {"random": (replay.p["random"], replay.c["hybrid"], replay.n_out), "oracle": (scores, per, no_bonus)}
    sources.update({mode: (replay.p[mode], replay.c[mode], replay.n_out) for mode in replay.p if mode != "random"})
    for name, (p, c, n_out) in sources.items():
        sweep = []
        for lam in lambdas:
            pick = replay_pick(p, c, n_out, costs.order, lam, explore)
            sweep.append((lam, float(scores[rows, pick].mean()), float(per[rows, pick].mean())))
            if two:
                _check_two_model(p, c, n_out, pick, weak, strong, lam, explore)
        lam_rows = _headline_lambdas(replay, name, n, default_lambda)
        pick = _pick_rows(p, c, n_out, costs.order, lam_rows, explore)
        entry = {"quality": float(scores[rows, pick].mean()), "cost": float(per[rows, pick].mean())}
        entry["pick_share"] = {models[j]: round(float((pick == j).mean()), 4) for j in range(m) if (pick == j).any()}
        if name == "oracle":  # headline: the cheapest model with the best score on each prompt
            pick = oracle
            entry = {
                "quality": float(scores[rows, pick].mean()),
                "cost": float(per[rows, pick].mean()),
                "pick_share": {models[j]: round(float((pick == j).mean()), 4) for j in range(m) if (pick == j).any()},
            }
        entry["oracle_choice"] = round(float((pick == oracle).mean()), 4)
        pts = sorted({(round(c_, 6), round(q_, 6)) for _, q_, c_ in sweep})
        entry["curve"] = [list(pt) for pt in pts]
        entry.update(metrics(pts))
        if two:
            q_eff = np.minimum(p + explore_bonus(p, n_out, explore), 0.999)
            _, xs, qs = two_model_curve(q_eff, scores, weak, strong)
            entry["routellm_curve"] = _downsample(xs, qs)  # x: share of prompts sent to the strong model
            entry.update(routellm_metrics(xs, qs, q_weak, q_strong))
        out[name] = entry

    if "hybrid" in replay.p:
        p, c = replay.p["hybrid"], replay.c["hybrid"]
        cascade_lambdas = sorted(
            {*LAMBDAS[::3].tolist(), *([float(default_lambda)] if default_lambda is not None else [])}
        )
        for acc in (None, *judge_accuracies):
            name = cascade_name(acc)
            head_lams = _headline_lambdas(replay, name, n, default_lambda)
            sweep = []
            # the headline: each row at its fold's operating point, one more replay (a fixed knob is in the sweep)
            for lam in [*cascade_lambdas, *(["default"] if default_lambda is None else [])]:
                lam = head_lams if isinstance(lam, str) else lam
                rng = None if acc is None else np.random.default_rng(seed)
                q, cst, tries, ran = replay_cascade(
                    p,
                    c,
                    replay.n_out,
                    scores,
                    per,
                    models,
                    by_cost,
                    lam,
                    accept,
                    explore=explore,
                    judge_accuracy=acc or 1.0,
                    joints=replay.joint,
                    joint_of=replay.joint_of,
                    judge_rng=rng,
                    plan_accuracy=0.999 if acc is None else acc,
                    plan=plan_utility,
                )
                sweep.append((lam, q, cst, tries, float(ran[strong])))
            if default_lambda is None:
                head = sweep.pop()
            else:
                head = next(s for s in sweep if abs(s[0] - default_lambda) < 1e-12)
            pts = sorted({(round(c_, 6), round(q_, 6)) for _, q_, c_, _, _ in sweep})
            entry = {
                "quality": head[1],
                "cost": head[2],
                "tries": round(head[3], 4),
                "curve": [list(x) for x in pts],
                **metrics(pts),
            }
            if two:  # RouteLLM's x: the share of prompts on which the strong model ran (whatever the cost unit)
                by_share = sorted({(round(share, 6), round(q_, 6)) for _, q_, _, _, share in sweep})
                xs = np.array([0.0, *[x for x, _ in by_share], 1.0])
                qs = np.array([q_weak, *[y for _, y in by_share], q_strong])
                entry.update(routellm_metrics(xs, qs, q_weak, q_strong))
                entry["strong_share"] = round(head[4], 4)
            out[name] = entry
    return out


def _check_two_model(p, c, n_out, pick, weak, strong, lam, explore) -> None:
    """With two models the utility rule must be RouteLLM's threshold on the strong model's advantage."""
    q = np.minimum(p + explore_bonus(p, n_out, explore), 0.999)
    cc = np.nan_to_num(c, nan=0.0)
    threshold = lam * (cc[:, strong] - cc[:, weak]) / price_scale(cc)[:, 0]
    expected = np.where(routing_score(q, weak, strong) < -threshold - 1e-12, strong, weak)
    close = np.abs(routing_score(q, weak, strong) + threshold) < 1e-9  # float ties may go either way
    bad = np.flatnonzero((expected != pick) & ~close)
    if len(bad):
        i = int(bad[0])
        raise AssertionError(
            f"two-model threshold rule disagrees with plan_utility at price_sensitivity={lam} "
            f"on row {i}: q={q[i].tolist()}, cost={cc[i].tolist()}"
        )
