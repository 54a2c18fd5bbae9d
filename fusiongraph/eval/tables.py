"""Outcome tables: a CSV of prompts with each model's recorded outcome, for seeding the store and replaying routers.

Columns (see ``shared/data/outcomes/README.md``):

* ``prompt`` (required): the prompt text;
* ``category`` (optional): the prompt's task class (e.g. the MMLU subject);
* ``score:<model>``: that model's outcome on the prompt, in [0, 1] (at least one such column);
* ``cost:<model>`` (optional): what that model's answer cost, in USD;
* ``tokens:<model>`` (optional): output tokens of that model's answer.

A malformed table raises :class:`TableError`, whose message names the file, the row (1-based data row,
i.e. the header is row 0) and the column.
"""

from __future__ import annotations

import csv
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

SCORE, COST, TOKENS = "score:", "cost:", "tokens:"


class TableError(ValueError):
    """The outcome table cannot be used as it is; the message names the row and column."""


@dataclass
class OutcomeTable:
    prompts: list[str]
    categories: list[str | None] | None  # None when the table has no `category` column
    models: list[str]  # in column order
    scores: np.ndarray  # (n, m) float, in [0, 1]; NaN only where loaded with allow_missing=True
    costs: np.ndarray | None = None  # (n, m) USD, or None without `cost:` columns
    tokens: np.ndarray | None = None  # (n, m) output tokens, or None without `tokens:` columns
    path: str | None = None

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, rows) -> "OutcomeTable":
        rows = np.asarray(rows, dtype=int)
        return OutcomeTable(
            [self.prompts[i] for i in rows],
            [self.categories[i] for i in rows] if self.categories is not None else None,
            list(self.models),
            self.scores[rows],
            self.costs[rows] if self.costs is not None else None,
            self.tokens[rows] if self.tokens is not None else None,
            self.path,
        )

    def complete_rows(self) -> np.ndarray:
        """Indices of the rows where every model has a score."""
        return np.flatnonzero(~np.isnan(self.scores).any(axis=1))


def _number(raw: str, where: str, *, allow_missing: bool) -> float:
    text = (raw or "").strip()
    if text == "" or text.lower() in ("nan", "na", "n/a", "null", "none"):
        if allow_missing:
            return math.nan
        raise TableError(f"{where}: empty or NaN value")
    try:
        value = float(text)
    except ValueError:
        raise TableError(f"{where}: {text[:40]!r} is not a number") from None
    if math.isnan(value):
        if allow_missing:
            return math.nan
        raise TableError(f"{where}: empty or NaN value")
    if math.isinf(value):
        raise TableError(f"{where}: {text!r} is not finite")
    return value


