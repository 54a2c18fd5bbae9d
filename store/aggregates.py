"""The outcome store's in-memory sums: what routing reads without SQL.

Per subtask and model: success sums and counts, recorded USD and output tokens (arrays indexed by subtask id
and a column per model, grown geometrically); per class and model, per model: success totals; per model:
usage. Success sums and counts are kept apart for unconditioned outcomes (the first answer tried on a
subtask, or an imported / calibrated one: selected on the subtask only) and conditioned ones (recorded after
an earlier tier was rejected: selected on the other models' outcomes). First-pick routing reads the former
(neighbours' `outcomes`, class rates, the probe's rows); escalation's joint rates read both.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from fusiongraph.store.types import Neighbour, NeighbourBlock, Neighbours

# the per-subtask x model arrays (grown together)
_ARRAYS = ("success_sum", "success_n", "cond_sum", "cond_n", "cost_sum", "tokens_sum")


class Aggregates:
    """The sums of the outcomes folded in so far; not locked: :class:`store.outcomes.OutcomeStore` uses it
    under its lock (and starts a new one when rows were erased)."""

    def __init__(self) -> None:
        self.class_totals: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0]))
        self.model_totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])  # unconditioned
        self.cond_totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])  # conditioned
        self.model_cols: dict[str, int] = {}  # model -> its column in the arrays
        self.success_sum = np.zeros((1024, 4), dtype=np.float64)  # unconditioned
        self.success_n = np.zeros((1024, 4), dtype=np.int32)
        self.cond_sum = np.zeros((1024, 4), dtype=np.float64)  # conditioned (after a rejection)
        self.cond_n = np.zeros((1024, 4), dtype=np.int32)
        self.cost_sum = np.zeros((1024, 4), dtype=np.float64)  # recorded USD, for predicted cost (all outcomes)
        self.tokens_sum = np.zeros((1024, 4), dtype=np.float64)  # recorded output tokens (all outcomes)
        self.model_usage: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])  # cost, tokens_out, n

    def fold(
        self,
        subtask_id: int,
        model: str,
        task_class: str | None,
        success: float,
        cost: float = 0.0,
        tokens: float = 0.0,
        after_rejection: bool = False,
    ) -> None:
        """Add one error-free outcome."""
        if after_rejection:
            m = self.cond_totals[model]
        else:
            total = self.class_totals[task_class or ""][model]
            total[0] += success
            total[1] += 1
            m = self.model_totals[model]
        m[0] += success
        m[1] += 1
        col = self.model_cols.setdefault(model, len(self.model_cols))
        rows, cols = self.success_sum.shape
        if subtask_id >= rows or col >= cols:  # grow geometrically
            grown = (max(rows, 2 * (subtask_id + 1)), max(cols, 2 * (col + 1)))
            for name in _ARRAYS:
                old = getattr(self, name)
                new = np.zeros(grown, dtype=old.dtype)
                new[:rows, :cols] = old
                setattr(self, name, new)
        if after_rejection:
            self.cond_sum[subtask_id, col] += success
            self.cond_n[subtask_id, col] += 1
        else:
            self.success_sum[subtask_id, col] += success
            self.success_n[subtask_id, col] += 1
        self.cost_sum[subtask_id, col] += cost or 0.0
        self.tokens_sum[subtask_id, col] += tokens or 0.0
        u = self.model_usage[model]
        u[0] += cost or 0.0
        u[1] += tokens or 0.0
        u[2] += 1

    def class_rates(self, task_class: str | None) -> dict[str, tuple[float, int]]:
        if task_class is None:
            return {m: (s / n, n) for m, (s, n) in self.model_totals.items() if n}
        return {m: (s / n, n) for m, (s, n) in self.class_totals.get(task_class, {}).items() if n}

    def conditioned_rates(self) -> dict[str, tuple[float, int]]:
        return {m: (s / n, int(n)) for m, (s, n) in self.cond_totals.items() if n}

    def usage(self) -> dict[str, tuple[float, float, int]]:
        return {m: (c / n, t / n, int(n)) for m, (c, t, n) in self.model_usage.items() if n}

    def folded(self) -> int:
        return int(sum(n for _, n in self.model_totals.values()) + sum(n for _, n in self.cond_totals.values()))

    def joint_counts(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(models, counts, success sums) per subtask and model, conditioned outcomes included."""
        models = list(self.model_cols)
        cols = [self.model_cols[m] for m in models]
        n = self.success_n[:, cols].astype(np.float64)
        s = self.success_sum[:, cols]
        if self.cond_totals:
            n = n + self.cond_n[:, cols]
            s = s + self.cond_sum[:, cols]
        return models, n, s

    def at(self, ids: Sequence[int]) -> HitSums:
        """The sums at these subtasks (rows in the order of `ids`; zeros where nothing is folded in yet)."""
        ids_arr = np.asarray(ids)
        known = ids_arr < self.success_sum.shape[0]  # a subtask with no outcome folded in yet has none
        sums = np.zeros((len(ids), self.success_sum.shape[1]))
        counts = np.zeros((len(ids), self.success_sum.shape[1]), dtype=np.int32)
        sums[known], counts[known] = self.success_sum[ids_arr[known]], self.success_n[ids_arr[known]]
        cond_n = np.zeros(counts.shape, dtype=np.int32)
        cond_n[known] = self.cond_n[ids_arr[known]]
        any_cond = bool(cond_n.any())
        cond_s = None
        if any_cond:
            cond_s = np.zeros(sums.shape)
            cond_s[known] = self.cond_sum[ids_arr[known]]
            all_n = counts + cond_n
        else:
            all_n = counts
        costs = np.zeros(sums.shape)
        toks = np.zeros(sums.shape)
        costs[known], toks[known] = self.cost_sum[ids_arr[known]], self.tokens_sum[ids_arr[known]]
        return HitSums(list(self.model_cols.items()), sums, counts, all_n, cond_n, cond_s, costs, toks, any_cond)


