"""The outcome store (SQLite or Postgres, + FAISS) and the shipped configuration: model roster and task taxonomy."""

from pathlib import Path

from fusiongraph.store.backends import register_backend
from fusiongraph.store.outcomes import Neighbour, Outcome, OutcomeStore, StoreError, migrate_store, open_store

CONFIG_DIR = Path(__file__).resolve().parent
DEFAULT_MODELS = CONFIG_DIR / "models.yaml"
DEFAULT_TAXONOMY = CONFIG_DIR / "taxonomy.yaml"

__all__ = [
    "CONFIG_DIR",
    "DEFAULT_MODELS",
    "DEFAULT_TAXONOMY",
    "Neighbour",
    "Outcome",
    "OutcomeStore",
    "StoreError",
    "migrate_store",
    "open_store",
    "register_backend",
]
