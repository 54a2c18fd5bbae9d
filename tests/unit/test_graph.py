"""The graph's logic with scripted chat models and bag-of-words embeddings (no model weights)."""

import json

import httpx
import pytest

from fusiongraph.graphs.fusion import graph
from fusiongraph.models.roster import ModelSpec
from tests.conftest import ctx
from tests.fakes import ScriptedChat


def cheap_strong(cheap_reply="BAD answer", strong_reply="GOOD answer", strong_price=1.0, **cheap_kwargs):
    cheap = ScriptedChat(
        script=lambda p: cheap_reply if isinstance(cheap_reply, str) else cheap_reply(p), **cheap_kwargs
    )
    strong = ScriptedChat(script=lambda p: strong_reply)
    models = {
        "cheap": ({"price_in": 0.0, "price_out": 0.0}, cheap),
        "strong": ({"price_in": strong_price, "price_out": strong_price * 4}, strong),
    }
    return models, cheap, strong


def only(result):
    assert len(result["results"]) == 1
    return result["results"][0]


def test_accepts_the_cheap_answer_when_the_judges_agree(fusion):
    models, cheap, strong = cheap_strong(cheap_reply="GOOD: Paris")
    fusion(models)
    out = graph.invoke({"query": "What is the capital of France?"}, context=ctx())
    r = only(out)
    assert r["status"] == "accepted" and r["answered_by"] == "cheap"
    assert [a["model"] for a in r["attempts"]] == ["cheap"]
    assert strong.calls == []
    assert out["answer"] == "GOOD: Paris"
    judges = {v["judge"] for v in r["attempts"][0]["verdicts"]}
    assert judges == {"rules", "self", "focus", "llm"}


def test_escalates_when_the_judges_reject(fusion):
    models, cheap, strong = cheap_strong()
    fusion(models)
    r = only(graph.invoke({"query": "What is the capital of France?"}, context=ctx()))
    assert [a["model"] for a in r["attempts"]] == ["cheap", "strong"]
    assert [a["accepted"] for a in r["attempts"]] == [False, True]
    assert r["answered_by"] == "strong" and r["answer"] == "GOOD answer"
    assert r["attempts"][1]["cost_usd"] == pytest.approx((100 * 1.0 + 10 * 4.0) / 1e6)


def test_budget_stop_returns_the_best_answer_so_far(fusion):
    models, cheap, strong = cheap_strong(strong_price=1000.0)
    fusion(models)
    out = graph.invoke({"query": "What is the capital of France?"}, context=ctx(budget_usd=0.01))
    r = only(out)
    assert strong.calls == []
    assert r["status"] == "budget_exhausted"
    assert r["answer"] == "BAD answer" and r["answered_by"] == "cheap"
    assert out["summary"]["cost_usd"] <= 0.01


def test_junk_decomposition_falls_back_to_the_whole_query(fusion):
    models, *_ = cheap_strong(cheap_reply="GOOD")
    fusion(models, planner=ScriptedChat(script=lambda p: "sure! here are some subtasks: 1) ... {oops"))
    out = graph.invoke({"query": "What is 2 plus 2 and what is the capital of France?"}, context=ctx())
    assert out["subtasks"] == ["What is 2 plus 2 and what is the capital of France?"]
    event = next(e for e in out["trace"] if e["node"] == "decompose")
    assert "whole query is one subtask" in event["fallback"]


def test_an_empty_plan_answers_the_request_as_written_without_a_fallback_note(fusion):
    models, *_ = cheap_strong(cheap_reply="GOOD 26")
    fusion(models, planner=ScriptedChat(script=lambda p: json.dumps({"subtasks": []})))
    query = "Tom has 3 boxes of 12 pencils and gives away 10. How many are left?"
    out = graph.invoke({"query": query}, context=ctx())
    assert out["subtasks"] == [query]
    event = next(e for e in out["trace"] if e["node"] == "decompose")
    assert "fallback" not in event and event["whole"] == "the planner found one request"
    assert event["cost_usd"] >= 0 and event["model"] == "planner"  # the planner was asked, and charged


