"""`fusiongraph eval`: matching gold answers, the strategies replayed on recorded verdicts, resuming, the live
graph beside its replay. Fast: scripted models."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from fusiongraph.eval import gold, live_replay
from fusiongraph.eval import live_eval as le
from tests.conftest import ctx
from tests.fakes import ScriptedChat


@pytest.mark.parametrize(
    "answer, letter",
    [
        ("I", "I"),
        ("(C)", "C"),
        ("The answer is (B).", "B"),
        ("Let's think. Option A is wrong because... so the answer is D", "D"),
        ("Answer: **H**", "H"),
        ("A. North America is wrong.\nThe correct option is I. Asia", "I"),
        ("B) 42 apples", "B"),
        ("so the value is \\(\\boxed{B}\\).", "B"),
        ("Option A fails. Final: \\boxed{\\text{(J)}}", "J"),
        ("I think it is about Asia", None),
    ],
)
def test_the_option_letter_of_an_answer(answer, letter):
    from fusiongraph.text import option_letter

    assert option_letter(answer) == letter


def test_parts_match_numbers_after_reasoning_and_several_parts():
    one = {"parts": [{"reference": "24", "match": "numeric"}]}
    assert gold.is_right("Ella got 36; half is 18, plus 6 makes 24.", one)
    assert not gold.is_right("24 is half of 48, so the answer is 30", one)  # the final number counts
    two = {"parts": [{"reference": "Paris", "match": "exact"}, {"reference": "84", "match": "numeric"}]}
    assert gold.is_right("The capital is Paris, and 12 times 7 is 84.", two)
    assert not gold.is_right("The capital is Lyon, and 12 times 7 is 84.", two)  # every part must be right
    opt = {"parts": [{"reference": "C", "match": "option"}, {"reference": "7", "match": "numeric"}]}
    assert gold.is_right("First: (C). Second: 7", opt)


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"id": 1, "prompt": "q"}', 'either "reference"'),
        ('{"id": 1, "prompt": "q", "reference": "x", "parts": []}', 'either "reference"'),
        ('{"id": 1, "prompt": "q", "reference": "AB", "match": "option"}', "not one option letter"),
        ('{"id": 1, "prompt": "q", "reference": "ten", "match": "numeric"}', "not a number"),
        ('{"id": 1, "prompt": "q", "parts": [{"match": "exact"}]}', "part 1"),
        ('{"prompt": "q", "reference": "1"}', '"id"'),
        ("[1]", "expected an object"),
        ("{", "not valid JSON"),
    ],
)
def test_a_bad_line_names_its_file_and_line(tmp_path, line, message):
    f = tmp_path / "q.jsonl"
    f.write_text('{"id": "ok", "prompt": "What is 1+1?", "reference": "2"}\n' + line + "\n")
    with pytest.raises(ValueError, match=f"q.jsonl, line 2.*{message}|{message}.*line 2"):
        gold.load_questions([f])


def test_limit_skip_and_unique_ids_across_files(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("".join(json.dumps({"id": f"a{i}", "prompt": f"q {i}", "reference": str(i)}) + "\n" for i in range(5)))
    b.write_text(json.dumps({"id": "a1", "prompt": "q", "reference": "1"}) + "\n")
    assert [i["id"] for i in gold.load_questions([a], limit=2, skip=1)] == ["a1", "a2"]
    with pytest.raises(ValueError, match="id 'a1' is also in"):
        gold.load_questions([a, b])
    with pytest.raises(ValueError, match="no questions"):
        gold.load_questions([a], skip=5)


def _row(model, correct, p, cost, seconds, error=None):
    score = None if error else p
    return {
        "id": "q",
        "model": model,
        "correct": correct,
        "error": error,
        "answer": "" if error else "x",
        "task_class": "math",
        "finish_reason": "stop",
        "verdicts": [] if error else [{"judge": "llm", "score": score, "veto": False, "detail": ""}],
        "cost_usd": cost,
        "answer_cost_usd": cost * 0.8,
        "compute_s": seconds,
        "answer_s": seconds * 0.8,
    }


def test_the_replayed_cascade_pays_for_every_tier_it_tries_and_takes_the_first_accepted():
    rows = {"a": _row("a", False, 0.2, 1.0, 1), "b": _row("b", True, 0.9, 3.0, 3), "c": _row("c", True, 0.9, 9.0, 9)}
    judging = {m: live_replay.judged(r, None) for m, r in rows.items()}
    assert judging["a"][1:] == (1.0, 1)  # no fit: every judge asked, the whole recorded cost
    o = live_replay.run_cascade(["a", "b", "c"], rows, judging, 0.5)
    assert (o.correct, o.cost_usd, o.seconds, o.answered_by, o.tried) == (True, 4.0, 4, "b", ["a", "b"])
    low = {"a": (0.3, 1.0, 1), "b": (0.1, 3.0, 3)}
    o = live_replay.run_cascade(["a", "b"], rows, low, 0.5)  # none accepted: the best-scored answer
    assert (o.correct, o.cost_usd, o.answered_by) == (False, 4.0, "a")
    failed = {"a": _row("a", None, 0, 0.0, 0, error="boom")}
    assert live_replay.run_cascade(["a"], failed, {"a": live_replay.judged(failed["a"], None)}, 0.5).answered_by is None


def test_a_judge_without_a_say_is_neither_asked_nor_paid_for_in_the_replay(monkeypatch):
    from fusiongraph.judging import acceptance

    row = _row("a", True, 0.9, 1.0, 10)
    monkeypatch.setattr(acceptance, "without_say", lambda fit, task_class: frozenset({"llm"}))
    monkeypatch.setattr(acceptance, "decide", lambda fit, verdicts, *a: {"p_right": len(verdicts) / 10})
    p, cost, seconds = live_replay.judged(row, object())
    assert (p, cost, seconds) == (0.0, 0.8, 8.0)  # the LLM judge left out: the answer's own cost and seconds


def test_strategies_from_recorded_rows():
    items = [
        {"id": f"q{i}", "prompt": f"p{i}", "parts": [{"reference": "1", "match": "numeric"}], "file": "f.jsonl"}
        for i in range(4)
    ]
    rows = []
    for i in range(4):
        cheap_right = i < 2  # the cheap model is right on half, and its judge knows it
        for r in (_row("cheap", cheap_right, 0.9 if cheap_right else 0.1, 1.0, 1), _row("dear", True, 0.9, 10.0, 10)):
            rows.append({**r, "id": f"q{i}", "file": "f.jsonl"})
    plans = {f"q{i}": ["cheap", "dear"] for i in range(4)}
    plans["q3"] = ["dear"]  # the route skips the cheap model where it predicts a failure
    out = live_replay.strategies(items, rows, ctx(quality_threshold=0.5), ["cheap", "dear"], None, plans)
    s = out["strategies"]
    assert s["single:cheap"]["accuracy"] == 0.5 and s["single:dear"]["accuracy"] == 1.0
    assert s["single:dear"]["cost_usd"] == pytest.approx(4 * 8.0)  # the answers alone, no judges
    assert s["oracle"]["accuracy"] == 1.0 and s["oracle"]["cost_usd"] == pytest.approx(2 * 0.8 + 2 * 8.0)
    assert s["fixed_cascade"]["accuracy"] == 1.0 and s["fixed_cascade"]["cost_usd"] == pytest.approx(4 * 1 + 2 * 10)
    assert s["graph_replay"]["cost_usd"] == pytest.approx(3 * 1 + 2 * 10)  # q3 skips the cheap tier
    assert s["graph_replay"]["by_file"]["f.jsonl"]["questions"] == 4
    assert live_replay.best_single(s) == "single:dear"
    low = next(p for p in out["frontier"]["fixed_cascade"] if p["quality_threshold"] == 0.3)
    assert low["accuracy"] == 1.0
    assert live_replay.cheapest_matching(out["frontier"]["graph_replay"], s["single:dear"])["accuracy"] == 1.0


def test_ceilings_bound_every_judged_cascade_with_a_perfect_judge():
    """Three models on two classes: the perfect judge pays only the answers tried up to the first right one; the
    hindsight plan per class is the cheapest one as accurate as the class's best model, or as accurate as any."""
    right = {  # question -> models right on it
        "m0": {"small", "big"}, "m1": {"big"}, "m2": {"mid"}, "m3": set(),
        "k0": {"small"}, "k1": {"small", "mid", "big"}, "k2": {"big"}, "k3": {"mid", "big"},
    }  # fmt: skip
    cost = {"small": 1.0, "mid": 3.0, "big": 10.0}
    by_q = {
        q: {m: _row(m, m in ok, 0.5, cost[m] / 0.8, 1) | {"task_class": q[0]} for m in cost} for q, ok in right.items()
    }
    items = [{"id": q} for q in right]
    plans = {q: ["small", "mid", "big"] for q in right}
    out = live_replay.ceilings(items, by_q, ["small", "mid", "big"], plans)
    first = out["perfect_judge_cheapest_first"]
    assert first["accuracy"] == 7 / 8  # right wherever some model is (m3: none)
    # m0 1, m1 14, m2 4, m3 14 (none right: all paid), k0 1, k1 1, k2 14, k3 4
    assert first["cost_usd"] == pytest.approx(53.0)
    assert out["perfect_judge_graph_plan"] == first
    # class m: the best single (big) is right on 2 of 4; small -> mid matches it at 1 + 4 + 4 + 4; small -> mid
    # -> big reaches 3 at 33. Class k: big 3 of 4; small -> mid matches at 10; small -> mid -> big gets 4 at 20
    assert out["class_plans"] == {
        "k": {"questions": 4, "matching": ["small", "mid"], "best": ["small", "mid", "big"]},
        "m": {"questions": 4, "matching": ["small", "mid"], "best": ["small", "mid", "big"]},
    }
    assert (out["class_plan_matching"]["accuracy"], out["class_plan_matching"]["cost_usd"]) == (5 / 8, 23.0)
    assert (out["class_plan_best"]["accuracy"], out["class_plan_best"]["cost_usd"]) == (7 / 8, 53.0)
    # the best single (big) is right on 5 of 8; +2 points needs 6: small -> mid -> big on k (4 at 20) and
    # small -> mid on m (2 at 13), cheaper than the other ways to 6
    plus = out["class_plan_plus_2_points"]
    assert (plus["accuracy"], plus["cost_usd"]) == (6 / 8, 33.0)
    assert plus["plans"] == {"k": ["small", "mid", "big"], "m": ["small", "mid"]}
    out = live_replay.ceilings(items[:4], by_q, ["small", "mid", "big"], plans)  # class m: big 2 of 4, all 3
    assert out["class_plan_plus_2_points"]["accuracy"] == 0.75  # 3 >= 2 + 0.08
    out = live_replay.ceilings(items[4:], by_q, ["small", "mid", "big"], plans)  # class k: 4 of 4 > 3 + 0.08
    assert out["class_plan_plus_2_points"]["accuracy"] == 1.0
    no_gain = {"q": {m: _row(m, True, 0.5, 1.0, 1) for m in ("a", "b")}}  # every model right: no gain possible
    assert live_replay.ceilings([{"id": "q"}], no_gain, ["a", "b"], {})["class_plan_plus_2_points"] == {
        "questions": 1, "accuracy": None, "reachable": False
    }  # fmt: skip
    assert live_replay.ordered_plans(["a", "b"]) == [["a"], ["b"], ["a", "b"], ["b", "a"]]
    assert len(live_replay.ordered_plans(list("abcde"))) == 325  # every ordered subset of 5
    assert max(map(len, live_replay.ordered_plans(list("abcdefg")))) == live_replay.MAX_PLAN_MODELS  # 7: capped


