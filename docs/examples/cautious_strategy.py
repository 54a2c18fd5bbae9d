"""cautious: the lower of the model's class rate and its neighbours' success, so a model is trusted only
where both say it does well."""

from __future__ import annotations

from fusiongraph.routing.strategies.base import Evidence, register


@register
class Cautious:
    name = "cautious"  # the `router` knob's value
    uses_probe = False  # ask the success probe for this strategy
    uses_clusters = False  # ask for the cluster success rates

    def success(self, ev: Evidence, neighbour_prior_strength: float) -> float:
        if ev.neighbour_weight == 0:
            return ev.class_rate
        knn = ev.neighbour_success / ev.neighbour_weight
        return min(ev.class_rate, knn)
