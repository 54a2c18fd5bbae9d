"""The routing strategy interface and its registry (no strategy is imported here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Evidence:
    """What the store says about one model on one subtask."""

    model: str
    class_rate: float  # success rate in the subtask's class(es), shrunk toward the model's global rate
    class_n: int  # outcomes behind it
    global_rate: float  # the model's success rate over everything, (s + 1) / (n + 2)
    n_outcomes: int  # the model's outcomes in the store
    neighbour_weight: float  # sum of w_i = sim_i ** power over neighbours with an outcome of the model
    neighbour_success: float  # sum of w_i * s_i
    probe: float | None = None  # the success probe's P(success), when fitted and asked for
    cluster_rate: float | None = None  # success rate in the subtask's k-means cluster, when asked for


class Strategy(Protocol):
    name: str
    uses_probe: bool  # ask the success probe (a logistic regression per model) for this strategy
    uses_clusters: bool  # ask for the cluster success rates

    def success(self, ev: Evidence, neighbour_prior_strength: float) -> float:
        """P(success) of the model from its evidence."""
        ...


STRATEGIES: dict[str, Strategy] = {}


def register(cls):
    """Class decorator: add a strategy (an instance of the class) to the registry under its ``name``."""
    STRATEGIES[cls.name] = cls()
    return cls


def get_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown routing strategy {name!r}; known: {', '.join(STRATEGIES)}") from None
