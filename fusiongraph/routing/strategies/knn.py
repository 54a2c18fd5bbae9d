"""knn: the similarity-weighted outcomes of the model on the FAISS neighbours (RouteLLM-style kNN)."""

from fusiongraph.routing.strategies.base import Evidence, register


@register
class KNN:
    name = "knn"
    uses_probe = False
    uses_clusters = False

    def success(self, ev: Evidence, neighbour_prior_strength: float) -> float:
        beta = 1e-3  # only where there is no neighbour at all does the global rate speak
        return (ev.neighbour_success + beta * ev.global_rate) / (ev.neighbour_weight + beta)
