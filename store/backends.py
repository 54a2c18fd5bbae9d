"""The SQL side of the outcome store: one small interface, one class per database, chosen by URL scheme.

:class:`store.outcomes.OutcomeStore` keeps everything routing reads in memory (per-subtask aggregates by
model, class totals, the FAISS index) and asks a :class:`Backend` only for rows: the rows committed after a
watermark (to fold in), the text of a few hits, accepted answers, and so on. A backend is the source of
truth; the store's memory and its FAISS index are caches rebuilt from it.

The one promise every backend makes (``refresh`` depends on it): **ids become visible in id order**.
Once a reader sees subtask (or outcome) id N, every row with a lower id that will ever exist is visible
too, so "rows with id > watermark" never skips a row committed late. SQLite gets this for free (one writer
at a time); :mod:`store.postgres` serialises its writers on an advisory lock taken before drawing ids.

Adding a backend: write a module with a :class:`Backend` subclass and add one line to :data:`BACKENDS`
(or call :func:`register_backend`).
"""

from __future__ import annotations

import importlib
import json
import re
import sqlite3
from pathlib import Path
from typing import Callable, ClassVar, Iterable, Iterator, Sequence

# scheme -> "module:Class", imported on first use (psycopg is needed only for a Postgres store)
BACKENDS: dict[str, str] = {
    "sqlite": "fusiongraph.store.backends:SQLiteBackend",
    "postgresql": "fusiongraph.store.postgres:PostgresBackend",
    "postgres": "fusiongraph.store.postgres:PostgresBackend",
}

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")

# column order of Backend.export_subtasks / export_outcomes / import_rows
SUBTASK_COLUMNS = ("id", "text_hash", "text", "task_class", "embedding", "created_at")
OUTCOME_COLUMNS = (
    "id",
    "subtask_id",
    "model",
    "task_class",
    "success",
    "accepted",
    "judges",
    "answer",
    "error",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "latency_s",
    "source",
    "run_id",
    "created_at",
    "after_rejection",
)
# column order of Backend.outcome_rows (OutcomeStore.outcomes)
OUTCOME_ROW_KEYS = (
    "id",
    "subtask",
    "model",
    "task_class",
    "success",
    "accepted",
    "judges",
    "error",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "latency_s",
    "source",
    "run_id",
    "after_rejection",
)


class StoreError(RuntimeError):
    """The store cannot be used as it is; the message names the file or database and the fix."""


def url_scheme(target: str | Path | None) -> str | None:
    """``postgresql`` for ``postgresql://...``; None for a plain directory path."""
    if target is None or isinstance(target, Path):
        return None
    m = _SCHEME.match(str(target))
    return m.group(1).lower() if m else None


def register_backend(scheme: str, target: str | type) -> None:
    """Make ``scheme://...`` open with `target` (a Backend subclass or ``"module:Class"``)."""
    BACKENDS[scheme.lower()] = target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"


def backend_class(scheme: str) -> type[Backend]:
    spec = BACKENDS.get(scheme.lower())
    if spec is None:
        raise StoreError(
            f"no outcome store backend for {scheme}:// URLs; known: "
            f"{', '.join(sorted(BACKENDS))} (or a directory path for SQLite)"
        )
    module, _, name = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as exc:
        raise StoreError(
            f"the {scheme}:// outcome store needs a package that is not installed ({exc}); "
            f"for Postgres: pip install 'psycopg[binary]'"
        ) from exc


def make_backend(target: str | Path | None) -> Backend:
    """The backend for a directory (SQLite), ``sqlite:///dir``, or a registered URL scheme."""
    scheme = url_scheme(target)
    if scheme is None:
        return SQLiteBackend(target)
    if scheme == "sqlite":
        return SQLiteBackend(str(target)[len("sqlite://") :] or None)
    return backend_class(scheme)(str(target))


def mask_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


