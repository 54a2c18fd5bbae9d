"""``fusiongraph store migrate``: copy one outcome store into another (any two backends), API keys and stored
Responses API conversations included."""

from __future__ import annotations

from pathlib import Path

from fusiongraph.store.backend import Backend, StoreError, make_backend, url_scheme
from fusiongraph.store.key_backend import KEY_BACKENDS, export_keys
from fusiongraph.store.outcomes import open_store
from fusiongraph.store.response_backend import RESPONSE_BACKENDS
from fusiongraph.store.sqlite import DB_FILE


def migrate_store(source: str | Path, target: str | Path, append: bool = False, batch: int = 5000) -> dict:
    """Copy every subtask and outcome of the store at `source` into the store at `target`, without loss, and
    its API keys with their spend and charges (a key the target already has is refused).

    One transaction on the target: all of it or nothing. Subtask ids may change (outcomes follow their
    subtask); every column is kept. A target that already holds rows is refused unless `append` (then a
    text already there keeps its subtask and gains the outcomes). The counts are checked inside the
    transaction and again through a fresh store on the target. Rows the source commits during the copy are
    left for a later ``--append``: the copy takes the rows up to the highest ids it saw at the start.
    """
    if url_scheme(source) is None and not (Path(source) / DB_FILE).exists():
        raise StoreError(f"no outcome store at {source} (no {DB_FILE} there)")
    src = make_backend(source)
    dst: Backend | None = None
    try:
        meta = src.read_meta()
        if not meta:
            raise StoreError(f"{src.label} holds no outcome store")
        dim, embedder = int(meta["dim"]), meta.get("embedder", "unknown")
        dst = make_backend(target)
        dst_meta = dst.open(dim, embedder)
        if int(dst_meta["dim"]) != dim:
            raise StoreError(
                f"{dst.label} holds {dst_meta['dim']}-dimensional embeddings, {src.label} {dim}: they cannot be merged"
            )
        upto_s, upto_o = src.max_ids()
        want_s, want_o = src.count_rows((upto_s, upto_o))
        keys = export_keys(src)  # API keys, their spend and charges: the budgets move with the store
        if keys["api_keys"]:
            KEY_BACKENDS.on(dst).keys_schema()  # a target without key tables gets them
        result = dst.import_rows(
            src.export_subtasks(upto_s, batch),
            src.export_outcomes(upto_o, batch),
            append,
            expected=(want_s, want_o),
            keys=keys,
        )
    finally:
        src.close()
        if dst is not None:
            dst.stop()
            dst.close()
    check = open_store(target, dim, embedder)
    try:
        counts = check.counts()
    finally:
        check.close()
    # (at least: other writers may add rows to a live target right after the copy commits)
    if (
        counts["outcomes"] < result["outcomes"]
        or counts["subtasks"] < result["subtasks"]
        or counts["vectors"] != counts["subtasks"]
    ):
        raise StoreError(
            f"after the copy {check.location} holds {counts}, expected {result['subtasks']} subtasks "
            f"and {result['outcomes']} outcomes"
        )
    conversations = copy_conversations(source, target)
    return {
        "source": {"subtasks": want_s, "outcomes": want_o}
        | {t: len(rows) for t, rows in keys.items()}
        | {"responses": conversations[0]},
        "copied": {"subtasks": result["subtasks_added"], "outcomes": result["outcomes_added"]}
        | result["keys"]
        | {"responses": conversations[1]},
        "target": counts,
    }


def copy_conversations(source: str | Path, target: str | Path) -> tuple[int, int]:
    """Copy the stored Responses API conversations (after the outcomes: their own transaction; a response id the
    target already has is kept as it is). (how many the source holds, how many were added)."""
    src = make_backend(source)
    try:
        rows = RESPONSE_BACKENDS.on(src).response_rows() if src.has_table("responses") else []
    finally:
        src.close()
    if not rows:
        return 0, 0
    dst = RESPONSE_BACKENDS.make(target)
    try:
        dst.responses_schema()
        return len(rows), dst.response_import([tuple(r) for r in rows])
    finally:
        dst.close()
