"""The semantic answer cache: never pay twice for the same answer (nodes/cache.py, nodes/record.py).

An accepted answer is kept per subtask and *scope* (the caller's API key; "-" for an open server). A new
subtask reuses it when its embedding is at least `cache_similarity` close to the cached subtask's, the task
class is the same, the entry is younger than `cache_ttl_s`, and the answering model is still in the
roster with the same entry (its fingerprint); an entry whose model changed is dropped when met. Subtasks
with sensitive content are never cached nor served from the cache (their values would cross a boundary).
"""

from __future__ import annotations

import re
import time

from fusiongraph.context import FusionContext

OPEN_SCOPE = "-"
MIN_WORD_OVERLAP = 0.9
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_WORD = re.compile(r"[^\W\d_]+")


def same_question(a: str, b: str) -> bool:
    """A lexical check on top of the embedding's: the same numbers, in the same order, and nearly the same
    words (90% of the shorter text's). Embeddings miss what differs past their 256 tokens or only in a number
    ("... 12% interest" vs "... 14% interest"); on the shared MMLU-Pro prompts the hardest near-duplicates
    (same stem, other numbers or options) hit the cache without it (benchmarks/bench_privacy.py)."""
    if _NUMBER.findall(a) != _NUMBER.findall(b):
        return False
    wa, wb = set(_WORD.findall(a.lower())), set(_WORD.findall(b.lower()))
    if not wa or not wb:
        return wa == wb
    return len(wa & wb) / min(len(wa), len(wb)) >= MIN_WORD_OVERLAP


def caller_scope() -> str:
    """The API key the run is for (LangGraph's custom auth puts the user in the run's config; the OpenAI
    endpoint passes the key's id the same way), else the open scope."""
    try:
        from langgraph.config import get_config

        configurable = get_config().get("configurable") or {}
    except RuntimeError:  # outside a graph run
        return OPEN_SCOPE
    user = configurable.get("langgraph_auth_user")
    identity = getattr(user, "identity", None) or (user.get("identity") if isinstance(user, dict) else None)
    identity = identity or configurable.get("langgraph_auth_user_id")
    return str(identity) if identity and identity != "anonymous" else OPEN_SCOPE


def lookup(
    res, ctx: FusionContext, embedding, task_class: str, allowed: list[str], text: str | None = None
) -> dict | None:
    """The best usable cache entry for a subtask (`text`, when given, must be the same question as the cached
    subtask's by :func:`same_question`), or None."""
    if not ctx.cache or ctx.cache_ttl_s <= 0:
        return None
    now = time.time()
    for hit in res.store.cached_answers(embedding, caller_scope(), ctx.cache_similarity, now - ctx.cache_ttl_s):
        model = hit["model"]
        if hit["task_class"] != task_class or model not in allowed:
            continue
        if text is not None and not same_question(text, hit["text"]):
            continue
        current = res.roster[model].fingerprint()
        if hit["fingerprint"] != current:
            res.store.cache_drop_model(model, current)  # the model's roster entry changed: its answers go
            continue
        return {
            "subtask_id": hit["subtask_id"],
            "similarity": round(hit["similarity"], 4),
            "model": model,
            "age_s": round(now - hit["created_at"], 1),
            "answer": hit["answer"],
        }
    return None


def remember(res, ctx: FusionContext, subtask_id: int, task_class: str, model: str, answer: str) -> None:
    if ctx.cache and model in res.roster.ids() and answer:
        res.store.cache_put(subtask_id, caller_scope(), model, res.roster[model].fingerprint(), task_class, answer)
