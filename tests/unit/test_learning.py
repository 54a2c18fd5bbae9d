"""Routing improves with use: calibration, imported tables, and RAR guides from stronger models."""

import json

import pytest
from typer.testing import CliRunner

from fusiongraph.cli import app
from fusiongraph.eval.calibrate import calibrate
from fusiongraph.graphs.fusion import graph
from tests.conftest import ctx
from tests.fakes import ScriptedChat


def two(cheap_script=lambda p: "BAD answer"):
    cheap = ScriptedChat(script=cheap_script)
    strong = ScriptedChat(script=lambda p: "GOOD answer")
    return (
        {
            "cheap": ({"price_in": 0.0, "price_out": 0.0}, cheap),
            "strong": ({"price_in": 1.0, "price_out": 4.0}, strong),
        },
        cheap,
        strong,
    )


def test_calibration_runs_every_prompt_through_every_model_and_resumes(fusion, tmp_path):
    calls = {"n": 0}

    def flaky(prompt):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the run is interrupted on the second prompt
        return "BAD answer"

    models, cheap, strong = two(flaky)
    res = fusion(models)
    prompts = tmp_path / "seeds.jsonl"
    prompts.write_text('"What is 2 plus 2?"\n{"prompt": "Write a haiku about rain"}\n\n"Name a colour"\n')
    with pytest.raises(KeyboardInterrupt):
        calibrate(prompts, ctx(), show_progress=False)
    # the first prompt was committed whole (both models' outcomes), the interrupted second not at all
    assert res.store.counts() == {"subtasks": 1, "outcomes": 2, "vectors": 1}
    assert {(r["subtask"], r["model"]) for r in res.store.outcomes()} == {
        ("What is 2 plus 2?", "cheap"),
        ("What is 2 plus 2?", "strong"),
    }
    summary = calibrate(prompts, ctx(), show_progress=False)
    assert summary["already_done"] == 1 and summary["calibrated"] == 2 and summary["outcomes"] == 4
    rows = res.store.outcomes()
    assert {r["source"] for r in rows} == {"calibrate"}
    assert sorted((r["subtask"], r["model"]) for r in rows) == sorted(
        (p, m) for p in ("What is 2 plus 2?", "Write a haiku about rain", "Name a colour") for m in ("cheap", "strong")
    )
    again = calibrate(prompts, ctx(), show_progress=False)
    assert again["calibrated"] == 0 and res.store.counts()["outcomes"] == 6


def test_calibration_names_a_bad_line(fusion, tmp_path):
    fusion(two()[0])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('"fine"\n{"prompt": 3}\n')
    with pytest.raises(ValueError, match="line 2"):
        calibrate(bad, ctx(), show_progress=False)


def test_calibrated_outcomes_change_the_route(fusion, tmp_path):
    models, cheap, strong = two()
    fusion(models)
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("\n".join(json.dumps(f"What is the capital city of country {i}?") for i in range(6)))
    calibrate(seeds, ctx(), show_progress=False)
    out = graph.invoke({"query": "What is the capital city of country 9?"}, context=ctx())
    (r,) = out["results"]
    assert r["route_source"] == "neighbours"
    # the cheap model failed on every similar seed: the strong one goes first (the free one may follow)
    assert r["candidates"][0] == "strong"
    assert r["predictions"]["cheap"]["p_success"] < r["predictions"]["strong"]["p_success"] - 0.3


def test_accepted_strong_answers_become_guides_for_the_cheap_model(fusion):
    models, cheap, strong = two()
    fusion(models)
    c = ctx(guides=2, price_sensitivity=0.1)
    first = graph.invoke({"query": "What is the capital of France?"}, context=c)["results"][0]
    assert first["answered_by"] == "strong" and first["attempts"][0]["guides"] == []
    second = graph.invoke({"query": "What is the capital city of France?"}, context=c)["results"][0]
    assert second["attempts"][0]["model"] == "cheap"
    assert second["attempts"][0]["guides"] == ["What is the capital of France?"]
    off = graph.invoke({"query": "What is the capital town of France?"}, context=ctx(guides=0, price_sensitivity=0.1))
    assert off["results"][0]["attempts"][0]["guides"] == []


def test_cli_import_seeds_the_store(fusion, tmp_path):
    res = fusion(two()[0])
    table = tmp_path / "t.csv"
    table.write_text(
        "prompt,category,score:cheap,score:strong,cost:cheap,cost:strong\n"
        "What is 2 plus 2?,math,1,1,0,0.01\nWrite a haiku,creative_writing,0,1,0,0.02\n"
    )
    done = CliRunner().invoke(app, ["import", str(table)])
    assert done.exit_code == 0, done.output
    assert res.store.counts() == {"subtasks": 2, "outcomes": 4, "vectors": 2}
    assert res.store.class_rates("creative_writing")["cheap"] == (0.0, 1)
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,score:cheap\nfine row,1\nhello,1.7\n")  # a good row before the bad one
    failed = CliRunner().invoke(app, ["import", str(bad)])
    assert failed.exit_code == 2 and "row" in failed.output and "score:cheap" in failed.output
    # nothing lost, nothing half-written: not even the good row before the bad one was recorded
    assert res.store.counts() == {"subtasks": 2, "outcomes": 4, "vectors": 2}


def test_with_the_knob_left_empty_the_graph_routes_at_the_operating_point_chosen_on_its_store(fusion, tmp_path):
    """An imported table where the free model is right on capitals and the priced one on everything: the
    store's replay chooses a price_sensitivity (in the background), shown in the trace, and the graph's plan
    for a capital question then starts with the free model."""
    import csv
    import time

    models, cheap, strong = two()
    fusion(models)
    table = tmp_path / "t.csv"
    with open(table, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["prompt", "score:cheap", "score:strong", "cost:cheap", "cost:strong"])
        for i in range(300):
            if i % 2:
                w.writerow([f"What is the capital city of country number {i}?", 1, 1 if i % 7 else 0, 0.0001, 0.01])
            else:
                w.writerow([f"Prove the theorem about the integral number {i}.", 0, 1, 0.0001, 0.01])
    assert CliRunner().invoke(app, ["import", str(table)]).exit_code == 0
    query = {"query": "What is the capital city of country number 1001?"}

    def trace_point(out):
        (r,) = out["results"]
        (entry,) = [e for e in r["trace"] if e["node"] == "neighbours"]
        return r, entry["operating_point"]

    r, point = trace_point(graph.invoke(query, context=ctx(cache=False)))
    assert point["source"] == "default" and "background" in point["reason"]
    deadline = time.time() + 60
    while point["source"] != "auto" and time.time() < deadline:
        time.sleep(0.2)
        r, point = trace_point(graph.invoke(query, context=ctx(cache=False)))
    assert point["source"] == "auto" and point["best_model"] == "strong" and point["rows"] == 300
    assert point["quality"] > point["best_quality"] and point["cost"] < point["best_cost"]
    # the judged cascade the graph runs was replayed at it, with the context's judge accuracy, within the cost
    assert point["cascade_accuracy"] == ctx(cache=False).judge_accuracy
    assert point["cascade_cost"] <= point["best_cost"]
    assert r["candidates"][0] == "cheap"
    # a knob set by the caller is used as given
    r, fixed = trace_point(graph.invoke(query, context=ctx(cache=False, price_sensitivity=0.0)))
    assert fixed == {**fixed, "source": "context", "price_sensitivity": 0.0}