def load_table(path: str | Path, *, allow_missing: bool = False) -> OutcomeTable:
    """Read and validate an outcome table.

    ``allow_missing=True`` keeps an empty/NaN score (a model not run on that prompt) as NaN instead of
    raising; an empty ``cost:``/``tokens:`` cell always reads as NaN. Everything else that is malformed
    raises :class:`TableError` naming the row and column.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"outcome table {path} does not exist")
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise TableError(f"{path}: the table is empty (no header row)") from None
        header = [h.strip() for h in header]
        if "prompt" not in header:
            raise TableError(f"{path}: row 0 (header): no `prompt` column; columns are {header[:8]}")
        dupes = sorted({h for h in header if header.count(h) > 1})
        if dupes:
            raise TableError(f"{path}: row 0 (header): duplicate columns {dupes}")
        models = [h[len(SCORE) :] for h in header if h.startswith(SCORE)]
        if not models or any(not m for m in models):
            raise TableError(
                f"{path}: row 0 (header): no `score:<model>` columns (need at least one, e.g. `score:gpt-4o`)"
            )
        for prefix in (COST, TOKENS):
            for h in header:
                if h.startswith(prefix) and h[len(prefix) :] not in models:
                    raise TableError(f"{path}: row 0 (header), column {h!r}: no matching `score:{h[len(prefix) :]}`")
        col = {h: i for i, h in enumerate(header)}
        has_cat = "category" in col
        cost_cols = [col.get(COST + m) for m in models]
        token_cols = [col.get(TOKENS + m) for m in models]
        any_cost = any(c is not None for c in cost_cols)
        any_tokens = any(c is not None for c in token_cols)
        prompts: list[str] = []
        cats: list[str | None] = []
        scores: list[list[float]] = []
        costs: list[list[float]] = []
        tokens: list[list[float]] = []
        for rowno, row in enumerate(reader, start=1):
            if not row or all(not c.strip() for c in row):
                continue  # blank line
            if len(row) != len(header):
                raise TableError(f"{path}: row {rowno}: {len(row)} fields, the header has {len(header)}")
            prompt = row[col["prompt"]]
            if not prompt.strip():
                raise TableError(f"{path}: row {rowno}, column 'prompt': empty prompt")
            prompts.append(prompt)
            if has_cat:
                cats.append(row[col["category"]].strip() or None)
            srow = []
            for m in models:
                where = f"{path}: row {rowno}, column '{SCORE}{m}'"
                v = _number(row[col[SCORE + m]], where, allow_missing=allow_missing)
                if not math.isnan(v) and not 0.0 <= v <= 1.0:
                    raise TableError(f"{where}: score {v} is outside [0, 1]")
                srow.append(v)
            scores.append(srow)
            for cols, out, prefix in ((cost_cols, costs, COST), (token_cols, tokens, TOKENS)):
                if not any(c is not None for c in cols):
                    continue
                vals = []
                for m, c in zip(models, cols):
                    if c is None:
                        vals.append(math.nan)
                        continue
                    v = _number(row[c], f"{path}: row {rowno}, column '{prefix}{m}'", allow_missing=True)
                    if v < 0:
                        raise TableError(f"{path}: row {rowno}, column '{prefix}{m}': negative value {v}")
                    vals.append(v)
                out.append(vals)
    if not prompts:
        raise TableError(f"{path}: the table has a header but no rows")
    m = len(models)
    return OutcomeTable(
        prompts,
        cats if has_cat else None,
        models,
        np.asarray(scores, dtype=float).reshape(-1, m),
        np.asarray(costs, dtype=float).reshape(-1, m) if any_cost else None,
        np.asarray(tokens, dtype=float).reshape(-1, m) if any_tokens else None,
        str(path),
    )


def import_table(
    store, embedder, table: OutcomeTable, progress: Callable[[int], None] | None = None, *, batch_size: int = 512
) -> dict[str, int]:
    """Seed an :class:`~store.outcomes.OutcomeStore` with a table's outcomes.

    Each prompt is embedded once; each model with a score on it becomes one outcome (success = score,
    accepted = score >= 0.5, cost_usd and tokens_out from the table, source="import"), under the task
    class given by the `category` column (None without one). ``progress(n)`` is called as prompts are
    embedded. Returns the number of prompts and outcomes written.
    """
    vectors = embedder.embed(table.prompts, progress=progress)
    n_outcomes = 0
    for start in range(0, len(table), batch_size):
        items = []
        for i in range(start, min(start + batch_size, len(table))):
            outs = row_outcomes(
                table.models,
                table.scores[i],
                table.costs[i] if table.costs is not None else None,
                table.tokens[i] if table.tokens is not None else None,
            )
            n_outcomes += len(outs)
            items.append(
                (table.prompts[i], vectors[i], table.categories[i] if table.categories is not None else None, outs)
            )
        store.record_many(items)
    return {"prompts": len(table), "outcomes": n_outcomes}


def row_outcomes(
    models: list[str], scores, costs=None, tokens=None, source: str = "import", after_rejection=None
) -> list:
    """One table row as outcomes: success = score, accepted = score >= 0.5; missing scores are left out.

    A table's outcomes are unconditioned (every model answered the prompt); `after_rejection` (a bool per
    model) marks those the bench's online replay records only because earlier tiers were rejected."""
    from fusiongraph.store.types import Outcome

    outs = []
    for j, model in enumerate(models):
        score = float(scores[j])
        if math.isnan(score):
            continue
        cost = float(costs[j]) if costs is not None else 0.0
        toks = float(tokens[j]) if tokens is not None else 0.0
        outs.append(
            Outcome(
                model,
                score,
                score >= 0.5,
                cost_usd=cost if math.isfinite(cost) else 0.0,
                tokens_out=int(round(toks)) if math.isfinite(toks) else 0,
                source=source,
                after_rejection=bool(after_rejection[j]) if after_rejection is not None else False,
            )
        )
    return outs
