"""The routing rule, a leaf: predictions and the store's joint rates in, a plan (the models to try, in order) out.

:class:`fusiongraph.routing.router.Router` gathers the evidence and predicts; the rule here turns predictions
into a plan (:func:`plan_utility`); the bench's vectorised first pick is :func:`utilities`, the function
:func:`plan_utility` maximises. The operating point (:mod:`fusiongraph.routing.operating_point`) replays it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class Prediction:
    p_success: float
    neighbour_weight: float = 0.0  # summed similarity of neighbours with an outcome of this model
    class_rate: float | None = None
    class_n: int = 0
    probe: float | None = None  # the success probe's P(success), when the model has a fit
    cost_usd: float | None = None  # predicted cost of this model's answer (None: unknown)
    n_outcomes: int = 0  # the model's unconditioned outcomes in the store (cold start: few or none)
    cluster_rate: float | None = None  # the model's success rate in the subtask's embedding cluster
    # the outcomes that count against exploring this model here (see `local_outcomes`); None: n_outcomes
    explore_n: float | None = None
    n_conditioned: int = 0  # its outcomes recorded after an earlier tier was rejected (not first-pick evidence)

    @property
    def evidence_n(self) -> float:
        return float(self.n_outcomes if self.explore_n is None else self.explore_n)

    @property
    def has_evidence(self) -> bool:
        return self.neighbour_weight > 0 or self.class_n > 0

    def as_dict(self) -> dict:
        d = asdict(self)
        for key in ("p_success", "neighbour_weight", "probe", "cluster_rate", "explore_n"):
            if d[key] is not None:
                d[key] = round(d[key], 4)
        if d["cost_usd"] is not None:
            d["cost_usd"] = float(f"{d['cost_usd']:.4g}")
        return d


@dataclass(frozen=True)
class JointRates:
    """How the models' outcomes go together, over every subtask the store has outcomes of two models for.

    ``given_wrong[i, j]`` = P(model i right | model j wrong), ``given_right[i, j]`` = P(i right | j right),
    ``rate[i, j]`` = P(i right) on the same subtasks. A cascade escalates after a rejection: these say how
    much a failure of one model tells about the next (hard subtasks are hard for every model).
    """

    models: list[str]
    given_wrong: np.ndarray
    given_right: np.ndarray
    rate: np.ndarray
    outcomes: int = 0

    def __post_init__(self) -> None:
        with np.errstate(invalid="ignore", divide="ignore"):
            wrong, right = self.given_wrong / self.rate, self.given_right / self.rate
        ok = np.isfinite(wrong) & np.isfinite(right) & (self.rate > 0)
        pos = {m: i for i, m in enumerate(self.models)}
        table = {
            (m, t): (float(wrong[i, j]), float(right[i, j])) for m, i in pos.items() for t, j in pos.items() if ok[i, j]
        }
        object.__setattr__(self, "_ratios", table)

    def ratios(self, m: str, t: str) -> tuple[float, float]:
        """P(m right | t wrong) / P(m right) and P(m right | t right) / P(m right); (1, 1) when unknown."""
        return self._ratios.get((m, t), (1.0, 1.0))


NO_JOINT = JointRates([], np.zeros((0, 0)), np.zeros((0, 0)), np.zeros((0, 0)))
# escalation's gain per dollar counts a cost as at least 1 % of the costliest candidate's (free models)
COST_FLOOR = 0.01


def local_outcomes(n_outcomes: dict[str, int], neighbour_weight: dict[str, float]) -> dict[str, float]:
    """How many of its outcomes count against exploring each model *here*: its store-wide count scaled by
    how well the subtask's neighbours cover it relative to the best-covered model (``n x w_m / max w``).
    Both are of its unconditioned outcomes, the evidence its first-pick estimate uses (module docstring):
    outcomes recorded after a rejection do not count as having explored it.

    Where every model has outcomes on the same neighbours (a full outcome table) this is each model's own
    count, so nothing changes; a model added later, or one that ran only elsewhere, counts as new in the
    regions it has not been tried in and is explored there, as kNN-UCB does, instead of being judged by a
    store-wide count gathered on other kinds of subtask (the price of this: a costly model that ran only
    on escalations is tried once where it never ran; `explore` = 0 turns it off). Without neighbours: the
    store-wide counts.
    """
    w_max = max(neighbour_weight.values(), default=0.0)
    if w_max <= 0:
        return {m: float(n) for m, n in n_outcomes.items()}
    return {m: float(n) * min(max(neighbour_weight.get(m, 0.0), 0.0) / w_max, 1.0) for m, n in n_outcomes.items()}


def explore_bonus(p, n_outcomes, explore: float):
    """Bounded optimism for models with few outcomes: ``explore * sqrt(p (1 - p) / (n + 1))`` (arrays too)."""
    p = np.asarray(p, dtype=float)
    return max(explore, 0.0) * np.sqrt(np.clip(p * (1.0 - p), 0.0, None) / (np.asarray(n_outcomes) + 1.0))


def price_scale(costs) -> np.ndarray:
    """The unit the price is counted in (last axis: models): the mean predicted cost of the subtask's
    candidates (1 when they are all free), so the rule does not depend on the currency or the price level."""
    costs = np.nan_to_num(np.asarray(costs, dtype=float), nan=0.0)
    mean = costs.mean(axis=-1, keepdims=True)
    return np.where(mean > 0, mean, 1.0)


def utilities(p, n_outcomes, costs, price_sensitivity: float, explore: float) -> np.ndarray:
    """The first-pick utility of every model (last axis: models), vectorised: what plan_utility maximises.

    ``min(p + explore_bonus, 0.999) - price_sensitivity * cost / price_scale(costs)``.
    """
    p = np.asarray(p, dtype=float)
    costs = np.nan_to_num(np.asarray(costs, dtype=float), nan=0.0)
    q = np.minimum(p + explore_bonus(p, n_outcomes, explore), 0.999)
    return q - max(float(price_sensitivity), 0.0) * costs / price_scale(costs)


def first_picks(p, c, n_out, price_sensitivity: float, explore: float) -> np.ndarray:
    """Column index of :func:`plan_utility`'s first model for every row (rows x models, columns cheapest
    first: ties go to the cheaper model), vectorised."""
    return np.argmax(utilities(p, n_out, c, price_sensitivity, explore), axis=1)


def plan_utility(
    models: list[str],
    predictions: dict[str, Prediction],
    price_sensitivity: float,
    *,
    judge_accuracy: float = 0.8,
    explore: float = 1.0,
    budget_usd: float | None = None,
    joint: JointRates | None = None,
) -> tuple[list[str], list[dict]]:
    """The one routing rule, for any number of models with prices: which model first, then which next.

    Utility of a model is ``q - price_sensitivity * c / c_mean``: q is the predicted success (plus the
    bounded optimism of :func:`explore_bonus` for models with few outcomes), c its predicted cost and c_mean
    the mean predicted cost of the subtask's candidates (:func:`price_scale`). So `price_sensitivity` is how
    much success probability the price of an average candidate must buy: it does not depend on the currency
    or the price level (a table or a roster ten times dearer routes the same). Linear in cost, the rule is the
    Lagrangian of "most success for the money": along its knob it traces the best quality-cost frontier the
    predictions allow (a log-cost rule, tried first, prices a doubling of a small cost like a doubling of
    a large one, and reached the best single model's quality at up to 2x the cost on the
    bench's tables). The first model has the best utility. With two models this is RouteLLM's rule: the
    strong model first exactly when its predicted advantage exceeds the threshold
    ``price_sensitivity * (c_s - c_w) / c_mean`` (with a fixed price ratio, a constant).

    Escalation, given that every answer so far was rejected by judges that agree with correctness with
    probability `judge_accuracy`: a rejected model t was right with probability
    ``P(t right | rejected)`` (Bayes), and candidate m succeeds with its predicted success scaled by
    how m's outcomes go with t's in the store (`joint`: after t fails, m fails more often too; the predicted
    success is the first-pick one, from unconditioned outcomes, and the joint rates, from every outcome,
    conditioned ones included, carry what a rejection says). The
    expected gain of m is its success given the rejections minus the chance that the best answer so far
    is right. Next is the model with the best gain per dollar among those whose gain is worth its price
    (``gain > price_sensitivity * c / c_mean``); the plan stops
    when none is, or when the predicted spend would pass `budget_usd`.
    """
    if not models:
        return [], []
    joint = joint or NO_JOINT
    lam = max(float(price_sensitivity), 0.0)
    acc = min(max(float(judge_accuracy), 0.5), 0.999)
    costs = {m: (predictions[m].cost_usd or 0.0) if m in predictions else 0.0 for m in models}
    top = max(costs.values(), default=0.0)
    floor = COST_FLOOR * top if top > 0 else 1.0
    raw = {m: predictions[m].p_success if m in predictions else 0.5 for m in models}
    n_out = [predictions[m].evidence_n if m in predictions else 0 for m in models]
    bonus = dict(zip(models, explore_bonus([raw[m] for m in models], n_out, explore).tolist()))
    first_utility = dict(
        zip(models, utilities([raw[m] for m in models], n_out, [costs[m] for m in models], lam, explore).tolist())
    )

    scale = float(price_scale([costs[m] for m in models])[0])

    skipped: list[dict] = []
    affordable = [m for m in models if budget_usd is None or costs[m] <= budget_usd + 1e-15]
    for m in models:
        if m not in affordable:
            skipped.append(
                {"model": m, "kind": "budget", "reason": f"predicted cost ${costs[m]:.6f} is over the budget"}
            )
    if not affordable:  # nothing fits the prediction: the cheapest is the plan (the cascade checks the budget)
        return ([models[0]], [s for s in skipped if s["model"] != models[0]]) if models else ([], [])
    first = max(affordable, key=lambda m: (first_utility[m], -models.index(m)))
    plan, spent = [first], costs[first]
    cond = {m: 1.0 for m in affordable}  # P(m right | every model tried so far was rejected)
    fallback, last, last_p = 0.0, first, raw[first]  # fallback: P(the best answer so far is right)
    while True:
        post = last_p * (1 - acc) / (last_p * (1 - acc) + (1 - last_p) * acc)  # P(last right | rejected)
        fallback = max(fallback, post)
        best, best_rate, notes = None, 0.0, {}  # notes: model -> (kind, reason)
        for m in affordable:
            if m in plan:
                continue
            rw, rr = joint.ratios(m, last)
            cond[m] = min(cond[m], (1 - post) * min(raw[m] * rw, 1.0) + post * min(raw[m] * rr, 1.0))
            if budget_usd is not None and spent + costs[m] > budget_usd + 1e-15:
                notes[m] = ("budget", f"after {len(plan)} rejection(s) the predicted spend would pass the budget")
                continue
            gain = min(cond[m] + bonus[m], 0.999) - fallback
            price = lam * costs[m] / scale
            if gain <= price:
                notes[m] = (
                    "price",
                    f"after {len(plan)} rejection(s) its expected gain {gain:+.3f} is worth less "
                    f"than its price ({price:.3f})",
                )
                continue
            rate = gain / (costs[m] + floor)
            if best is None or rate > best_rate:
                best, best_rate = m, rate
        if best is None:
            skipped += [{"model": m, "kind": kind, "reason": r} for m, (kind, r) in notes.items()]
            break
        plan.append(best)
        spent += costs[best]
        last, last_p = best, cond[best]
    return plan, skipped
