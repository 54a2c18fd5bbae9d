"""API keys with USD budgets, kept in the outcome store's database so every replica shares them.

A key is ``fg-`` + 43 random URL-safe characters (256 bits); only its sha256 is stored (a random token
needs no slow hash: there is nothing to guess from). Each key has a name, a budget in USD and a period:
``day`` and ``month`` (UTC; the spend starts again at 0 each period) or ``total`` (never resets). A run's
actual cost is added to the key's spend of the current period by one atomic upsert in the same database
as the outcomes (SQLite file or Postgres), so a budget holds across processes and machines. The check
happens before a run: a key whose spend has reached its budget is refused (HTTP 429). Runs already under
way when the budget is reached finish and are charged, so the spend can pass the budget by at most what
the in-flight runs cost (each is capped by its ``budget_usd`` knob).

The server (server/auth.py) is open while no key was ever created in its store; once one exists (even
revoked) every request needs a valid key. ``FUSIONGRAPH_REQUIRE_API_KEY=1`` makes it refuse requests
without a key even before the first key is created.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from fusiongraph.settings import settings
from fusiongraph.store.backend import SideStore, StoreError
from fusiongraph.store.key_backend import KEY_BACKENDS, KEY_COLUMNS, KeyBackend

PREFIX = "fg-"
PERIODS = ("day", "month", "total")
ENV_REQUIRE = "FUSIONGRAPH_REQUIRE_API_KEY"


def hash_key(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def period_start(period: str, now: float | None = None) -> str:
    """The label of the period `now` falls in: ``2025-01-31`` (day), ``2025-01`` (month), ``total``."""
    if period == "total":
        return "total"
    when = datetime.fromtimestamp(time.time() if now is None else now, timezone.utc)
    if period == "day":
        return when.strftime("%Y-%m-%d")
    if period == "month":
        return when.strftime("%Y-%m")
    raise ValueError(f"period must be one of {PERIODS}, got {period!r}")


def require_keys_env() -> bool:
    return settings().require_api_key


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    prefix: str  # the first characters of the token, to recognise it in a list
    budget_usd: float
    period: str
    created_at: float
    revoked_at: float | None

    @classmethod
    def from_row(cls, row) -> ApiKey:
        values = dict(zip(KEY_COLUMNS, row))
        return cls(**values | {"budget_usd": float(values["budget_usd"])})

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class KeyRefused(Exception):
    """A request's key is missing, unknown, revoked or over budget (status: the HTTP status to answer)."""

    def __init__(self, message: str, status: int, code: str, key: ApiKey | None = None):
        super().__init__(message)
        self.message, self.status, self.code, self.key = message, status, code, key


class KeyStore(SideStore):
    """The keys of one store (a directory or a URL, as :func:`fusiongraph.resources.resolve_store` gives)."""

    backends = KEY_BACKENDS
    backend: KeyBackend

    def __init__(self, target: str | Path | None):
        self._ever_had_keys = False
        super().__init__(target)

    def schema(self) -> None:
        self.backend.keys_schema()

    # ------------------------------------------------------------ administration
    def create(self, name: str, budget_usd: float, period: str = "month") -> tuple[str, ApiKey]:
        """A new key: (the token, shown once and never stored, its record)."""
        name = (name or "").strip()
        if not name:
            raise ValueError("a key needs a name")
        if period not in PERIODS:
            raise ValueError(f"period must be one of {', '.join(PERIODS)}, got {period!r}")
        if not budget_usd >= 0 or budget_usd == float("inf"):
            raise ValueError(f"budget_usd must be a finite number >= 0, got {budget_usd!r}")
        token = PREFIX + secrets.token_urlsafe(32)
        key_id = "key_" + secrets.token_hex(6)
        now = time.time()
        with self._lock:
            self.backend.key_insert(key_id, name, hash_key(token), token[:10], float(budget_usd), period, now)
        self._ever_had_keys = True
        return token, ApiKey(key_id, name, token[:10], float(budget_usd), period, now, None)

    def list(self) -> list[tuple[ApiKey, float]]:
        """Every key with its spend in its current period."""
        with self._lock:
            keys = [ApiKey.from_row(r) for r in self.backend.key_rows()]
            return [(k, self.backend.key_spent(k.id, period_start(k.period))) for k in keys]

    def get(self, key_id: str) -> ApiKey | None:
        """The key with this id (revoked or not), or None."""
        with self._lock:
            row = self.backend.key_by_id(key_id)
        return ApiKey.from_row(row) if row else None

    def revoke(self, id_or_name: str) -> bool:
        with self._lock:
            return self.backend.key_revoke(id_or_name, time.time()) > 0

    # ------------------------------------------------------------ serving
    def any_keys(self) -> bool:
        """Whether a key was ever created (once true, it stays true: keys are revoked, never deleted)."""
        if not self._ever_had_keys:
            with self._lock:
                self._ever_had_keys = self.backend.key_count() > 0
        return self._ever_had_keys

    def spent(self, key: ApiKey) -> float:
        with self._lock:
            return self.backend.key_spent(key.id, period_start(key.period))

    def check(self, token: str | None) -> ApiKey:
        """The key for `token` if it may start a run, else :class:`KeyRefused` (401, or 429 over budget)."""
        if not token:
            raise KeyRefused(
                "this server needs an API key: send 'Authorization: Bearer fg-...' (create one with "
                "'fusiongraph keys create')",
                401,
                "missing_api_key",
            )
        with self._lock:
            row = self.backend.key_by_hash(hash_key(token))
        key = ApiKey.from_row(row) if row else None
        if key is None:
            raise KeyRefused(f"incorrect API key provided: {_shown(token)}", 401, "invalid_api_key")
        if key.revoked:
            raise KeyRefused(f"the API key {key.name!r} ({key.prefix}...) has been revoked", 401, "revoked_api_key")
        spent = self.spent(key)
        if spent >= key.budget_usd:
            when = {
                "day": "until the next UTC day",
                "month": "until the next UTC month",
                "total": "for good: its budget does not reset",
            }[key.period]
            raise KeyRefused(
                f"the API key {key.name!r} has spent ${spent:.6f} of its ${key.budget_usd:.6f} "
                f"{'' if key.period == 'total' else 'per-' + key.period + ' '}budget: it is refused "
                f"{when}; ask for a larger budget or use another key",
                429,
                "insufficient_quota",
                key,
            )
        return key

    def charge(self, key: ApiKey, cost_usd: float, run_id: str | None = None) -> float:
        """Add a run's cost to the key's spend in the current period (atomic); the spend after. A `run_id`
        already charged is not charged again."""
        with self._lock:
            return self.backend.key_charge(
                key.id, period_start(key.period), max(float(cost_usd), 0.0), run_id, time.time()
            )


def _shown(token: str) -> str:
    return token[:6] + "..." + token[-2:] if len(token) > 12 else "***"


_stores: dict[str, KeyStore] = {}
_stores_lock = threading.Lock()


def key_store(target: str | Path | None = None) -> KeyStore:
    """The process-wide :class:`KeyStore` of `target` (default: the store the server uses)."""
    from fusiongraph.resources import shared_per_store

    return shared_per_store(_stores, _stores_lock, KeyStore, target)


__all__ = [
    "ApiKey",
    "KeyRefused",
    "KeyStore",
    "PERIODS",
    "StoreError",
    "hash_key",
    "key_store",
    "period_start",
    "require_keys_env",
]
