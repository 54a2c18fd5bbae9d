"""The Responses API conversations of a SQLite outcome store: a table beside the outcomes, in the same file."""

from __future__ import annotations

import functools
import sqlite3

from fusiongraph.store.backend import StoreError
from fusiongraph.store.response_backend import ResponseBackend
from fusiongraph.store.sqlite import SQLiteBackend


def _store_errors(method):
    """SQLite's errors (locked past the timeout, disk full, read-only) as :class:`StoreError`, which the server
    answers as such."""

    @functools.wraps(method)
    def wrapped(self, *args):
        try:
            return method(self, *args)
        except sqlite3.Error as exc:
            raise StoreError(f"the conversation store {self.label} failed: {type(exc).__name__}: {exc}") from exc

    return wrapped


# SQLite: created on first use only (an older fusiongraph opening the same file ignores this table)
RESPONSES_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    key_id TEXT,
    created_at REAL NOT NULL,
    messages TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_created ON responses(created_at);
"""


class SQLiteResponseBackend(ResponseBackend):
    """Responses on the connection of a :class:`~store.sqlite.SQLiteBackend`."""

    def __init__(self, db: SQLiteBackend):
        super().__init__(db)
        self._db = db.connection

    @_store_errors
    def responses_schema(self):
        self._db.executescript(RESPONSES_SCHEMA)

    @_store_errors
    def response_insert(self, response_id, key_id, created_at, messages):
        self._db.execute(
            "INSERT INTO responses (id, key_id, created_at, messages) VALUES (?, ?, ?, ?)",
            (response_id, key_id, created_at, messages),
        )

    @_store_errors
    def response_get(self, response_id, key_id, since):
        row = self._db.execute(
            "SELECT messages FROM responses WHERE id = ? AND key_id IS ? AND created_at >= ?",
            (response_id, key_id, since),
        ).fetchone()
        return row[0] if row else None

    @_store_errors
    def response_prune(self, before):
        return self._db.execute("DELETE FROM responses WHERE created_at < ?", (before,)).rowcount

    @_store_errors
    def response_forget(self, pattern, before):
        return self._db.execute(
            "DELETE FROM responses WHERE (? IS NULL OR lower(messages) LIKE ? ESCAPE '\\')"
            " AND (? IS NULL OR created_at < ?)",
            (pattern, pattern, before, before),
        ).rowcount

    @_store_errors
    def response_rows(self):
        return self._db.execute("SELECT id, key_id, created_at, messages FROM responses ORDER BY created_at").fetchall()

    @_store_errors
    def response_import(self, rows):
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")  # one transaction: all of them or none
        try:
            before = self._db.total_changes
            cur.executemany(
                "INSERT INTO responses (id, key_id, created_at, messages) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                rows,
            )
            added = self._db.total_changes - before
            cur.execute("COMMIT")
            return added
        except BaseException:
            cur.execute("ROLLBACK")
            raise
