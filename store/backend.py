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
(or call :func:`register_backend`). The API keys kept in the same database have their own interface
(:mod:`store.key_backend`).
"""

from __future__ import annotations

import importlib
import re
import threading
from pathlib import Path
from typing import Callable, ClassVar, Iterable, Iterator, Sequence

# scheme -> "module:Class", imported on first use (psycopg is needed only for a Postgres store)
BACKENDS: dict[str, str] = {
    "sqlite": "fusiongraph.store.sqlite:SQLiteBackend",
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
# Columns added to a table after it first shipped: SQLite's migrations (`SQLiteBackend.open` adds a missing one
# with its default, so older rows take the default; Postgres has numbered migrations, store/postgres_schema.py).
# An older fusiongraph writing to the same file leaves them at the default. A source store of an older schema
# exports the default (`Backend._export`).
ADDED_COLUMNS: dict[str, dict[str, str]] = {
    # an outcome recorded after an earlier tier's answer to the same subtask was rejected (fusiongraph/attempt.py
    # `after_rejection`); rows from before the column, imports and calibrations are unconditioned
    "outcomes": {"after_rejection": "INTEGER NOT NULL DEFAULT 0"},
}


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
        return backend_class("sqlite")(target)
    if scheme == "sqlite":
        return backend_class("sqlite")(str(target)[len("sqlite://") :] or None)
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

    def select(self, sql: str, params: tuple) -> list[tuple]:
        """Run a SELECT written with ``?`` placeholders."""
        raise NotImplementedError

    def _export(self, table: str, columns: Sequence[str], upto: int, batch: int) -> Iterator[list[tuple]]:
        # a source store of an older schema (not opened, so not migrated) lacks the newer columns: their default
        select = [c if c not in ADDED_COLUMNS.get(table, {}) or self.has_column(table, c) else "0" for c in columns]
        last = 0
        while True:
            rows = self.select(
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

    def import_rows(
        self,
        subtasks: Iterable[list[tuple]],
        outcomes: Iterable[list[tuple]],
        append: bool,
        expected: tuple[int, int],
        keys: dict[str, list[tuple]] | None = None,
    ) -> dict[str, int]:
        """Copy exported rows in one transaction (new ids; outcomes follow their subtask's new id), and the
        API keys with their spend and charges if `keys` (:func:`store.key_backend.export_keys`) is
        given (see :func:`store.sql.import_keys`).

        Refuses a non-empty target unless `append` (then a text already stored keeps its subtask). Rolls
        back unless it read `expected` = (subtasks, outcomes) rows and the target grew by what it added
        (see :func:`store.sql.check_import`). Returns {"subtasks_before", "outcomes_before", "subtasks_added",
        "outcomes_added", "subtasks", "outcomes", "keys"}: "subtasks" and "outcomes" counted inside the
        transaction, "keys" the rows copied per key table.
        """
        raise NotImplementedError


class SideBackend:
    """A concern's tables on the connection of an outcome store :class:`Backend` (closing it closes that)."""

    def __init__(self, db: Backend):
        self.db = db

    @property
    def label(self) -> str:
        """The file or (password-free) URL, for messages."""
        return self.db.label

    def close(self) -> None:
        self.db.close()


class SideBackends:
    """The backends of one concern kept in the outcome store's own database (API keys, Responses conversations):
    a backend scheme -> ``"module:Class"`` registry (imported on first use), each built on the connection of an
    outcome store :class:`Backend` of the same database (closing it closes that backend)."""

    def __init__(self, what: str, specs: dict[str, str]):
        self.what, self.specs = what, dict(specs)

    def register(self, scheme: str, target: str | type) -> None:
        """Keep this concern for a ``scheme`` backend with `target` (a subclass or ``"module:Class"``)."""
        self.specs[scheme.lower()] = target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"

    def on(self, db: Backend):
        """The backend of this concern on the connection of `db`."""
        spec = self.specs.get(db.scheme)
        if spec is None:
            raise StoreError(
                f"the outcome store {db.label} cannot keep {self.what}: no backend for its scheme "
                f"{db.scheme or '(none)'}; known: {', '.join(sorted(self.specs))}"
            )
        module, _, name = spec.partition(":")
        return getattr(importlib.import_module(module), name)(db)

    def make(self, target: str | Path | None):
        """The backend of this concern for the store at `target` (a directory or a URL, as :func:`make_backend`)."""
        db = make_backend(target)
        try:
            return self.on(db)
        except BaseException:
            db.close()
            raise


class SideStore:
    """A concern kept in the outcome store's database (its backend from `backends`), used under one lock (the
    SQLite backend shares a connection). Subclasses set `backends` and create their tables in :meth:`schema`."""

    backends: SideBackends

    def __init__(self, target: str | Path | None):
        self.backend = self.backends.make(target)
        self._lock = threading.Lock()
        try:
            with self._lock:
                self.schema()
        except BaseException:
            self.backend.close()  # not kept: its connection would leak
            raise

    def schema(self) -> None:
        """Create this concern's tables if they are missing."""

    @property
    def label(self) -> str:
        """The file or (password-free) URL, for messages."""
        return self.backend.label

    def close(self) -> None:
        with self._lock:
            self.backend.close()