def test_invented_subtasks_are_dropped(fusion):
    models, *_ = cheap_strong(cheap_reply="GOOD")
    fusion(
        models, planner=ScriptedChat(script=lambda p: '{"subtasks": ["Explain quantum gravity", "What is 2 plus 2"]}')
    )
    out = graph.invoke({"query": "What is 2 plus 2?"}, context=ctx())
    assert out["subtasks"] == ["What is 2 plus 2?"]
    assert next(e for e in out["trace"] if e["node"] == "decompose")["dropped_ungrounded"] == [
        "Explain quantum gravity"
    ]


def test_skips_tiers_without_keys(fusion, monkeypatch):
    monkeypatch.delenv("FG_TEST_KEY", raising=False)
    models, *_ = cheap_strong(cheap_reply="GOOD")
    fusion(
        models,
        extra_specs=[
            ModelSpec(id="paid", kind="openai", model="gpt-x", api_key_env="FG_TEST_KEY", price_in=5, price_out=15)
        ],
    )
    r = only(graph.invoke({"query": "What is the capital of France?"}, context=ctx()))
    assert {"model": "paid", "reason": "$FG_TEST_KEY is not set"} in r["skipped"]
    assert "paid" not in r["candidates"]


def test_local_only_skips_every_api_tier(fusion):
    models, *_ = cheap_strong(cheap_reply="GOOD")
    res = fusion(models, extra_specs=[ModelSpec(id="paid", kind="openai", model="gpt-x", api_key_env="HOME")])
    assert res.roster.availability(local_only=True)[1][0] == {"model": "paid", "reason": "local_only is set"}


def test_a_failing_tier_is_recorded_and_the_cascade_moves_on(fusion):
    secret = "sk-test-SECRETSECRET123"
    models, cheap, strong = cheap_strong(cheap_reply=lambda p: httpx.ConnectError(f"connection refused (key {secret})"))
    res = fusion(models)
    r = only(graph.invoke({"query": "What is the capital of France?"}, context=ctx()))
    assert r["attempts"][0]["error"].startswith("ConnectError")
    assert secret not in r["attempts"][0]["error"]
    assert r["answered_by"] == "strong"
    rows = res.store.outcomes()
    assert [(row["model"], bool(row["error"])) for row in rows] == [("cheap", True), ("strong", False)]


def test_records_outcomes_and_routes_the_next_similar_subtask_by_neighbours(fusion):
    models, cheap, strong = cheap_strong(cheap_reply="")  # an empty answer: the rules veto it
    res = fusion(models)
    c = ctx(min_neighbours=1, min_similarity=0.3)
    first = only(graph.invoke({"query": "What is the capital of France?"}, context=c))
    assert first["route_source"] == "taxonomy"
    assert res.store.counts() == {"subtasks": 1, "outcomes": 2, "vectors": 1}
    second = only(graph.invoke({"query": "What is the capital city of France?"}, context=c))
    assert second["route_source"] == "neighbours"
    assert second["predictions"]["cheap"]["p_success"] < second["predictions"]["strong"]["p_success"]
    # the cheap model failed on the neighbour: it is skipped, the strong one answers first
    assert [a["model"] for a in second["attempts"]] == ["strong"]
    assert len(cheap.calls) == 1


def test_single_subtask_passes_through_without_a_synthesis_call(fusion):
    planner = ScriptedChat(script=lambda p: '{"subtasks": ["What is the capital of France?"]}')
    models, *_ = cheap_strong(cheap_reply="GOOD: Paris")
    fusion(models, planner=planner)
    out = graph.invoke({"query": "What is the capital of France?"}, context=ctx())
    assert out["answer"] == "GOOD: Paris"
    assert len(planner.calls) == 1  # the decomposition only
    assert not any(e["node"] == "synthesize" for e in out["trace"])


def test_subtasks_run_in_parallel_and_are_fused(fusion):
    models, *_ = cheap_strong(cheap_reply=lambda p: f"GOOD: {p.split()[-1]}")
    fusion(models)
    # the cheap fake answers with the subtask's last word: "2" is right for 0 plus 2 (math's exact check)
    out = graph.invoke({"query": "What is 0 plus 2 AND write a haiku about rain"}, context=ctx())
    assert out["subtasks"] == ["What is 0 plus 2", "write a haiku about rain"]
    assert [r["index"] for r in sorted(out["results"], key=lambda r: r["index"])] == [0, 1]
    assert {r["task_class"] for r in out["results"]} == {"math", "creative_writing"}
    assert out["answer"] == "FUSED: GOOD: 2 | GOOD: rain"


