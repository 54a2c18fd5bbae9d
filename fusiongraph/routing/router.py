"""Routing: predicted success per model from the taxonomy's class rates and the FAISS neighbours.

This is the one routing code path: the graph's `neighbours` node and the replay benchmark both call
`Router.predict` and `plan_utility` (the bench's vectorised first pick is `utilities`, which
`plan_utility` itself maximises).

Predicted success of model m for a subtask x (EMAFusion's hybrid, as Bayesian shrinkage):

    p_m(x) = (sum_i w_i * s_im + beta * prior_m) / (sum_i w_i + beta)

where i runs over the neighbours of x that have an outcome s_im of model m, w_i is their cosine
similarity, and prior_m is the mean of m's success rate in x's task class (itself shrunk toward m's
global rate), the success probe's P(success) of m on x and m's success rate in x's k-means cluster of
the store (:mod:`fusiongraph.routing.probe`, once m has enough outcomes). With no neighbours the prior decides;
with many similar ones the neighbours dominate. :func:`plan_utility` turns predictions into a plan.

**Which outcomes are first-pick evidence.** The cascade records a model's outcome in one of two ways. Either
it was the first answer tried on the subtask (or it came from an imported table or a calibration, where
every model answers every prompt): the model was chosen on the subtask alone, and the neighbours, the
class and the probe all condition on the subtask, so their mean estimates P(m right | x) without bias. Or
it was recorded after an earlier tier's answer to the same subtask was rejected (``after_rejection``, see
:func:`fusiongraph.attempt.after_rejection`): then the subtask was selected on *other models' outcomes*,
hard for them and, since hard prompts are hard for every model, for m too. A costly model gets most of its
outcomes that way; averaged in, they drag its first-pick estimate down, so it is picked first less and
recorded only after rejections, a loop that drives it out (the bench's ``--introduce`` replay showed it:
the new model's share of first picks decayed from 100% to 13% against 65% offline). So p_m(x) above, the
class and global rates, the probe and the cluster rates read the **unconditioned outcomes only**, and the
exploration count (:func:`local_outcomes`) is theirs: a model whose outcomes near a subtask are all
conditioned counts as new there and is explored (bounded by `explore` and the budget) until it has first
picks of its own. Conditioned outcomes are kept for what they do measure: what follows a rejection, in the
joint rates of escalation (:class:`JointRates`), and the cost and output tokens of a model's answers.

Why not keep them with a correction: correcting a conditioned outcome by the joint rates needs P(m right |
t wrong) / P(m right) from subtasks where both ran, and for a model reached only after t's rejections
those subtasks are the conditioned ones themselves (there P(m right) *is* P(m right | t wrong), a ratio of 1):
the correction would be estimated from the sample it corrects. Weighting them down needs a weight no data
gives. Dropping them costs only evidence that is biased, and on full outcome tables (every outcome
unconditioned) changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fusiongraph.context import FusionContext
from fusiongraph.routing import operating_point as op
from fusiongraph.routing.operating_point import OperatingPoint, OperatingPoints
from fusiongraph.routing.probe import SuccessProbe
from fusiongraph.routing.rule import JointRates, Prediction, local_outcomes, plan_utility
from fusiongraph.routing.strategies import Evidence, get_strategy
from fusiongraph.store.outcomes import OutcomeStore
from fusiongraph.store.types import Neighbour, Neighbours

Mode = str  # a routing strategy's name (fusiongraph.routing.strategies.STRATEGIES)


@dataclass(frozen=True)
class RoutingParams:
    """The knobs of one route: the routing knobs of :class:`fusiongraph.context.FusionContext` (see their
    descriptions there). Build it with :meth:`from_context`."""

    k: int
    min_similarity: float
    min_neighbours: int
    taxonomy_confidence: float
    price_sensitivity: float | None
    judge_accuracy: float | None  # None: the operating point is not capped for a judged cascade
    explore: float
    mode: Mode  # the routing strategy (the `router` knob)
    accept: float  # the graph's quality_threshold
    with_answers: bool  # read the neighbours' accepted answers (for guides)

    @classmethod
    def from_context(cls, ctx: FusionContext | None = None, **changes) -> RoutingParams:
        """The routing knobs of `ctx` (default: the defaults), with `changes` (knob names) applied first."""
        ctx = (ctx or FusionContext()).replace(**changes) if changes else (ctx or FusionContext())
        return cls(
            k=ctx.k,
            min_similarity=ctx.min_similarity,
            min_neighbours=ctx.min_neighbours,
            taxonomy_confidence=ctx.taxonomy_confidence,
            price_sensitivity=ctx.price_sensitivity,
            judge_accuracy=ctx.judge_accuracy,
            explore=ctx.explore,
            mode=ctx.router,
            accept=ctx.quality_threshold,
            with_answers=ctx.guides > 0,
        )


@dataclass
class Route:
    source: str  # taxonomy | neighbours | both
    predictions: dict[str, Prediction]
    plan: list[str]
    skipped: list[dict] = field(default_factory=list)
    neighbours: list[Neighbour] = field(default_factory=list)
    operating_point: OperatingPoint | None = None  # the price_sensitivity the plan used, and why


@dataclass
class Router:
    """Predicts each model's success on a subtask from the outcome store."""

    store: OutcomeStore
    # Defaults tuned by replaying MMLU outcomes (fusiongraph/eval/bench.py, 5-fold CV on RouteLLM's
    # mixtral-8x7b / gpt-4 table): class rates are noisy per class, so shrink them harder; neighbours
    # count by similarity squared; the class prior weighs as much as ~16 neighbours at similarity 1.
    class_prior_strength: float = 20.0  # pseudo-count pulling a class rate toward the model's global rate
    neighbour_prior_strength: float = 16.0  # pseudo-count (in similarity units) of the class prior vs neighbours
    similarity_power: float = 2.0  # w_i = sim_i ** power: >1 trusts the closest neighbours more
    probe_c: float = 0.3  # the success probe's inverse L2 strength
    probe_min_outcomes: int = 100  # a model's probe is fitted once it has this many outcomes
    probe_background: bool = True  # refit the probe in a background thread (False: in line, deterministic)
    cost_prior_strength: float = 4.0  # pseudo-count (similarity units) of a model's mean cost vs its neighbours'
    probe: SuccessProbe | None = field(default=None, repr=False)
    _joint: "JointRates | None" = field(default=None, repr=False, init=False)
    operating_points: OperatingPoints = field(default=None, repr=False, init=False)

    def __post_init__(self) -> None:
        if self.probe is None:
            self.probe = SuccessProbe(
                self.store, c=self.probe_c, min_outcomes=self.probe_min_outcomes, background=self.probe_background
            )
        # the price_sensitivity chosen on the store when the caller leaves it empty (fusiongraph/routing/operating_point.py)
        self.operating_points = OperatingPoints(self, background=self.probe_background)

    def operating_point(self, models: list[str], p: RoutingParams) -> OperatingPoint:
        """The route's price sensitivity: `p.price_sensitivity` as given, or (None) the one chosen on the store's
        own replay for these candidates (cheapest first); with `p.judge_accuracy`, capped so that the judged
        cascade the graph runs is never dearer than the best single model
        (:func:`fusiongraph.routing.operating_point.cap_for_cascade`)."""
        if p.price_sensitivity is not None:
            return op.fixed(p.price_sensitivity, "set by the caller", source="context")
        return self.operating_points.get(
            models,
            mode=p.mode,
            k=p.k,
            min_similarity=p.min_similarity,
            explore=p.explore,
            judge_accuracy=p.judge_accuracy,
            accept=p.accept,
        )

    def global_rate(self, model: str, rates: dict | None = None) -> tuple[float, int]:
        s, n = (self.store.class_rates(None) if rates is None else rates).get(model, (0.5, 0))
        return (s * n + 1.0) / (n + 2.0), n

    def class_prior(self, model: str, class_scores: dict[str, float], rates: dict | None = None) -> tuple[float, int]:
        """A model's success rate in the subtask's class (soft over classes), shrunk toward its global rate.
        `rates`: the store's class rates by class (None: all classes) when the caller read them already."""
        rates = {} if rates is None else rates
        g, _ = self.global_rate(model, rates.get(None))
        a = self.class_prior_strength
        total_p, rate, n_total = 0.0, 0.0, 0
        for cls, p in class_scores.items():
            if p < 0.05:
                continue
            r, n = (rates[cls] if cls in rates else self.store.class_rates(cls)).get(model, (0.0, 0))
            rate += p * (r * n + a * g) / (n + a)
            total_p += p
            n_total += n
        return (rate / total_p if total_p else g), n_total

    def neighbours(
        self,
        embedding: np.ndarray,
        k: int,
        min_similarity: float,
        exclude_ids: set[int] | None = None,
        with_answers: bool = False,
    ) -> list[Neighbour]:
        found = self.store.neighbours(embedding, k, exclude_ids=exclude_ids, with_answers=with_answers)
        rows = [i for i, n in enumerate(found) if n.similarity >= min_similarity and (n.outcomes or n.conditioned)]
        out = Neighbours(found[i] for i in rows)
        block = getattr(found, "block", None)
        if block is not None:  # the store's arrays of the same rows (predict reads them)
            out.block = block if len(rows) == len(found) else block.take(rows)
        return out

    def usage(self) -> dict[str, tuple[float, float, int]]:
        return self.store.model_usage()

    def joint(self) -> "JointRates":
        """Pairwise outcome correlations of the models, from the store (cached; recomputed as the store grows)."""
        seen = self.store.outcomes_folded
        cached = self._joint
        if cached is None or seen > cached.outcomes * 1.1 + 10:
            models, s_given_wrong, s_given_right, rate = self.store.joint_rates()
            cached = self._joint = JointRates(models, s_given_wrong, s_given_right, rate, seen)
        return cached

    def predict(
        self,
        models: list[str],
        class_scores: dict[str, float],
        neighbours: list[Neighbour],
        mode: Mode = "hybrid",
        embedding: np.ndarray | None = None,
        *,
        prompt_tokens: int = 0,
        prices: dict[str, tuple[float, float]] | None = None,
        default_tokens: int = 256,
        cost_hint: dict[str, float] | None = None,
    ) -> dict[str, Prediction]:
        """Each model's predicted success and cost; `embedding` (the subtask's) feeds the probe.

        Predicted cost: with a price (USD per 1M input/output tokens, e.g. from the roster) it is
        ``price_in * prompt_tokens + price_out * predicted output tokens``; without one, the recorded USD
        of the model's answers; `cost_hint` (USD per model) stands in where the store has no cost. Either
        is the neighbours' similarity-weighted mean for that model shrunk toward the model's mean.
        """
        strategy = get_strategy(mode)
        out: dict[str, Prediction] = {}
        probed = self.probe.predict(embedding, class_scores, models) if strategy.uses_probe else {}
        clustered = self.probe.cluster_rate(embedding, models) if strategy.uses_clusters else {}
        usage = self.usage()
        conditioned = self.store.conditioned_rates()
        raw_weight: dict[str, float] = {}
        # the neighbours' sums per model, over the arrays of their evidence: success from the unconditioned
        # outcomes only (see the module docstring); cost and tokens from every answer where the model has an
        # unconditioned outcome, or answered on a subtask with conditioned ones
        block = (neighbours if isinstance(neighbours, Neighbours) else Neighbours(neighbours)).evidence()
        w = np.maximum(block.similarity, 0.0) ** self.similarity_power
        priced = block.has | (block.ran & block.conditioned[:, None])
        sums = np.stack(
            [
                w @ block.has,
                w @ (block.success * block.has),
                w @ priced,
                w @ (block.cost * priced),
                w @ (block.tokens * priced),
            ]
        ).T.tolist()  # (models of the block, 5)
        column = {m: j for j, m in enumerate(block.models)}
        rates = {None: self.store.class_rates(None)}  # read once for every model
        rates.update({c: self.store.class_rates(c) for c, p in class_scores.items() if p >= 0.05})
        for m in models:
            rate, class_n = self.class_prior(m, class_scores, rates)
            g, n_m = self.global_rate(m, rates[None])
            w_sum, ws_sum, cw_sum, wc_sum, wt_sum = sums[column[m]] if m in column else (0.0,) * 5
            cost = self._cost(m, usage.get(m), cw_sum, wc_sum, wt_sum, prompt_tokens, prices, default_tokens, cost_hint)
            ev = Evidence(m, rate, class_n, g, n_m, w_sum, ws_sum, probed.get(m), clustered.get(m))
            uses_neighbours = strategy.name != "taxonomy" and strategy.name != "probe"
            out[m] = Prediction(
                strategy.success(ev, self.neighbour_prior_strength),
                w_sum if uses_neighbours else 0.0,
                rate,
                class_n,
                probed.get(m),
                cost,
                n_m,
                clustered.get(m),
                n_conditioned=conditioned.get(m, (0.0, 0))[1],
            )
            raw_weight[m] = w_sum
        for m, n_local in local_outcomes({m: out[m].n_outcomes for m in models}, raw_weight).items():
            out[m].explore_n = n_local
        return out

    def _cost(self, model, usage, w_sum, wc_sum, wt_sum, prompt_tokens, prices, default_tokens, cost_hint):
        b = self.cost_prior_strength
        mean_cost, mean_tokens, n = usage if usage else (0.0, 0.0, 0)
        price = (prices or {}).get(model)
        if price is not None:
            tokens = (wt_sum + b * mean_tokens) / (w_sum + b) if n and mean_tokens > 0 else float(default_tokens)
            return (price[0] * max(prompt_tokens, 0) + price[1] * tokens) / 1e6
        if n and mean_cost > 0:
            return (wc_sum + b * mean_cost) / (w_sum + b)
        if cost_hint and model in cost_hint:
            return float(cost_hint[model])
        return None

    def route(
        self,
        embedding: np.ndarray,
        class_scores: dict[str, float],
        class_confidence: float,
        class_candidates: list[str],
        available: list[str],
        params: RoutingParams,
        *,
        budget_usd: float | None = None,
        prompt_tokens: int = 0,
        prices: dict[str, tuple[float, float]] | None = None,
        default_tokens: int = 256,
    ) -> Route:
        """The hybrid route the graph runs: who decides (taxonomy / neighbours / both), predictions, the plan.

        `available` is cheapest first (ties in the plan go to the cheaper model). `params.price_sensitivity` None:
        the one chosen on the store (:meth:`operating_point`, over every available model, for the judged
        cascade with `judge_accuracy`; `accept` is the graph's quality_threshold).
        """
        p = params
        nbrs = self.neighbours(embedding, p.k, p.min_similarity, with_answers=p.with_answers)
        in_class = [m for m in available if m in class_candidates]
        if not nbrs:
            source, pool = "taxonomy", in_class
        elif class_confidence < p.taxonomy_confidence or len(nbrs) >= p.min_neighbours:
            source, pool = "neighbours", list(available)
        else:
            source, pool = "both", in_class
        skipped: list[dict] = []
        if not pool:
            pool = list(available)
            if available:
                skipped.append(
                    {
                        "model": None,
                        "reason": "no candidate of the task class is available; using every available model",
                    }
                )
        predictions = self.predict(
            pool,
            class_scores,
            nbrs,
            p.mode,
            embedding=embedding,
            prompt_tokens=prompt_tokens,
            prices=prices,
            default_tokens=default_tokens,
        )
        point = self.operating_point(list(available), p)
        plan, skip = plan_utility(
            pool,
            predictions,
            point.price_sensitivity,
            judge_accuracy=p.judge_accuracy,
            explore=p.explore,
            budget_usd=budget_usd,
            joint=self.joint(),
        )
        return Route(source, predictions, plan, skipped + skip, nbrs, point)
