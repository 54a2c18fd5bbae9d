"""``snapshot:///path/to/store``: a SQLite outcome store opened read-only, e.g. a frozen copy that workers
route from without ever writing to it; recording into it is refused with a clear error."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from fusiongraph.store.backend import StoreError
from fusiongraph.store.sqlite import DB_FILE, SQLiteBackend


class SnapshotBackend(SQLiteBackend):
    scheme = "snapshot"

    def __init__(self, url: str):
        path = Path(url.removeprefix("snapshot://")) / DB_FILE
        if not path.is_file():
            raise StoreError(f"no outcome store at {path}")
        self.directory = None  # nothing of this worker is written beside it
        self.label = f"{path} (read-only)"
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None)
        self._data_version = None

    def open(self, dim: int, embedder_name: str) -> dict[str, str]:
        return self.read_meta()  # the snapshot's schema as it is: nothing to create or migrate

    def insert(self, items, now):
        raise StoreError(f"{self.label}: a snapshot is read-only; record into the live store")
