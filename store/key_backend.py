"""Where the API keys of :mod:`fusiongraph.keys` are kept: the outcome store's own database, so every replica
that shares the store shares the budgets.

A :class:`KeyBackend` works on the connection of an outcome store :class:`~store.backend.Backend` of the same
database; :data:`KEY_BACKENDS` maps a backend's scheme to its key backend (one line per database, as
:data:`store.backend.BACKENDS` does for the outcome store). A key is kept as the sha256 of its token only. A
charge adds a run's cost to the key's spend for the current period in one transaction, atomic across
processes and machines.
"""

from __future__ import annotations

from fusiongraph.store.backend import Backend, SideBackend, SideBackends

# backend scheme -> "module:Class", imported on first use; .register(scheme, target) adds one
KEY_BACKENDS = SideBackends(
    "API keys",
    {
        "sqlite": "fusiongraph.store.keys_sqlite:SQLiteKeyBackend",
        "postgresql": "fusiongraph.store.keys_postgres:PostgresKeyBackend",
    },
)

# column order of KeyBackend.key_rows / key_where (fusiongraph.keys.ApiKey)
KEY_COLUMNS = ("id", "name", "prefix", "budget_usd", "period", "created_at", "revoked_at")
# what ``store migrate`` copies of the keys: every table, every column (charges get new ids)
KEY_TABLES: dict[str, tuple[str, ...]] = {
    "api_keys": ("id", "name", "key_hash", "prefix", "budget_usd", "period", "created_at", "revoked_at"),
    "api_key_spend": ("key_id", "period_start", "spent_usd", "runs"),
    "api_key_charges": ("key_id", "period_start", "cost_usd", "run_id", "created_at"),
}


def export_keys(db: Backend) -> dict[str, list[tuple]]:
    """Every row of the API key tables (:data:`KEY_TABLES`) of `db`, any backend; empty lists where it has
    none. Creates nothing (``fusiongraph store migrate`` reads its source with it)."""
    if not db.has_table("api_keys"):
        return {table: [] for table in KEY_TABLES}
    return {
        table: db.select(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {cols[0]}", ())
        for table, cols in KEY_TABLES.items()
    }


class KeyBackend(SideBackend):
    """What :class:`fusiongraph.keys.KeyStore` needs from a database; called under the key store's lock."""

    def keys_schema(self) -> None:
        """Create the key tables if they are missing (no outcome-store metadata is written)."""
        raise NotImplementedError

    def key_count(self) -> int:
        """How many keys were ever created (revoked ones count)."""
        raise NotImplementedError

    def key_insert(
        self, key_id: str, name: str, key_hash: str, prefix: str, budget_usd: float, period: str, now: float
    ) -> None:
        raise NotImplementedError

    def key_rows(self) -> list[tuple]:
        """Every key as :data:`KEY_COLUMNS`, oldest first."""
        raise NotImplementedError

    def key_by_hash(self, key_hash: str) -> tuple | None:
        return self.key_where("key_hash", key_hash)

    def key_by_id(self, key_id: str) -> tuple | None:
        return self.key_where("id", key_id)

    def key_where(self, column: str, value: str) -> tuple | None:
        """The key (:data:`KEY_COLUMNS`) whose `column` (``id`` or ``key_hash``) is `value`, or None."""
        raise NotImplementedError

    def key_revoke(self, id_or_name: str, now: float) -> int:
        """Revoke the key with this id or name; the number of keys revoked (0: none such or already revoked)."""
        raise NotImplementedError

    def key_spent(self, key_id: str, period_start: str) -> float:
        raise NotImplementedError

    def key_charge(self, key_id: str, period_start: str, cost_usd: float, run_id: str | None, now: float) -> float:
        """Add `cost_usd` to the key's spend in the period, atomically; the spend after. A run id already
        charged is not charged again (a unique index on the charges' run ids): the spend is returned as is."""
        raise NotImplementedError
