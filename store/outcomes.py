"""The outcome store: every judged attempt, with the subtask's embedding, for nearest-neighbour routing.

A SQL database is the source of truth (subtasks with their embeddings, outcomes, metadata): SQLite by
default (a directory), or Postgres (``postgresql://...``) when several machines share one store; see
:mod:`store.backends` for the interface and the registry of backends, :mod:`store.postgres` for Postgres.
Everything routing reads is kept in memory: per-subtask outcome sums by model, class and model totals, and
the FAISS index. They are caches, folded in from the rows committed after a watermark (``refresh``); the
FAISS index may be written to disk (``faiss.write_index``) and is reconciled with the database on open, so
a crash between the two never loses an outcome: whatever the database committed is searchable after the
next load. Nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import weakref
from collections import OrderedDict, defaultdict
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import faiss
import numpy as np

from fusiongraph.store.backends import (  # noqa: F401
    DB_FILE,
    MMAP_BYTES,
    OUTCOME_ROW_KEYS,
    SCHEMA,
    Backend,
    SQLiteBackend,
    StoreError,
    make_backend,
    url_scheme,
)

log = logging.getLogger(__name__)

# One routing query searches one vector: OpenMP threads only add wake-up cost (measured: a flat search of
# 10k vectors takes 0.4 ms single-threaded vs 24 ms with 2 OpenMP threads on busy cores). So each search runs
# with SEARCH_THREADS, set around the search call only (`_faiss_threads`, as are small index adds); bulk index
# builds and everything else in the process (torch, scikit-learn, other FAISS users) keep the process's
# OpenMP setting.
SEARCH_THREADS = int(os.environ.get("FUSIONGRAPH_FAISS_THREADS", "1"))


@contextmanager
def _faiss_threads(n: int):
    """FAISS's OpenMP thread count set to `n` for the block, then restored (OpenMP keeps it per thread)."""
    before = faiss.omp_get_max_threads()
    if n == before:
        yield
        return
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


INDEX_FILE = "index.faiss"
INDEX_META_FILE = "index.json"
# Past this many vectors a flat (exact) search gets slow; switch to HNSW (approximate, ~0.1 ms).
HNSW_THRESHOLD = 50_000
HNSW_M = 16  # links per vector of the HNSW graph (see _new_index)
# The text and class of recent neighbour hits, kept in memory (a subtask row never changes once written), so
# a route whose hits were seen lately needs no database round trip (a Postgres one costs ~0.5 ms); ~10 MB.
HIT_CACHE_ROWS = 100_000


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class Outcome:
    """One judged attempt of one model on one subtask."""

    model: str
    success: float
    accepted: bool
    judges: dict = field(default_factory=dict)
    answer: str | None = None
    error: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    source: str = "live"
    run_id: str | None = None
    # recorded after an earlier tier's answer to the same subtask was rejected (see fusiongraph.attempt
    # .after_rejection): selected on the other models' outcomes, so not first-pick evidence
    after_rejection: bool = False

    def __post_init__(self) -> None:
        if not (0.0 <= float(self.success) <= 1.0) or self.success != self.success:
            raise ValueError(f"outcome success must be in [0, 1], got {self.success!r} for model {self.model!r}")


@dataclass
class Neighbour:
    subtask_id: int
    similarity: float
    text: str
    task_class: str | None
    outcomes: dict[str, float]  # model -> mean success of its unconditioned outcomes there (first-pick evidence)
    answers: dict[str, str] = field(default_factory=dict)  # model -> an accepted answer (guides)
    costs: dict[str, float] = field(default_factory=dict)  # model -> mean recorded USD of its answers (all)
    tokens: dict[str, float] = field(default_factory=dict)  # model -> mean recorded output tokens (all)
    # model -> mean success of its outcomes recorded after an earlier tier was rejected there (empty on tables)
    conditioned: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class NeighbourBlock:
    """The neighbours' evidence as arrays, what :meth:`fusiongraph.routing.router.Router.predict` reads: row i is
    neighbour i, column j model ``models[j]``. The store builds it beside the :class:`Neighbour` list from its
    own arrays (no per-model dicts to walk); :meth:`of` builds it from any list of neighbours (the same)."""

    models: list[str]
    similarity: np.ndarray  # (n,)
    success: np.ndarray  # (n, M) mean unconditioned success, 0 where the model has none there
    has: np.ndarray  # (n, M) bool: the model has an unconditioned outcome there
    ran: np.ndarray  # (n, M) bool: the model answered there (its mean cost and tokens are known)
    cost: np.ndarray  # (n, M) mean recorded USD, 0 where it did not answer
    tokens: np.ndarray  # (n, M) mean recorded output tokens
    conditioned: np.ndarray  # (n,) bool: some outcome there was recorded after a rejection

    @classmethod
    def of(cls, neighbours: Sequence[Neighbour]) -> NeighbourBlock:
        models = list(dict.fromkeys(m for nb in neighbours for m in (*nb.outcomes, *nb.costs, *nb.tokens)))
        n, cols = len(neighbours), {m: j for j, m in enumerate(models)}
        arrays = {k: np.zeros((n, len(models))) for k in ("success", "cost", "tokens")}
        has, ran = np.zeros((n, len(models)), dtype=bool), np.zeros((n, len(models)), dtype=bool)
        for i, nb in enumerate(neighbours):
            for m, v in nb.outcomes.items():
                arrays["success"][i, cols[m]], has[i, cols[m]] = v, True
            for m, v in nb.costs.items():
                arrays["cost"][i, cols[m]], ran[i, cols[m]] = v, True
            for m, v in nb.tokens.items():
                arrays["tokens"][i, cols[m]] = v
        sims = np.array([nb.similarity for nb in neighbours], dtype=np.float64)
        cond = np.array([bool(nb.conditioned) for nb in neighbours], dtype=bool)
        return cls(models, sims, arrays["success"], has, ran, arrays["cost"], arrays["tokens"], cond)

    def take(self, rows: Sequence[int]) -> NeighbourBlock:
        r = np.asarray(rows, dtype=np.intp)
        return NeighbourBlock(
            self.models,
            self.similarity[r],
            self.success[r],
            self.has[r],
            self.ran[r],
            self.cost[r],
            self.tokens[r],
            self.conditioned[r],
        )