class Backend:
    """What the outcome store needs from a database; every method is called under the store's lock.

    Row ids are integers that become visible in id order (see the module docstring). Embeddings are
    float32 bytes. A write is one transaction: all of it or nothing.
    """

    scheme: ClassVar[str] = ""
    label: str = ""  # the file or (password-free) URL, for messages
    directory: Path | None = None  # where the store's derived caches go by default (SQLite: beside the file)
    store_id: str | None = None  # identifies the database: a cached FAISS index of another one is not used

    # ------------------------------------------------------------ opening
    def open(self, dim: int, embedder_name: str) -> dict[str, str]:
        """Create or migrate the schema, write the metadata of a new store; return the stored metadata."""
        raise NotImplementedError

    def read_meta(self) -> dict[str, str]:
        """The stored metadata (``dim``, ``embedder``), empty when there is no store yet; creates nothing."""
        raise NotImplementedError

    def listen(self, on_change: Callable[[], bool]) -> None:
        """Call `on_change` (from any thread) when another connection commits; it returns False to stop."""

    def changed(self) -> bool:
        """Cheap check before a read: may another connection have committed since the last call?"""
        return True

    def stop(self) -> None:
        """Stop background work (listeners); called without the store's lock held."""

    def close(self) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------ rows after a watermark
    def subtasks_after(self, after: int) -> list[tuple[int, bytes]]:
        """(id, embedding) of the subtasks with id > after, by id."""
        raise NotImplementedError

    def subtasks_between(self, lo: int, hi: int) -> list[tuple[int, bytes]]:
        """(id, embedding) with lo < id <= hi, by id."""
        raise NotImplementedError

    def outcomes_after(self, after: int) -> list[tuple]:
        """(subtask_id, model, task_class, success, id, cost_usd, tokens_out, after_rejection) of the
        error-free outcomes with id > after, by id."""
        raise NotImplementedError

    # ------------------------------------------------------------ writing
    def insert(self, items: Sequence[tuple[str, str, str | None, bytes, list]], now: float) -> list[int]:
        """Write (text_hash, text, task_class, embedding, outcomes) items in one transaction; a text already
        stored keeps its subtask. Returns the subtask ids in order."""
        raise NotImplementedError

    # ------------------------------------------------------------ reading
    def subtask_info(self, ids: Sequence[int]) -> dict[int, tuple[str, str | None]]:
        raise NotImplementedError

    def accepted_answers(self, ids: Sequence[int]) -> list[tuple[int, str, str]]:
        """(subtask_id, model, answer) of the error-free accepted non-empty answers on these subtasks, by id."""
        raise NotImplementedError

    def newest_subtasks(self, below: int, limit: int) -> list[tuple[int, str | None, bytes]]:
        """(id, task_class, embedding) of the `limit` highest ids below `below`, newest first."""
        raise NotImplementedError

    def count_rows(self, upto: tuple[int, int] | None = None) -> tuple[int, int]:
        """(subtasks, outcomes), of those with ids up to `upto` = (subtask id, outcome id) if given."""
        raise NotImplementedError

    def outcome_rows(self, limit: int | None) -> list[tuple]:
        """Rows in :data:`OUTCOME_ROW_KEYS` order, oldest first (judges as JSON text)."""
        raise NotImplementedError

    def hashes_with_source(self, source: str) -> set[str]:
        raise NotImplementedError

    # ------------------------------------------------------------ artifacts (derived data shared by workers)
    def get_artifact(self, name: str) -> bytes | None:
        raise NotImplementedError

    def forget(self, match: str | None, before: float | None, now: float) -> dict[str, int]:
        """Delete, in one transaction, the subtasks whose text (or an answer to them) contains `match`
        (case-insensitive) and/or that were recorded before `before` (epoch seconds), with their outcomes and
        cached answers; log the erasure. Returns {subtasks, outcomes, cached_answers} deleted."""
        raise NotImplementedError

    def erasure_generation(self) -> int:
        """How many erasures the store has seen (a change means: rebuild what is derived from it)."""
        raise NotImplementedError

    def cache_put(self, subtask_id, scope, model, fingerprint, task_class, answer, now) -> None:
        """Keep (or replace) the accepted answer of a subtask for a scope."""
        raise NotImplementedError

    def cache_get(self, ids, scope, since) -> list[tuple]:
        """(subtask_id, model, fingerprint, task_class, answer, created_at) of these subtasks in the scope,
        created at or after `since`."""
        raise NotImplementedError

    def cache_drop_model(self, model, fingerprint) -> int:
        """Drop the entries of `model` made under another roster fingerprint; returns how many."""
        raise NotImplementedError

    def put_artifact(self, name: str, data: bytes) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------ copying (``fusiongraph store migrate``)
    def max_ids(self) -> tuple[int, int]:
        """(highest subtask id, highest outcome id); a consistent cut when read outcomes first."""
        raise NotImplementedError

    def export_subtasks(self, upto: int, batch: int) -> Iterator[list[tuple]]:
        """Batches of :data:`SUBTASK_COLUMNS` rows with id <= upto, by id."""
        return self._export("subtasks", SUBTASK_COLUMNS, upto, batch)

    def export_outcomes(self, upto: int, batch: int) -> Iterator[list[tuple]]:
        """Batches of :data:`OUTCOME_COLUMNS` rows with id <= upto, by id (accepted as 0/1 or bool)."""
        return self._export("outcomes", OUTCOME_COLUMNS, upto, batch)

    def _select(self, sql: str, params: tuple) -> list[tuple]:
        """Run a SELECT written with ``?`` placeholders."""
        raise NotImplementedError

    def _export(self, table: str, columns: Sequence[str], upto: int, batch: int) -> Iterator[list[tuple]]:
        # a source store of an older schema (not opened, so not migrated) lacks the newer columns: their default
        select = [c if c not in ADDED_COLUMNS.get(table, {}) or self.has_column(table, c) else "0" for c in columns]
        last = 0
        while True:
            rows = self._select(
                f"SELECT {', '.join(select)} FROM {table} WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
                (last, upto, batch),
            )
            if not rows:
                return
            yield rows
            last = rows[-1][0]

    def has_table(self, name: str) -> bool:
        raise NotImplementedError

    def has_column(self, table: str, column: str) -> bool:
        raise NotImplementedError

    def export_keys(self) -> dict[str, list[tuple]]:
        """Every row of the API key tables (:data:`KEY_TABLES`); empty lists where the store has none."""
        if not self.has_table("api_keys"):
            return {table: [] for table in KEY_TABLES}
        return {
            table: self._select(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {cols[0]}", ())
            for table, cols in KEY_TABLES.items()
        }

    def import_rows(
        self,
        subtasks: Iterable[list[tuple]],
        outcomes: Iterable[list[tuple]],
        append: bool,
        expected: tuple[int, int],
        keys: dict[str, list[tuple]] | None = None,
    ) -> dict[str, int]:
        """Copy exported rows in one transaction (new ids; outcomes follow their subtask's new id), and the
        API keys with their spend and charges if `keys` (:meth:`export_keys`) is given (see :func:`import_keys`).

        Refuses a non-empty target unless `append` (then a text already stored keeps its subtask). Rolls
        back unless it read `expected` = (subtasks, outcomes) rows and the target grew by what it added
        (see :func:`check_import`). Returns {"subtasks_before", "outcomes_before", "subtasks_added", "outcomes_added", "subtasks",
        "outcomes"}, the last two counted inside the transaction.
        """
        raise NotImplementedError

    # ------------------------------------------------------------ API keys (fusiongraph/keys.py)
    def keys_schema(self) -> None:
        """Create the key tables if they are missing (no outcome-store metadata is written)."""
        raise NotImplementedError

    def key_count(self) -> int:
        """How many keys were ever created (revoked ones count)."""
        raise NotImplementedError

    def key_insert(
        self, key_id: str, name: str, key_hash: str, prefix: str, budget_usd: float, period: str, now: float
    ) -> None:
        raise NotImplementedError

    def key_rows(self) -> list[tuple]:
        """Every key as :data:`KEY_COLUMNS`, oldest first."""
        raise NotImplementedError

    def key_by_hash(self, key_hash: str) -> tuple | None:
        return self.key_where("key_hash", key_hash)

    def key_by_id(self, key_id: str) -> tuple | None:
        return self.key_where("id", key_id)

    def key_where(self, column: str, value: str) -> tuple | None:
        """The key (:data:`KEY_COLUMNS`) whose `column` (``id`` or ``key_hash``) is `value`, or None."""
        raise NotImplementedError

    def key_revoke(self, id_or_name: str, now: float) -> int:
        """Revoke the key with this id or name; the number of keys revoked (0: none such or already revoked)."""
        raise NotImplementedError

    def key_spent(self, key_id: str, period_start: str) -> float:
        raise NotImplementedError

    def key_charge(self, key_id: str, period_start: str, cost_usd: float, run_id: str | None, now: float) -> float:
        """Add `cost_usd` to the key's spend in the period, atomically; the spend after. A run id already
        charged is not charged again (a unique index on the charges' run ids): the spend is returned as is."""
        raise NotImplementedError


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


# ---------------------------------------------------------------------------------------------------- SQLite
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
# Columns added to a table after it first shipped: SQLite's migrations (`SQLiteBackend.open` adds a missing one
# with its default, so older rows take the default; Postgres has numbered migrations, store/postgres.py). An
# older fusiongraph writing to the same file leaves them at the default.
ADDED_COLUMNS: dict[str, dict[str, str]] = {
    # an outcome recorded after an earlier tier's answer to the same subtask was rejected (fusiongraph/attempt.py
    # `after_rejection`); rows from before the column, imports and calibrations are unconditioned
    "outcomes": {"after_rejection": "INTEGER NOT NULL DEFAULT 0"},
}
# Created on first use only: an older fusiongraph opening the same file ignores it.
ARTIFACTS_SCHEMA = "CREATE TABLE IF NOT EXISTS artifacts (name TEXT PRIMARY KEY, data BLOB NOT NULL, updated_at REAL)"


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

# API keys and their spend (fusiongraph/keys.py) live in the store's database, so every replica that shares
# the store shares the budgets. A key is kept as the sha256 of its token only. A charge adds a run's cost to
# the key's spend for the current period in one statement (an upsert), atomic across processes and machines.
KEY_COLUMNS = ("id", "name", "prefix", "budget_usd", "period", "created_at", "revoked_at")
# what ``store migrate`` copies of the keys: every table, every column (charges get new ids)
KEY_TABLES: dict[str, tuple[str, ...]] = {
    "api_keys": ("id", "name", "key_hash", "prefix", "budget_usd", "period", "created_at", "revoked_at"),
    "api_key_spend": ("key_id", "period_start", "spent_usd", "runs"),
    "api_key_charges": ("key_id", "period_start", "cost_usd", "run_id", "created_at"),
}

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

DB_FILE = "outcomes.sqlite"
MMAP_BYTES = 4 << 30

_OUTCOME_INSERT = (
    "INSERT INTO outcomes (subtask_id, model, task_class, success, accepted, judges, answer,"
    " error, tokens_in, tokens_out, cost_usd, latency_s, source, run_id, created_at, after_rejection)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


def outcome_values(subtask_id: int, task_class: str | None, o, now: float) -> tuple:
    """An :class:`~store.outcomes.Outcome` as the values of an outcomes row (after id)."""
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


class SQLiteBackend(Backend):
    """The embedded default: one file, WAL mode, several processes of one machine may share it."""

    scheme = "sqlite"

    def __init__(self, directory: str | Path | None):
        self.directory = Path(directory) if directory is not None else None
        if self.directory is None:
            self.label = ":memory:"
            self._db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        else:
            self.directory.mkdir(parents=True, exist_ok=True)
            db_path = self.directory / DB_FILE
            self.label = str(db_path)
            try:
                self._db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None, timeout=60)
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
        sql = (
            "SELECT o.id, s.text, o.model, o.task_class, o.success, o.accepted, o.judges, o.error, o.tokens_in,"
            " o.tokens_out, o.cost_usd, o.latency_s, o.source, o.run_id, o.after_rejection FROM outcomes o"
            " JOIN subtasks s ON s.id = o.subtask_id ORDER BY o.id"
        )
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
        import time

        self._db.execute(ARTIFACTS_SCHEMA)
        self._db.execute("INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?)", (name, bytes(data), time.time()))

    def max_ids(self):
        o = self._db.execute("SELECT COALESCE(MAX(id), 0) FROM outcomes").fetchone()[0]
        s = self._db.execute("SELECT COALESCE(MAX(id), 0) FROM subtasks").fetchone()[0]
        return s, o

    def _select(self, sql, params):
        return self._db.execute(sql, params).fetchall()

    def has_table(self, name):
        return (
            self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
            is not None
        )

    def has_column(self, table, column):
        return any(r[1] == column for r in self._db.execute(f"PRAGMA table_info({table})"))

    def import_rows(self, subtasks, outcomes, append, expected, keys=None):
        if keys and keys.get("api_keys"):
            self.keys_schema()
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            before = self.count_rows()
            if any(before) and not append:
                raise StoreError(
                    f"outcome store {self.label} already holds {before[0]} subtasks and {before[1]} "
                    f"outcomes; pass --append to add to them"
                )
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
        return {
            "subtasks_before": before[0],
            "outcomes_before": before[1],
            "subtasks_added": added_s,
            "outcomes_added": added_o,
            "subtasks": after[0],
            "outcomes": after[1],
            "keys": copied_keys,
        }

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

    # ------------------------------------------------------------ API keys
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
