"""The outcome store: SQLite or Postgres, with a FAISS index."""

from fusiongraph.store.backend import StoreError, register_backend
from fusiongraph.store.migrate import migrate_store
from fusiongraph.store.outcomes import OutcomeStore, open_store
from fusiongraph.store.types import Neighbour, Outcome

__all__ = [
    "Neighbour",
    "Outcome",
    "OutcomeStore",
    "StoreError",
    "migrate_store",
    "open_store",
    "register_backend",
]
