"""The outcome store's FAISS index: built, searched with few threads, saved beside the store, loaded back.

The index is a cache of the database's embeddings (ids are subtask ids): a saved one is used only when it
matches the database (dimension, count, store id, erasures), else it is rebuilt from the rows.
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import faiss
import numpy as np

from fusiongraph.settings import settings

log = logging.getLogger(__name__)

# One routing query searches one vector: OpenMP threads only add wake-up cost (measured: a flat search of
# 10k vectors takes 0.4 ms single-threaded vs 24 ms with 2 OpenMP threads on busy cores). So each search runs
# with SEARCH_THREADS, set around the search call only (`faiss_threads`, as are small index adds); bulk index
# builds and everything else in the process (torch, scikit-learn, other FAISS users) keep the process's
# OpenMP setting.
SEARCH_THREADS = settings().faiss_threads


@contextmanager
def faiss_threads(n: int):
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
HNSW_M = 16  # links per vector of the HNSW graph (see new_index)


def new_index(dim: int, hnsw: bool) -> faiss.Index:
    if hnsw:
        # M=16 (it was 32): half the links to follow per search (1.13 -> 0.63 ms per k=64 search at 250k
        # vectors) and half their memory; recall@64 on 7.5k real MiniLM prompt embeddings 0.965 against 0.973
        inner = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efSearch = 64
        inner.hnsw.efConstruction = 80
    else:
        inner = faiss.IndexFlatIP(dim)
    return faiss.IndexIDMap2(inner)


def is_hnsw(index: faiss.Index) -> bool:
    return isinstance(faiss.downcast_index(index.index), faiss.IndexHNSWFlat)


def build_hnsw(dim: int, upto: int, rows_between: Callable[[int, int], list[tuple[int, bytes]]]) -> faiss.Index:
    """An HNSW index of the subtasks with ids up to `upto`, read in batches (`rows_between(lo, hi)`: (id,
    embedding) with lo < id <= hi)."""
    index = new_index(dim, hnsw=True)
    for start in range(0, upto + 1, 100_000):
        rows = rows_between(start - 1 if start else -1, min(start + 99_999, upto))
        if rows:
            vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
            index.add_with_ids(np.ascontiguousarray(vecs), np.asarray([r[0] for r in rows], dtype=np.int64))
    return index


def load_index(
    directory: Path | None, dim: int, store_id: str | None, erasures: int, source: str
) -> tuple[faiss.Index, int]:
    """The index saved in `directory` and the highest subtask id in it, or a new empty one (and 0) when none is
    saved or it does not match the database `source` (which it is then rebuilt from)."""
    if directory is not None:
        path, meta_path = directory / INDEX_FILE, directory / INDEX_META_FILE
        if path.exists() and meta_path.exists():
            try:
                index = faiss.read_index(str(path))
                meta = json.loads(meta_path.read_text())
                if index.d != dim or index.ntotal != meta["count"]:
                    raise ValueError(f"index holds {index.ntotal} vectors of dim {index.d}, meta says {meta}")
                if meta.get("store") != store_id:
                    raise ValueError(f"index is of store {meta.get('store')}, not {store_id}")
                if meta.get("erasures", 0) != erasures:
                    raise ValueError("rows were erased since the index was saved")
                return index, int(meta["upto"])
            except Exception as exc:  # the index is only a cache: rebuild it from the database
                log.warning("FAISS index %s unreadable (%s); rebuilding it from %s", path, exc, source)
    return new_index(dim, hnsw=False), 0


def save_index(directory: Path, index: faiss.Index, meta: dict) -> None:
    """Write the index and its `meta` (``upto``, ``count``, ...) atomically (temp files + rename)."""
    tmp = directory / f".{INDEX_FILE}.{os.getpid()}.tmp"
    faiss.write_index(index, str(tmp))
    meta_tmp = directory / f".{INDEX_META_FILE}.{os.getpid()}.tmp"
    meta_tmp.write_text(json.dumps(meta))
    os.replace(tmp, directory / INDEX_FILE)
    os.replace(meta_tmp, directory / INDEX_META_FILE)


BLIND_SIMILARITY = 0.999  # two distinct texts this close look the same to the router


def near_duplicates(vectors: np.ndarray, min_similarity: float = BLIND_SIMILARITY) -> int:
    """How many of these vectors (one per distinct text, unit length) have another at cosine similarity
    `min_similarity` or more: texts the router cannot tell apart (a long shared prefix read instead of what
    they ask, for example)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if len(vectors) < 2:
        return 0
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    with faiss_threads(SEARCH_THREADS):
        sims, ids = index.search(vectors, 2)
    other = np.where(ids[:, 0] == np.arange(len(vectors)), sims[:, 1], sims[:, 0])  # ties may list another first
    return int((other >= min_similarity).sum())
