"""SQL the backends share: the checks and key copy of an import, the filter of an erasure, an outcome's row.

Written once for both drivers: `mark` is the driver's placeholder (``?`` for SQLite, ``%s`` for Postgres).
"""

from __future__ import annotations

import json

from fusiongraph.store.backend import StoreError
from fusiongraph.store.key_backend import KEY_TABLES

# Backend.outcome_rows: every outcome with its subtask's text, in OUTCOME_ROW_KEYS order
OUTCOME_ROWS_SQL = (
    "SELECT o.id, s.text, o.model, o.task_class, o.success, o.accepted, o.judges, o.error, o.tokens_in,"
    " o.tokens_out, o.cost_usd, o.latency_s, o.source, o.run_id, o.after_rejection FROM outcomes o"
    " JOIN subtasks s ON s.id = o.subtask_id ORDER BY o.id"
)


def refuse_filled(label: str, before: tuple[int, int], append: bool) -> None:
    """An import into a store that already holds rows needs --append."""
    if any(before) and not append:
        raise StoreError(
            f"outcome store {label} already holds {before[0]} subtasks and {before[1]} outcomes; "
            f"pass --append to add to them"
        )


def check_import(
    label: str,
    expected: tuple[int, int],
    mapped: int,
    added_s: int,
    added_o: int,
    before: tuple[int, int],
    after: tuple[int, int],
) -> None:
    """Raise (so the import's transaction rolls back) unless every source row arrived."""
    if mapped != expected[0] or added_o != expected[1] or after != (before[0] + added_s, before[1] + added_o):
        raise StoreError(
            f"copy into {label} incomplete, rolled back: read {mapped} of {expected[0]} subtasks and "
            f"{added_o} of {expected[1]} outcomes; the target went from {before} to {after} "
            f"(subtasks, outcomes)"
        )


def import_summary(before: tuple, after: tuple, added_s: int, added_o: int, keys: dict) -> dict:
    """What :meth:`store.backend.Backend.import_rows` returns: the counts before and after, what it added."""
    return {
        "subtasks_before": before[0],
        "outcomes_before": before[1],
        "subtasks_added": added_s,
        "outcomes_added": added_o,
        "subtasks": after[0],
        "outcomes": after[1],
        "keys": keys,
    }


def import_keys(cur, label: str, keys: dict[str, list[tuple]] | None, mark: str) -> dict[str, int]:
    """Copy exported API key tables inside the caller's transaction (`mark`: the driver's placeholder).

    A key the target already has (same id, name or hash) is refused: budgets are not merged. Checks that
    every row arrived; the number of rows copied per table."""
    if not keys or not keys.get("api_keys"):
        return {table: 0 for table in KEY_TABLES}
    cols = KEY_TABLES["api_keys"]
    ids, names, hashes = ([r[cols.index(c)] for r in keys["api_keys"]] for c in ("id", "name", "key_hash"))
    marks = ", ".join([mark] * len(ids))
    cur.execute(
        f"SELECT name FROM api_keys WHERE id IN ({marks}) OR name IN ({marks}) OR key_hash IN ({marks})",
        (*ids, *names, *hashes),
    )
    clash = sorted(r[0] for r in cur.fetchall())
    if clash:
        raise StoreError(
            f"{label} already holds API keys named {', '.join(map(repr, clash))}: their budgets and spend "
            f"would be merged; revoke and rename them there, or copy into a store without keys"
        )
    copied = {}
    for table, columns in KEY_TABLES.items():
        rows = keys.get(table) or []
        cur.execute(f"SELECT count(*) FROM {table}")
        before = cur.fetchone()[0]
        if rows:
            cur.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})",
                [tuple(r) for r in rows],
            )
        cur.execute(f"SELECT count(*) FROM {table}")
        if cur.fetchone()[0] != before + len(rows):
            raise StoreError(f"copy of {table} into {label} incomplete, rolled back")
        copied[table] = len(rows)
    return copied


def forget_filter(match: str | None, before: float | None, mark: str, escape: str = "") -> tuple[str, list]:
    """The WHERE clause (over ``subtasks s``) and parameters of an erasure: the subtask's text, an outcome's
    answer or a cached answer contains `match` (any case), and/or it was recorded before `before`."""
    where, params = [], []
    if match is not None:
        like = f"LIKE {mark}{escape}"
        where.append(
            f"(lower(s.text) {like} OR EXISTS (SELECT 1 FROM outcomes o WHERE o.subtask_id = s.id"
            f" AND lower(o.answer) {like}) OR EXISTS (SELECT 1 FROM answer_cache c"
            f" WHERE c.subtask_id = s.id AND lower(c.answer) {like}))"
        )
        params += [like_pattern(match)] * 3
    if before is not None:
        where.append(f"s.created_at < {mark}")
        params.append(before)
    return " AND ".join(where), params


def like_pattern(match: str) -> str:
    """A case-insensitive substring pattern for LIKE (with backslash as the escape character)."""
    escaped = match.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def outcome_values(subtask_id: int, task_class: str | None, o, now: float) -> tuple:
    """An :class:`~store.types.Outcome` as the values of an outcomes row (after id)."""
    return (
        subtask_id,
        o.model,
        task_class,
        float(o.success),
        bool(o.accepted),
        json.dumps(o.judges, default=str),
        o.answer,
        o.error,
        int(o.tokens_in),
        int(o.tokens_out),
        float(o.cost_usd),
        float(o.latency_s),
        o.source,
        o.run_id,
        now,
        bool(o.after_rejection),
    )