class Neighbours(list):
    """A list of :class:`Neighbour` with their :class:`NeighbourBlock` (``block``; None: not built)."""

    block: NeighbourBlock | None = None

    def evidence(self) -> NeighbourBlock:
        """The block, built from the neighbours when it was not given or no longer matches the list."""
        if self.block is None or len(self.block.similarity) != len(self):
            self.block = NeighbourBlock.of(self)
        return self.block


# the per-subtask x model arrays of the in-memory sums (grown and reset together)
_SUM_ARRAYS = ("_success_sum", "_success_n", "_cond_sum", "_cond_n", "_cost_sum", "_tokens_sum")


def _new_index(dim: int, hnsw: bool) -> faiss.Index:
    if hnsw:
        # M=16 (it was 32): half the links to follow per search (1.13 -> 0.63 ms per k=64 search at 250k
        # vectors) and half their memory; recall@64 on 7.5k real MiniLM prompt embeddings 0.965 against 0.973
        inner = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efSearch = 64
        inner.hnsw.efConstruction = 80
    else:
        inner = faiss.IndexFlatIP(dim)
    return faiss.IndexIDMap2(inner)


class OutcomeStore:
    """Outcomes of past subtasks, searchable by embedding. Thread-safe; several processes may share one.

    ``OutcomeStore(directory, dim)`` is a SQLite store in `directory` (None: in memory). With a `backend`
    (see :func:`open_store`), `directory` is only where the derived caches go (FAISS index, probe fit): None
    keeps them in memory, rebuilt from the database at start.
    """

    def __init__(
        self, directory: str | Path | None, dim: int, embedder_name: str = "unknown", *, backend: Backend | None = None
    ):
        self.directory = Path(directory) if directory is not None else None
        self.dim = int(dim)
        self._lock = threading.RLock()
        self._indexed_upto = 0  # highest subtask id present in the FAISS index
        # Success sums and counts are kept apart for unconditioned outcomes (the first answer tried on a subtask,
        # or an imported / calibrated one: selected on the subtask only) and conditioned ones (recorded after an
        # earlier tier was rejected: selected on the other models' outcomes). First-pick routing reads the
        # former (neighbours' `outcomes`, class rates, the probe's rows); escalation's joint rates read both.
        self._class_totals: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0]))
        self._model_totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])  # unconditioned
        self._cond_totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])  # conditioned
        self._outcomes_seen = 0  # highest outcome id folded into the class totals
        # per-subtask outcome sums and counts by model, in memory: neighbour look-ups need no SQL
        self._model_cols: dict[str, int] = {}
        self._success_sum = np.zeros((1024, 4), dtype=np.float64)  # unconditioned
        self._success_n = np.zeros((1024, 4), dtype=np.int32)
        self._cond_sum = np.zeros((1024, 4), dtype=np.float64)  # conditioned (after a rejection)
        self._cond_n = np.zeros((1024, 4), dtype=np.int32)
        self._cost_sum = np.zeros((1024, 4), dtype=np.float64)  # recorded USD, for predicted cost (all outcomes)
        self._tokens_sum = np.zeros((1024, 4), dtype=np.float64)  # recorded output tokens (all outcomes)
        self._model_usage: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])  # cost, tokens_out, n
        self._hit_cache: OrderedDict[int, tuple[str, str | None]] = OrderedDict()  # LRU: HIT_CACHE_ROWS
        self._unsaved = 0
        self._closed = False
        self._erasures = 0  # the store's erasure generation our index and sums reflect
        if backend is None:
            backend = SQLiteBackend(self.directory)
        elif self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        self._backend = backend
        try:
            self._check_meta(backend.open(self.dim, embedder_name))
            self._erasures = backend.erasure_generation()
            self._index = self._load_index()
            self.refresh()
        except BaseException:
            backend.close()
            raise
        # a backend that pushes changes (Postgres LISTEN/NOTIFY) refreshes us from its own thread; a weak
        # reference, so that an unclosed store can still be collected
        ref = weakref.WeakMethod(self._refresh_from_listener)
        backend.listen(lambda: bool((m := ref()) and m()))

    # ------------------------------------------------------------------ opening
    @property
    def backend(self) -> Backend:
        return self._backend

    @property
    def location(self) -> str:
        """Where the source of truth is: the store directory, ``:memory:``, or a password-free URL."""
        if isinstance(self._backend, SQLiteBackend):
            return str(self._backend.directory) if self._backend.directory is not None else ":memory:"
        return self._backend.label

    def _db_label(self) -> str:
        return self._backend.label

    def _check_meta(self, rows: dict[str, str]) -> None:
        if int(rows["dim"]) != self.dim:
            where = "store directory" if isinstance(self._backend, SQLiteBackend) else "database"
            raise StoreError(
                f"outcome store {self._db_label()} holds {rows['dim']}-dimensional embeddings "
                f"({rows.get('embedder')}), but the embedder gives {self.dim}; use the same embedder or a new {where}"
            )

    def _load_index(self) -> faiss.Index:
        if self.directory is not None:
            path, meta_path = self.directory / INDEX_FILE, self.directory / INDEX_META_FILE
            if path.exists() and meta_path.exists():
                try:
                    index = faiss.read_index(str(path))
                    meta = json.loads(meta_path.read_text())
                    if index.d != self.dim or index.ntotal != meta["count"]:
                        raise ValueError(f"index holds {index.ntotal} vectors of dim {index.d}, meta says {meta}")
                    if meta.get("store") != self._backend.store_id:
                        raise ValueError(f"index is of store {meta.get('store')}, not {self._backend.store_id}")
                    if meta.get("erasures", 0) != self._erasures:
                        raise ValueError("rows were erased since the index was saved")
                    self._indexed_upto = int(meta["upto"])
                    return index
                except Exception as exc:  # the index is only a cache: rebuild it from the database
                    log.warning("FAISS index %s unreadable (%s); rebuilding it from %s", path, exc, self._db_label())
        self._indexed_upto = 0
        return _new_index(self.dim, hnsw=False)

    # ------------------------------------------------------------------ syncing
    def refresh(self, check_erasures: bool = True) -> None:
        """Fold in what other connections (threads, processes, machines) committed since we last looked.

        Reads the rows after the watermarks (highest subtask id indexed, highest outcome id folded): every
        backend makes ids visible in id order (see :mod:`store.backends`), so no row is skipped. An erasure
        (a new erasure generation) rebuilds everything; after our own write that check is skipped (the next
        refresh, by a change or the listener, makes it).
        """
        with self._lock:
            generation = self._backend.erasure_generation() if check_erasures else self._erasures
            if generation != self._erasures:  # rows were erased (here or by another worker): start over
                self._reset_derived()
                self._erasures = generation
            rows = self._backend.subtasks_after(self._indexed_upto)
            if rows:
                self._add_vectors([r[0] for r in rows], [r[1] for r in rows])
            for subtask_id, model, cls, success, oid, cost, tokens, cond in self._backend.outcomes_after(
                self._outcomes_seen
            ):
                self._fold(subtask_id, model, cls, success, cost, tokens, bool(cond))
                self._outcomes_seen = oid

    def _reset_derived(self) -> None:
        """Forget the index and the in-memory sums; the next refresh rebuilds them from the database."""
        self._index = _new_index(self.dim, hnsw=False)
        self._indexed_upto = self._outcomes_seen = 0
        self._class_totals.clear()
        self._model_totals.clear()
        self._cond_totals.clear()
        self._model_usage.clear()
        self._model_cols = {}
        self._hit_cache.clear()  # an erased subtask's text must not come back (SQLite may reuse its id)
        for name in _SUM_ARRAYS:
            old = getattr(self, name)
            setattr(self, name, np.zeros((1024, 4), dtype=old.dtype))
        self._unsaved += 1

    def forget(self, match: str | None = None, before: float | None = None) -> dict[str, int]:
        """Erase the subtasks whose text or answers contain `match` (case-insensitive) and/or that were
        recorded before `before` (epoch seconds): their outcomes, vectors and cached answers go with them, in
        one transaction; every worker sharing the store drops them too. Returns the counts deleted."""
        if match is None and before is None:
            raise ValueError("forget needs a text to match or a date to erase before")
        if match is not None and not match.strip():
            raise ValueError("forget: the text to match is empty")
        with self._lock:
            vectors = int(self._index.ntotal)
            counts = self._backend.forget(match, before, time.time())
            self.refresh()  # sees the new erasure generation: index and sums rebuilt without the rows
            counts["vectors"] = vectors - int(self._index.ntotal)
            self.save()
            if counts["subtasks"]:
                self._drop_probe_fit()
        return counts

    def _drop_probe_fit(self) -> None:
        """The success probe's saved fit was learnt from the erased rows too: drop it (it is refitted)."""
        from fusiongraph.routing.probe import PROBE_FILE

        if self.directory is not None:
            (self.directory / PROBE_FILE).unlink(missing_ok=True)
        elif self.shares_artifacts:
            self._backend.put_artifact(PROBE_FILE, b"")

    def _refresh_from_listener(self) -> bool:
        if self._closed:
            return False
        self.refresh()
        return True

    def _fold(
        self,
        subtask_id: int,
        model: str,
        task_class: str | None,
        success: float,
        cost: float = 0.0,
        tokens: float = 0.0,
        after_rejection: bool = False,
    ) -> None:
        if after_rejection:
            m = self._cond_totals[model]
        else:
            total = self._class_totals[task_class or ""][model]
            total[0] += success
            total[1] += 1
            m = self._model_totals[model]
        m[0] += success
        m[1] += 1
        col = self._model_cols.setdefault(model, len(self._model_cols))
        rows, cols = self._success_sum.shape
        if subtask_id >= rows or col >= cols:  # grow geometrically
            grown = (max(rows, 2 * (subtask_id + 1)), max(cols, 2 * (col + 1)))
            for name in _SUM_ARRAYS:
                old = getattr(self, name)
                new = np.zeros(grown, dtype=old.dtype)
                new[:rows, :cols] = old
                setattr(self, name, new)
        if after_rejection:
            self._cond_sum[subtask_id, col] += success
            self._cond_n[subtask_id, col] += 1
        else:
            self._success_sum[subtask_id, col] += success
            self._success_n[subtask_id, col] += 1
        self._cost_sum[subtask_id, col] += cost or 0.0
        self._tokens_sum[subtask_id, col] += tokens or 0.0
        u = self._model_usage[model]
        u[0] += cost or 0.0
        u[1] += tokens or 0.0
        u[2] += 1

    def _add_vectors(self, ids: Sequence[int], blobs: Sequence[bytes]) -> None:
        vectors = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(ids), self.dim)
        if (
            not isinstance(faiss.downcast_index(self._index.index), faiss.IndexHNSWFlat)
            and self._index.ntotal + len(ids) > HNSW_THRESHOLD
        ):
            self._rebuild_as_hnsw()
        bulk = len(ids) > 1000  # a few vectors (one recorded subtask): one thread, as a search; bulk: all of them
        with nullcontext() if bulk else _faiss_threads(SEARCH_THREADS):
            self._index.add_with_ids(np.ascontiguousarray(vectors), np.asarray(ids, dtype=np.int64))
        self._indexed_upto = max(self._indexed_upto, int(max(ids)))
        self._unsaved += len(ids)

    def _rebuild_as_hnsw(self) -> None:
        self._index = self._build_hnsw()

    def _build_hnsw(self) -> faiss.Index:
        index = _new_index(self.dim, hnsw=True)
        for start in range(0, self._indexed_upto + 1, 100_000):
            rows = self._backend.subtasks_between(start - 1 if start else -1, min(start + 99_999, self._indexed_upto))
            if rows:
                vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), self.dim)
                index.add_with_ids(np.ascontiguousarray(vecs), np.asarray([r[0] for r in rows], dtype=np.int64))
        return index

    # ------------------------------------------------------------------ writing
    def record(self, text: str, embedding: np.ndarray, task_class: str | None, outcomes: Iterable[Outcome]) -> int:
        """Write a subtask (once per distinct text) and its judged outcomes in one transaction."""
        return self.record_many([(text, embedding, task_class, list(outcomes))])[0]

    def record_many(self, items: Iterable[tuple[str, np.ndarray, str | None, list[Outcome]]]) -> list[int]:
        """Write many subtasks and their outcomes in one transaction; returns their subtask ids."""
        rows = [
            (text_hash(text), text, cls, self._as_vector(emb).tobytes(), list(outs)) for text, emb, cls, outs in items
        ]
        now = time.time()
        with self._lock:
            ids = self._backend.insert(rows, now)
            self.refresh(check_erasures=False)
        return ids

    def _as_vector(self, embedding) -> np.ndarray:
        vec = np.asarray(embedding, dtype=np.float32).reshape(-1)
        if vec.shape[0] != self.dim:
            raise ValueError(f"embedding has {vec.shape[0]} dimensions, the store expects {self.dim}")
        if not np.all(np.isfinite(vec)):
            raise ValueError("embedding contains NaN or infinity")
        return vec

    def save(self) -> None:
        """Write the FAISS index atomically (temp file + rename); the database is already durable."""
        if self.directory is None:
            return
        with self._lock:
            tmp = self.directory / f".{INDEX_FILE}.{os.getpid()}.tmp"
            faiss.write_index(self._index, str(tmp))
            meta_tmp = self.directory / f".{INDEX_META_FILE}.{os.getpid()}.tmp"
            meta = {
                "upto": self._indexed_upto,
                "count": int(self._index.ntotal),
                "dim": self.dim,
                "erasures": self._erasures,
            }
            if self._backend.store_id is not None:
                meta["store"] = self._backend.store_id
            meta_tmp.write_text(json.dumps(meta))
            os.replace(tmp, self.directory / INDEX_FILE)
            os.replace(meta_tmp, self.directory / INDEX_META_FILE)
            self._unsaved = 0

    def close(self) -> None:
        self._closed = True
        self._backend.stop()  # the listener may be waiting for our lock: stop it first
        with self._lock:
            if self._unsaved:
                self.save()
            self._backend.close()

    # ------------------------------------------------------------------ artifacts
    @property
    def shares_artifacts(self) -> bool:
        """True when the source of truth is shared by workers (a database, not a local SQLite file)."""
        return not isinstance(self._backend, SQLiteBackend)

    def get_artifact(self, name: str) -> bytes | None:
        """Bytes that workers share through the store (e.g. the success probe's fit), or None."""
        with self._lock:
            return self._backend.get_artifact(name)

    def put_artifact(self, name: str, data: bytes) -> None:
        with self._lock:
            self._backend.put_artifact(name, data)

    # ------------------------------------------------------------------ answer cache
    def cache_put(self, subtask_id: int, scope: str, model: str, fingerprint: str, task_class, answer: str) -> None:
        """Keep an accepted answer for reuse by near-identical subtasks in the same scope."""
        with self._lock:
            self._backend.cache_put(subtask_id, scope, model, fingerprint, task_class, answer, time.time())

    def cached_answers(self, embedding, scope: str, min_similarity: float, since: float, k: int = 4) -> list[dict]:
        """Cached answers of the nearest subtasks at least `min_similarity` close, in the scope, made since
        `since` (epoch seconds), most similar first: {subtask_id, similarity, text, task_class, model,
        fingerprint, answer, created_at}."""
        close = {nb.subtask_id: nb for nb in self.neighbours(embedding, k) if nb.similarity >= min_similarity}
        if not close:
            return []
        with self._lock:
            rows = self._backend.cache_get(list(close), scope, since)
        hits = [
            {
                "subtask_id": sid,
                "similarity": close[sid].similarity,
                "text": close[sid].text,
                "task_class": task_class,
                "model": model,
                "fingerprint": fingerprint,
                "answer": answer,
                "created_at": created_at,
            }
            for sid, model, fingerprint, task_class, answer, created_at in rows
        ]
        return sorted(hits, key=lambda h: -h["similarity"])

    def cache_drop_model(self, model: str, fingerprint: str) -> int:
        """Forget the cached answers `model` gave under another roster entry; returns how many."""
        with self._lock:
            return self._backend.cache_drop_model(model, fingerprint)

    # ------------------------------------------------------------------ reading
    def _hit_info(self, ids: list[int]) -> dict[int, tuple[str, str | None]]:
        """(text, task_class) of these subtasks: from the LRU cache, the rest in one backend read."""
        cache = self._hit_cache
        missing = [i for i in ids if i not in cache]
        if missing:
            cache.update(self._backend.subtask_info(missing))
        info = {}
        for i in ids:
            if i in cache:
                cache.move_to_end(i)
                info[i] = cache[i]
        while len(cache) > HIT_CACHE_ROWS:
            cache.popitem(last=False)
        return info

    def neighbours(
        self, embedding, k: int, exclude_ids: set[int] | None = None, with_answers: bool = False
    ) -> list[Neighbour]:
        """The k most similar past subtasks (cosine similarity) with each model's mean success on them."""
        if k <= 0:
            return []
        with self._lock:
            if self._backend.changed():
                self.refresh()
            if self._index.ntotal == 0:
                return []
            vec = self._as_vector(embedding).reshape(1, -1)
            want = min(k + len(exclude_ids or ()), self._index.ntotal)
            with _faiss_threads(SEARCH_THREADS):
                sims, ids = self._index.search(vec, want)
            found = ids[0] >= 0
            hits = list(zip(ids[0][found].tolist(), sims[0][found].tolist()))
            if exclude_ids:
                hits = [(i, s) for i, s in hits if i not in exclude_ids]
            hits = hits[:k]
            if not hits:
                return []
            hit_ids = [h[0] for h in hits]
            info = self._hit_info(hit_ids)
            ids_arr = np.asarray(hit_ids)
            known = ids_arr < self._success_sum.shape[0]  # a subtask with no outcome folded in yet has none
            sums = np.zeros((len(hit_ids), self._success_sum.shape[1]))
            counts = np.zeros((len(hit_ids), self._success_sum.shape[1]), dtype=np.int32)
            sums[known], counts[known] = self._success_sum[ids_arr[known]], self._success_n[ids_arr[known]]
            cond_n = np.zeros(counts.shape, dtype=np.int32)
            cond_n[known] = self._cond_n[ids_arr[known]]
            any_cond = bool(cond_n.any())
            if any_cond:
                cond_s = np.zeros(sums.shape)
                cond_s[known] = self._cond_sum[ids_arr[known]]
                all_n = counts + cond_n
            else:
                all_n = counts
            costs = np.zeros(sums.shape)
            toks = np.zeros(sums.shape)
            costs[known], toks[known] = self._cost_sum[ids_arr[known]], self._tokens_sum[ids_arr[known]]
            models = list(self._model_cols.items())
            answers: dict[int, dict[str, str]] = defaultdict(dict)
            if with_answers:
                for sid, model, answer in self._backend.accepted_answers(hit_ids):
                    answers[sid][model] = answer
        # per-row dicts from plain lists (numpy scalars one by one cost more than the search itself)
        names = [m for m, _ in models]
        cols = [c for _, c in models]
        counts, all_n, sums = counts[:, cols], all_n[:, cols], sums[:, cols]
        have = (counts > 0).tolist()
        means = np.divide(sums, counts, out=np.zeros(sums.shape), where=counts > 0).tolist()
        ran = (all_n > 0).tolist() if any_cond else have
        denom = np.maximum(all_n, 1)
        mean_cost = (costs[:, cols] / denom).tolist()
        mean_toks = (toks[:, cols] / denom).tolist()
        if any_cond:
            cond_n = cond_n[:, cols]
            cond_has = (cond_n > 0).tolist()
            cond_mean = np.divide(cond_s[:, cols], cond_n, out=np.zeros(sums.shape), where=cond_n > 0).tolist()
        out, rows = Neighbours(), []
        every = len(names)
        for r, (sid, sim) in enumerate(hits):
            if sid in info:
                h, rn = have[r], ran[r]
                full = sum(h) == every
                out.append(
                    Neighbour(
                        sid,
                        sim,
                        info[sid][0],
                        info[sid][1],
                        dict(zip(names, means[r])) if full else {m: v for m, v, ok in zip(names, means[r], h) if ok},
                        dict(answers.get(sid, {})),
                        dict(zip(names, mean_cost[r]))
                        if full and rn is h
                        else {m: v for m, v, ok in zip(names, mean_cost[r], rn) if ok},
                        dict(zip(names, mean_toks[r]))
                        if full and rn is h
                        else {m: v for m, v, ok in zip(names, mean_toks[r], rn) if ok},
                        {m: v for m, v, ok in zip(names, cond_mean[r], cond_has[r]) if ok} if any_cond else {},
                    )
                )
                rows.append(r)
        ran_arr = (all_n > 0) if any_cond else (counts > 0)
        block = NeighbourBlock(
            names,
            np.asarray([sim for _, sim in hits], dtype=np.float64),
            np.asarray(means, dtype=np.float64).reshape(len(hits), len(names)),
            counts > 0,
            ran_arr,
            np.asarray(mean_cost, dtype=np.float64).reshape(len(hits), len(names)) * ran_arr,
            np.asarray(mean_toks, dtype=np.float64).reshape(len(hits), len(names)) * ran_arr,
            (cond_n > 0).any(axis=1) if any_cond else np.zeros(len(hits), dtype=bool),
        )
        out.block = block.take(rows) if len(rows) != len(hits) else block
        return out

    def class_rates(self, task_class: str | None) -> dict[str, tuple[float, int]]:
        """Per-model (mean success, count) of the unconditioned outcomes within a task class; ``None`` gives
        the rates over all classes. (Outcomes recorded after a rejection: :meth:`conditioned_rates`.)"""
        with self._lock:
            if task_class is None:
                return {m: (s / n, n) for m, (s, n) in self._model_totals.items() if n}
            return {m: (s / n, n) for m, (s, n) in self._class_totals.get(task_class, {}).items() if n}

    def conditioned_rates(self) -> dict[str, tuple[float, int]]:
        """Per-model (mean success, count) of the outcomes recorded after an earlier tier was rejected."""
        with self._lock:
            return {m: (s / n, int(n)) for m, (s, n) in self._cond_totals.items() if n}

    def joint_rates(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """Pairwise success rates over subtasks with outcomes of both models (mean success per subtask), from
        every outcome, conditioned ones included (escalation asks what follows a rejection).

        Returns (models, given_wrong, given_right, rate): ``given_wrong[i, j]`` = P(i right | j wrong),
        ``given_right[i, j]`` = P(i right | j right), ``rate[i, j]`` = P(i right) on those subtasks (NaN
        where there are none).
        """
        with self._lock:
            models = list(self._model_cols)
            cols = [self._model_cols[m] for m in models]
            n = self._success_n[:, cols].astype(np.float64)
            s = self._success_sum[:, cols]
            if self._cond_totals:
                n = n + self._cond_n[:, cols]
                s = s + self._cond_sum[:, cols]
        seen = (n > 0).astype(np.float64)
        mean = np.divide(s, n, out=np.zeros_like(s), where=n > 0)
        wrong = (1.0 - mean) * seen
        with np.errstate(invalid="ignore", divide="ignore"):
            given_wrong = (mean.T @ wrong) / (seen.T @ wrong)
            given_right = (mean.T @ mean) / (seen.T @ mean)
            rate = (mean.T @ seen) / (seen.T @ seen)
        return models, given_wrong, given_right, rate

    def model_usage(self) -> dict[str, tuple[float, float, int]]:
        """Per model: (mean recorded USD per answer, mean output tokens, count) over error-free outcomes."""
        with self._lock:
            return {m: (c / n, t / n, int(n)) for m, (c, t, n) in self._model_usage.items() if n}

    @property
    def outcomes_folded(self) -> int:
        """How many (error-free) outcomes this connection has folded in: a cheap growth counter."""
        with self._lock:
            return int(sum(n for _, n in self._model_totals.values()) + sum(n for _, n in self._cond_totals.values()))

    def training_rows(self, limit: int, with_ids: bool = False) -> tuple:
        """The newest `limit` subtasks with outcomes: (embeddings, task classes, {model: (row indices, mean success)}),
        and their subtask ids last when `with_ids`.

        What the success probe is fitted on (a first-pick estimate: unconditioned outcomes only); per-subtask
        means come from the in-memory aggregates.
        """
        with self._lock:
            self.refresh()
            rows = self._backend.newest_subtasks(self._success_n.shape[0], int(limit))
            ids = np.asarray([r[0] for r in rows], dtype=np.int64)
            counts = self._success_n[ids] if len(ids) else np.zeros((0, self._success_n.shape[1]), np.int32)
            sums = self._success_sum[ids] if len(ids) else np.zeros(counts.shape)
            models = dict(self._model_cols)
        vectors = (
            np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(len(rows), self.dim)
            if rows
            else np.zeros((0, self.dim), np.float32)
        )
        per_model = {}
        for model, col in models.items():
            have = np.flatnonzero(counts[:, col] > 0)
            per_model[model] = (have, sums[have, col] / counts[have, col])
        if with_ids:
            return vectors, [r[1] for r in rows], per_model, ids
        return vectors, [r[1] for r in rows], per_model

    def replay_rows(self, models: Sequence[str], limit: int, seed: int = 0) -> dict:
        """Up to `limit` subtasks (a seeded sample) on which every model of `models` has an unconditioned
        outcome: what the store's own replay of its routing is scored on (:mod:`fusiongraph.routing.operating_point`).

        Returns ``{"ids", "vectors", "classes", "success", "cost", "mean_success", "mean_cost", "complete"}``:
        subtask ids (n,), embeddings (n, dim), task classes, and per model (columns in the order of `models`)
        the mean unconditioned success and mean recorded USD (n, len(models)); then each model's mean success
        and cost over *every* such subtask, not only the sample, how many there are, and on how many subtasks
        two or more of the models have one (``covered``; a live run's subtask has one, its first pick). Empty arrays
        when a model has no outcome at all.
        """
        with self._lock:
            self.refresh()
            m = len(models)
            cols = [self._model_cols.get(name) for name in models]
            if not m or any(c is None for c in cols):
                ids = np.zeros(0, dtype=np.int64)
            else:
                n = self._success_n[:, cols]
                ids = np.flatnonzero((n > 0).all(axis=1)).astype(np.int64)
            # subtasks on which two or more candidates have an unconditioned outcome: those where models were
            # compared (imports, calibrations, a model's outcomes beside the others'); a live run's subtask has
            # one (its first pick; escalations are conditioned), so live traffic does not shrink the share
            known = [c for c in cols if c is not None]
            covered = int(((self._success_n[:, known] > 0).sum(axis=1) >= min(2, max(len(known), 1))).sum())
            complete = len(ids)
            if complete:
                every_n = self._success_n[np.ix_(ids, cols)]
                mean_success = (self._success_sum[np.ix_(ids, cols)] / every_n).mean(axis=0)
                every_all = every_n + self._cond_n[np.ix_(ids, cols)]
                mean_cost = (self._cost_sum[np.ix_(ids, cols)] / np.maximum(every_all, 1)).mean(axis=0)
            else:
                mean_success = mean_cost = np.zeros(m)
            if len(ids) > limit:
                ids = np.sort(np.random.default_rng(seed).choice(ids, int(limit), replace=False))
            if len(ids):
                n = self._success_n[np.ix_(ids, cols)]
                success = self._success_sum[np.ix_(ids, cols)] / n
                all_n = n + self._cond_n[np.ix_(ids, cols)]
                cost = self._cost_sum[np.ix_(ids, cols)] / np.maximum(all_n, 1)
                vectors = np.vstack([self._index.reconstruct(int(i)) for i in ids]).astype(np.float32)
                info = self._backend.subtask_info(ids.tolist())
            else:
                success = cost = np.zeros((0, m))
                vectors, info = np.zeros((0, self.dim), np.float32), {}
        keep = np.asarray([int(i) in info for i in ids], dtype=bool)  # erased meanwhile: left out
        return {
            "ids": ids[keep],
            "vectors": vectors[keep],
            "classes": [info[int(i)][1] for i in ids[keep]],
            "success": success[keep],
            "cost": cost[keep],
            "mean_success": mean_success,
            "mean_cost": mean_cost,
            "complete": complete,
            "covered": covered,
        }

    def counts(self) -> dict[str, int]:
        with self._lock:
            subtasks, outcomes = self._backend.count_rows()
            return {"subtasks": subtasks, "outcomes": outcomes, "vectors": int(self._index.ntotal)}

    def outcomes(self, limit: int | None = None) -> list[dict]:
        """Rows for inspection and export, newest last."""
        with self._lock:
            rows = [dict(zip(OUTCOME_ROW_KEYS, r)) for r in self._backend.outcome_rows(limit)]
        for r in rows:
            r["judges"] = json.loads(r["judges"])
            r["accepted"] = bool(r["accepted"])
            r["after_rejection"] = bool(r["after_rejection"])
        return rows

    def texts_with_source(self, source: str) -> set[str]:
        """Hashes of the subtask texts that have outcomes from `source` (resuming a calibration)."""
        with self._lock:
            return self._backend.hashes_with_source(source)

    def __len__(self) -> int:
        return int(self._index.ntotal)


def open_store(
    target: str | Path | None, dim: int, embedder_name: str = "unknown", cache_dir: str | Path | None = None
) -> OutcomeStore:
    """The store at `target`: a directory (SQLite), ``sqlite:///dir``, ``postgresql://...`` or another scheme
    registered in :data:`store.backends.BACKENDS`; None is an in-memory SQLite store.

    `cache_dir` (server backends only) is where this worker keeps its FAISS index and probe fit between
    starts; without it they are rebuilt from the database at start.
    """
    scheme = url_scheme(target)
    if scheme is None:
        return OutcomeStore(target, dim, embedder_name)
    backend = make_backend(target)
    if scheme == "sqlite":
        return OutcomeStore(backend.directory, dim, embedder_name, backend=backend)
    return OutcomeStore(cache_dir, dim, embedder_name, backend=backend)


def migrate_store(source: str | Path, target: str | Path, append: bool = False, batch: int = 5000) -> dict:
    """Copy every subtask and outcome of the store at `source` into the store at `target`, without loss, and
    its API keys with their spend and charges (a key the target already has is refused).

    One transaction on the target: all of it or nothing. Subtask ids may change (outcomes follow their
    subtask); every column is kept. A target that already holds rows is refused unless `append` (then a
    text already there keeps its subtask and gains the outcomes). The counts are checked inside the
    transaction and again through a fresh store on the target. Rows the source commits during the copy are
    left for a later ``--append``: the copy takes the rows up to the highest ids it saw at the start.
    """
    if url_scheme(source) is None and not (Path(source) / DB_FILE).exists():
        raise StoreError(f"no outcome store at {source} (no {DB_FILE} there)")
    src = make_backend(source)
    dst: Backend | None = None
    try:
        meta = src.read_meta()
        if not meta:
            raise StoreError(f"{src.label} holds no outcome store")
        dim, embedder = int(meta["dim"]), meta.get("embedder", "unknown")
        dst = make_backend(target)
        dst_meta = dst.open(dim, embedder)
        if int(dst_meta["dim"]) != dim:
            raise StoreError(
                f"{dst.label} holds {dst_meta['dim']}-dimensional embeddings, {src.label} {dim}: they cannot be merged"
            )
        upto_s, upto_o = src.max_ids()
        want_s, want_o = src.count_rows((upto_s, upto_o))
        keys = src.export_keys()  # API keys, their spend and charges: the budgets move with the store
        result = dst.import_rows(
            src.export_subtasks(upto_s, batch),
            src.export_outcomes(upto_o, batch),
            append,
            expected=(want_s, want_o),
            keys=keys,
        )
    finally:
        src.close()
        if dst is not None:
            dst.stop()
            dst.close()
    check = open_store(target, dim, embedder)
    try:
        counts = check.counts()
    finally:
        check.close()
    # (at least: other writers may add rows to a live target right after the copy commits)
    if (
        counts["outcomes"] < result["outcomes"]
        or counts["subtasks"] < result["subtasks"]
        or counts["vectors"] != counts["subtasks"]
    ):
        raise StoreError(
            f"after the copy {check.location} holds {counts}, expected {result['subtasks']} subtasks "
            f"and {result['outcomes']} outcomes"
        )
    return {
        "source": {"subtasks": want_s, "outcomes": want_o} | {t: len(rows) for t, rows in keys.items()},
        "copied": {"subtasks": result["subtasks_added"], "outcomes": result["outcomes_added"]} | result["keys"],
        "target": counts,
    }
