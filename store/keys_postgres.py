"""The API keys of a Postgres outcome store: tables of its migrations (:mod:`store.postgres_schema`)."""

from __future__ import annotations

import psycopg

from fusiongraph.store.backend import StoreError
from fusiongraph.store.key_backend import KEY_COLUMNS, KeyBackend
from fusiongraph.store.postgres import PostgresBackend


class PostgresKeyBackend(KeyBackend):
    """Keys through the connection of a :class:`~store.postgres.PostgresBackend` (reconnects and errors as there)."""

    db: PostgresBackend

    def keys_schema(self):
        """Apply the migrations (as the outcome store's ``open`` does) without writing its metadata."""
        self.db.apply_migrations()

    def key_count(self):
        return self.db.query("SELECT count(*) FROM api_keys")[0][0]

    def key_insert(self, key_id, name, key_hash, prefix, budget_usd, period, now):
        try:
            self.db.run(
                lambda conn: conn.execute(
                    "INSERT INTO api_keys (id, name, key_hash, prefix, budget_usd, period, created_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (key_id, name, key_hash, prefix, budget_usd, period, now),
                ),
                write=True,
            )
        except StoreError as exc:
            if isinstance(exc.__cause__, psycopg.errors.UniqueViolation):
                raise StoreError(f"a key named {name!r} already exists in {self.label}") from exc
            raise

    def key_rows(self):
        return self.db.query(f"SELECT {', '.join(KEY_COLUMNS)} FROM api_keys ORDER BY created_at, id")

    def key_where(self, column, value):
        assert column in ("id", "key_hash"), column
        rows = self.db.query(f"SELECT {', '.join(KEY_COLUMNS)} FROM api_keys WHERE {column} = %s", (value,))
        return rows[0] if rows else None

    def key_revoke(self, id_or_name, now):
        return self.db.run(
            lambda conn: (
                conn.execute(
                    "UPDATE api_keys SET revoked_at = %s WHERE (id = %s OR name = %s) AND revoked_at IS NULL",
                    (now, id_or_name, id_or_name),
                ).rowcount
            ),
            write=True,
        )

    def key_spent(self, key_id, period_start):
        rows = self.db.query(
            "SELECT spent_usd FROM api_key_spend WHERE key_id = %s AND period_start = %s", (key_id, period_start)
        )
        return float(rows[0][0]) if rows else 0.0

    def key_charge(self, key_id, period_start, cost_usd, run_id, now):
        def charge(conn):
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(
                    "INSERT INTO api_key_charges (key_id, period_start, cost_usd, run_id, created_at)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (run_id) WHERE run_id IS NOT NULL DO NOTHING RETURNING id",
                    (key_id, period_start, cost_usd, run_id, now),
                )
                if cur.fetchone() is None:  # this run was charged already
                    cur.execute(
                        "SELECT spent_usd FROM api_key_spend WHERE key_id = %s AND period_start = %s",
                        (key_id, period_start),
                    )
                    row = cur.fetchone()
                    return float(row[0]) if row else 0.0
                cur.execute(
                    "INSERT INTO api_key_spend AS s (key_id, period_start, spent_usd, runs)"
                    " VALUES (%s, %s, %s, 1) ON CONFLICT (key_id, period_start) DO UPDATE SET"
                    " spent_usd = s.spent_usd + EXCLUDED.spent_usd, runs = s.runs + 1 RETURNING s.spent_usd",
                    (key_id, period_start, cost_usd),
                )
                return float(cur.fetchone()[0])

        return self.db.run(charge, write=True)
