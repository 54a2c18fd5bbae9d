"""Routing: predicted success per model from the taxonomy's class rates and the FAISS neighbours.

This is the one routing code path: the graph's `neighbours` node and the replay benchmark both call
`Router.predict` and `plan_cascade`.

Predicted success of model m for a subtask x (EMAFusion's hybrid, as Bayesian shrinkage):

    p_m(x) = (sum_i w_i * s_im + beta * prior_m) / (sum_i w_i + beta)

where i runs over the neighbours of x that have an outcome s_im of model m, w_i is their cosine
similarity, and prior_m is the mean of m's success rate in x's task class (itself shrunk toward m's
global rate) and the success probe's P(success) of m on x (:mod:`fusiongraph.probe`, once m has enough
outcomes). With no neighbours the prior decides; with many similar ones the neighbours dominate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

from fusiongraph.probe import SuccessProbe
from store.outcomes import Neighbour, OutcomeStore

Mode = Literal["hybrid", "knn", "taxonomy", "probe"]


@dataclass
class Prediction:
    p_success: float
    neighbour_weight: float = 0.0  # summed similarity of neighbours with an outcome of this model
    class_rate: float | None = None
    class_n: int = 0
    probe: float | None = None  # the success probe's P(success), when the model has a fit

    @property
    def has_evidence(self) -> bool:
        return self.neighbour_weight > 0 or self.class_n > 0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["p_success"] = round(d["p_success"], 4)
        d["neighbour_weight"] = round(d["neighbour_weight"], 4)
        if d["probe"] is not None:
            d["probe"] = round(d["probe"], 4)
        return d


@dataclass
class Route:
    source: str  # taxonomy | neighbours | both
    predictions: dict[str, Prediction]
    plan: list[str]
    skipped: list[dict] = field(default_factory=list)
    neighbours: list[Neighbour] = field(default_factory=list)


@dataclass
class Router:
    """Predicts each model's success on a subtask from the outcome store."""

    store: OutcomeStore
    # Defaults tuned by replaying MMLU outcomes (fusiongraph/bench.py, 5-fold CV on RouteLLM's
    # mixtral-8x7b / gpt-4 table): class rates are noisy per class, so shrink them harder; neighbours
    # count by similarity squared; the class prior weighs as much as ~16 neighbours at similarity 1.
    class_prior_strength: float = 20.0  # pseudo-count pulling a class rate toward the model's global rate
    neighbour_prior_strength: float = 16.0  # pseudo-count (in similarity units) of the class prior vs neighbours
    similarity_power: float = 2.0  # w_i = sim_i ** power: >1 trusts the closest neighbours more
    probe_c: float = 0.3  # the success probe's inverse L2 strength
    probe_min_outcomes: int = 100  # a model's probe is fitted once it has this many outcomes
    probe_background: bool = True  # refit the probe in a background thread (False: in line, deterministic)
    probe: SuccessProbe | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.probe is None:
            self.probe = SuccessProbe(self.store, c=self.probe_c, min_outcomes=self.probe_min_outcomes,
                                      background=self.probe_background)

    def global_rate(self, model: str) -> tuple[float, int]:
        s, n = self.store.class_rates(None).get(model, (0.5, 0))
        return (s * n + 1.0) / (n + 2.0), n

    def class_prior(self, model: str, class_scores: dict[str, float]) -> tuple[float, int]:
        """A model's success rate in the subtask's class (soft over classes), shrunk toward its global rate."""
        g, _ = self.global_rate(model)
        a = self.class_prior_strength
        total_p, rate, n_total = 0.0, 0.0, 0
        for cls, p in class_scores.items():
            if p < 0.05:
                continue
            r, n = self.store.class_rates(cls).get(model, (0.0, 0))
            rate += p * (r * n + a * g) / (n + a)
            total_p += p
            n_total += n
        return (rate / total_p if total_p else g), n_total

    def neighbours(self, embedding: np.ndarray, k: int, min_similarity: float,
                   exclude_ids: set[int] | None = None, with_answers: bool = False) -> list[Neighbour]:
        return [n for n in self.store.neighbours(embedding, k, exclude_ids=exclude_ids, with_answers=with_answers)
                if n.similarity >= min_similarity and n.outcomes]

    def predict(self, models: list[str], class_scores: dict[str, float], neighbours: list[Neighbour],
                mode: Mode = "hybrid", embedding: np.ndarray | None = None) -> dict[str, Prediction]:
        """Each model's predicted success; `embedding` (the subtask's) feeds the probe in hybrid/probe modes."""
        out: dict[str, Prediction] = {}
        probed = self.probe.predict(embedding, class_scores, models) if mode in ("hybrid", "probe") else {}
        for m in models:
            rate, class_n = self.class_prior(m, class_scores)
            probe = probed.get(m)
            if mode == "taxonomy":
                out[m] = Prediction(rate, 0.0, rate, class_n)
                continue
            if mode == "probe":  # the probe alone (the class rate where the model has no fit yet)
                out[m] = Prediction(rate if probe is None else probe, 0.0, rate, class_n, probe)
                continue
            prior = rate if probe is None else 0.5 * (rate + probe)
            w_sum, ws_sum = 0.0, 0.0
            for nb in neighbours:
                if m in nb.outcomes:
                    w = max(nb.similarity, 0.0) ** self.similarity_power
                    w_sum += w
                    ws_sum += w * nb.outcomes[m]
            beta = self.neighbour_prior_strength if mode == "hybrid" else 1e-3
            base = prior if mode == "hybrid" else self.global_rate(m)[0]
            out[m] = Prediction((ws_sum + beta * base) / (w_sum + beta), w_sum, rate, class_n,
                                probe if mode == "hybrid" else None)
        return out

    def route(self, embedding: np.ndarray, class_scores: dict[str, float], class_confidence: float,
              class_candidates: list[str], available: list[str], *, k: int, min_similarity: float,
              min_neighbours: int, taxonomy_confidence: float, skip_below: float,
              margin: float | None = None, with_answers: bool = False) -> Route:
        """The hybrid route the graph runs: who decides (taxonomy / neighbours / both), predictions, the plan.

        `available` is cheapest first; the plan keeps that order.
        """
        nbrs = self.neighbours(embedding, k, min_similarity, with_answers=with_answers)
        in_class = [m for m in available if m in class_candidates]
        if not nbrs:
            source, pool = "taxonomy", in_class
        elif class_confidence < taxonomy_confidence or len(nbrs) >= min_neighbours:
            source, pool = "neighbours", list(available)
        else:
            source, pool = "both", in_class
        skipped: list[dict] = []
        if not pool:
            pool = list(available)
            if available:
                skipped.append({"model": None, "reason": "no candidate of the task class is available; "
                                                          "using every available model"})
        predictions = self.predict(pool, class_scores, nbrs, embedding=embedding)
        plan, skip = plan_cascade(pool, predictions, skip_below, margin)
        return Route(source, predictions, plan, skipped + skip, nbrs)


