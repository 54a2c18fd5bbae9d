"""The outcome store's records: an :class:`Outcome` going in, the :class:`Neighbour` hits coming out (with
their evidence as arrays, :class:`NeighbourBlock`), and the hash that identifies a subtask's text."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class Outcome:
    """One judged attempt of one model on one subtask."""

    model: str
    success: float
    accepted: bool
    judges: dict = field(default_factory=dict)
    answer: str | None = None
    error: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    source: str = "live"
    run_id: str | None = None
    # recorded after an earlier tier's answer to the same subtask was rejected (see fusiongraph.attempt
    # .after_rejection): selected on the other models' outcomes, so not first-pick evidence
    after_rejection: bool = False

    def __post_init__(self) -> None:
        if not (0.0 <= float(self.success) <= 1.0) or self.success != self.success:
            raise ValueError(f"outcome success must be in [0, 1], got {self.success!r} for model {self.model!r}")


@dataclass
class Neighbour:
    subtask_id: int
    similarity: float
    text: str
    task_class: str | None
    outcomes: dict[str, float]  # model -> mean success of its unconditioned outcomes there (first-pick evidence)
    answers: dict[str, str] = field(default_factory=dict)  # model -> an accepted answer (guides)
    costs: dict[str, float] = field(default_factory=dict)  # model -> mean recorded USD of its answers (all)
    tokens: dict[str, float] = field(default_factory=dict)  # model -> mean recorded output tokens (all)
    # model -> mean success of its outcomes recorded after an earlier tier was rejected there (empty on tables)
    conditioned: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class NeighbourBlock:
    """The neighbours' evidence as arrays, what :meth:`fusiongraph.routing.router.Router.predict` reads: row i is
    neighbour i, column j model ``models[j]``. The store builds it beside the :class:`Neighbour` list from its
    own arrays (no per-model dicts to walk); :meth:`of` builds it from any list of neighbours (the same)."""

    models: list[str]
    similarity: np.ndarray  # (n,)
    success: np.ndarray  # (n, M) mean unconditioned success, 0 where the model has none there
    has: np.ndarray  # (n, M) bool: the model has an unconditioned outcome there
    ran: np.ndarray  # (n, M) bool: the model answered there (its mean cost and tokens are known)
    cost: np.ndarray  # (n, M) mean recorded USD, 0 where it did not answer
    tokens: np.ndarray  # (n, M) mean recorded output tokens
    conditioned: np.ndarray  # (n,) bool: some outcome there was recorded after a rejection

    @classmethod
    def of(cls, neighbours: Sequence[Neighbour]) -> NeighbourBlock:
        models = list(dict.fromkeys(m for nb in neighbours for m in (*nb.outcomes, *nb.costs, *nb.tokens)))
        n, cols = len(neighbours), {m: j for j, m in enumerate(models)}
        arrays = {k: np.zeros((n, len(models))) for k in ("success", "cost", "tokens")}
        has, ran = np.zeros((n, len(models)), dtype=bool), np.zeros((n, len(models)), dtype=bool)
        for i, nb in enumerate(neighbours):
            for m, v in nb.outcomes.items():
                arrays["success"][i, cols[m]], has[i, cols[m]] = v, True
            for m, v in nb.costs.items():
                arrays["cost"][i, cols[m]], ran[i, cols[m]] = v, True
            for m, v in nb.tokens.items():
                arrays["tokens"][i, cols[m]] = v
        sims = np.array([nb.similarity for nb in neighbours], dtype=np.float64)
        cond = np.array([bool(nb.conditioned) for nb in neighbours], dtype=bool)
        return cls(models, sims, arrays["success"], has, ran, arrays["cost"], arrays["tokens"], cond)

    def take(self, rows: Sequence[int]) -> NeighbourBlock:
        r = np.asarray(rows, dtype=np.intp)
        return NeighbourBlock(
            self.models,
            self.similarity[r],
            self.success[r],
            self.has[r],
            self.ran[r],
            self.cost[r],
            self.tokens[r],
            self.conditioned[r],
        )


class Neighbours(list):
    """A list of :class:`Neighbour` with their :class:`NeighbourBlock` (``block``; None: not built)."""

    block: NeighbourBlock | None = None

    def evidence(self) -> NeighbourBlock:
        """The block, built from the neighbours when it was not given or no longer matches the list."""
        if self.block is None or len(self.block.similarity) != len(self):
            self.block = NeighbourBlock.of(self)
        return self.block
