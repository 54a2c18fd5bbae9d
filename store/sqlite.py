"""The SQLite backend of the outcome store: the embedded default, one file in the store directory."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from fusiongraph.store.backend import ADDED_COLUMNS, Backend, StoreError
from fusiongraph.store.sql import (
    OUTCOME_ROWS_SQL,
    check_import,
    forget_filter,
    import_keys,
    import_summary,
    outcome_values,
    refuse_filled,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS subtasks (
    id INTEGER PRIMARY KEY,
    text_hash TEXT NOT NULL UNIQUE,
    text TEXT NOT NULL,
    task_class TEXT,
    embedding BLOB NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outcomes (
    id INTEGER PRIMARY KEY,
    subtask_id INTEGER NOT NULL REFERENCES subtasks(id),
    model TEXT NOT NULL,
    task_class TEXT,
    success REAL NOT NULL CHECK (success >= 0 AND success <= 1),
    accepted INTEGER NOT NULL,
    judges TEXT NOT NULL DEFAULT '{}',
    answer TEXT,
    error TEXT,
    tokens_in INTEGER NOT NULL DEFAULT 0,
    tokens_out INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0,
    latency_s REAL NOT NULL DEFAULT 0,
    source TEXT NOT NULL DEFAULT 'live',
    run_id TEXT,
    created_at REAL NOT NULL,
    after_rejection INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outcomes_subtask ON outcomes(subtask_id);
"""
# Created on first use only: an older fusiongraph opening the same file ignores it.
ARTIFACTS_SCHEMA = "CREATE TABLE IF NOT EXISTS artifacts (name TEXT PRIMARY KEY, data BLOB NOT NULL, updated_at REAL)"

# `store forget` logs one row per erasure (counts only, never what was matched): every process that shares the
# store sees the generation change and rebuilds its index and sums without the erased rows.
ERASURES_SCHEMA = "CREATE TABLE IF NOT EXISTS erasures (id INTEGER PRIMARY KEY, at REAL NOT NULL, subtasks INTEGER NOT NULL, outcomes INTEGER NOT NULL)"

# The answer cache: one accepted answer per subtask and scope (the API key), with the answering model's
# roster fingerprint (an entry whose model changed is never served, and is dropped).
CACHE_SCHEMA = """
CREATE TABLE IF NOT EXISTS answer_cache (
    subtask_id INTEGER NOT NULL REFERENCES subtasks(id),
    scope TEXT NOT NULL,
    model TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    task_class TEXT,
    answer TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (subtask_id, scope)
);
"""

DB_FILE = "outcomes.sqlite"
MMAP_BYTES = 4 << 30

