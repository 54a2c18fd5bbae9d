"""Process-wide resources behind the nodes: roster, taxonomy, embedder, outcome store, router.

Built once per configuration (store directory, roster and taxonomy files) and shared by every run
in the process, so a `langgraph dev` worker or a CLI call loads the models and the index once.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from fusiongraph.context import FusionContext
from fusiongraph.defaults import DEFAULT_MODELS, DEFAULT_TAXONOMY
from fusiongraph.models.roster import Roster
from fusiongraph.routing.embeddings import Embedder, MiniLMEmbeddings
from fusiongraph.routing.router import Router
from fusiongraph.routing.taxonomy import Taxonomy
from fusiongraph.settings import settings
from fusiongraph.store import OutcomeStore, open_store
from fusiongraph.store.backend import url_scheme

log = logging.getLogger(__name__)


@dataclass
class Resources:
    roster: Roster
    taxonomy: Taxonomy
    embedder: Embedder
    store: OutcomeStore
    router: Router = field(init=False)

    def __post_init__(self) -> None:
        self.taxonomy.check_models(self.roster.ids())
        self.router = Router(self.store)


def default_store_dir() -> Path:
    env = settings().store_dir
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("fusiongraph")) / "store"


def resolve_store(store_dir: str | None = None) -> Path | str:
    """Where the outcome store is: `store_dir` (a directory, or a URL such as ``postgresql://...``), else
    ``$FUSIONGRAPH_STORE_URL``, else :func:`default_store_dir` (SQLite)."""
    target = store_dir or settings().store_url or None
    if target and url_scheme(target):
        return target
    return (Path(target).expanduser() if target else default_store_dir()).resolve()


def shared_per_store(opened: dict, lock: threading.Lock, factory, target: str | Path | None = None):
    """The process-wide `factory(store)` of the store at `target` (default: the store the server uses), opened
    once and kept in `opened` (keyed by the resolved store)."""
    resolved = resolve_store(str(target) if target else None)
    with lock:
        found = opened.get(str(resolved))
        if found is None:
            found = opened[str(resolved)] = factory(resolved)
        return found


def resolve_paths(ctx: FusionContext) -> tuple[Path, Path, Path | str]:
    models = Path(ctx.models_path or settings().models or DEFAULT_MODELS).expanduser()
    taxonomy = Path(ctx.taxonomy_path or settings().taxonomy or DEFAULT_TAXONOMY).expanduser()
    return models.resolve(), taxonomy.resolve(), resolve_store(ctx.store_dir)


_lock = threading.Lock()
_built: dict[tuple, Resources] = {}
_override: Resources | None = None
_embedder: Embedder | None = None


def default_embedder() -> Embedder:
    global _embedder
    with _lock:
        if _embedder is None:
            _embedder = Embedder(MiniLMEmbeddings())
        return _embedder


def get_resources(ctx: FusionContext) -> Resources:
    if _override is not None:
        return _override
    from fusiongraph.models.discovery import discover_enabled

    discover = discover_enabled(ctx.discover_local)
    key = (*resolve_paths(ctx), discover)
    with _lock:
        if key in _built:
            return _built[key]
    embedder = default_embedder()
    models, taxonomy, store_dir, _ = key
    # a server store (Postgres) keeps this worker's FAISS index and probe fit in $FUSIONGRAPH_STORE_CACHE_DIR
    # between starts, if set; else they are rebuilt from the database
    roster, task_taxonomy = Roster.from_yaml(models, discover=discover), Taxonomy.from_yaml(taxonomy)
    if discover:
        from fusiongraph.models.discovery import join_taxonomy

        join_taxonomy(task_taxonomy, roster)
    res = Resources(
        roster,
        task_taxonomy,
        embedder,
        open_store(store_dir, embedder.dim, embedder.name, cache_dir=settings().store_cache_dir or None),
    )
    apply_retention(res.store)
    with _lock:
        return _built.setdefault(key, res)


RETENTION_ENV = "FUSIONGRAPH_RETENTION_DAYS"
RETENTION_EVERY_S = 3600.0
_retention_at: dict[int, float] = {}


def apply_retention(store, now: float | None = None) -> dict | None:
    """With $FUSIONGRAPH_RETENTION_DAYS set, erase what the store recorded longer ago (subtasks, outcomes,
    vectors, cached answers: `OutcomeStore.forget`); at start and then at most once an hour per store."""
    try:
        days = settings().retention_days
    except ValueError as exc:
        raise ValueError(f"{exc} (a positive number of days)") from None
    if days is None:
        return None
    now = time.time() if now is None else now
    last = _retention_at.get(id(store))
    if last is not None and now - last < RETENTION_EVERY_S:
        return None
    _retention_at[id(store)] = now
    counts = store.forget(before=now - days * 86400)
    if counts["subtasks"]:
        log.info("retention (%s days): erased %s", days, counts)
    return counts


@contextmanager
def use_resources(resources: Resources) -> Iterator[Resources]:
    """Run graphs in this block on the given resources (fake models in tests, an app's own store)."""
    global _override
    previous, _override = _override, resources
    try:
        yield resources
    finally:
        _override = previous


@atexit.register
def _close_stores() -> None:
    for res in _built.values():
        try:
            res.store.close()
        except Exception:
            pass
