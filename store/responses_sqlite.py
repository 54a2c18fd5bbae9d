"""The Responses API conversations of a SQLite outcome store: a table beside the outcomes, in the same file."""

from __future__ import annotations

from fusiongraph.store.response_backend import ResponseBackend
from fusiongraph.store.sqlite import SQLiteBackend

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

    def responses_schema(self):
        self._db.executescript(RESPONSES_SCHEMA)

    def response_insert(self, response_id, key_id, created_at, messages):
        self._db.execute(
            "INSERT INTO responses (id, key_id, created_at, messages) VALUES (?, ?, ?, ?)",
            (response_id, key_id, created_at, messages),
        )

    def response_get(self, response_id, key_id, since):
        row = self._db.execute(
            "SELECT messages FROM responses WHERE id = ? AND key_id IS ? AND created_at >= ?",
            (response_id, key_id, since),
        ).fetchone()
        return row[0] if row else None

    def response_prune(self, before):
        return self._db.execute("DELETE FROM responses WHERE created_at < ?", (before,)).rowcount

    def response_forget(self, pattern, before):
        return self._db.execute(
            "DELETE FROM responses WHERE (? IS NULL OR LOWER(messages) LIKE ? ESCAPE '\\')"
            " AND (? IS NULL OR created_at < ?)",
            (pattern, pattern, before, before),
        ).rowcount

    def response_rows(self):
        return self._db.execute("SELECT id, key_id, created_at, messages FROM responses ORDER BY created_at").fetchall()

    def response_import(self, rows):
        with self._db:  # one transaction
            before = self._db.total_changes
            self._db.executemany(
                "INSERT INTO responses (id, key_id, created_at, messages) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                rows,
            )
            return self._db.total_changes - before
