"""The Postgres backend of the outcome store: one database shared by every worker of every machine.

Chosen by a ``postgresql://`` (or ``postgres://``) URL: ``FUSIONGRAPH_STORE_URL``, or a URL given where a
store directory goes (``--store-dir``, the ``store_dir`` knob). Postgres is the source of truth for
subtasks (embeddings as float32 ``bytea``), outcomes (accepted answers are the guides) and the artifacts
workers share (the success probe's fit, see :meth:`store.outcomes.OutcomeStore.put_artifact`). Each worker
keeps what routing reads in memory (its :class:`~store.outcomes.OutcomeStore`: aggregates and the FAISS
index, loaded at start, optionally from a local cache directory) and keeps it current incrementally.

**Keeping current.** Every write transaction ends with ``pg_notify('fusiongraph_store', ...)``, delivered
at commit. Each store instance runs a listener thread on its own connection (``LISTEN``, see
:mod:`store.postgres_listen`) that calls ``refresh()`` on each notification, so an outcome recorded by one
replica routes in another as soon as the notification arrives; while the listener is down (reconnecting
with backoff) reads poll instead, and it refreshes every ``SAFETY_REFRESH_S`` seconds anyway in case a
notification was lost.

**Watermarks and gaps.** ``refresh()`` reads the rows with id > the highest id it has folded in. Plain
``BIGSERIAL`` ids are drawn at insert but become visible at commit, so concurrent transactions can commit
out of id order: a reader could see id 8 before id 7 commits, move its watermark past 7 and never read
it. We make ids commit-ordered instead of tracking gaps: every writer takes a transaction-scoped advisory
lock (``pg_advisory_xact_lock``) *before* it draws any id, and holds it through its commit. Postgres marks a
transaction visible before it releases its locks, so the next writer draws higher ids only after the
previous writer's rows are visible: a snapshot that sees id N sees every committed id below N, and the ids
of rolled-back transactions are never seen by anyone, which is harmless. The cost is that writes to one
database are serialised for the length of one insert transaction (SQLite serialises writers
too); reads never wait. Tracking a set of missing ids "for a while" guesses how long a transaction may
stay open, and an xid8 snapshot scheme needs per-row transaction ids and windowed de-duplication; the lock
is exact and small. Every write path (``insert``, ``import_rows``, ``forget``) takes it; rows inserted by hand with
plain SQL outside it break the promise (a worker restart recovers).

**Schema.** Numbered migrations in :data:`store.postgres_schema.MIGRATIONS`, recorded in ``schema_version``,
applied in one transaction under an advisory lock (:meth:`PostgresBackend.apply_migrations`) by whichever
worker opens the database first; a database migrated by a newer fusiongraph is refused with a clear error.

**Failures.** An operation that loses the connection raises :class:`~store.backend.StoreError`; the next
call reconnects (a read is retried once on a fresh connection first). A write is one transaction: it is
either committed whole or rolled back by the server when the connection (or the process) dies.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Callable

import psycopg

from fusiongraph.store.backend import OUTCOME_COLUMNS, Backend, StoreError, mask_url
from fusiongraph.store.postgres_listen import CHANNEL, Listener
from fusiongraph.store.postgres_schema import LATEST, MIGRATIONS
from fusiongraph.store.sql import (
    OUTCOME_ROWS_SQL,
    check_import,
    forget_filter,
    import_keys,
    import_summary,
    outcome_values,
    refuse_filled,
)

log = logging.getLogger(__name__)

MIGRATE_LOCK = 0x6667_0001  # advisory lock keys (any constants unlikely to collide with an application's)
WRITE_LOCK = 0x6667_0002
CONNECT_TIMEOUT_S = 5


_SUBTASK_INSERT = (
    "INSERT INTO subtasks (id, text_hash, text, task_class, embedding, created_at) VALUES (%s, %s, %s, %s, %s, %s)"
)
_OUTCOME_INSERT = (
    "INSERT INTO outcomes (subtask_id, model, task_class, success, accepted, judges, answer, error,"
    " tokens_in, tokens_out, cost_usd, latency_s, source, run_id, created_at, after_rejection)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


class PostgresBackend(Backend):
    scheme = "postgresql"

    def __init__(self, url: str):
        self.url = url
        self.label = mask_url(url)
        self.directory = None
        self.store_id = None
        self._kwargs = {"autocommit": True, "application_name": "fusiongraph"}
        if "connect_timeout" not in url:
            self._kwargs["connect_timeout"] = CONNECT_TIMEOUT_S
        self._conn: psycopg.Connection | None = None
        self._conn_lock = threading.RLock()
        self._listener = Listener(url, self._kwargs, self.label)
        self._closed = False

    # ------------------------------------------------------------ connection
    def _connect(self) -> psycopg.Connection:
        if self._closed:
            raise StoreError(f"outcome store {self.label} is closed")
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            self._drop()
            try:
                conn = psycopg.connect(self.url, **self._kwargs)
                # a writer that hangs inside a transaction must not hold the write lock for ever
                conn.execute("SET idle_in_transaction_session_timeout = '60s'")
                conn.execute("SET lock_timeout = '60s'")
            except psycopg.Error as exc:
                raise StoreError(
                    f"cannot connect to the outcome store {self.label}: {str(exc).strip()}; check that "
                    f"Postgres is running and the URL (host, port, database, user) is right"
                ) from exc
            self._conn = conn
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def run(self, fn: Callable[[psycopg.Connection], object], write: bool = False):
        """Run `fn(connection)`; a lost connection is a StoreError (a read is retried once first).

        A write is never retried (a commit that broke midway may have landed), so before one the connection
        is checked with a ping outside any transaction: one that died while idle (a Postgres restart, a
        killed backend) is replaced first instead of losing the write."""
        with self._conn_lock:
            if write and self._conn is not None:
                try:
                    self._conn.execute("SELECT 1")
                except psycopg.Error:
                    self._drop()
            for attempt in range(1 if write else 2):
                conn = self._connect()
                try:
                    return fn(conn)
                except psycopg.OperationalError as exc:
                    lost = conn.closed or conn.broken
                    if lost:
                        self._drop()
                    if write or attempt or not lost:
                        what = (
                            "the write was rolled back (or, if the connection broke during its commit, committed whole)"
                            if write
                            else "the read failed"
                        )
                        raise StoreError(
                            f"outcome store {self.label}: {str(exc).strip()}; {what}; the next call reconnects"
                        ) from exc
                except psycopg.Error as exc:
                    raise StoreError(f"outcome store {self.label}: {type(exc).__name__}: {str(exc).strip()}") from exc

    def query(self, sql: str, params=None) -> list[tuple]:
        return self.run(lambda conn: conn.execute(sql, params).fetchall())

    # ------------------------------------------------------------ opening
    def _migrate(self, conn: psycopg.Connection) -> None:
        """Apply the migrations the database lacks, inside the caller's transaction, under the migration lock."""
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY,"
            " description TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
        if current > LATEST:
            raise StoreError(
                f"outcome store {self.label} has schema version {current}, this fusiongraph "
                f"knows up to {LATEST}: upgrade fusiongraph"
            )
        for version, description, ddl in MIGRATIONS:
            if version > current:
                conn.execute(ddl)
                conn.execute(
                    "INSERT INTO schema_version (version, description) VALUES (%s, %s)", (version, description)
                )
                log.info("outcome store %s: applied migration %d (%s)", self.label, version, description)

    def apply_migrations(self) -> None:
        """Apply the migrations (as :meth:`open` does) without writing the outcome store's metadata."""

        def migrate(conn):
            with conn.transaction():
                self._migrate(conn)

        self.run(migrate, write=True)

    def open(self, dim: int, embedder_name: str) -> dict[str, str]:
        def migrate(conn):
            with conn.transaction():
                self._migrate(conn)
                meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
                if not meta:
                    meta = {"dim": str(dim), "embedder": embedder_name, "version": "1", "store_id": uuid.uuid4().hex}
                    with conn.cursor() as cur:
                        cur.executemany("INSERT INTO meta VALUES (%s, %s)", list(meta.items()))
                return meta

        meta = self.run(migrate, write=True)
        self.store_id = meta.get("store_id")
        return meta

    def schema_version(self) -> int:
        return self.query("SELECT COALESCE(MAX(version), 0) FROM schema_version")[0][0]

    def read_meta(self) -> dict[str, str]:
        def read(conn):
            if conn.execute("SELECT to_regclass('meta')").fetchone()[0] is None:
                return {}
            return dict(conn.execute("SELECT key, value FROM meta").fetchall())

        meta = self.run(read)
        self.store_id = meta.get("store_id")
        return meta

    # ------------------------------------------------------------ listening
    def listen(self, on_change: Callable[[], bool]) -> None:
        self._listener.start(on_change)

    def changed(self) -> bool:
        return not self._listener.listening  # while the listener is down, every read polls

    @property
    def listening(self) -> bool:
        return self._listener.listening

    def stop(self) -> None:
        self._listener.stop()

    def close(self) -> None:
        self.stop()
        with self._conn_lock:
            self._drop()
            self._closed = True

    # ------------------------------------------------------------ rows after a watermark
    def subtasks_after(self, after):
        return self.query("SELECT id, embedding FROM subtasks WHERE id > %s ORDER BY id", (after,))

    def subtasks_between(self, lo, hi):
        return self.query("SELECT id, embedding FROM subtasks WHERE id > %s AND id <= %s ORDER BY id", (lo, hi))

    def outcomes_after(self, after):
        return self.query(
            "SELECT subtask_id, model, task_class, success, id, cost_usd, tokens_out, after_rejection FROM outcomes"
            " WHERE id > %s AND error IS NULL ORDER BY id",
            (after,),
        )

    # ------------------------------------------------------------ writing
    def insert(self, items, now):
        def write(conn):
            with conn.transaction(), conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))  # ids commit in order: see above
                hashes = list(dict.fromkeys(item[0] for item in items))
                cur.execute("SELECT text_hash, id FROM subtasks WHERE text_hash = ANY(%s)", (hashes,))
                known = dict(cur.fetchall())
                new = {}
                for h, text, task_class, blob, _ in items:
                    if h not in known and h not in new:
                        new[h] = (text, task_class, blob)
                if new:
                    cur.execute(
                        "SELECT nextval(pg_get_serial_sequence('subtasks', 'id')) FROM generate_series(1, %s)",
                        (len(new),),
                    )
                    fresh = sorted(r[0] for r in cur.fetchall())
                    rows = [(i, h, text, cls, blob, now) for i, (h, (text, cls, blob)) in zip(fresh, new.items())]
                    cur.executemany(_SUBTASK_INSERT, rows)
                    known.update((r[1], r[0]) for r in rows)
                values = [outcome_values(known[h], cls, o, now) for h, _, cls, _, outs in items for o in outs]
                if values:
                    cur.executemany(_OUTCOME_INSERT, values)
                cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, ""))
                return [known[item[0]] for item in items]

        return self.run(write, write=True)

    # ------------------------------------------------------------ reading
    def subtask_info(self, ids):
        return {
            r[0]: r[1:]
            for r in self.query("SELECT id, text, task_class FROM subtasks WHERE id = ANY(%s)", (list(ids),))
        }

    def accepted_answers(self, ids):
        return self.query(
            "SELECT subtask_id, model, answer FROM outcomes WHERE subtask_id = ANY(%s)"
            " AND error IS NULL AND accepted AND answer IS NOT NULL AND answer <> '' ORDER BY id",
            (list(ids),),
        )

    def newest_subtasks(self, below, limit):
        return self.query(
            "SELECT id, task_class, embedding FROM subtasks WHERE id < %s ORDER BY id DESC LIMIT %s",
            (below, int(limit)),
        )

    def count_rows(self, upto=None):
        if upto is None:
            return tuple(self.query("SELECT (SELECT count(*) FROM subtasks), (SELECT count(*) FROM outcomes)")[0])
        return tuple(
            self.query(
                "SELECT (SELECT count(*) FROM subtasks WHERE id <= %s), (SELECT count(*) FROM outcomes WHERE id <= %s)",
                upto,
            )[0]
        )

    def outcome_rows(self, limit):
        sql = OUTCOME_ROWS_SQL
        if limit:
            sql += f" LIMIT {int(limit)}"
        return self.query(sql)

    def hashes_with_source(self, source):
        return {
            r[0]
            for r in self.query(
                "SELECT DISTINCT s.text_hash FROM outcomes o JOIN subtasks s"
                " ON s.id = o.subtask_id WHERE o.source = %s",
                (source,),
            )
        }

    # ------------------------------------------------------------ artifacts
    def get_artifact(self, name):
        rows = self.query("SELECT data FROM artifacts WHERE name = %s", (name,))
        return bytes(rows[0][0]) if rows else None

    def put_artifact(self, name, data):
        self.run(
            lambda conn: conn.execute(
                "INSERT INTO artifacts (name, data) VALUES (%s, %s)"
                " ON CONFLICT (name) DO UPDATE SET data = EXCLUDED.data, updated_at = now()",
                (name, bytes(data)),
            ),
            write=True,
        )

    # ------------------------------------------------------------ copying
    def max_ids(self):
        o = self.query("SELECT COALESCE(MAX(id), 0) FROM outcomes")[0][0]
        s = self.query("SELECT COALESCE(MAX(id), 0) FROM subtasks")[0][0]
        return s, o

    def select(self, sql, params):
        return self.query(sql.replace("?", "%s"), params)

    def has_table(self, name):
        return self.query("SELECT to_regclass(%s) IS NOT NULL", (name,))[0][0]

    def has_column(self, table, column):
        return bool(
            self.query(
                "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()"
                " AND table_name = %s AND column_name = %s",
                (table, column),
            )
        )

    def import_rows(self, subtasks, outcomes, append, expected, keys=None):
        def copy(conn):
            with conn.transaction(), conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                cur.execute("SELECT (SELECT count(*) FROM subtasks), (SELECT count(*) FROM outcomes)")
                before = tuple(cur.fetchone())
                refuse_filled(self.label, before, append)
                mapping: dict[int, int] = {}
                added_s = added_o = 0
                for rows in subtasks:
                    cur.execute("SELECT text_hash, id FROM subtasks WHERE text_hash = ANY(%s)", ([r[1] for r in rows],))
                    known = dict(cur.fetchall())
                    new = [r for r in rows if r[1] not in known]
                    for r in rows:
                        if r[1] in known:
                            mapping[r[0]] = known[r[1]]
                    if not new:
                        continue
                    cur.execute(
                        "SELECT nextval(pg_get_serial_sequence('subtasks', 'id')) FROM generate_series(1, %s)",
                        (len(new),),
                    )
                    fresh = sorted(r[0] for r in cur.fetchall())
                    with cur.copy(
                        "COPY subtasks (id, text_hash, text, task_class, embedding, created_at) FROM STDIN"
                    ) as cp:
                        for i, (old, h, text, cls, blob, created) in zip(fresh, new):
                            cp.write_row((i, h, text, cls, bytes(blob), created))
                            mapping[old] = i
                    added_s += len(new)
                for rows in outcomes:
                    with cur.copy("COPY outcomes (" + ", ".join(OUTCOME_COLUMNS[1:]) + ") FROM STDIN") as cp:
                        for r in rows:
                            if r[1] not in mapping:
                                raise StoreError(f"outcome {r[0]} refers to subtask {r[1]}, which the source lacks")
                            cp.write_row((mapping[r[1]], *r[2:5], bool(r[5]), *r[6:-1], bool(r[-1])))
                    added_o += len(rows)
                cur.execute("SELECT (SELECT count(*) FROM subtasks), (SELECT count(*) FROM outcomes)")
                after = tuple(cur.fetchone())
                check_import(self.label, expected, len(mapping), added_s, added_o, before, after)
                copied_keys = import_keys(cur, self.label, keys, "%s")
                cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, ""))
            return import_summary(before, after, added_s, added_o, copied_keys)

        return self.run(copy, write=True)

    # ------------------------------------------------------------ erasure
    def forget(self, match, before, now):
        def erase(conn):
            with conn.transaction(), conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                where, params = forget_filter(match, before, "%s")
                cur.execute(f"SELECT s.id FROM subtasks s WHERE {where}", params)
                ids = [r[0] for r in cur.fetchall()]
                counts = {"subtasks": len(ids), "outcomes": 0, "cached_answers": 0}
                if ids:
                    cur.execute("DELETE FROM answer_cache WHERE subtask_id = ANY(%s)", (ids,))
                    counts["cached_answers"] = cur.rowcount
                    cur.execute("DELETE FROM outcomes WHERE subtask_id = ANY(%s)", (ids,))
                    counts["outcomes"] = cur.rowcount
                    cur.execute("DELETE FROM subtasks WHERE id = ANY(%s)", (ids,))
                    cur.execute(
                        "INSERT INTO erasures (at, subtasks, outcomes) VALUES (%s, %s, %s)",
                        (now, counts["subtasks"], counts["outcomes"]),
                    )
                    cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, ""))
                return counts

        return self.run(erase, write=True)

    def erasure_generation(self):
        return self.query("SELECT COALESCE(MAX(id), 0) FROM erasures")[0][0]

    # ------------------------------------------------------------ answer cache
    def cache_put(self, subtask_id, scope, model, fingerprint, task_class, answer, now):
        self.run(
            lambda conn: conn.execute(
                "INSERT INTO answer_cache (subtask_id, scope, model, fingerprint, task_class, answer, created_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (subtask_id, scope) DO UPDATE SET"
                " model = EXCLUDED.model, fingerprint = EXCLUDED.fingerprint, task_class = EXCLUDED.task_class,"
                " answer = EXCLUDED.answer, created_at = EXCLUDED.created_at",
                (subtask_id, scope, model, fingerprint, task_class, answer, now),
            ),
            write=True,
        )

    def cache_get(self, ids, scope, since):
        if not ids:
            return []
        return self.query(
            "SELECT subtask_id, model, fingerprint, task_class, answer, created_at FROM answer_cache"
            " WHERE subtask_id = ANY(%s) AND scope = %s AND created_at >= %s",
            (list(ids), scope, since),
        )

    def cache_drop_model(self, model, fingerprint):
        return self.run(
            lambda conn: (
                conn.execute(
                    "DELETE FROM answer_cache WHERE model = %s AND fingerprint <> %s", (model, fingerprint)
                ).rowcount
            ),
            write=True,
        )