_OUTCOME_INSERT = (
    "INSERT INTO outcomes (subtask_id, model, task_class, success, accepted, judges, answer,"
    " error, tokens_in, tokens_out, cost_usd, latency_s, source, run_id, created_at, after_rejection)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


def _lower(value):
    return value.lower() if isinstance(value, str) else value


class SQLiteBackend(Backend):
    """The embedded default: one file, WAL mode, several processes of one machine may share it."""

    scheme = "sqlite"

    def __init__(self, directory: str | Path | None):
        self.directory = Path(directory) if directory is not None else None
        if self.directory is None:
            self.label = ":memory:"
            self._db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            self._db.create_function("lower", 1, _lower, deterministic=True)
        else:
            self.directory.mkdir(parents=True, exist_ok=True)
            db_path = self.directory / DB_FILE
            self.label = str(db_path)
            try:
                self._db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None, timeout=60)
                # lower() of any script, as Postgres's (SQLite's own folds ASCII only): what `forget` matches
                self._db.create_function("lower", 1, _lower, deterministic=True)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                # neighbour look-ups hit random rows of a large table: read them through memory maps
                self._db.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
                self._db.execute("PRAGMA cache_size=-65536")
            except sqlite3.DatabaseError as exc:
                raise StoreError(
                    f"outcome store {db_path} is not a readable SQLite database ({exc}); "
                    f"move it aside to start a new store, or restore it from a backup"
                ) from exc
        self._data_version = None

    def _corrupt(self, exc: Exception) -> StoreError:
        return StoreError(
            f"outcome store {self.label} is corrupt or not a fusiongraph store ({exc}); "
            f"move it aside to start a new store, or restore it from a backup"
        )

    def open(self, dim: int, embedder_name: str) -> dict[str, str]:
        try:
            self._db.executescript(SCHEMA)
            self._add_columns()
            self._db.executescript(CACHE_SCHEMA)
            self._db.execute(ERASURES_SCHEMA)
            rows = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
            if not rows:
                self._db.execute(
                    "INSERT INTO meta VALUES ('dim', ?), ('embedder', ?), ('version', '1')", (str(dim), embedder_name)
                )
                rows = {"dim": str(dim), "embedder": embedder_name, "version": "1"}
            return rows
        except sqlite3.DatabaseError as exc:
            raise self._corrupt(exc) from exc

    def _add_columns(self) -> None:
        """Add the :data:`ADDED_COLUMNS` an older store's tables lack (one transaction; another process may be
        doing the same, so each column is checked again under the write lock)."""
        if all(self.has_column(t, c) for t, cols in ADDED_COLUMNS.items() for c in cols):
            return
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            for table, cols in ADDED_COLUMNS.items():
                for column, decl in cols.items():
                    if not self.has_column(table, column):
                        cur.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise

    def read_meta(self) -> dict[str, str]:
        try:
            return dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.OperationalError:
            return {}
        except sqlite3.DatabaseError as exc:
            raise self._corrupt(exc) from exc

    def changed(self) -> bool:
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:
            self._data_version = version
            return True
        return False

    @property
    def connection(self) -> sqlite3.Connection:
        """The connection (autocommit; a write takes ``BEGIN IMMEDIATE``), shared with :mod:`store.keys_sqlite`."""
        return self._db

    def close(self) -> None:
        self._db.close()

    def subtasks_after(self, after):
        return self._db.execute("SELECT id, embedding FROM subtasks WHERE id > ? ORDER BY id", (after,)).fetchall()

    def subtasks_between(self, lo, hi):
        return self._db.execute(
            "SELECT id, embedding FROM subtasks WHERE id > ? AND id <= ? ORDER BY id", (lo, hi)
        ).fetchall()

    def outcomes_after(self, after):
        return self._db.execute(
            "SELECT subtask_id, model, task_class, success, id, cost_usd, tokens_out, after_rejection FROM outcomes"
            " WHERE id > ? AND error IS NULL ORDER BY id",
            (after,),
        ).fetchall()

    def insert(self, items, now):
        ids: list[int] = []
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            for h, text, task_class, blob, outcomes in items:
                row = cur.execute("SELECT id FROM subtasks WHERE text_hash = ?", (h,)).fetchone()
                if row is None:
                    cur.execute(
                        "INSERT INTO subtasks (text_hash, text, task_class, embedding, created_at) VALUES (?,?,?,?,?)",
                        (h, text, task_class, blob, now),
                    )
                    subtask_id = cur.lastrowid
                else:
                    subtask_id = row[0]
                cur.executemany(_OUTCOME_INSERT, [outcome_values(subtask_id, task_class, o, now) for o in outcomes])
                ids.append(subtask_id)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return ids

    def subtask_info(self, ids):
        marks = ",".join("?" * len(ids))
        return {
            r[0]: r[1:]
            for r in self._db.execute(f"SELECT id, text, task_class FROM subtasks WHERE id IN ({marks})", list(ids))
        }

    def accepted_answers(self, ids):
        marks = ",".join("?" * len(ids))
        return self._db.execute(
            f"SELECT subtask_id, model, answer FROM outcomes WHERE subtask_id IN ({marks})"
            " AND error IS NULL AND accepted = 1 AND answer IS NOT NULL AND answer != '' ORDER BY id",
            list(ids),
        ).fetchall()

    def newest_subtasks(self, below, limit):
        return self._db.execute(
            "SELECT id, task_class, embedding FROM subtasks WHERE id < ? ORDER BY id DESC LIMIT ?", (below, int(limit))
        ).fetchall()

    def count_rows(self, upto=None):
        if upto is None:
            return (
                self._db.execute("SELECT COUNT(*) FROM subtasks").fetchone()[0],
                self._db.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0],
            )
        return (
            self._db.execute("SELECT COUNT(*) FROM subtasks WHERE id <= ?", (upto[0],)).fetchone()[0],
            self._db.execute("SELECT COUNT(*) FROM outcomes WHERE id <= ?", (upto[1],)).fetchone()[0],
        )

    def outcome_rows(self, limit):
        sql = OUTCOME_ROWS_SQL
        if limit:
            sql += f" LIMIT {int(limit)}"
        return self._db.execute(sql).fetchall()

    def hashes_with_source(self, source):
        return {
            r[0]
            for r in self._db.execute(
                "SELECT DISTINCT s.text_hash FROM outcomes o JOIN subtasks s ON s.id = o.subtask_id WHERE o.source = ?",
                (source,),
            )
        }

    def get_artifact(self, name):
        try:
            row = self._db.execute("SELECT data FROM artifacts WHERE name = ?", (name,)).fetchone()
        except sqlite3.OperationalError:  # no artifacts table yet
            return None
        return bytes(row[0]) if row else None

    def put_artifact(self, name, data):
        self._db.execute(ARTIFACTS_SCHEMA)
        self._db.execute("INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?)", (name, bytes(data), time.time()))

    def max_ids(self):
        o = self._db.execute("SELECT COALESCE(MAX(id), 0) FROM outcomes").fetchone()[0]
        s = self._db.execute("SELECT COALESCE(MAX(id), 0) FROM subtasks").fetchone()[0]
        return s, o

    def select(self, sql, params):
        return self._db.execute(sql, params).fetchall()

    def has_table(self, name):
        return (
            self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
            is not None
        )

    def has_column(self, table, column):
        return any(r[1] == column for r in self._db.execute(f"PRAGMA table_info({table})"))

    def import_rows(self, subtasks, outcomes, append, expected, keys=None):
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            before = self.count_rows()
            refuse_filled(self.label, before, append)
            mapping: dict[int, int] = {}
            added_s = added_o = 0
            for rows in subtasks:
                for old_id, h, text, cls, blob, created in rows:
                    row = cur.execute("SELECT id FROM subtasks WHERE text_hash = ?", (h,)).fetchone()
                    if row is None:
                        cur.execute(
                            "INSERT INTO subtasks (text_hash, text, task_class, embedding, created_at)"
                            " VALUES (?,?,?,?,?)",
                            (h, text, cls, bytes(blob), created),
                        )
                        mapping[old_id] = cur.lastrowid
                        added_s += 1
                    else:
                        mapping[old_id] = row[0]
            for rows in outcomes:
                try:
                    values = [(mapping[r[1]], *r[2:5], int(bool(r[5])), *r[6:-1], int(bool(r[-1]))) for r in rows]
                except KeyError as exc:
                    raise StoreError(f"an outcome refers to subtask {exc.args[0]}, which the source lacks") from exc
                cur.executemany(_OUTCOME_INSERT, values)
                added_o += len(values)
            after = self.count_rows()
            check_import(self.label, expected, len(mapping), added_s, added_o, before, after)
            copied_keys = import_keys(cur, self.label, keys, "?")
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return import_summary(before, after, added_s, added_o, copied_keys)

    # ------------------------------------------------------------ erasure
    def forget(self, match, before, now):
        where, params = forget_filter(match, before, "?", " ESCAPE '\\'")
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            ids = [r[0] for r in cur.execute(f"SELECT s.id FROM subtasks s WHERE {where}", params)]
            counts = {"subtasks": len(ids), "outcomes": 0, "cached_answers": 0}
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                counts["cached_answers"] += cur.execute(
                    f"DELETE FROM answer_cache WHERE subtask_id IN ({marks})", chunk
                ).rowcount
                counts["outcomes"] += cur.execute(f"DELETE FROM outcomes WHERE subtask_id IN ({marks})", chunk).rowcount
                cur.execute(f"DELETE FROM subtasks WHERE id IN ({marks})", chunk)
            if ids:
                cur.execute(
                    "INSERT INTO erasures (at, subtasks, outcomes) VALUES (?, ?, ?)",
                    (now, counts["subtasks"], counts["outcomes"]),
                )
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return counts

    def erasure_generation(self):
        return self._db.execute("SELECT COALESCE(MAX(id), 0) FROM erasures").fetchone()[0]

    # ------------------------------------------------------------ answer cache
    def cache_put(self, subtask_id, scope, model, fingerprint, task_class, answer, now):
        self._db.execute(
            "INSERT INTO answer_cache (subtask_id, scope, model, fingerprint, task_class, answer, created_at)"
            " VALUES (?,?,?,?,?,?,?) ON CONFLICT (subtask_id, scope) DO UPDATE SET model = excluded.model,"
            " fingerprint = excluded.fingerprint, task_class = excluded.task_class, answer = excluded.answer,"
            " created_at = excluded.created_at",
            (subtask_id, scope, model, fingerprint, task_class, answer, now),
        )

    def cache_get(self, ids, scope, since):
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        return self._db.execute(
            "SELECT subtask_id, model, fingerprint, task_class, answer, created_at FROM answer_cache"
            f" WHERE subtask_id IN ({marks}) AND scope = ? AND created_at >= ?",
            (*ids, scope, since),
        ).fetchall()

    def cache_drop_model(self, model, fingerprint):
        return self._db.execute(
            "DELETE FROM answer_cache WHERE model = ? AND fingerprint <> ?", (model, fingerprint)
        ).rowcount