def test_subtasks_are_capped(fusion):
    models, *_ = cheap_strong(cheap_reply="GOOD")
    fusion(models)
    query = " AND ".join(f"compute {i} plus {i}" for i in range(12))
    out = graph.invoke({"query": query}, context=ctx(max_subtasks=3))
    assert len(out["subtasks"]) == 3
    assert "capped" in next(e for e in out["trace"] if e["node"] == "decompose")


@pytest.mark.parametrize("query", ["", "   \n\t ", None, 42])
def test_empty_or_invalid_query_is_a_clear_error(fusion, query):
    models, cheap, _ = cheap_strong()
    fusion(models)
    with pytest.raises(ValueError, match="query"):
        graph.invoke({"query": query}, context=ctx())
    assert cheap.calls == []


def test_a_subtask_longer_than_a_models_context_skips_that_model_never_truncates_it(fusion):
    models, cheap, strong = cheap_strong(cheap_reply="GOOD")
    models["cheap"][0]["context"] = 600  # the strong model keeps the default context
    fusion(models)
    query = "What is the capital of France? " + "padding words here " * 400
    r = only(graph.invoke({"query": query}, context=ctx(max_tokens=100)))
    assert cheap.calls == [] and [a["model"] for a in r["attempts"]] == ["strong"]
    assert any(e.get("event") == "context skip" and e["model"] == "cheap" for e in r["trace"])
    assert "characters trimmed" not in strong.calls[0] and "characters trimmed" not in r["answer"]


def test_a_query_longer_than_every_context_is_a_clear_error(fusion):
    from fusiongraph.text import QueryError

    models, cheap, strong = cheap_strong()
    models["cheap"][0]["context"] = 600
    models["strong"][0]["context"] = 800
    fusion(models)
    with pytest.raises(QueryError, match=r"largest context of the available models .*strong: 800 tokens"):
        graph.invoke({"query": "Summarise: " + "lorem ipsum " * 2000}, context=ctx(max_tokens=100))
    assert cheap.calls == [] and strong.calls == []


def test_rejects_unknown_context_knobs():
    with pytest.raises(ValueError, match="budget"):
        graph.invoke({"query": "hi"}, context={"budget": 1})
    with pytest.raises(ValueError, match="quality_threshold"):
        graph.invoke({"query": "hi"}, context={"quality_threshold": 3})


def test_an_answer_no_judge_accepted_is_marked_unverified_and_can_be_withheld(fusion):
    from typer.testing import CliRunner

    from fusiongraph.cli import app
    from fusiongraph.records import UNVERIFIED

    models, cheap, strong = cheap_strong(strong_price=1000.0)  # the strong model is never affordable
    fusion(models)
    out = graph.invoke({"query": "What is the capital of France?"}, context=ctx(budget_usd=0.01))
    r = only(out)
    assert r["verified"] is False and out["summary"]["verified"] is False and out["answer"] == "BAD answer"
    withheld = graph.invoke(
        {"query": "What is the capital of France?"}, context=ctx(budget_usd=0.01, require_verified=True)
    )
    assert withheld["answer"] == UNVERIFIED and only(withheld)["verified"] is False
    # accepted: verified, and require_verified changes nothing
    models, *_ = cheap_strong(cheap_reply="GOOD answer")
    fusion(models)
    ok = graph.invoke({"query": "What is the capital of France?"}, context=ctx(require_verified=True))
    assert only(ok)["verified"] is True and ok["summary"]["verified"] is True and ok["answer"] == "GOOD answer"
    # the CLI says so before an unverified answer
    fusion(cheap_strong(strong_price=1000.0)[0])
    said = CliRunner().invoke(app, ["ask", "What is the capital of France?", "--budget", "0.01"])
    assert said.exit_code == 0, said.output
    assert said.output.index(UNVERIFIED) < said.output.index("BAD answer")


