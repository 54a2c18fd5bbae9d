"""probe: the success probe alone, a per-model logistic regression on embedding and class."""

from fusiongraph.routing.strategies.base import Evidence, register


@register
class Probe:
    name = "probe"
    uses_probe = True
    uses_clusters = False

    def success(self, ev: Evidence, neighbour_prior_strength: float) -> float:
        return ev.class_rate if ev.probe is None else ev.probe  # the class rate until the model has a fit
