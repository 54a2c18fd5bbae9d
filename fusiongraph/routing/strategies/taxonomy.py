"""taxonomy: the model's success rate in the subtask's task class (EMAFusion's taxonomy router)."""

from fusiongraph.routing.strategies.base import Evidence, register


@register
class Taxonomy:
    name = "taxonomy"
    uses_probe = False
    uses_clusters = False

    def success(self, ev: Evidence, neighbour_prior_strength: float) -> float:
        return ev.class_rate