@dataclass
class HitSums:
    """The sums at a few subtasks (a row each), copied out of :class:`Aggregates` under the store's lock; a
    column per model of ``models`` ((model, column) pairs)."""

    models: list[tuple[str, int]]
    sums: np.ndarray  # unconditioned success sums
    counts: np.ndarray  # unconditioned counts
    all_n: np.ndarray  # every outcome's count (conditioned ones too)
    cond_n: np.ndarray
    cond_s: np.ndarray | None  # None when no row has a conditioned outcome (any_cond)
    costs: np.ndarray
    toks: np.ndarray
    any_cond: bool

    def neighbours(
        self, hits: list[tuple[int, float]], info: dict[int, tuple[str, str | None]], answers: dict[int, dict[str, str]]
    ) -> Neighbours:
        """The :class:`Neighbour` of each hit (subtask id, similarity) whose (text, class) is in `info`, with
        their :class:`NeighbourBlock`."""
        # per-row dicts from plain lists (numpy scalars one by one cost more than the search itself)
        names = [m for m, _ in self.models]
        cols = [c for _, c in self.models]
        counts, all_n, sums = self.counts[:, cols], self.all_n[:, cols], self.sums[:, cols]
        any_cond, cond_n, cond_s = self.any_cond, self.cond_n, self.cond_s
        have = (counts > 0).tolist()
        means = np.divide(sums, counts, out=np.zeros(sums.shape), where=counts > 0).tolist()
        ran = (all_n > 0).tolist() if any_cond else have
        denom = np.maximum(all_n, 1)
        mean_cost = (self.costs[:, cols] / denom).tolist()
        mean_toks = (self.toks[:, cols] / denom).tolist()
        if any_cond:
            cond_n = cond_n[:, cols]
            cond_has = (cond_n > 0).tolist()
            cond_mean = np.divide(cond_s[:, cols], cond_n, out=np.zeros(sums.shape), where=cond_n > 0).tolist()
        out, rows = Neighbours(), []
        every = len(names)
        for r, (sid, sim) in enumerate(hits):
            if sid in info:
                h, rn = have[r], ran[r]
                full = sum(h) == every
                out.append(
                    Neighbour(
                        sid,
                        sim,
                        info[sid][0],
                        info[sid][1],
                        dict(zip(names, means[r])) if full else {m: v for m, v, ok in zip(names, means[r], h) if ok},
                        dict(answers.get(sid, {})),
                        dict(zip(names, mean_cost[r]))
                        if full and rn is h
                        else {m: v for m, v, ok in zip(names, mean_cost[r], rn) if ok},
                        dict(zip(names, mean_toks[r]))
                        if full and rn is h
                        else {m: v for m, v, ok in zip(names, mean_toks[r], rn) if ok},
                        {m: v for m, v, ok in zip(names, cond_mean[r], cond_has[r]) if ok} if any_cond else {},
                    )
                )
                rows.append(r)
        ran_arr = (all_n > 0) if any_cond else (counts > 0)
        block = NeighbourBlock(
            names,
            np.asarray([sim for _, sim in hits], dtype=np.float64),
            np.asarray(means, dtype=np.float64).reshape(len(hits), len(names)),
            counts > 0,
            ran_arr,
            np.asarray(mean_cost, dtype=np.float64).reshape(len(hits), len(names)) * ran_arr,
            np.asarray(mean_toks, dtype=np.float64).reshape(len(hits), len(names)) * ran_arr,
            (cond_n > 0).any(axis=1) if any_cond else np.zeros(len(hits), dtype=bool),
        )
        out.block = block.take(rows) if len(rows) != len(hits) else block
        return out


def joint_rates(
    models: list[str], n: np.ndarray, s: np.ndarray
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(models, given_wrong, given_right, rate) from :meth:`Aggregates.joint_counts` (see
    :meth:`store.outcomes.OutcomeStore.joint_rates`)."""
    seen = (n > 0).astype(np.float64)
    mean = np.divide(s, n, out=np.zeros_like(s), where=n > 0)
    wrong = (1.0 - mean) * seen
    with np.errstate(invalid="ignore", divide="ignore"):
        given_wrong = (mean.T @ wrong) / (seen.T @ wrong)
        given_right = (mean.T @ mean) / (seen.T @ mean)
        rate = (mean.T @ seen) / (seen.T @ seen)
    return models, given_wrong, given_right, rate
