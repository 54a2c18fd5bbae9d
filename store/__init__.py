"""The outcome store: SQLite or Postgres, with a FAISS index."""

from fusiongraph.store.backends import register_backend
from fusiongraph.store.outcomes import Neighbour, Outcome, OutcomeStore, StoreError, migrate_store, open_store

__all__ = [
    "Neighbour",
    "Outcome",
    "OutcomeStore",
    "StoreError",
    "migrate_store",
    "open_store",
    "register_backend",
]