def _questions(tmp_path):
    f = tmp_path / "q.jsonl"
    lines = [
        {"id": "m1", "prompt": "What is 2 plus 2?", "reference": "4", "match": "numeric"},
        {"id": "m2", "prompt": "Compute 17 times 3", "reference": "51", "match": "numeric"},
        {
            "id": "two",
            "prompt": "What is 2 plus 2 AND what is 3 plus 3?",
            "parts": [{"reference": "4"}, {"reference": "6"}],
        },
    ]
    f.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return f


def _models():
    def weak(prompt):
        return "GOOD 4" if "2 plus 2" in prompt else "GOOD 50"

    def strong(prompt):
        if "17 times 3" in prompt:
            return "GOOD 51"
        if "3 plus 3" in prompt:
            return "GOOD 6"
        return "GOOD 4"

    return {
        "weak": ({"price_in": 0.1, "price_out": 0.1}, ScriptedChat(script=weak)),
        "strong": ({"price_in": 5, "price_out": 5}, ScriptedChat(script=strong)),
    }


def test_run_eval_writes_results_and_resumes_without_answering_again(fusion, tmp_path):
    res = fusion(_models())
    f = _questions(tmp_path)
    out = tmp_path / "out"
    c = ctx(quality_threshold=0.5, llm_judge=True, consistency_samples=0)
    results = le.run_eval([f], out, c, live=1, progress=False)
    saved = json.loads((out / "results.json").read_text())
    assert saved["strategies"].keys() >= {
        "graph",
        "graph_replay",
        "single:weak",
        "single:strong",
        "oracle",
        "fixed_cascade",
    }
    assert saved["strategies"]["single:strong"]["accuracy"] == 1.0
    assert saved["strategies"]["single:weak"]["accuracy"] == 0.5
    assert saved["strategies"]["graph"]["multi_part"] == 1  # the multi-part line went through the live graph
    assert saved["multi_part"]["graph"]["accuracy"] == 1.0  # decomposed: each part to a model that gets it
    assert saved["multi_part"]["single:weak"]["accuracy"] == 0.0  # the weak model alone misses a part
    assert saved["judges"]["acceptance"]["answers"] == 6  # 3 questions x 2 models
    assert set(saved["judges"]) >= {"rules", "llm", "acceptance"}
    sweep = saved["acceptance_by_threshold"]  # the accept decision at every threshold, on the same answers
    assert list(sweep) == ["0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9"]
    assert sweep["0.5"] == saved["judges"]["acceptance"]
    rejected = [sweep[t]["right_rejected"] for t in sweep]
    assert rejected == sorted(rejected)  # a higher bar rejects at least as many right answers
    assert {"perfect_judge_cheapest_first", "class_plan_matching", "class_plans"} <= set(saved["ceilings"])
    assert (out / "frontier.png").stat().st_size > 0
    assert [p["price_sensitivity"] for p in saved["frontier"]["graph_replay_price"]] == list(
        live_replay.PRICE_SENSITIVITIES
    )
    assert results["best_single"] == "single:strong"
    calls = len(res.roster.chat_model("weak", 1, 1).calls)
    # interrupted mid-write: the torn last line is answered again, the others are not
    lines = (out / "answers.jsonl").read_text().splitlines()
    (out / "answers.jsonl").write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20])
    le.run_eval([f], out, c, live=1, progress=False)
    assert [json.loads(x)["id"] for x in (out / "answers.jsonl").read_text().splitlines()] == [
        json.loads(x)["id"] for x in lines
    ]  # the torn row answered again, in its place
    assert len(res.roster.chat_model("weak", 1, 1).calls) - calls <= 2  # at most the torn row's model again