def _shrink_planner(res, context: int) -> None:
    res.roster.specs["planner"] = res.roster.specs["planner"].model_copy(update={"context": context})


def test_a_query_too_long_for_the_planner_is_answered_whole_never_planned_in_part(fusion):
    models, cheap, strong = cheap_strong(cheap_reply="GOOD answer")
    res = fusion(models)
    _shrink_planner(res, 600)
    query = "What is the capital of France? AND " + "Name a colour. " * 150
    out = graph.invoke({"query": query}, context=ctx(max_tokens=100))
    plan = next(e for e in out["trace"] if e["node"] == "decompose")
    assert plan["fallback"].startswith("context:") and "planner" in plan["fallback"]
    assert out["subtasks"] == [query.strip()] and res.roster.chat_model("planner", 100, 1).calls == []


def test_answers_too_long_for_the_synthesiser_are_joined_never_cut(fusion):
    models, cheap, strong = cheap_strong(cheap_reply=lambda p: "GOOD " + "long answer words " * 120)
    res = fusion(models)
    _shrink_planner(res, 700)
    out = graph.invoke({"query": "What is 2 plus 2? AND What is the capital of France?"}, context=ctx(max_tokens=100))
    synth = next(e for e in out["trace"] if e["node"] == "synthesize")
    assert synth["fallback"].startswith("context:")
    assert out["answer"].startswith("1. GOOD") and "\n\n2. GOOD" in out["answer"]
    assert "trimmed" not in out["answer"]
    planner_calls = res.roster.chat_model("planner", 100, 1).calls
    assert len(planner_calls) == 1 and not planner_calls[0].startswith("Request:")  # the plan, no synthesis


def test_the_cli_names_the_unverified_parts_and_can_withhold_them(fusion, monkeypatch):
    from typer.testing import CliRunner

    from fusiongraph.cli import app, common
    from fusiongraph.records import UNVERIFIED

    # the CLI's knobs over the test's planner and judge
    monkeypatch.setattr(common, "context", lambda **knobs: ctx(**{k: v for k, v in knobs.items() if v is not None}))
    models, cheap, strong = cheap_strong(
        cheap_reply=lambda p: "GOOD answer" if "France" in p else "BAD answer", strong_price=1000.0
    )
    fusion(models)
    query = "What is the capital of France? AND What is the capital of Peru?"
    said = CliRunner().invoke(app, ["ask", query, "--budget", "0.01"])
    assert said.exit_code == 0, said.output
    assert said.output.splitlines()[0].startswith("not verified: part 2 of 2:")
    withheld = CliRunner().invoke(app, ["ask", query, "--budget", "0.01", "--require-verified", "--json"])
    out = json.loads(withheld.output)
    peru = next(r for r in out["results"] if "Peru" in r["subtask"])
    assert peru["verified"] is False and UNVERIFIED in out["answer"] and "BAD answer" not in out["answer"]


def test_the_cli_exits_2_on_a_query_longer_than_every_context(fusion):
    from typer.testing import CliRunner

    from fusiongraph.cli import app

    models, cheap, strong = cheap_strong()
    models["cheap"][0]["context"] = 600
    models["strong"][0]["context"] = 800
    fusion(models)
    said = CliRunner().invoke(app, ["ask", "Summarise: " + "lorem ipsum " * 2000, "--max-tokens", "100"])
    assert said.exit_code == 2 and "largest context" in said.output
    assert cheap.calls == [] and strong.calls == []


def test_every_numeric_knob_has_a_range_that_is_checked():
    from fusiongraph.context import FusionContext

    ranges = FusionContext.ranges()
    numeric = [name for name, f in FusionContext.model_fields.items() if f.annotation in (int, float)]
    assert numeric and set(numeric) <= set(ranges)  # every number a user can set says its range
    for name in numeric:
        lo, hi = ranges[name]
        for bad in [lo - 1] + ([hi + 1] if hi is not None else []) + [float("nan")]:
            with pytest.raises(ValueError, match=name):
                FusionContext(**{name: bad})
        FusionContext(**{name: lo})  # the bounds themselves are allowed
        if hi is not None:
            FusionContext(**{name: hi})
