"""The default operating point: the `price_sensitivity` chosen per store, where its own replay beats its best model.

A fixed default knob is a bet on the roster and its prices. The rule's unit is the candidates' mean predicted
cost (:func:`fusiongraph.routing.rule.price_scale`), so one very dear candidate (claude-3-opus at 9x gpt-4o's price)
makes every other model's price count for less, and the fixed default 0.01 then paid 134% of the best single
model's cost on a synthetic table where the same curve reaches that model's quality at 54%. Where the default
sits on the curve depends on the table; the curve itself does not.

So when `price_sensitivity` is left empty (the context's default), the router chooses it from the store's own
outcomes, the promise of the project made into a rule:

1. Take up to :data:`REPLAY_ROWS` subtasks on which every candidate has an unconditioned outcome (imported
   tables, calibrations, or live first picks of every model) and its recorded USD. Every candidate must be
   covered (at least half the outcomes of the best-covered one), and such subtasks must be at least 90% of
   those on which two or more candidates have one (where models were compared); else the fixed default is
   used. A smaller part is one selected by earlier routing (a model added later has outcomes only where it
   was tried, where it looked best), and a point chosen on it misleads (the bench's ``--introduce`` replay
   shows it: docs/routing.md). A live run's subtask has
   one unconditioned outcome (its first pick; escalations are conditioned), so live traffic beside an
   imported table does not count against it: the imported subtasks stay a fair sample of themselves.
2. Route each with the router's own predictions, its own record left out: leave-one-out neighbours, and a
   success probe cross-fitted without it (in :data:`CROSS_FOLDS` parts); the class rates, pooled over
   hundreds of subtasks, are the store's as they are. Sweep :data:`LAMBDAS`.
3. The best single model is the one with the highest mean recorded success over every such subtask (ties:
   cheaper); it is compared with the replay on the replayed ones, paired.
   Among the values whose replayed cost is at most its cost ("cheaper than the strongest"), choose the
   **cheapest** whose replayed quality beats it by at least one standard error of the paired difference (so
   "better than any single model" is more than noise), ties to the higher quality.
4. If no value does: the cheapest that matches it; if none does, the best quality; if no value is as cheap
   as the best single model, the fixed :data:`DEFAULT_PRICE_SENSITIVITY`.
5. The graph runs the judged cascade at the value, not the first pick alone: the cascade is replayed on the
   same subtasks at it (judges that agree with the recorded outcome as often as the graph's `judge_accuracy`
   says, seeded), and if it would cost more than the best single model the value is raised to the smallest
   of the sweep at which it does not (:func:`cap_for_cascade`; on synthetic seed 3 the cascade at the
   router's own value paid 128% of the best model's cost).

With fewer than :data:`MIN_ROWS` such subtasks, or no recorded cost, the fixed default is used and the trace
says why. The choice is recomputed when the store has grown by 10 % (in a background thread for a live graph,
in line for the replay benchmark, which calls this same code per training fold). Nothing here is tuned on a
table: the margin is the replay's own standard error.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import asdict, dataclass

import numpy as np

from fusiongraph.routing.rule import JointRates, Prediction, first_picks, plan_utility

log = logging.getLogger(__name__)

DEFAULT_PRICE_SENSITIVITY = 0.01  # the fixed fallback (and what `price_sensitivity` was before it was chosen)
LAMBDAS = np.round(np.concatenate([[0.0], np.geomspace(0.001, 10.0, 41)]), 6)  # the sweep (the bench's too)
REPLAY_ROWS = 2000  # subtasks replayed to choose it (a seeded sample)
MIN_ROWS = 200  # fewer complete subtasks than this: the fixed default
REFIT_GROWTH = 0.1  # recompute once the store has grown by this share
COMPLETE_SHARE = 0.9  # complete subtasks: at least this share of those with two or more candidates' outcomes
CROSS_FOLDS = 5  # the replay's success probe is fitted this many times, each without a fifth of the sample


@dataclass(frozen=True)
class OperatingPoint:
    """A chosen `price_sensitivity` and what it rests on (shown in the trace)."""

    price_sensitivity: float
    source: str  # "auto" (chosen on the store) | "default" (the fixed fallback) | "context" (set by the caller)
    reason: str
    rows: int = 0  # subtasks replayed
    models: tuple[str, ...] = ()  # the models it was chosen over
    best_model: str | None = None
    best_quality: float | None = None  # the best single model's mean success on the replayed subtasks
    best_cost: float | None = None
    quality: float | None = None  # the replay's quality and mean cost at the chosen value
    cost: float | None = None
    outcomes: int = 0  # the store's outcome count when it was chosen
    # the judged cascade replayed at the value (the graph runs it): the judge accuracy it was replayed with
    # (None: not replayed), its quality and mean cost, and the router's own choice when the cascade raised it
    cascade_accuracy: float | None = None
    cascade_quality: float | None = None
    cascade_cost: float | None = None
    router_price_sensitivity: float | None = None

    def as_dict(self) -> dict:
        d = asdict(self)
        d["models"] = list(self.models)
        for key in ("best_quality", "quality", "cascade_quality"):
            if d[key] is not None:
                d[key] = round(d[key], 4)
        for key in ("best_cost", "cost", "cascade_cost"):
            if d[key] is not None:
                d[key] = float(f"{d[key]:.4g}")
        return d


def fixed(price_sensitivity: float, reason: str, source: str = "default", **kw) -> OperatingPoint:
    return OperatingPoint(float(price_sensitivity), source, reason, **kw)


def choose(
    p: np.ndarray,
    c: np.ndarray,
    n_out: np.ndarray,
    scores: np.ndarray,
    costs: np.ndarray,
    models: list[str],
    explore: float,
    *,
    fallback: float = DEFAULT_PRICE_SENSITIVITY,
    lambdas=LAMBDAS,
    mean_success: np.ndarray | None = None,
    mean_cost: np.ndarray | None = None,
) -> OperatingPoint:
    """The rule of the module docstring on a replay: predicted success `p`, predicted cost `c` and outcome
    counts `n_out` (n, m) of each subtask and model, with their recorded `scores` and `costs` (n, m); columns
    in the order of `models`, which must be cheapest first (ties in a pick go to the cheaper model).
    `mean_success` / `mean_cost` (m,): each model's over more subtasks than the replayed sample, to tell which
    single model is the best (a sample of 2,000 can rank two close models wrongly); the comparison itself is
    on the replayed subtasks, paired."""

    n, m = scores.shape
    if n < MIN_ROWS:
        return fixed(fallback, f"{n} subtasks with outcomes of every candidate (the choice needs {MIN_ROWS})", rows=n)
    if not np.nansum(costs) > 0:
        return fixed(fallback, "no recorded cost on the subtasks with outcomes of every candidate", rows=n)
    rows = np.arange(n)
    means_q, means_c = scores.mean(axis=0), costs.mean(axis=0)
    rank_q = means_q if mean_success is None else np.asarray(mean_success, dtype=float)
    rank_c = means_c if mean_cost is None else np.asarray(mean_cost, dtype=float)
    best = max(range(m), key=lambda j: (rank_q[j], -rank_c[j]))
    q_best, c_best = float(means_q[best]), float(means_c[best])
    sweep = []
    for lam in lambdas:
        pick = first_picks(p, c, n_out, lam, explore)
        got = scores[rows, pick]
        diff = got - scores[:, best]
        se = float(diff.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0
        sweep.append((float(lam), float(got.mean()), float(costs[rows, pick].mean()), se))
    common = dict(rows=n, models=tuple(models), best_model=models[best], best_quality=q_best, best_cost=c_best)
    sweep = [s for s in sweep if s[2] <= c_best * (1 + 1e-9)]  # never dearer than the best single model
    beats = [s for s in sweep if s[1] - q_best >= max(s[3], 1e-9)]
    if beats:
        lam, q, cost, _ = min(beats, key=lambda s: (s[2], -s[1], -s[0]))
        share = _cost_share(cost, c_best)
        reason = (
            f"the cheapest point of the store's replay ({n} subtasks) that beats its best single model "
            f"{models[best]} ({q:.3f} vs {q_best:.3f}) by at least one standard error, at {share}"
        )
        return OperatingPoint(lam, "auto", reason, quality=q, cost=cost, **common)
    level = [s for s in sweep if s[1] >= q_best - 1e-12]
    if level:
        lam, q, cost, _ = min(level, key=lambda s: (s[2], -s[1], -s[0]))
        reason = (
            f"no point of the store's replay ({n} subtasks) beats its best single model {models[best]} "
            f"({q_best:.3f}) by a standard error: the cheapest that matches it ({q:.3f})"
        )
        return OperatingPoint(lam, "auto", reason, quality=q, cost=cost, **common)
    if sweep:
        lam, q, cost, _ = max(sweep, key=lambda s: (s[1], -s[2], s[0]))
        reason = (
            f"no point of the store's replay ({n} subtasks) reaches its best single model {models[best]} "
            f"({q_best:.3f}): the best quality ({q:.3f}) at no more than its cost"
        )
        return OperatingPoint(lam, "auto", reason, quality=q, cost=cost, **common)
    return fixed(fallback, "no point of the store's replay is as cheap as its best single model", **common)


def choose_on(data: dict, predictions: tuple, models: list[str], explore: float, **kw) -> OperatingPoint:
    """:func:`choose` on :func:`replay_store`'s output for one strategy (the best single model told apart on
    every complete subtask of the store)."""
    if _selected_part(data):
        return fixed(
            kw.get("fallback", DEFAULT_PRICE_SENSITIVITY),
            f"only {data['complete']} of the {data['covered']} subtasks with outcomes of two or more candidates "
            "have one of every candidate: "
            "a part selected by earlier routing (a model tried where it looked best), not a fair sample to replay",
            rows=len(data["ids"]),
        )
    p, c, cnt = predictions
    return choose(
        p,
        c,
        cnt,
        data["success"],
        data["cost"],
        models,
        explore,
        mean_success=data.get("mean_success"),
        mean_cost=data.get("mean_cost"),
        **kw,
    )


def _selected_part(data: dict) -> bool:
    """The complete subtasks are too small a part of those where candidates were compared (step 1)."""
    return data.get("complete", 0) < COMPLETE_SHARE * data.get("covered", 0)


def _predictions(p_row, c_row, n_row, models: list[str]) -> dict[str, Prediction]:
    """The Prediction objects plan_utility reads (success, cost, outcome count)."""

    return {
        m: Prediction(float(p_row[j]), cost_usd=float(c_row[j]), n_outcomes=int(n_row[j]), explore_n=float(n_row[j]))
        for j, m in enumerate(models)
    }


def replay_cascade(
    p: np.ndarray,
    c: np.ndarray,
    n_out: np.ndarray,
    scores: np.ndarray,
    costs: np.ndarray,
    models: list[str],
    by_cost: list[str],
    lam,
    accept: float,
    *,
    explore: float,
    judge_accuracy: float,
    joints: list[JointRates],
    joint_of: np.ndarray,
    judge_rng: np.random.Generator | None = None,
    plan_accuracy: float = 0.8,
    plan=None,
) -> tuple[float, float, float, np.ndarray]:
    """The graph's cascade replayed: plan_utility's plan, each answer judged, paying for every model tried.

    With ``judge_rng`` the judge agrees with the recorded outcome (score >= accept) with probability
    `judge_accuracy`; without it the recorded score is a perfect judge. The answer is the first accepted
    one, else the last tried (the plan ends with its strongest hope). Returns (quality, cost, mean tries,
    each model's share of prompts on which it ran). `plan`: the planner (default
    :func:`fusiongraph.routing.rule.plan_utility`; the bench passes one that tests can count).
    """

    plan_fn = plan_utility if plan is None else plan
    col = {m: j for j, m in enumerate(models)}
    total_q = total_c = tries = 0.0
    ran = np.zeros(len(models))
    lams = np.broadcast_to(np.asarray(lam, dtype=float), (len(p),))  # one knob, or one per row
    for i in range(len(p)):
        steps, _ = plan_fn(
            by_cost,
            _predictions(p[i], c[i], n_out[i], models),
            float(lams[i]),
            judge_accuracy=plan_accuracy,
            explore=explore,
            joint=joints[joint_of[i]],
        )
        answer = None
        for m in steps:
            j = col[m]
            total_c += costs[i, j]
            tries += 1
            ran[j] += 1
            right = scores[i, j] >= accept
            accepted = right if judge_rng is None else (right if judge_rng.random() < judge_accuracy else not right)
            answer = scores[i, j]
            if accepted:
                break
        total_q += answer
    n = len(p)
    return total_q / n, total_c / n, tries / n, ran / n


def cap_for_cascade(
    point: OperatingPoint,
    predictions: tuple,
    scores: np.ndarray,
    costs: np.ndarray,
    models: list[str],
    explore: float,
    *,
    judge_accuracy: float | None,
    accept: float,
    joint,
    lambdas=LAMBDAS,
    seed: int = 0,
    plan=None,
) -> OperatingPoint:
    """The graph runs the judged cascade at the chosen value, not the first pick alone, so "never dearer than
    the best single model" must hold for the cascade too. Replay the cascade on the same subtasks at the
    router's value (judges that agree with the recorded outcome with probability `judge_accuracy`, seeded;
    None: a perfect judge); if it costs more than the best single model, raise the value to the smallest of
    the sweep above it at which it does not (the cascade's cost falls as the value rises: a binary search).
    The router's own value is kept in ``router_price_sensitivity``. A fixed fallback is left as it is: there
    is nothing to replay."""
    if point.source != "auto" or point.best_cost is None:
        return point
    p, c, cnt = predictions

    def run(lam: float) -> tuple[float, float]:
        rng = None if judge_accuracy is None else np.random.default_rng(seed)
        q, cost, _, _ = replay_cascade(
            p, c, cnt, scores, costs, models, models, lam, accept,
            explore=explore, judge_accuracy=judge_accuracy or 1.0, joints=[joint],
            joint_of=np.zeros(len(p), dtype=int), judge_rng=rng,
            plan_accuracy=0.999 if judge_accuracy is None else judge_accuracy, plan=plan,
        )  # fmt: skip
        return q, cost

    limit = point.best_cost * (1 + 1e-9)
    lam0 = point.price_sensitivity
    q, cost = run(lam0)
    cost0 = cost
    common = dict(cascade_accuracy=judge_accuracy, router_price_sensitivity=lam0)
    if cost <= limit:
        return dataclasses.replace(point, cascade_quality=q, cascade_cost=cost, **common)
    above = [float(x) for x in sorted(lambdas) if x > lam0]
    lo, hi, found = 0, len(above) - 1, None  # the first value whose cascade is within the cost
    while lo <= hi:
        mid = (lo + hi) // 2
        got = run(above[mid])
        if got[1] <= limit:
            found, hi = (above[mid], *got), mid - 1
        else:
            lo = mid + 1
    if found is None:
        lam, (q, cost) = (above[-1], run(above[-1])) if above else (lam0, (q, cost))
        why = "no value of the sweep brings it within that cost: the cheapest"
    else:
        lam, q, cost = found
        why = "raised to the smallest value of the sweep at which it is not"
    judge = "a perfect judge" if judge_accuracy is None else f"judges right {judge_accuracy:.0%} of the time"
    reason = (
        f"{point.reason}; the judged cascade at {lam0:g} ({judge}) would cost more than {point.best_model} "
        f"({_cost_share(cost0, point.best_cost)}): {why}, {lam:g} (cascade {q:.3f} at "
        f"{_cost_share(cost, point.best_cost)})"
    )
    return dataclasses.replace(
        point, price_sensitivity=lam, reason=reason, cascade_quality=q, cascade_cost=cost, **common
    )


def _cost_share(cost: float, best_cost: float) -> str:
    """A cost as a share of the best single model's, for the reasons shown in the trace."""
    return f"{100 * cost / best_cost:.0f}% of its cost" if best_cost > 0 else "no cost"


def replay_store(router, models: list[str], *, modes, k: int, min_similarity: float, limit: int = REPLAY_ROWS):
    """The router's leave-one-out predictions on the store's complete subtasks, for each mode (strategy).

    Returns (data, {mode: (p, c, n_out)}) with `data` from :meth:`OutcomeStore.replay_rows`; columns of
    `models` order. Each subtask is routed as a new one would be: its neighbours without itself, its stored
    task class as the class scores.
    """
    data = router.store.replay_rows(models, limit)
    n, m = len(data["ids"]), len(models)
    out = {mode: (np.zeros((n, m)), np.zeros((n, m)), np.zeros((n, m))) for mode in modes}
    if n < MIN_ROWS or not np.nansum(data["cost"]) > 0 or _selected_part(data):
        return data, out  # choose_on() falls back without predictions
    for rows, fold_router in _cross_fitted(router, data["ids"]):
        for i in rows:
            vec, cls = data["vectors"][i], data["classes"][i]
            nbrs = fold_router.neighbours(vec, k, min_similarity, exclude_ids={int(data["ids"][i])})
            for mode in modes:
                preds = fold_router.predict(models, {cls: 1.0} if cls else {}, nbrs, mode=mode, embedding=vec)
                p, c, cnt = out[mode]
                for j, name in enumerate(models):
                    p[i, j] = preds[name].p_success
                    c[i, j] = preds[name].cost_usd or 0.0
                    cnt[i, j] = preds[name].evidence_n
    return data, out


def _cross_fitted(router, ids: np.ndarray, folds: int | None = None):
    """(replayed rows, a router whose success probe never saw them): the probe (and its cluster rates) is
    refitted without each of `folds` parts of the replayed subtasks, so that its in-sample fit does not flatter
    the replay (on a small store a probe that saw a row predicts that row's outcome, and the chosen knob came
    out cheaper than new prompts bear). Five parts: each probe misses a fifth of the sample, so that it is
    not much weaker than the store's own (with two halves, on a 2,400-subtask store each missed 1,000 rows and
    the replay came out pessimistic). Neighbours leave the row out themselves; the class rates, pooled over
    hundreds of subtasks, keep it. A router without a refittable probe replays with its own."""
    folds = CROSS_FOLDS if folds is None else folds
    probe = router.probe
    if not hasattr(probe, "fit_rows") or len(ids) < folds:
        yield np.arange(len(ids)), router
        return
    vectors, classes, per_model, train_ids = router.store.training_rows(probe.max_subtasks, with_ids=True)
    seen = router.store.outcomes_folded
    half = np.arange(len(ids)) % folds
    for f in range(folds):
        rows = np.flatnonzero(half == f)
        keep = ~np.isin(train_ids, ids[rows])
        pos = np.cumsum(keep) - 1
        sub = {m: (pos[r][keep[r]], s[keep[r]]) for m, (r, s) in per_model.items()}
        fit = probe.fit_rows(vectors[keep], [c for c, k in zip(classes, keep) if k], sub, seen)
        yield rows, dataclasses.replace(router, probe=probe.frozen(fit))


class OperatingPoints:
    """The router's chosen operating points, one per (models, strategy, knobs), recomputed as the store grows."""

    def __init__(self, router, background: bool = True):
        self.router = router
        self.background = background
        self._lock = threading.Lock()
        self._cache: dict[tuple, OperatingPoint] = {}
        self._pending: set[tuple] = set()

    def get(
        self,
        models: list[str],
        *,
        mode: str,
        k: int,
        min_similarity: float,
        explore: float,
        fallback: float = DEFAULT_PRICE_SENSITIVITY,
        wait: bool = False,
        judge_accuracy: float | None = None,
        accept: float = 0.5,
    ) -> OperatingPoint:
        """The operating point for these candidates (cheapest first) (`wait`: compute a stale one in line even
        for a live router, as a benchmark's warm-up does). `judge_accuracy`: the graph runs the judged cascade with
        judges this accurate (its `judge_accuracy` knob), and the point is capped for it (:func:`cap_for_cascade`,
        answers right when their recorded success reaches `accept`); None: the first pick alone.

        The replay can vouch only for a roster it can replay: every candidate needs at least half the
        unconditioned outcomes of the best-covered one. With one that has fewer (a model just added, whose
        outcomes are recorded only where it was tried), the fixed default is used until it is covered. (Choosing
        over the others instead was tried: in the bench's ``--introduce`` replay on MMLU-Pro the point chosen
        without the new model, gemini-1.5-pro, was 0, the best quality at any price, since without it only
        gpt-4o's own cost beats gpt-4o; applied with the new model in the roster it sent first picks to
        gpt-4o, and the new model's share settled near 30% instead of 70%.)"""
        store = self.router.store
        usage = store.class_rates(None)
        counts = {mdl: usage.get(mdl, (0.0, 0))[1] for mdl in models}
        top = max(counts.values(), default=0)
        thin = [mdl for mdl in models if counts[mdl] <= 0 or counts[mdl] < 0.5 * top]
        if len(models) - len(thin) < 2:
            return fixed(fallback, "fewer than two candidates are well covered by recorded outcomes")
        if thin:
            return fixed(
                fallback,
                f"{', '.join(thin)}: too few recorded outcomes to replay (under half the best-covered "
                "candidate's); the fixed default until every candidate is covered",
            )
        cascade = None if judge_accuracy is None else (round(float(judge_accuracy), 6), round(float(accept), 6))
        key = (
            tuple(models),
            mode,
            int(k),
            round(float(min_similarity), 6),
            round(float(explore), 6),
            fallback,
            cascade,
        )
        seen = store.outcomes_folded
        cached = self._cache.get(key)
        fresh = cached is not None and seen < max(cached.outcomes * (1 + REFIT_GROWTH), cached.outcomes + 1)
        if fresh:
            return cached
        if wait or not self.background:
            return self._compute(key, list(models), mode, k, min_similarity, explore, fallback, seen, cascade)
        with self._lock:
            start = key not in self._pending
            self._pending.add(key)
        if start:
            threading.Thread(
                target=self._compute,
                args=(key, list(models), mode, k, min_similarity, explore, fallback, seen, cascade),
                name="operating-point",
                daemon=True,
            ).start()
        if cached is not None:
            return cached
        return fixed(fallback, "being chosen on the store's replay (in the background); the fixed default meanwhile")

    def _compute(self, key, models, mode, k, min_similarity, explore, fallback, seen, cascade) -> OperatingPoint:
        try:
            data, preds = replay_store(self.router, models, modes=(mode,), k=k, min_similarity=min_similarity)
            point = choose_on(data, preds[mode], models, explore, fallback=fallback)
            if cascade is not None:
                point = cap_for_cascade(
                    point, preds[mode], data["success"], data["cost"], models, explore,
                    judge_accuracy=cascade[0], accept=cascade[1], joint=self.router.joint(),
                )  # fmt: skip
            point = dataclasses.replace(point, outcomes=seen)
        except Exception:  # routing goes on with the fixed default
            log.exception("choosing the operating point failed")
            point = fixed(fallback, "choosing it on the store failed (see the log); the fixed default", outcomes=seen)
        with self._lock:
            self._cache[key] = point
            self._pending.discard(key)
        return point
