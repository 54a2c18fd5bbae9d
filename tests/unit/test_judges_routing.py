"""Judges and routing predictions in isolation."""

import numpy as np
import pytest
from langchain_core.messages import AIMessage

from fusiongraph.judging.base import Verdict, aggregate
from fusiongraph.judging.kinds.llm import llm_verdict
from fusiongraph.judging.kinds.rules import rule_verdict
from fusiongraph.judging.kinds.self_confidence import self_verdict
from fusiongraph.routing.router import Router
from fusiongraph.store import Outcome, OutcomeStore
from tests.fakes import ScriptedChat


@pytest.mark.parametrize(
    "answer,finish,veto,score",
    [
        ("", "stop", True, 0.0),
        ("I'm sorry, but I can't help with that.", "stop", True, 0.0),
        ("Paris", "length", False, 0.5),
        ("Paris", "stop", False, 1.0),
    ],
)
def test_rule_verdicts(answer, finish, veto, score):
    v = rule_verdict("What is the capital of France?", answer, finish, "factual_qa")
    assert (v.veto, v.score) == (veto, score)


def test_rule_verdict_checks_required_formats():
    assert rule_verdict("Return the name as JSON", "name: Bob", "stop", None).score == 0.5
    assert rule_verdict("Return the name as JSON", '{"name": "Bob"}', "stop", None).score == 1.0
    assert rule_verdict("What is 17 * 3?", "fifty-one", "stop", "math").score == 0.5
    assert rule_verdict("Write a Python function to add", "Sure, adding is easy.", "stop", "code").score == 0.5


def test_self_confidence_from_logprobs():
    assert self_verdict(AIMessage("x", response_metadata={"token_logprobs": [np.log(0.5)] * 4})).score == pytest.approx(
        0.5
    )
    openai_style = {"logprobs": {"content": [{"token": "a", "logprob": 0.0}]}}
    assert self_verdict(AIMessage("x", response_metadata=openai_style)).score == pytest.approx(1.0)
    assert self_verdict(AIMessage("x")).score is None


def test_a_junk_judge_never_accepts():
    verdict, _ = llm_verdict(ScriptedChat(script=lambda p: "great answer!!!"), "task", "answer")
    assert verdict.score == 0.0 and "junk" in verdict.detail
    failing, _ = llm_verdict(ScriptedChat(script=lambda p: TimeoutError("slow")), "task", "answer")
    assert failing.score == 0.0 and "failed" in failing.detail


def test_aggregate_weights_the_judges_that_spoke_and_honours_vetoes():
    assert aggregate([Verdict("rules", 1.0), Verdict("self", None), Verdict("llm", 0.5)]) == pytest.approx(
        (0.3 + 0.25) / 0.8
    )
    assert aggregate([Verdict("rules", 0.0, veto=True), Verdict("llm", 1.0)]) == 0.0


def test_hybrid_prediction_shrinks_neighbours_toward_the_class_rate(tmp_path):
    store = OutcomeStore(None, 4, "t")
    e = np.array([1, 0, 0, 0], np.float32)
    for i in range(10):  # the class says: model a succeeds
        store.record(
            f"class item {i}",
            np.array([0, 1, 0, 0], np.float32) if i else np.array([0, 0, 1, 0], np.float32),
            "math",
            [Outcome("a", 1.0, True)],
        )
    store.record("near", e, "math", [Outcome("a", 0.0, False)])
    router = Router(store)
    nbrs = router.neighbours(e, k=1, min_similarity=0.5)
    hyb = router.predict(["a"], {"math": 1.0}, nbrs, mode="hybrid")["a"].p_success
    knn = router.predict(["a"], {"math": 1.0}, nbrs, mode="knn")["a"].p_success
    tax = router.predict(["a"], {"math": 1.0}, nbrs, mode="taxonomy")["a"].p_success
    assert knn < 0.01 < hyb < tax


@pytest.mark.parametrize(
    "text,match",
    [
        ("models: [", "not valid YAML"),
        ("other: 1", "top-level `models:` list"),
        ("models:\n  - {id: x, kind: openai}", "(?s)entry 0 .*'x'.*needs `model`"),
        ("models:\n  - {id: x, kind: openai, model: a}\n  - {id: x, kind: openai, model: b}", "duplicate model ids"),
    ],
)
def test_a_malformed_roster_is_a_clear_error(tmp_path, text, match):
    from fusiongraph.models.roster import Roster

    (tmp_path / "models.yaml").write_text(text)
    with pytest.raises(ValueError, match=match):
        Roster.from_yaml(tmp_path / "models.yaml")


def test_a_taxonomy_naming_unknown_models_reports_them_and_a_missing_file_is_a_clear_error(tmp_path):
    from fusiongraph.routing.taxonomy import Taxonomy

    (tmp_path / "t.yaml").write_text("classes:\n  math: {description: sums, candidates: [nope]}")
    # candidates not in the roster are skipped with a note (tests/unit/test_taxonomy_routes.py), never an error
    assert Taxonomy.from_yaml(tmp_path / "t.yaml").check_models(["a"]) == {"math": ["nope"]}
    with pytest.raises(FileNotFoundError, match="missing.yaml does not exist"):
        Taxonomy.from_yaml(tmp_path / "missing.yaml")