def test_a_run_of_multi_part_lines_only_compares_the_live_graph_with_each_model(fusion, tmp_path):
    fusion(_models())
    f = tmp_path / "multi.jsonl"
    f.write_text(_questions(tmp_path).read_text().splitlines()[-1] + "\n")
    results = le.run_eval([f], tmp_path / "out", ctx(quality_threshold=0.5), live=0, progress=False)
    assert results["best_single"] is None and "vs_best_single" not in results
    assert results["multi_part"]["questions"] == 1 and results["multi_part"]["graph"]["accuracy"] == 1.0


def test_record_keeps_the_answers_as_outcomes_and_refits_the_acceptance(fusion, tmp_path):
    res = fusion(_models())
    out = tmp_path / "out"

    def run():
        c = ctx(quality_threshold=0.5, consistency_samples=0)
        return le.run_eval([_questions(tmp_path)], out, c, live=0, record=True, progress=False)

    results = run()
    assert results["recorded"]["outcomes"] == 4 and results["recorded"]["subtasks"] == 2  # one-part questions only
    sources = [o["source"] for o in res.store.outcomes()]
    assert sources.count("eval") == 4  # beside them, the live graph's outcomes of the multi-part line
    assert "not refitted" in results["recorded"]["acceptance"]  # 4 labels are too few: said, outcomes kept
    again = run()
    assert again["recorded"]["outcomes"] == 0  # a re-run records nothing twice
    assert [o["source"] for o in res.store.outcomes()].count("eval") == 4


def test_cli_bad_input_exits_2(tmp_path):
    from fusiongraph.cli import app

    f = tmp_path / "q.jsonl"
    f.write_text('{"id": 1, "prompt": "q", "reference": "x", "match": "letter"}\n')
    out = CliRunner().invoke(app, ["eval", str(f), "--out", str(tmp_path / "o")])
    text = " ".join(out.output.split())  # the console wraps long lines
    assert out.exit_code == 2 and "line 1" in text and "Traceback" not in text
