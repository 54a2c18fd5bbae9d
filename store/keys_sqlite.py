"""The API keys of a SQLite outcome store: tables beside the outcomes, in the same file."""

from __future__ import annotations

import sqlite3

from fusiongraph.store.backend import StoreError
from fusiongraph.store.key_backend import KEY_COLUMNS, KeyBackend
from fusiongraph.store.sqlite import SQLiteBackend

# SQLite: created on first use only (an older fusiongraph opening the same file ignores these tables)
KEYS_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    budget_usd REAL NOT NULL CHECK (budget_usd >= 0),
    period TEXT NOT NULL CHECK (period IN ('day', 'month', 'total')),
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS api_key_spend (
    key_id TEXT NOT NULL REFERENCES api_keys(id),
    period_start TEXT NOT NULL,
    spent_usd REAL NOT NULL DEFAULT 0,
    runs INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, period_start)
);
CREATE TABLE IF NOT EXISTS api_key_charges (
    id INTEGER PRIMARY KEY,
    key_id TEXT NOT NULL,
    period_start TEXT NOT NULL,
    cost_usd REAL NOT NULL,
    run_id TEXT,
    created_at REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS api_key_charges_run ON api_key_charges(run_id) WHERE run_id IS NOT NULL;
"""


class SQLiteKeyBackend(KeyBackend):
    """Keys on the connection of a :class:`~store.sqlite.SQLiteBackend`."""

    def __init__(self, db: SQLiteBackend):
        super().__init__(db)
        self._db = db.connection

    def keys_schema(self):
        self._db.executescript(KEYS_SCHEMA)

    def key_count(self):
        return self._db.execute("SELECT COUNT(*) FROM api_keys").fetchone()[0]

    def key_insert(self, key_id, name, key_hash, prefix, budget_usd, period, now):
        try:
            self._db.execute(
                "INSERT INTO api_keys (id, name, key_hash, prefix, budget_usd, period, created_at)"
                " VALUES (?,?,?,?,?,?,?)",
                (key_id, name, key_hash, prefix, budget_usd, period, now),
            )
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"a key named {name!r} already exists in {self.label}") from exc

    def key_rows(self):
        return self._db.execute(f"SELECT {', '.join(KEY_COLUMNS)} FROM api_keys ORDER BY created_at, id").fetchall()

    def key_where(self, column, value):
        assert column in ("id", "key_hash"), column
        return self._db.execute(
            f"SELECT {', '.join(KEY_COLUMNS)} FROM api_keys WHERE {column} = ?", (value,)
        ).fetchone()

    def key_revoke(self, id_or_name, now):
        return self._db.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE (id = ? OR name = ?) AND revoked_at IS NULL",
            (now, id_or_name, id_or_name),
        ).rowcount

    def key_spent(self, key_id, period_start):
        row = self._db.execute(
            "SELECT spent_usd FROM api_key_spend WHERE key_id = ? AND period_start = ?", (key_id, period_start)
        ).fetchone()
        return float(row[0]) if row else 0.0

    def key_charge(self, key_id, period_start, cost_usd, run_id, now):
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            cur.execute(
                "INSERT OR IGNORE INTO api_key_charges (key_id, period_start, cost_usd, run_id, created_at)"
                " VALUES (?,?,?,?,?)",
                (key_id, period_start, cost_usd, run_id, now),
            )
            if cur.rowcount:  # else this run was charged already
                cur.execute(
                    "INSERT INTO api_key_spend (key_id, period_start, spent_usd, runs) VALUES (?, ?, ?, 1)"
                    " ON CONFLICT (key_id, period_start) DO UPDATE SET"
                    " spent_usd = spent_usd + excluded.spent_usd, runs = runs + 1",
                    (key_id, period_start, cost_usd),
                )
            row = cur.execute(
                "SELECT spent_usd FROM api_key_spend WHERE key_id = ? AND period_start = ?", (key_id, period_start)
            ).fetchone()
            spent = row[0] if row else 0.0
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return float(spent)
