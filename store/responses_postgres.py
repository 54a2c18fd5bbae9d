"""The Responses API conversations of a Postgres outcome store: a table of its migrations
(:mod:`store.postgres_schema`)."""

from __future__ import annotations

from fusiongraph.store.postgres import PostgresBackend
from fusiongraph.store.response_backend import ResponseBackend


class PostgresResponseBackend(ResponseBackend):
    """Responses through the connection of a :class:`~store.postgres.PostgresBackend` (reconnects and errors as
    there)."""

    db: PostgresBackend

    def responses_schema(self):
        """Apply the migrations (as the outcome store's ``open`` does) without writing its metadata."""
        self.db.apply_migrations()

    def response_insert(self, response_id, key_id, created_at, messages):
        self.db.run(
            lambda conn: conn.execute(
                "INSERT INTO responses (id, key_id, created_at, messages) VALUES (%s, %s, %s, %s)",
                (response_id, key_id, created_at, messages),
            ),
            write=True,
        )

    def response_get(self, response_id, key_id, since):
        rows = self.db.query(
            "SELECT messages FROM responses WHERE id = %s AND key_id IS NOT DISTINCT FROM %s::text"
            " AND created_at >= %s",
            (response_id, key_id, since),
        )
        return rows[0][0] if rows else None

    def response_prune(self, before):
        return self.db.run(
            lambda conn: conn.execute("DELETE FROM responses WHERE created_at < %s", (before,)).rowcount,
            write=True,
        )

    def response_forget(self, pattern, before):
        return self.db.run(
            lambda conn: (
                conn.execute(
                    "DELETE FROM responses WHERE (%s::text IS NULL OR LOWER(messages) LIKE %s ESCAPE '\\')"
                    " AND (%s::double precision IS NULL OR created_at < %s)",
                    (pattern, pattern, before, before),
                ).rowcount
            ),
            write=True,
        )

    def response_rows(self):
        return self.db.query("SELECT id, key_id, created_at, messages FROM responses ORDER BY created_at", ())

    def response_import(self, rows):
        def insert(conn):
            added = 0
            with conn.cursor() as cur:
                for row in rows:
                    cur.execute(
                        "INSERT INTO responses (id, key_id, created_at, messages) VALUES (%s, %s, %s, %s)"
                        " ON CONFLICT (id) DO NOTHING",
                        row,
                    )
                    added += cur.rowcount
            return added

        return self.db.run(insert, write=True)
