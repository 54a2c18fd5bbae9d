"""Where the Responses API's conversations are kept (:mod:`fusiongraph.response_store`): the outcome store's own
database, as the API keys (:mod:`store.key_backend`), so every worker and replica that shares the store finds a
``previous_response_id`` another one answered, after restarts too.

A :class:`ResponseBackend` works on the connection of an outcome store :class:`~store.backend.Backend` of the
same database; :data:`RESPONSE_BACKENDS` maps a backend's scheme to its response backend (one line per database).
One table, ``responses``: the response id, the API key that created it (NULL: an open server's anonymous
requests), when, and the conversation's messages as JSON text (never pickled).
"""

from __future__ import annotations

from fusiongraph.store.backend import SideBackend, SideBackends

# backend scheme -> "module:Class", imported on first use; .register(scheme, target) adds one
RESPONSE_BACKENDS = SideBackends(
    "Responses API conversations",
    {
        "sqlite": "fusiongraph.store.responses_sqlite:SQLiteResponseBackend",
        "postgresql": "fusiongraph.store.responses_postgres:PostgresResponseBackend",
    },
)


class ResponseBackend(SideBackend):
    """What :class:`fusiongraph.response_store.ResponseStore` needs from a database; called under its lock."""

    def responses_schema(self) -> None:
        """Create the ``responses`` table if it is missing (no outcome-store metadata is written)."""
        raise NotImplementedError

    def response_insert(self, response_id: str, key_id: str | None, created_at: float, messages: str) -> None:
        """Keep one response's conversation (`messages`: JSON text)."""
        raise NotImplementedError

    def response_get(self, response_id: str, key_id: str | None, since: float) -> str | None:
        """The messages (JSON text) of the response with this id created by this key (None: anonymous) at or
        after `since`; None otherwise (unknown, another key's, or older)."""
        raise NotImplementedError

    def response_prune(self, before: float) -> int:
        """Delete the responses created before `before`; how many."""
        raise NotImplementedError

    def response_forget(self, pattern: str | None, before: float | None) -> int:
        """Delete the responses whose lower-cased messages are LIKE `pattern` (``\\`` escapes) and/or created
        before `before` (None: no condition); how many."""
        raise NotImplementedError

    def response_rows(self) -> list[tuple]:
        """Every stored response as (id, key_id, created_at, messages), for ``store migrate``."""
        raise NotImplementedError

    def response_import(self, rows: list[tuple]) -> int:
        """Add (id, key_id, created_at, messages) rows, one transaction, an id already there left as it is; how
        many were added."""
        raise NotImplementedError
