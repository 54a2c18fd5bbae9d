"""hybrid (the default): neighbours shrunk toward a prior of class rate, success probe and cluster rate.

    p = (sum_i w_i s_i + beta * prior) / (sum_i w_i + beta),  prior = mean of the parts at hand

EMAFusion's taxonomy + learned router as Bayesian shrinkage, with Avengers-Pro's cluster rates.
"""

from fusiongraph.routing.strategies.base import Evidence, register


@register
class Hybrid:
    name = "hybrid"
    uses_probe = True
    uses_clusters = True

    def success(self, ev: Evidence, neighbour_prior_strength: float) -> float:
        parts = [x for x in (ev.class_rate, ev.probe, ev.cluster_rate) if x is not None]
        prior = sum(parts) / len(parts)
        beta = neighbour_prior_strength
        return (ev.neighbour_success + beta * prior) / (ev.neighbour_weight + beta)
