"""The bench's cost model and metrics: RouteLLM's APGR / CPT on two-model tables, RouterBench's AIQ and the
cost of matching the best single model on any table (see :mod:`fusiongraph.eval.bench`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusiongraph.eval.tables import OutcomeTable


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
        return CostModel(
            order, filled(test.tokens, train.tokens), "output tokens per prompt (cost proxy)", means(train.tokens)
        )
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


def two_model_curve(
    q: np.ndarray, scores: np.ndarray, weak: int, strong: int
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
