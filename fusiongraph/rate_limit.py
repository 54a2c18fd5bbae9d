"""Per-key request rate limits, beside the keys' USD budgets: at most ``FUSIONGRAPH_KEY_RPM`` requests a minute
for each API key (0, the default: no limit), counted in fixed one-minute windows. With
``FUSIONGRAPH_REDIS_URL`` set the counts live in Redis, so every replica shares them; without it (or while
Redis is unreachable, logged once) each worker counts its own.
"""

from __future__ import annotations

import logging
import threading
import time

from fusiongraph.settings import settings

log = logging.getLogger(__name__)
WINDOW_S = 60


class LocalCounts:
    """Fixed-window counts in this process."""

    def __init__(self):
        self._counts: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()

    def incr(self, key: str, window: int) -> int:
        with self._lock:
            for old in [k for k in self._counts if k[1] < window]:
                del self._counts[old]
            self._counts[(key, window)] = self._counts.get((key, window), 0) + 1
            return self._counts[(key, window)]


class RedisCounts:
    """Fixed-window counts in Redis: one INCR and EXPIRE per request, shared by every replica."""

    def __init__(self, url: str):
        import redis

        self.url = url
        self._client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)

    def incr(self, key: str, window: int) -> int:
        name = f"fusiongraph:rpm:{key}:{window}"
        pipe = self._client.pipeline()
        pipe.incr(name)
        pipe.expire(name, 2 * WINDOW_S)
        count, _ = pipe.execute()
        return int(count)


_local = LocalCounts()
_redis: dict[str, RedisCounts] = {}
_warned: set[str] = set()


def over_limit(key_id: str, now: float | None = None) -> int | None:
    """Count one request of `key_id`; None when it is within the limit, else the seconds until the next window
    (the Retry-After)."""
    s = settings()
    if not s.key_rpm:
        return None
    now = time.time() if now is None else now
    window = int(now // WINDOW_S)
    count = None
    if s.redis_url:
        try:
            counts = _redis.get(s.redis_url) or _redis.setdefault(s.redis_url, RedisCounts(s.redis_url))
            count = counts.incr(key_id, window)
        except Exception as exc:  # noqa: BLE001 - fail open to this worker's own counts
            if s.redis_url not in _warned:
                _warned.add(s.redis_url)
                log.error("rate limits: Redis at %s unreachable (%s); counting per worker", s.redis_url, exc)
    if count is None:
        count = _local.incr(key_id, window)
    if count <= s.key_rpm:
        return None
    return max(1, int((window + 1) * WINDOW_S - now))
