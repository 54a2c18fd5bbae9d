"""The cross-check judge: a second local model's probability of the answer's key (fusiongraph/judging/kinds/crosscheck.py)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from fusiongraph.judging.base import JUDGES
from fusiongraph.judging.kinds import crosscheck
from fusiongraph.judging.kinds.crosscheck import (
    CrossCheckJudge,
    entity_runs,
    key_runs,
    log_score,
    scorer_path,
)
from fusiongraph.judging.kinds.key_confidence import key_spans


def spans_of(text, *words):
    return [(text.index(w), text.index(w) + len(w)) for w in words]


def test_key_runs_join_the_words_of_one_name_and_keep_others_apart():
    text = "The Mona Lisa was painted by Leonardo da Vinci in Florence."
    assert key_runs(text, spans_of(text, "Vinci", "Leonardo")) == ["Leonardo da Vinci"]
    assert key_runs(text, spans_of(text, "Leonardo", "Florence")) == ["Leonardo", "Florence"]
    text = "The capital of Haiti is Port-au-Prince."
    assert key_runs(text, key_spans("What is the capital of Haiti?", text)) == ["Port-au-Prince"]


def test_entity_runs_keep_the_names_and_numbers_of_the_key():
    assert entity_runs(["located in Japan"]) == ["Japan"]
    assert entity_runs(["classic Greek epic poem by Homer", "written in ancient"]) == ["Greek", "Homer"]
    assert entity_runs(["attributed to Alexander Graham Bell"]) == ["Alexander Graham Bell"]
    assert entity_runs(["painted by Leonardo da Vinci in 1503"]) == ["Leonardo da Vinci", "1503"]
    assert entity_runs(["about 6,000 bones"]) == ["6,000"]
    assert entity_runs(["nitrogen", "oxygen"]) == ["nitrogen", "oxygen"]  # no name or number: the runs


@pytest.mark.parametrize(("p", "score"), [(1.0, 1.0), (0.1, 0.75), (0.01, 0.5), (1e-4, 0.0), (1e-9, 0.0)])
def test_the_score_is_a_quarter_per_decade(p, score):
    assert log_score(math.log(p)) == pytest.approx(score)


def judging(**kw):
    base = {
        "subtask": "What is the capital of France?",
        "answer": "Paris.",
        "skip": frozenset(),
        "decided": lambda: False,
    }
    return SimpleNamespace(**{**base, **kw})


def test_no_verdict_without_a_scorer_after_a_decision_or_without_a_say(monkeypatch):
    judge = JUDGES["crosscheck"]
    assert isinstance(judge, CrossCheckJudge) and judge.weight == 0.0  # no part in the cold-start prior
    asked = []
    monkeypatch.setattr(crosscheck, "scorer_path", lambda: asked.append(1))  # returns None: not installed
    assert judge.judge(judging()) is None and asked == [1]
    assert judge.judge(judging(decided=lambda: True)) is None
    assert judge.judge(judging(skip=frozenset({"crosscheck"}))) is None
    assert asked == [1]  # neither a decided answer nor one where it has no say looks for the scorer


def test_a_named_scorer_file_must_exist(monkeypatch, tmp_path):
    monkeypatch.setenv("FUSIONGRAPH_CROSSCHECK_GGUF", str(tmp_path / "missing.gguf"))
    with pytest.raises(FileNotFoundError, match="FUSIONGRAPH_CROSSCHECK_GGUF"):
        scorer_path()
