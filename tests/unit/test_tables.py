"""Outcome tables: loading, validation errors that name row and column, importing into the store."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding

from fusiongraph.eval.tables import TableError, import_table, load_table
from fusiongraph.routing.embeddings import Embedder
from fusiongraph.store.outcomes import OutcomeStore


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def good(tmp_path):
    return write_csv(
        tmp_path / "t.csv",
        ["prompt", "category", "score:small", "cost:small", "score:big", "cost:big", "tokens:big"],
        [
            ["What is 2+2?\nAnswer:", "math", "1", "0.001", "1", "0.01", "12"],
            ["Name a colour", "trivia", "0", "0.001", "1.0", "0.02", "30"],
            ["Translate 'cat'", "", "0.5", "", "0.25", "0.01", "8"],
        ],
    )


def test_load_valid_table(good):
    t = load_table(good)
    assert t.prompts[0] == "What is 2+2?\nAnswer:"  # multi-line quoted prompt survives
    assert t.categories == ["math", "trivia", None]
    assert t.models == ["small", "big"]
    assert t.scores.shape == (3, 2)
    np.testing.assert_allclose(t.scores[:, 1], [1.0, 1.0, 0.25])
    assert t.costs.shape == (3, 2) and math.isnan(t.costs[2, 0]) and t.costs[1, 1] == 0.02
    assert math.isnan(t.tokens[0, 0]) and t.tokens[1, 1] == 30  # no tokens:small column
    assert len(t) == 3


def test_table_without_optional_columns(tmp_path):
    t = load_table(write_csv(tmp_path / "t.csv", ["score:a", "prompt"], [["0.3", "hi"]]))
    assert t.categories is None and t.costs is None and t.tokens is None and t.models == ["a"]


@pytest.mark.parametrize(
    "header,rows,must",
    [
        (["text", "score:a"], [["x", "1"]], ["row 0", "prompt"]),
        (["prompt", "category"], [["x", "c"]], ["row 0", "score:"]),
        (
            ["prompt", "score:a", "score:b"],
            [["x", "1", "0"], ["y", "0", "1.5"]],
            ["row 2", "score:b", "outside [0, 1]"],
        ),
        (["prompt", "score:a", "score:b"], [["x", "", "0"]], ["row 1", "score:a", "empty"]),
        (["prompt", "score:a", "score:b"], [["x", "1", "0"], ["y", "1", "0"], ["z", "NaN", "0"]], ["row 3", "score:a"]),
        (["prompt", "score:a"], [["x", "1"], ["y", "yes"]], ["row 2", "score:a", "not a number"]),
        (["prompt", "score:a"], [["x", "-0.1"]], ["row 1", "score:a"]),
        (["prompt", "score:a", "cost:a"], [["x", "1", "cheap"]], ["row 1", "cost:a", "not a number"]),
        (["prompt", "score:a", "cost:b"], [["x", "1", "0.1"]], ["row 0", "cost:b"]),
        (["prompt", "score:a"], [["", "1"]], ["row 1", "prompt"]),
        (["prompt", "score:a"], [["x", "1", "extra"]], ["row 1", "fields"]),
        (["prompt", "score:a"], [], ["no rows"]),
    ],
)
def test_malformed_tables_name_row_and_column(tmp_path, header, rows, must):
    path = write_csv(tmp_path / "bad.csv", header, rows)
    with pytest.raises(TableError) as err:
        load_table(path)
    for piece in must:
        assert piece in str(err.value), (piece, str(err.value))
    assert isinstance(err.value, ValueError)


def test_missing_scores_allowed_on_request(tmp_path):
    path = write_csv(tmp_path / "t.csv", ["prompt", "score:a", "score:b"], [["x", "1", ""], ["y", "0", "1"]])
    with pytest.raises(TableError, match="row 1"):
        load_table(path)
    t = load_table(path, allow_missing=True)
    assert math.isnan(t.scores[0, 1])
    assert t.complete_rows().tolist() == [1]


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_table(tmp_path / "nope.csv")


def test_import_seeds_store(good):
    embedder = Embedder(DeterministicFakeEmbedding(size=32))
    store = OutcomeStore(None, embedder.dim, embedder.name)
    seen = []
    counts = import_table(store, embedder, load_table(good), progress=seen.append)
    assert counts == {"prompts": 3, "outcomes": 6}
    assert store.counts() == {"subtasks": 3, "outcomes": 6, "vectors": 3}
    assert sum(seen) >= 3
    rows = store.outcomes()
    assert {r["source"] for r in rows} == {"import"}
    by = {(r["subtask"], r["model"]): r for r in rows}
    r = by[("Name a colour", "big")]
    assert r["success"] == 1.0 and r["accepted"] and r["cost_usd"] == 0.02 and r["tokens_out"] == 30
    assert r["task_class"] == "trivia"
    r = by[("Translate 'cat'", "big")]
    assert r["success"] == 0.25 and not r["accepted"] and r["task_class"] is None
    assert by[("Translate 'cat'", "small")]["cost_usd"] == 0.0  # empty cost cell
    assert store.class_rates("math") == {"small": (1.0, 1), "big": (1.0, 1)}
    assert store.class_rates(None)["small"] == (0.5, 3)
    nb = store.neighbours(embedder.embed_one("Name a colour"), 1)[0]
    assert nb.text == "Name a colour" and nb.outcomes == {"small": 0.0, "big": 1.0}


def test_import_skips_missing_scores(tmp_path):
    path = write_csv(tmp_path / "t.csv", ["prompt", "score:a", "score:b"], [["x", "1", ""], ["y", "0", "1"]])
    embedder = Embedder(DeterministicFakeEmbedding(size=16))
    store = OutcomeStore(None, embedder.dim, embedder.name)
    assert import_table(store, embedder, load_table(path, allow_missing=True)) == {"prompts": 2, "outcomes": 3}
    assert store.counts()["outcomes"] == 3
