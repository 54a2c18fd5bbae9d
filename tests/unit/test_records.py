"""The typed records (fusiongraph/records.py) hold for real graph runs, and the judge registry is one place:
a judge registered in a test scores attempts, counts in the aggregate and shows in the CLI and judge-eval."""

import io

import httpx
import pytest
from pydantic import TypeAdapter, ValidationError
from rich.console import Console

from fusiongraph.cli import ask as cli
from fusiongraph.eval import judge_eval
from fusiongraph.graphs.fusion import graph
from fusiongraph.judging.base import JUDGES, NO_RESERVATION, Verdict, aggregate, judge_weights, register_judge
from fusiongraph.records import Attempt, SubtaskResult, Summary, new_attempt
from tests.conftest import ctx
from tests.fakes import ScriptedChat

ATTEMPT, RESULT, SUMMARY = TypeAdapter(Attempt), TypeAdapter(SubtaskResult), TypeAdapter(Summary)


def models(cheap_reply, strong_reply="GOOD answer", strong_price=1.0, **cheap_kwargs):
    cheap = ScriptedChat(script=lambda p: cheap_reply(p) if callable(cheap_reply) else cheap_reply, **cheap_kwargs)
    strong = ScriptedChat(script=lambda p: strong_reply, logprob=-0.05)
    return {
        "cheap": ({"price_in": 0.0, "price_out": 0.0}, cheap),
        "strong": ({"price_in": strong_price, "price_out": strong_price * 4}, strong),
    }


def validate(out: dict) -> list[dict]:
    """Every result, attempt and the summary against the TypedDicts (strict: no missing or extra key)."""
    SUMMARY.validate_python(out["summary"], strict=True)
    attempts = []
    for r in out["results"]:
        RESULT.validate_python(r, strict=True)
        for a in r["attempts"]:
            ATTEMPT.validate_python(a, strict=True)
            attempts.append(a)
    return attempts


SCENARIOS = {
    "accepted": (dict(cheap_reply="GOOD: Paris", logprob=-0.1), "What is the capital of France?", {}),
    "escalated after a failed call": (
        dict(cheap_reply=lambda p: httpx.ConnectError("connection refused")),
        "What is the capital of France?",
        {},
    ),
    "vetoed then escalated": (dict(cheap_reply=""), "What is the capital of France?", {}),
    "two subtasks fused": (
        dict(cheap_reply=lambda p: f"GOOD: {p.split()[-1]}"),
        "What is 0 plus 2 AND write a haiku about rain",
        {},
    ),
    "budget stop": (
        dict(cheap_reply="BAD answer", strong_price=1000.0),
        "What is the capital of France?",
        {"budget_usd": 0.01},
    ),
    "no LLM judge": (dict(cheap_reply="GOOD"), "What is the capital of France?", {"llm_judge": False}),
    "trimmed for the judge": (
        dict(cheap_reply="GOOD " + "very long answer " * 200),
        "What is the capital of France?",
        {"max_tokens": 16},
    ),
}


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_record_of_a_run_matches_its_typed_dict(fusion, name):
    kwargs, query, knobs = SCENARIOS[name]
    fusion(models(**kwargs))
    out = graph.invoke({"query": query}, context=ctx(**knobs))
    attempts = validate(out)
    assert attempts
    if name == "escalated after a failed call":
        assert "error" in attempts[0] and "answer" not in attempts[0] and "answer" in attempts[1]
    if name == "vetoed then escalated":
        assert [v["judge"] for v in attempts[0]["verdicts"]] == ["rules", "self", "focus"]  # no LLM judge after a veto
    if name == "no LLM judge":
        assert all("llm" not in {v["judge"] for v in a["verdicts"]} for a in attempts)
    if name == "trimmed for the judge":
        assert attempts[0]["judge_trimmed_chars"] > 0


def test_the_typed_dicts_reject_missing_and_undocumented_keys():
    attempt = new_attempt("m", [], 0.1, error="boom")
    ATTEMPT.validate_python(attempt, strict=True)
    with pytest.raises(ValidationError):
        ATTEMPT.validate_python({k: v for k, v in attempt.items() if k != "confidence"}, strict=True)
    with pytest.raises(ValidationError):
        ATTEMPT.validate_python(attempt | {"surprise": 1}, strict=True)


@pytest.fixture
def toy_judge():
    """A judge registered for one test: scores 1 when the answer says GOOD, else 0; removed after."""

    @register_judge
    class ToyJudge:
        name = "toy"
        weight = 0.4

        def reserve(self, res, ctx, judge_id, subtask, answer):
            return NO_RESERVATION

        def judge(self, j):
            return Verdict("toy", 1.0 if "GOOD" in j.answer else 0.0, False, f"{len(j.verdicts)} verdicts before")

    try:
        yield JUDGES["toy"]
    finally:
        JUDGES.pop("toy", None)


def test_a_registered_judge_scores_attempts_counts_in_the_aggregate_and_shows_in_the_cli(
    fusion, toy_judge, monkeypatch
):
    assert judge_weights() == {
        "rules": 0.3,
        "self": 0.2,
        "key": 0.0,
        "focus": 0.0,
        "llm": 0.5,
        "consistency": 0.0,
        "crosscheck": 0.0,
        "toy": 0.4,
    }
    fusion(models(cheap_reply="BAD answer", logprob=-0.2))
    out = graph.invoke({"query": "What is the capital of France?"}, context=ctx())
    attempts = validate(out)
    cheap, strong = attempts
    assert [v["judge"] for v in cheap["verdicts"]] == ["rules", "self", "focus", "llm", "toy"]
    assert cheap["verdicts"][-1] == {"judge": "toy", "score": 0.0, "veto": False, "detail": "4 verdicts before"}
    assert strong["verdicts"][-1]["score"] == 1.0
    for a in attempts:  # the toy judge's weight is in the confidence
        verdicts = [Verdict(v["judge"], v["score"], v["veto"]) for v in a["verdicts"]]
        assert a["confidence"] == pytest.approx(aggregate(verdicts), abs=1e-4)
        without = aggregate([v for v in verdicts if v.judge != "toy"])
        assert a["confidence"] != pytest.approx(without, abs=1e-3)

    buffer = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=buffer, width=200))
    cli.print_routes(out)
    printed = buffer.getvalue()
    assert "rules/self/key/focus/llm/consistency/crosscheck/toy" in printed
    # the strong answer: rules, self, key (no token text from the fake), focus ("GOOD strong Paris" takes up
    # no word of the question), llm, consistency and crosscheck (no say before a fit: not asked), toy
    assert "1.00 / 0.95 / - / 0.00 / 0.89 / - / - / 1.00" in printed

    assert judge_eval.judge_kinds() == (
        "rules",
        "self",
        "key",
        "focus",
        "llm",
        "consistency",
        "crosscheck",
        "toy",
        "aggregate",
    )
    assert judge_eval.attempt_scores(strong)["toy"] == 1.0
    metrics = judge_eval.judge_metrics([(judge_eval.attempt_scores(a), a is strong) for a in attempts], 0.6)
    assert metrics["toy"]["auroc"] == 1.0


def test_without_the_toy_judge_the_registry_is_the_shipped_judges():
    assert list(JUDGES) == ["rules", "self", "key", "focus", "llm", "consistency", "crosscheck"]
    assert cli.judge_columns() == ("rules", "self", "key", "focus", "llm", "consistency", "crosscheck")
    assert judge_eval.judge_kinds() == (
        "rules",
        "self",
        "key",
        "focus",
        "llm",
        "consistency",
        "crosscheck",
        "aggregate",
    )