def plan_cascade(models_by_cost: list[str], predictions: dict[str, Prediction],
                 skip_below: float, margin: float | None = None) -> tuple[list[str], list[dict]]:
    """Cheapest first, leaving out models predicted (with evidence) to succeed less than `skip_below`.

    With `margin` (optional; None, the default, leaves it off), a model is also left out when a costlier
    model in the list is predicted (both with evidence) to succeed more than `margin` more often: the
    cost/quality knob of a strong/weak router (RouteLLM's threshold on the strong model's advantage).
    If that leaves nothing, the model with the highest predicted success is the plan.
    """
    plan, skipped = [], []
    for i, m in enumerate(models_by_cost):
        pred = predictions.get(m)
        if pred is not None and pred.has_evidence and pred.p_success < skip_below:
            skipped.append({"model": m, "reason": f"predicted success {pred.p_success:.2f} < {skip_below:.2f}"})
            continue
        if margin is not None and pred is not None and pred.has_evidence:
            better = [(predictions[c].p_success - pred.p_success, c) for c in models_by_cost[i + 1:]
                      if c in predictions and predictions[c].has_evidence
                      and predictions[c].p_success - pred.p_success > margin]
            if better:
                gain, by = max(better)
                skipped.append({"model": m, "reason": f"{by} is predicted to succeed {gain:+.2f} more often "
                                                      f"(margin {margin:.2f})"})
                continue
        plan.append(m)
    if not plan and models_by_cost:
        best = max(models_by_cost, key=lambda m: predictions[m].p_success if m in predictions else 0.0)
        plan = [best]
        skipped = [s for s in skipped if s["model"] != best]
    return plan, skipped
