"""The outcome store: every judged attempt, with the subtask's embedding, for nearest-neighbour routing.

A SQL database is the source of truth (subtasks with their embeddings, outcomes, metadata): SQLite by
default (a directory), or Postgres (``postgresql://...``) when several machines share one store; see
:mod:`store.backend` for the interface and the registry of backends, :mod:`store.postgres` for Postgres.
Everything routing reads is kept in memory: per-subtask outcome sums by model, class and model totals
(:mod:`store.aggregates`), and the FAISS index (:mod:`store.index`). They are caches, folded in from the rows
committed after a watermark (``refresh``); the FAISS index may be written to disk (``faiss.write_index``) and
is reconciled with the database on open, so a crash between the two never loses an outcome: whatever the
database committed is searchable after the next load. Nothing is pickled.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import weakref
from collections import OrderedDict, defaultdict
from contextlib import nullcontext
from pathlib import Path
from typing import Iterable, Sequence

import faiss
import numpy as np

from fusiongraph.routing.probe import PROBE_FILE
from fusiongraph.store.aggregates import Aggregates, joint_rates
from fusiongraph.store.backend import OUTCOME_ROW_KEYS, Backend, StoreError, make_backend, url_scheme
from fusiongraph.store.index import (
    HNSW_THRESHOLD,
    SEARCH_THREADS,
    build_hnsw,
    faiss_threads,
    is_hnsw,
    load_index,
    near_duplicates,
    new_index,
    save_index,
)
from fusiongraph.store.sqlite import SQLiteBackend
from fusiongraph.store.types import Neighbour, Outcome, text_hash

log = logging.getLogger(__name__)

# The text and class of recent neighbour hits, kept in memory (a subtask row never changes once written), so
# a route whose hits were seen lately needs no database round trip (a Postgres one costs ~0.5 ms); ~10 MB.
HIT_CACHE_ROWS = 100_000


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
        self._outcomes_seen = 0  # highest outcome id folded into the sums
        self._sums = Aggregates()  # per-subtask outcome sums by model, in memory: neighbour look-ups need no SQL
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
        index, self._indexed_upto = load_index(
            self.directory, self.dim, self._backend.store_id, self._erasures, self._db_label()
        )
        return index

    # ------------------------------------------------------------------ syncing
    def refresh(self, check_erasures: bool = True) -> None:
        """Fold in what other connections (threads, processes, machines) committed since we last looked.

        Reads the rows after the watermarks (highest subtask id indexed, highest outcome id folded): every
        backend makes ids visible in id order (see :mod:`store.backend`), so no row is skipped. An erasure
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
                self._sums.fold(subtask_id, model, cls, success, cost, tokens, bool(cond))
                self._outcomes_seen = oid

    def _reset_derived(self) -> None:
        """Forget the index and the in-memory sums; the next refresh rebuilds them from the database."""
        self._index = new_index(self.dim, hnsw=False)
        self._indexed_upto = self._outcomes_seen = 0
        self._sums = Aggregates()
        self._hit_cache.clear()  # an erased subtask's text must not come back (SQLite may reuse its id)
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
        if self.directory is not None:
            (self.directory / PROBE_FILE).unlink(missing_ok=True)
        elif self.shares_artifacts:
            self._backend.put_artifact(PROBE_FILE, b"")

    def _refresh_from_listener(self) -> bool:
        if self._closed:
            return False
        self.refresh()
        return True

    def _add_vectors(self, ids: Sequence[int], blobs: Sequence[bytes]) -> None:
        vectors = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(ids), self.dim)
        if not is_hnsw(self._index) and self._index.ntotal + len(ids) > HNSW_THRESHOLD:
            self._rebuild_as_hnsw()
        bulk = len(ids) > 1000  # a few vectors (one recorded subtask): one thread, as a search; bulk: all of them
        with nullcontext() if bulk else faiss_threads(SEARCH_THREADS):
            self._index.add_with_ids(np.ascontiguousarray(vectors), np.asarray(ids, dtype=np.int64))
        self._indexed_upto = max(self._indexed_upto, int(max(ids)))
        self._unsaved += len(ids)

    def _rebuild_as_hnsw(self) -> None:
        self._index = build_hnsw(self.dim, self._indexed_upto, self._backend.subtasks_between)

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
            meta = {
                "upto": self._indexed_upto,
                "count": int(self._index.ntotal),
                "dim": self.dim,
                "erasures": self._erasures,
            }
            if self._backend.store_id is not None:
                meta["store"] = self._backend.store_id
            save_index(self.directory, self._index, meta)
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
            with faiss_threads(SEARCH_THREADS):
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
            at = self._sums.at(hit_ids)
            answers: dict[int, dict[str, str]] = defaultdict(dict)
            if with_answers:
                for sid, model, answer in self._backend.accepted_answers(hit_ids):
                    answers[sid][model] = answer
        return at.neighbours(hits, info, answers)

    def class_rates(self, task_class: str | None) -> dict[str, tuple[float, int]]:
        """Per-model (mean success, count) of the unconditioned outcomes within a task class; ``None`` gives
        the rates over all classes. (Outcomes recorded after a rejection: :meth:`conditioned_rates`.)"""
        with self._lock:
            return self._sums.class_rates(task_class)

    def conditioned_rates(self) -> dict[str, tuple[float, int]]:
        """Per-model (mean success, count) of the outcomes recorded after an earlier tier was rejected."""
        with self._lock:
            return self._sums.conditioned_rates()

    def joint_rates(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """Pairwise success rates over subtasks with outcomes of both models (mean success per subtask), from
        every outcome, conditioned ones included (escalation asks what follows a rejection).

        Returns (models, given_wrong, given_right, rate): ``given_wrong[i, j]`` = P(i right | j wrong),
        ``given_right[i, j]`` = P(i right | j right), ``rate[i, j]`` = P(i right) on those subtasks (NaN
        where there are none).
        """
        with self._lock:
            models, n, s = self._sums.joint_counts()
        return joint_rates(models, n, s)

    def model_usage(self) -> dict[str, tuple[float, float, int]]:
        """Per model: (mean recorded USD per answer, mean output tokens, count) over error-free outcomes."""
        with self._lock:
            return self._sums.usage()

    @property
    def outcomes_folded(self) -> int:
        """How many (error-free) outcomes this connection has folded in: a cheap growth counter."""
        with self._lock:
            return self._sums.folded()

    def training_rows(self, limit: int, with_ids: bool = False) -> tuple:
        """The newest `limit` subtasks with outcomes: (embeddings, task classes, {model: (row indices, mean success)}),
        and their subtask ids last when `with_ids`.

        What the success probe is fitted on (a first-pick estimate: unconditioned outcomes only); per-subtask
        means come from the in-memory aggregates.
        """
        with self._lock:
            self.refresh()
            rows = self._backend.newest_subtasks(self._sums.success_n.shape[0], int(limit))
            ids = np.asarray([r[0] for r in rows], dtype=np.int64)
            counts = self._sums.success_n[ids] if len(ids) else np.zeros((0, self._sums.success_n.shape[1]), np.int32)
            sums = self._sums.success_sum[ids] if len(ids) else np.zeros(counts.shape)
            models = dict(self._sums.model_cols)
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
            cols = [self._sums.model_cols.get(name) for name in models]
            if not m or any(c is None for c in cols):
                ids = np.zeros(0, dtype=np.int64)
            else:
                n = self._sums.success_n[:, cols]
                ids = np.flatnonzero((n > 0).all(axis=1)).astype(np.int64)
            # subtasks on which two or more candidates have an unconditioned outcome: those where models were
            # compared (imports, calibrations, a model's outcomes beside the others'); a live run's subtask has
            # one (its first pick; escalations are conditioned), so live traffic does not shrink the share
            known = [c for c in cols if c is not None]
            covered = int(((self._sums.success_n[:, known] > 0).sum(axis=1) >= min(2, max(len(known), 1))).sum())
            complete = len(ids)
            if complete:
                every_n = self._sums.success_n[np.ix_(ids, cols)]
                mean_success = (self._sums.success_sum[np.ix_(ids, cols)] / every_n).mean(axis=0)
                every_all = every_n + self._sums.cond_n[np.ix_(ids, cols)]
                mean_cost = (self._sums.cost_sum[np.ix_(ids, cols)] / np.maximum(every_all, 1)).mean(axis=0)
            else:
                mean_success = mean_cost = np.zeros(m)
            if len(ids) > limit:
                ids = np.sort(np.random.default_rng(seed).choice(ids, int(limit), replace=False))
            if len(ids):
                n = self._sums.success_n[np.ix_(ids, cols)]
                success = self._sums.success_sum[np.ix_(ids, cols)] / n
                all_n = n + self._sums.cond_n[np.ix_(ids, cols)]
                cost = self._sums.cost_sum[np.ix_(ids, cols)] / np.maximum(all_n, 1)
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

    def blindness(self, sample: int = 5000) -> dict:
        """Of the newest `sample` subtasks (each a distinct text), how many share their vector with another:
        many means the router is blind there (see :func:`store.index.near_duplicates`)."""
        with self._lock:
            newest, _ = self._backend.max_ids()
            rows = self._backend.newest_subtasks(newest + 1, sample)
        if not rows:
            return {"sampled": 0, "same_vector": 0, "share": 0.0}
        vectors = np.stack([np.frombuffer(blob, dtype=np.float32) for _, _, blob in rows])
        same = near_duplicates(vectors)
        return {"sampled": len(rows), "same_vector": same, "share": round(same / len(rows), 4)}

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
    registered in :data:`store.backend.BACKENDS`; None is an in-memory SQLite store.

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
