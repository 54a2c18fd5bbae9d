"""Long prompts are routed by what they ask: a text longer than the model reads is embedded as its frame (its
start and end) and what it asks (its last paragraph), pooled; short texts are embedded as they are."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from fusiongraph.eval.bench import run_bench
from fusiongraph.routing.embeddings import REPRESENTATION, Embedder, asked_part, content_key
from fusiongraph.store.index import near_duplicates
from fusiongraph.store.outcomes import OutcomeStore
from fusiongraph.store.types import Outcome
from tests.fakes import BagOfWordsEmbeddings, WindowedEmbeddings

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import rag_tables  # noqa: E402

PREFIX = " ".join(f"Example {i}: the fox number {i} jumps over the lazy dog by the river." for i in range(40))
QUESTIONS = [
    "What is the capital of France?",
    "Write a Python function that reverses a list.",
    "Solve 12 times 7 plus 3.",
    "Translate good morning into German.",
]


def test_distinct_questions_behind_a_shared_2k_prefix_get_distinct_vectors():
    assert len(PREFIX) > 2000
    texts = [f"{PREFIX}\n\n{q}" for q in QUESTIONS]
    truncated = np.array(WindowedEmbeddings().embed_documents(texts))  # the model alone reads only the prefix
    assert near_duplicates(truncated) == len(texts)
    embedder = Embedder(WindowedEmbeddings())
    vecs = embedder.embed(texts)
    assert near_duplicates(vecs) == 0
    assert set(embedder.long_texts(texts)) == {0, 1, 2, 3}
    sims = vecs @ vecs.T
    assert sims[np.triu_indices(len(texts), 1)].max() < 0.9
    alone = embedder.embed(QUESTIONS)
    assert ((vecs * alone).sum(axis=1) > sims[np.triu_indices(len(texts), 1)].max()).all()  # nearest its own question


def test_short_texts_are_embedded_as_before_and_long_ones_have_their_own_cache_key():
    plain, windowed = Embedder(BagOfWordsEmbeddings()), Embedder(WindowedEmbeddings(dim=64, window_tokens=10_000))
    assert np.array_equal(plain.embed(QUESTIONS), windowed.embed(QUESTIONS))
    embedder = Embedder(WindowedEmbeddings())
    long_text = f"{PREFIX}\n\n{QUESTIONS[0]}"
    embedder.embed([long_text])
    assert content_key(f"{REPRESENTATION}\0{long_text}") in embedder._memory
    assert content_key(QUESTIONS[0]) not in embedder._memory


@pytest.mark.parametrize(
    "text, asked",
    [
        ("Context:\nlong document.\n\nQuestion: Who wrote it?", "Question: Who wrote it?"),
        ("x " * 800 + "Is this the end? Yes it is.", "Yes it is."),
    ],
)
def test_what_a_long_text_asks_is_its_last_short_paragraph_else_its_last_sentences(text, asked):
    assert asked_part(text) == asked


def test_the_store_says_when_distinct_subtasks_share_a_vector():
    store = OutcomeStore(None, 4, "t")
    e, other = np.array([1, 0, 0, 0], np.float32), np.array([0, 1, 0, 0], np.float32)
    store.record("a long prompt asking one thing", e, None, [Outcome("m", 1.0, True)])
    store.record("a long prompt asking another", e, None, [Outcome("m", 0.0, False)])
    store.record("something else", other, None, [Outcome("m", 1.0, True)])
    assert store.blindness() == {"sampled": 3, "same_vector": 2, "share": 0.6667}


def test_a_rag_shaped_table_is_routed_by_its_questions(tmp_path):
    """Long contexts first, the question last; a cheap model right on one kind of question, a coder on the
    other. Routed on the neighbours alone (knn), the picks follow the questions (the oracle's choice far more
    often than a model reading only its window, which sends nearly everything to the dear model)."""
    paths = rag_tables.write(rag_tables.generate(rows=400, seed=3), tmp_path)
    runs = {
        "plain": (paths["plain"], WindowedEmbeddings()),
        "rag": (paths["rag"], WindowedEmbeddings()),
        "window only": (paths["rag"], WindowedEmbeddings(says_window=False)),  # reads the context only
    }
    choice = {}
    for name, (path, model) in runs.items():
        out = tmp_path / name.replace(" ", "-")
        res = run_bench(path, out, folds=4, embedder=Embedder(model), quiet=True, class_column=True)
        choice[name] = res["strategies"]["knn"]["oracle_choice"]
        info = json.loads((out / "info.json").read_text())["embedding"]
        if name == "rag":
            assert info["long_prompts"] == 400 and info["same_vector"] == 0
    assert choice["plain"] > 0.7
    assert choice["rag"] > 0.5 * choice["plain"] and choice["window only"] < 0.2 * choice["plain"]


def test_the_trace_says_what_was_embedded(fusion):
    from fusiongraph.graphs.fusion import graph
    from fusiongraph.resources import get_resources
    from tests.conftest import ctx
    from tests.unit.test_records import models

    fusion(models(cheap_reply="Paris"))
    get_resources(ctx()).embedder.embeddings.window_tokens = 64  # the fake now reads 64 words, and says so
    long_query = f"{PREFIX}\n\nWhat is the capital of France?"
    out = graph.invoke({"query": long_query}, context=ctx(max_subtasks=1))
    (event,) = [e for e in out["results"][0]["trace"] if e.get("node") == "taxonomy"]
    assert event["embedded"]["as"] == "frame + question"
    assert event["embedded"]["question"] == "What is the capital of France?"
    out = graph.invoke({"query": "What is the capital of France?"}, context=ctx())
    (event,) = [e for e in out["results"][0]["trace"] if e.get("node") == "taxonomy"]
    assert event["embedded"] == {"as": "whole"}
