"""The Responses API's stored conversations (``previous_response_id``, server/responses_api.py), kept in the
outcome store's database as the API keys are (:mod:`fusiongraph.keys`): a SQLite file in the store directory, or
the server's Postgres, so every worker and replica that shares the store continues a conversation any of them
answered, after restarts too.

Each response belongs to the API key that created it (None: an open server's anonymous requests): a lookup
under another key finds nothing, exactly as for an unknown id. A conversation is kept for
``$FUSIONGRAPH_RESPONSES_RETENTION_DAYS`` (default 30; ``$FUSIONGRAPH_RETENTION_DAYS`` if shorter): an older one is never returned, and the writes delete
the expired ones (at most once a minute per store). The messages are JSON text, never pickled.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from fusiongraph.settings import settings
from fusiongraph.store.backend import SideStore
from fusiongraph.store.response_backend import RESPONSE_BACKENDS, ResponseBackend
from fusiongraph.store.sql import like_pattern

PRUNE_EVERY_S = 60.0


def retention_s() -> float:
    """How long a conversation is kept: its own retention, or the store's (FUSIONGRAPH_RETENTION_DAYS) if shorter."""
    s = settings()
    days = min(s.responses_retention_days, s.retention_days or s.responses_retention_days)
    return days * 86400.0


class ResponseStore(SideStore):
    """The stored responses of one store (a directory or a URL, as :func:`fusiongraph.resources.resolve_store`
    gives). Blocking: call it from async code through ``asyncio.to_thread``."""

    backends = RESPONSE_BACKENDS
    backend: ResponseBackend

    def __init__(self, target: str | Path | None):
        self._pruned_at: float | None = None
        super().__init__(target)

    def schema(self) -> None:
        self.backend.responses_schema()

    def put(self, response_id: str, key_id: str | None, messages: list[dict], now: float | None = None) -> None:
        """Keep a response's conversation for `key_id`; the expired ones are deleted now and then."""
        now = time.time() if now is None else now
        text = json.dumps(messages, ensure_ascii=False)
        with self._lock:
            self.backend.response_insert(response_id, key_id, now, text)
            if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY_S:
                self._pruned_at = now
                self.backend.response_prune(now - retention_s())

    def get(self, response_id: str, key_id: str | None, now: float | None = None) -> list[dict] | None:
        """The conversation of the response `key_id` created with this id, or None (unknown, another key's, not
        stored, or older than the retention)."""
        since = (time.time() if now is None else now) - retention_s()
        with self._lock:
            text = self.backend.response_get(response_id, key_id, since)
        return None if text is None else json.loads(text)

    def forget(self, match: str | None, before: float | None = None) -> int:
        """Delete the conversations holding `match` (any case, in any message) and/or kept before `before`
        (``fusiongraph store forget``); how many."""
        # the text as the JSON of the messages holds it (quotes and backslashes escaped), as a LIKE pattern
        pattern = None if match is None else like_pattern(json.dumps(match, ensure_ascii=False)[1:-1])
        with self._lock:
            return self.backend.response_forget(pattern, before)

    def prune(self, now: float | None = None) -> int:
        """Delete the responses older than the retention; how many."""
        now = time.time() if now is None else now
        with self._lock:
            self._pruned_at = now
            return self.backend.response_prune(now - retention_s())


_stores: dict[str, ResponseStore] = {}
_stores_lock = threading.Lock()


def response_store(target: str | Path | None = None) -> ResponseStore:
    """The process-wide :class:`ResponseStore` of `target` (default: the store the server uses)."""
    from fusiongraph.resources import shared_per_store

    return shared_per_store(_stores, _stores_lock, ResponseStore, target)


def close_stores() -> None:
    """Close every process-wide store (tests; a new one opens on the next call)."""
    with _stores_lock:
        for rs in _stores.values():
            rs.close()
        _stores.clear()
