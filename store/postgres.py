"""The Postgres backend of the outcome store: one database shared by every worker of every machine.

Chosen by a ``postgresql://`` (or ``postgres://``) URL: ``FUSIONGRAPH_STORE_URL``, or a URL given where a
store directory goes (``--store-dir``, the ``store_dir`` knob). Postgres is the source of truth for
subtasks (embeddings as float32 ``bytea``), outcomes (accepted answers are the guides) and the artifacts
workers share (the success probe's fit, see :meth:`store.outcomes.OutcomeStore.put_artifact`). Each worker
keeps what routing reads in memory (its :class:`~store.outcomes.OutcomeStore`: aggregates and the FAISS
index, loaded at start, optionally from a local cache directory) and keeps it current incrementally.

**Keeping current.** Every write transaction ends with ``pg_notify('fusiongraph_store', ...)``, delivered
at commit. Each store instance runs a listener thread on its own connection (``LISTEN``) that calls
``refresh()`` on each notification, so an outcome recorded by one replica routes in another within
milliseconds; while the listener is down (reconnecting with backoff) reads poll instead, and it refreshes
every 30 s anyway in case a notification was lost.

**Watermarks and gaps.** ``refresh()`` reads the rows with id > the highest id it has folded in. Plain
``BIGSERIAL`` ids are drawn at insert but become visible at commit, so concurrent transactions can commit
out of id order: a reader could see id 8 before id 7 commits, move its watermark past 7 and never read
it. We make ids commit-ordered instead of tracking gaps: every writer takes a transaction-scoped advisory
lock (``pg_advisory_xact_lock``) *before* it draws any id, and holds it through its commit. Postgres marks a
transaction visible before it releases its locks, so the next writer draws higher ids only after the
previous writer's rows are visible: a snapshot that sees id N sees every committed id below N, and the ids
of rolled-back transactions are never seen by anyone, which is harmless. The cost is that writes to one
database are serialised for the few milliseconds of one insert transaction (SQLite serialises writers
too); reads never wait. Tracking a set of missing ids "for a while" guesses how long a transaction may
stay open, and an xid8 snapshot scheme needs per-row transaction ids and windowed de-duplication; the lock
is exact and small. Every write path (``insert``, ``import_rows``) takes it; rows inserted by hand with
plain SQL outside it break the promise (a worker restart recovers).

**Schema.** Numbered migrations in :data:`MIGRATIONS`, recorded in ``schema_version``, applied in one
transaction under an advisory lock by whichever worker opens the database first; a database migrated by
a newer fusiongraph is refused with a clear error.

**Failures.** An operation that loses the connection raises :class:`~store.backends.StoreError`; the next
call reconnects (a read is retried once on a fresh connection first). A write is one transaction: it is
either committed whole or rolled back by the server when the connection (or the process) dies.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Callable

import psycopg

from fusiongraph.store.backends import (
    KEY_COLUMNS,
    OUTCOME_COLUMNS,
    Backend,
    StoreError,
    check_import,
    forget_filter,
    import_keys,
    mask_url,
    outcome_values,
)

log = logging.getLogger(__name__)

CHANNEL = "fusiongraph_store"
MIGRATE_LOCK = 0x6667_0001  # advisory lock keys (any constants unlikely to collide with an application's)
WRITE_LOCK = 0x6667_0002
LISTEN_POLL_S = 0.5  # how often the listener checks whether it should stop
SAFETY_REFRESH_S = 30.0  # refresh this often even without a notification
CONNECT_TIMEOUT_S = 5

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "subtasks, outcomes and metadata",
        """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE subtasks (
    id BIGSERIAL PRIMARY KEY,
    text_hash TEXT NOT NULL UNIQUE,
    text TEXT NOT NULL,
    task_class TEXT,
    embedding BYTEA NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE outcomes (
    id BIGSERIAL PRIMARY KEY,
    subtask_id BIGINT NOT NULL REFERENCES subtasks(id),
    model TEXT NOT NULL,
    task_class TEXT,
    success DOUBLE PRECISION NOT NULL CHECK (success >= 0 AND success <= 1),
    accepted BOOLEAN NOT NULL,
    judges TEXT NOT NULL DEFAULT '{}',
    answer TEXT,
    error TEXT,
    tokens_in BIGINT NOT NULL DEFAULT 0,
    tokens_out BIGINT NOT NULL DEFAULT 0,
    cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
    latency_s DOUBLE PRECISION NOT NULL DEFAULT 0,
    source TEXT NOT NULL DEFAULT 'live',
    run_id TEXT,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX outcomes_subtask ON outcomes(subtask_id);
CREATE INDEX outcomes_source ON outcomes(source);
""",
    ),
    (
        2,
        "artifacts: derived data the workers share (the success probe's fit)",
        """
CREATE TABLE artifacts (
    name TEXT PRIMARY KEY,
    data BYTEA NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
""",
    ),
    (
        3,
        "API keys (sha256 only), their spend per period and a log of charges (fusiongraph/keys.py)",
        """
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    budget_usd DOUBLE PRECISION NOT NULL CHECK (budget_usd >= 0),
    period TEXT NOT NULL CHECK (period IN ('day', 'month', 'total')),
    created_at DOUBLE PRECISION NOT NULL,
    revoked_at DOUBLE PRECISION
);
CREATE TABLE api_key_spend (
    key_id TEXT NOT NULL REFERENCES api_keys(id),
    period_start TEXT NOT NULL,
    spent_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
    runs BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, period_start)
);
CREATE TABLE api_key_charges (
    id BIGSERIAL PRIMARY KEY,
    key_id TEXT NOT NULL,
    period_start TEXT NOT NULL,
    cost_usd DOUBLE PRECISION NOT NULL,
    run_id TEXT,
    created_at DOUBLE PRECISION NOT NULL
);
""",
    ),
    (
        4,
        "a run is charged to its API key at most once (unique run ids among the charges)",
        "CREATE UNIQUE INDEX api_key_charges_run ON api_key_charges (run_id) WHERE run_id IS NOT NULL;",
    ),
    (
        5,
        "answer cache: an accepted answer per subtask and scope (API key), reused for near-identical subtasks",
        """
CREATE TABLE answer_cache (
    subtask_id BIGINT NOT NULL REFERENCES subtasks(id),
    scope TEXT NOT NULL,
    model TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    task_class TEXT,
    answer TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (subtask_id, scope)
);
""",
    ),
    (
        6,
        "erasures: one row per `store forget` (counts only), so every worker drops what was erased",
        """
CREATE TABLE erasures (
    id BIGSERIAL PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL,
    subtasks BIGINT NOT NULL,
    outcomes BIGINT NOT NULL
);
""",
    ),
    (
        7,
        "outcomes.after_rejection: recorded after an earlier tier's answer to the subtask was rejected (older rows: no)",
        "ALTER TABLE outcomes ADD COLUMN after_rejection BOOLEAN NOT NULL DEFAULT false;",
    ),
]
LATEST = MIGRATIONS[-1][0]

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
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None
        self._listening = False
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

    def _run(self, fn: Callable[[psycopg.Connection], object], write: bool = False):
        """Run `fn(connection)`; a lost connection is a StoreError (a read is retried once first).

        A write is never retried (a commit that broke midway may have landed), so before one the connection
        is checked with a ping outside any transaction: one that died while idle (a Postgres restart, a
        killed backend) is replaced first instead of losing the write (tests/test_replicas.py saw 1-2 lost
        outcomes per outage without it)."""
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

    def _rows(self, sql: str, params=None) -> list[tuple]:
        return self._run(lambda conn: conn.execute(sql, params).fetchall())

    # ------------------------------------------------------------ opening
    def open(self, dim: int, embedder_name: str) -> dict[str, str]:
        def migrate(conn):
            with conn.transaction():
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
                meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
                if not meta:
                    meta = {"dim": str(dim), "embedder": embedder_name, "version": "1", "store_id": uuid.uuid4().hex}
                    with conn.cursor() as cur:
                        cur.executemany("INSERT INTO meta VALUES (%s, %s)", list(meta.items()))
                return meta

        meta = self._run(migrate, write=True)
        self.store_id = meta.get("store_id")
        return meta

    def schema_version(self) -> int:
        return self._rows("SELECT COALESCE(MAX(version), 0) FROM schema_version")[0][0]

    def read_meta(self) -> dict[str, str]:
        def read(conn):
            if conn.execute("SELECT to_regclass('meta')").fetchone()[0] is None:
                return {}
            return dict(conn.execute("SELECT key, value FROM meta").fetchall())

        meta = self._run(read)
        self.store_id = meta.get("store_id")
        return meta

    # ------------------------------------------------------------ listening
    def listen(self, on_change: Callable[[], bool]) -> None:
        self._stop.clear()
        self._listener = threading.Thread(
            target=self._listen_loop, args=(on_change,), daemon=True, name=f"fusiongraph-store-listen-{self.label}"
        )
        self._listener.start()

    def changed(self) -> bool:
        return not self._listening  # while the listener is down, every read polls

    @property
    def listening(self) -> bool:
        return self._listening

    def _listen_loop(self, on_change: Callable[[], bool]) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            conn = None
            try:
                conn = psycopg.connect(self.url, **self._kwargs)
                conn.execute(f"LISTEN {CHANNEL}")
                self._listening = True
                backoff = 0.5
                got = True  # catch up on whatever was committed while nobody listened
                last = 0.0
                while not self._stop.is_set():
                    if got or time.monotonic() - last > SAFETY_REFRESH_S:
                        try:
                            if not on_change():
                                return
                        except Exception as exc:  # the main connection is down: it reconnects on its own
                            log.warning("outcome store %s: refresh failed (%s)", self.label, exc)
                        last = time.monotonic()
                    got = False
                    for _ in conn.notifies(timeout=LISTEN_POLL_S, stop_after=1):
                        got = True
            except Exception as exc:
                if not self._stop.is_set():  # warn once per outage, not at every retry
                    (log.warning if self._listening or backoff == 0.5 else log.debug)(
                        "outcome store %s: LISTEN connection lost (%s); reads poll until it is back (retry in %.1f s)",
                        self.label,
                        str(exc).strip(),
                        backoff,
                    )
            finally:
                self._listening = False
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:
                        pass
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 10.0)

    def stop(self) -> None:
        self._stop.set()
        t = self._listener
        if t is not None and t is not threading.current_thread():
            t.join(timeout=LISTEN_POLL_S * 4 + 1)
        self._listener = None

    def close(self) -> None:
        self.stop()
        with self._conn_lock:
            self._drop()
            self._closed = True

    # ------------------------------------------------------------ rows after a watermark
    def subtasks_after(self, after):
        return self._rows("SELECT id, embedding FROM subtasks WHERE id > %s ORDER BY id", (after,))

    def subtasks_between(self, lo, hi):
        return self._rows("SELECT id, embedding FROM subtasks WHERE id > %s AND id <= %s ORDER BY id", (lo, hi))

    def outcomes_after(self, after):
        return self._rows(
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

        return self._run(write, write=True)

    # ------------------------------------------------------------ reading
    def subtask_info(self, ids):
        return {
            r[0]: r[1:]
            for r in self._rows("SELECT id, text, task_class FROM subtasks WHERE id = ANY(%s)", (list(ids),))
        }

    def accepted_answers(self, ids):
        return self._rows(
            "SELECT subtask_id, model, answer FROM outcomes WHERE subtask_id = ANY(%s)"
            " AND error IS NULL AND accepted AND answer IS NOT NULL AND answer <> '' ORDER BY id",
            (list(ids),),
        )

    def newest_subtasks(self, below, limit):
        return self._rows(
            "SELECT id, task_class, embedding FROM subtasks WHERE id < %s ORDER BY id DESC LIMIT %s",
            (below, int(limit)),
        )

    def count_rows(self, upto=None):
        if upto is None:
            return tuple(self._rows("SELECT (SELECT count(*) FROM subtasks), (SELECT count(*) FROM outcomes)")[0])
        return tuple(
            self._rows(
                "SELECT (SELECT count(*) FROM subtasks WHERE id <= %s), (SELECT count(*) FROM outcomes WHERE id <= %s)",
                upto,
            )[0]
        )

    def outcome_rows(self, limit):
        sql = (
            "SELECT o.id, s.text, o.model, o.task_class, o.success, o.accepted, o.judges, o.error, o.tokens_in,"
            " o.tokens_out, o.cost_usd, o.latency_s, o.source, o.run_id, o.after_rejection FROM outcomes o"
            " JOIN subtasks s ON s.id = o.subtask_id ORDER BY o.id"
        )
        if limit:
            sql += f" LIMIT {int(limit)}"
        return self._rows(sql)

    def hashes_with_source(self, source):
        return {
            r[0]
            for r in self._rows(
                "SELECT DISTINCT s.text_hash FROM outcomes o JOIN subtasks s"
                " ON s.id = o.subtask_id WHERE o.source = %s",
                (source,),
            )
        }

    # ------------------------------------------------------------ artifacts
    def get_artifact(self, name):
        rows = self._rows("SELECT data FROM artifacts WHERE name = %s", (name,))
        return bytes(rows[0][0]) if rows else None

    def put_artifact(self, name, data):
        self._run(
            lambda conn: conn.execute(
                "INSERT INTO artifacts (name, data) VALUES (%s, %s)"
                " ON CONFLICT (name) DO UPDATE SET data = EXCLUDED.data, updated_at = now()",
                (name, bytes(data)),
            ),
            write=True,
        )

    # ------------------------------------------------------------ copying
    def max_ids(self):
        o = self._rows("SELECT COALESCE(MAX(id), 0) FROM outcomes")[0][0]
        s = self._rows("SELECT COALESCE(MAX(id), 0) FROM subtasks")[0][0]
        return s, o

    def _select(self, sql, params):
        return self._rows(sql.replace("?", "%s"), params)

    def has_table(self, name):
        return self._rows("SELECT to_regclass(%s) IS NOT NULL", (name,))[0][0]

    def has_column(self, table, column):
        return bool(
            self._rows(
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
                if any(before) and not append:
                    raise StoreError(
                        f"outcome store {self.label} already holds {before[0]} subtasks and "
                        f"{before[1]} outcomes; pass --append to add to them"
                    )
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
            return {
                "subtasks_before": before[0],
                "outcomes_before": before[1],
                "subtasks_added": added_s,
                "outcomes_added": added_o,
                "subtasks": after[0],
                "outcomes": after[1],
                "keys": copied_keys,
            }

        return self._run(copy, write=True)

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

        return self._run(erase, write=True)

    def erasure_generation(self):
        return self._rows("SELECT COALESCE(MAX(id), 0) FROM erasures")[0][0]

    # ------------------------------------------------------------ answer cache
    def cache_put(self, subtask_id, scope, model, fingerprint, task_class, answer, now):
        self._run(
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
        return self._rows(
            "SELECT subtask_id, model, fingerprint, task_class, answer, created_at FROM answer_cache"
            " WHERE subtask_id = ANY(%s) AND scope = %s AND created_at >= %s",
            (list(ids), scope, since),
        )

    def cache_drop_model(self, model, fingerprint):
        return self._run(
            lambda conn: (
                conn.execute(
                    "DELETE FROM answer_cache WHERE model = %s AND fingerprint <> %s", (model, fingerprint)
                ).rowcount
            ),
            write=True,
        )

    # ------------------------------------------------------------ API keys
    def keys_schema(self):
        """Apply the migrations (as :meth:`open` does) without writing the outcome store's metadata."""

        def migrate(conn):
            with conn.transaction():
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

        self._run(migrate, write=True)

    def key_count(self):
        return self._rows("SELECT count(*) FROM api_keys")[0][0]

    def key_insert(self, key_id, name, key_hash, prefix, budget_usd, period, now):
        try:
            self._run(
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
        return self._rows(f"SELECT {', '.join(KEY_COLUMNS)} FROM api_keys ORDER BY created_at, id")

    def key_where(self, column, value):
        assert column in ("id", "key_hash"), column
        rows = self._rows(f"SELECT {', '.join(KEY_COLUMNS)} FROM api_keys WHERE {column} = %s", (value,))
        return rows[0] if rows else None

    def key_revoke(self, id_or_name, now):
        return self._run(
            lambda conn: (
                conn.execute(
                    "UPDATE api_keys SET revoked_at = %s WHERE (id = %s OR name = %s) AND revoked_at IS NULL",
                    (now, id_or_name, id_or_name),
                ).rowcount
            ),
            write=True,
        )

    def key_spent(self, key_id, period_start):
        rows = self._rows(
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

        return self._run(charge, write=True)
