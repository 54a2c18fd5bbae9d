"""Judges you can trust: exact checks decide, a calibrated P(right) otherwise (fitted from labelled attempts,
saved beside the store, tested on data it was not fitted on), and the consistency judge."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from fusiongraph.cli import app
from fusiongraph.eval.calibrate import calibrate
from fusiongraph.eval.judge_eval import replay_acceptance, run_judge_eval, write_outputs
from fusiongraph.eval.question_sets import CAPITALS, facts, generate_easy, generate_facts, generate_phrasings
from fusiongraph.graphs.fusion import graph
from fusiongraph.judging import acceptance
from fusiongraph.judging.acceptance import (
    ACCEPTANCE_FILE,
    AcceptanceFit,
    LabelledAttempt,
    current_fit,
    decide,
    fit_acceptance,
    load_labels,
    save_fit,
)
from fusiongraph.judging.base import JUDGES, Verdict
from fusiongraph.judging.kinds.consistency import agreement, answer_key, sample_tokens
from fusiongraph.judging.verifiers import arithmetic_expression, check_arithmetic, safe_eval
from fusiongraph.records import Attempt
from tests.conftest import ctx
from tests.fakes import ScriptedChat, fit_where_every_judge_speaks, labelled_attempts

JUDGE_ORDER = list(JUDGES)


def only(out) -> dict:
    (r,) = out["results"]
    return r


# ------------------------------------------------------------------------------------ exact checks decide


@pytest.mark.parametrize(
    "task,expression,value",
    [
        ("What is 7 times 8?", "7 * 8", 56),
        ("Compute 12*7", "12*7", 84),
        ("What is the sum of 34 and 58?", "(34 + 58)", 92),
        ("Add 12 and 30", "(12 + 30)", 42),
        ("Please add 12 to 30.", "(12 + 30)", 42),
        ("Multiply 6 by 7.", "(6 * 7)", 42),
        ("What is the product of 6 and 9?", "(6 * 9)", 54),
        ("Subtract 17 from 81.", "(81 - 17)", 64),
        ("What is the difference between 8 and 50?", "(50 - 8)", 42),
        ("Divide 84 by 4", "(84 / 4)", 21),
        ("What do you get when you multiply 7 by 6?", "(7 * 6)", 42),
        ("How much is 9 x 9?", "9 * 9", 81),
        ("7 multiplied by 11 equals what?", "7 * 11", 77),
        ("Take 17 away from 74. What is left?", "(74 - 17)", 57),
        ("Add 5 and 8. What do you get?", "(5 + 8)", 13),
        ("3 + 4 = ?", "3 + 4", 7),
        ("12 times 3 is how much?", "12 * 3", 36),
        ("What is 3 plus 4? What is the capital of France?", None, None),
        ("Add the numbers in this list", None, None),
        ("What is the sum of the angles of a triangle?", None, None),
    ],
)
def test_plain_arithmetic_is_recognised_in_several_phrasings(task, expression, value):
    assert arithmetic_expression(task) == expression
    if expression is not None:
        assert safe_eval(expression) == value


def test_the_exact_check_reads_the_final_number_only():
    assert check_arithmetic("Add 12 and 30", "12 + 30 = 42").score == 1.0
    wrong = check_arithmetic("Add 12 and 30", "42? No: 12 + 30 is 41")
    assert wrong.veto and wrong.exact and "final number is 41" in wrong.reason


def exact_models(answer: str, judge_score: int):
    judge = ScriptedChat(script=lambda p: json.dumps({"reason": "scripted", "score": judge_score}))
    cheap = ScriptedChat(script=lambda p: answer, logprob=-3.0)  # self-confidence 0.05
    return {"cheap": ({"price_in": 0.0, "price_out": 0.0}, cheap)}, judge, cheap


@pytest.mark.parametrize("task", ["What is the sum of 34 and 58?", "Add 34 and 58."])
def test_an_exact_pass_overrides_the_soft_judges_whatever_the_class(fusion, task):
    models, judge, cheap = exact_models("34 + 58 = 92", judge_score=1)
    fusion(models, judge=judge)
    (attempt,) = only(graph.invoke({"query": task}, context=ctx()))["attempts"]
    assert attempt["accepted"] and attempt["confidence"] == 1.0
    assert attempt["acceptance"] == {"p_right": 1.0, "by": "exact", "parts": {"rules": 1.0}, "no_say": []}
    assert judge.calls == []  # decided exactly: the LLM judge is not asked


def test_an_exact_failure_rejects_however_sure_the_soft_judges_are(fusion):
    models, judge, _ = exact_models("GOOD: 34 + 58 = 93", judge_score=10)
    res = fusion(models, judge=judge)
    save_fit(res.store, fit_where_every_judge_speaks())
    (attempt,) = only(graph.invoke({"query": "What is 34 plus 58?"}, context=ctx()))["attempts"]
    assert not attempt["accepted"] and attempt["confidence"] == 0.0 and attempt["acceptance"]["by"] == "exact"
    refusal = decide(current_fit(res.store), [Verdict("rules", 0.0, True, "refusal")], "math", "cheap", "", "stop")
    assert refusal == {"p_right": 0.0, "by": "veto", "parts": {"rules": 0.0}, "no_say": []}


# ------------------------------------------------------------------------------- the calibrated aggregate


def test_calibration_holds_on_data_it_was_not_fitted_on():
    informative = {"self": {"math", "factual_qa"}, "consistency": {"math", "factual_qa"}, "llm": set()}
    fit = fit_acceptance(labelled_attempts(1000, seed=1, informative=informative), JUDGE_ORDER)
    held_out = labelled_attempts(1000, seed=2, informative=informative)
    p = np.array([fit.predict_row(r) for r in held_out])
    y = np.array([r.correct for r in held_out])
    assert roc_auc_score(y, p) >= 0.9
    assert ((p >= 0.5) == y).mean() >= 0.85
    # calibrated: in each probability band the share right is near the predicted probability
    for lo, hi in ((0.0, 0.3), (0.3, 0.7), (0.7, 1.01)):
        band = (p >= lo) & (p < hi)
        if band.sum() >= 50:
            assert abs(y[band].mean() - p[band].mean()) < 0.1, (lo, hi)
    # the fixed weights on the same held-out rows rank worse: the chance-level LLM judge has half the weight
    prior = [
        decide(None, [Verdict(j, s) for j, s in r.scores.items()], r.task_class, r.model, "", None) for r in held_out
    ]
    assert roc_auc_score(y, [d["p_right"] for d in prior]) < roc_auc_score(y, p) - 0.03


def test_a_judge_at_chance_in_a_class_gets_no_say_there():
    informative = {"self": {"math", "factual_qa"}, "llm": {"math"}}
    fit = fit_acceptance(labelled_attempts(400, seed=3, informative=informative), JUDGE_ORDER)
    assert fit.has_say("llm", "math") and not fit.has_say("llm", "factual_qa")
    assert fit.has_say("self", "factual_qa") and not fit.has_say("consistency", "math")  # never seen: no say
    verdicts = [Verdict("self", 0.9), Verdict("llm", 0.0)]
    fact = decide(fit, verdicts, "factual_qa", "cheap", "Paris", "stop")
    assert fact["no_say"] == ["llm"] and set(fact["parts"]) == {"self"} and fact["by"] == "calibrated"
    silent = decide(fit, [Verdict("self", 0.9), Verdict("llm", 1.0)], "factual_qa", "cheap", "Paris", "stop")
    assert silent["p_right"] == fact["p_right"]  # the LLM judge's score changes nothing where it has no say
    math_low = decide(fit, verdicts, "math", "cheap", "Paris", "stop")
    math_high = decide(fit, [Verdict("self", 0.9), Verdict("llm", 1.0)], "math", "cheap", "Paris", "stop")
    assert math_high["p_right"] > math_low["p_right"] + 0.05 and math_high["parts"]["llm"] > 0
    assert acceptance.without_say(fit, "factual_qa") >= {"llm", "consistency"}
    assert acceptance.without_say(None, "factual_qa") == {
        "consistency",
        "crosscheck",
        "key",
        "focus",
    }  # cold start: the zero-weight judges


def test_a_fit_needs_right_and_wrong_answers():
    rows = labelled_attempts(30, seed=0, informative={"self": {"math"}}, right_rate=1.0)
    with pytest.raises(ValueError, match="right and wrong"):
        fit_acceptance(rows, JUDGE_ORDER)


def test_the_fit_is_saved_beside_the_store_as_plain_arrays(fusion, tmp_path, caplog):
    res = fusion({"cheap": ({}, ScriptedChat(script=lambda p: "x"))})
    assert current_fit(res.store) is None  # cold start
    fit = fit_where_every_judge_speaks()
    where = save_fit(res.store, fit)
    path = res.store.directory / ACCEPTANCE_FILE
    assert where == str(path) and not list(res.store.directory.glob(".*tmp*"))  # renamed into place
    with np.load(path, allow_pickle=False) as z:  # plain arrays: loads without pickle
        assert list(z["judges"]) == JUDGE_ORDER and z["coef"].dtype == np.float64
    loaded = current_fit(res.store)
    row = labelled_attempts(1, seed=9, informative={j: {"math"} for j in JUDGE_ORDER})[0]
    assert loaded.predict_row(row) == pytest.approx(fit.predict_row(row))
    assert AcceptanceFit.from_bytes(fit.to_bytes()).summary() == fit.summary()
    path.write_bytes(b"not an npz")  # a corrupt fit: the fixed weights, with a warning
    with caplog.at_level(logging.WARNING):
        assert current_fit(res.store) is None
    assert "acceptance fit unreadable" in caplog.text


def calibrated_models(reply: str = "GOOD Paris"):
    cheap = ScriptedChat(script=lambda p: reply, logprob=-0.05)
    strong = ScriptedChat(script=lambda p: "GOOD strong Paris", logprob=-0.05)
    return {
        "cheap": ({"price_in": 0.0, "price_out": 0.0}, cheap),
        "strong": ({"price_in": 1.0, "price_out": 1.0}, strong),
    }, cheap


def test_the_cascade_decides_by_the_saved_fit_and_the_trace_shows_its_parts(fusion):
    models, cheap = calibrated_models()
    res = fusion(models)
    informative = {"self": {"factual_qa"}, "llm": set(), "rules": set()}
    fit = fit_acceptance(labelled_attempts(300, 4, informative, classes=("factual_qa",)), JUDGE_ORDER)
    save_fit(res.store, fit)
    r = only(graph.invoke({"query": "What is the capital of France?"}, context=ctx()))
    first = r["attempts"][0]
    acc = first["acceptance"]
    assert acc["by"] == "calibrated" and first["confidence"] == acc["p_right"]
    assert first["accepted"] == (acc["p_right"] >= 0.6) and acc["p_right"] > 0.6  # self 0.95: right
    assert set(acc["parts"]) == {"self"} and acc["parts"]["self"] > 0
    # no say: the LLM judge is not asked; the focus judge (text only) speaks but has no say in this fit
    assert [v["judge"] for v in first["verdicts"]] == ["rules", "self", "focus"]
    assert res.roster.chat_model("judge", 1, 1).calls == []
    assert len(cheap.calls) == 1  # the consistency judge has no say either: no samples


# -------------------------------------------------------------------------------------- consistency


def test_answers_are_compared_by_their_normalised_final_answer():
    def embed(text):
        v = np.array([1.0, "rain" in text, "sun" in text])
        return v / np.linalg.norm(v)

    assert answer_key("What is the capital of France?", "The capital of France is Paris.") == (
        "entity",
        frozenset({"paris"}),
    )
    assert agreement("What is the capital of France?", "Paris.", "It is Paris, of course", embed) == 1.0
    assert agreement("What is the capital of Australia?", "Sydney", "The capital is Canberra.", embed) == 0.0
    assert agreement("What is 7 times 8?", "56", "7 x 8 = 56", embed) == 1.0
    assert agreement("How many legs does a spider have?", "eight", "8", embed) == 0.0
    options = "Which is a mammal? (A) trout (B) whale (C) eagle"
    assert agreement(options, "The answer is (B).", "B) whale", embed) == 1.0
    assert agreement(options, "The answer is (B).", "A", embed) == 0.0
    poem = "Write a haiku about weather"
    long_rain = "soft grey rain falls on the red roofs of the old harbour town while gulls circle above quiet boats"
    assert agreement(poem, long_rain, long_rain.replace("grey", "gray"), embed) > 0.9  # embeddings
    assert agreement("Name a colour", "", "red", embed) == 0.0
    assert sample_tokens(128, 7) == 16 and sample_tokens(128, 20) == 64 and sample_tokens(32, 200) == 32


def consistency_fusion(fusion, samples: list[str], first: str = "GOOD Paris", price: float = 0.0):
    replies = iter([first, *samples])
    cheap = ScriptedChat(script=lambda p: next(replies), logprob=-0.05)
    res = fusion({"cheap": ({"price_in": price, "price_out": price}, cheap)})
    save_fit(res.store, fit_where_every_judge_speaks())
    return res, cheap


def test_the_consistency_judge_samples_the_same_model_and_scores_agreement(fusion):
    res, cheap = consistency_fusion(fusion, ["Paris", "It is Paris.", "Lyon"], price=1.0)
    out = graph.invoke({"query": "What is the capital of France?"}, context=ctx(consistency_samples=3))
    (attempt, *_) = only(out)["attempts"]
    verdict = next(v for v in attempt["verdicts"] if v["judge"] == "consistency")
    assert verdict["score"] == pytest.approx(2 / 3, abs=1e-4) and "2.0 of 3 samples agree" in verdict["detail"]
    assert len(cheap.calls) >= 4  # the answer and three samples of the same model
    # the samples are judge calls: charged to the attempt's judges, within what was reserved for them
    assert attempt["judge_cost_usd"] > 3 * 100 / 1e6 and attempt["judge_tokens_in"] >= 300
    assert attempt["cost_usd"] + attempt["judge_cost_usd"] <= attempt["reserved_usd"]
    assert "consistency" in attempt["acceptance"]["parts"]


def test_the_consistency_knob_turns_it_off_and_bounds_its_reservation(fusion):
    from fusiongraph.attempt import prepare_call
    from fusiongraph.context import FusionContext

    res, cheap = consistency_fusion(fusion, ["Paris"] * 8, price=1.0)
    calls = {
        n: prepare_call(res, ctx(consistency_samples=n), "cheap", "What is the capital?", [], None) for n in (0, 4)
    }
    assert calls[0].judge_reserved["consistency"].usd == 0.0
    assert calls[4].judge_reserved["consistency"].usd == pytest.approx(4 * calls[4].answer_worst_usd, rel=1e-8)
    out = graph.invoke({"query": "What is the capital of France?"}, context=ctx(consistency_samples=0))
    assert "consistency" not in [v["judge"] for v in only(out)["attempts"][0]["verdicts"]]
    assert len(cheap.calls) == 1
    for bad in (-1, 9):
        with pytest.raises(ValueError, match="consistency_samples"):
            FusionContext(consistency_samples=bad)
    with pytest.raises(ValueError, match="consistency_temperature"):
        FusionContext(consistency_temperature=0.0)
    assert "consistency_samples" in FusionContext.knob_names()


def test_the_consistency_judge_compares_with_the_cheaper_tier_already_tried(fusion):
    replies = iter(["BAD Lyon", "Marseille", "Nice"])  # the cheap answer, then its two samples: they disagree
    cheap = ScriptedChat(script=lambda p: next(replies), logprob=-2.0)
    strong = ScriptedChat(script=lambda p: "GOOD Paris", logprob=-0.05)
    res = fusion(
        {"cheap": ({"price_in": 0.0, "price_out": 0.0}, cheap), "strong": ({"price_in": 1.0, "price_out": 1.0}, strong)}
    )
    save_fit(res.store, fit_where_every_judge_speaks())
    out = graph.invoke({"query": "What is the capital of France?"}, context=ctx(consistency_samples=2))
    first, second = only(out)["attempts"]
    assert (first["model"], second["model"]) == ("cheap", "strong")
    v = next(v for v in second["verdicts"] if v["judge"] == "consistency")
    # two samples agree, the cheaper tier's Lyon does not: 2 of 3 comparisons
    assert v["score"] == pytest.approx(2 / 3, abs=1e-4) and "0.0 of 1 cheaper tiers agree" in v["detail"]


# ------------------------------------------------------------------------------- fitting from labelled runs


def test_judge_eval_fit_then_calibrate_judges_on_a_held_out_run(fusion, tmp_path):
    knows = {"paris": False}

    def answer(prompt):  # right on France once it knows; the LLM judge cannot tell (it says GOOD to all)
        return "GOOD Paris" if "France" in prompt and knows["paris"] else "GOOD Lyon"

    res = fusion({"cheap": ({}, ScriptedChat(script=answer, logprob=-0.3))})
    fit_items = [dict(q, line=i + 1) for i, q in enumerate(generate_facts(20, 0, "fit"))]
    report, answers = run_judge_eval(fit_items, ctx(), show_progress=False)
    assert report["acceptance"] == {"by": "prior (fixed weights)"}
    out = tmp_path / "fit"
    write_outputs(out, report, answers)
    result = CliRunner().invoke(
        app, ["calibrate-judges", str(out / "answers.jsonl"), "--test", str(out / "answers.jsonl"), "--json"]
    )
    assert result.exit_code == 2 and "right and wrong" in result.output  # every answer wrong: nothing to fit
    from fusiongraph.eval.question_sets import CAPITAL_PHRASINGS

    items = [
        {"line": i, "prompt": phrasing.format(country=country), "reference": capital, "match": "exact"}
        for i, (phrasing, (country, capital)) in enumerate(
            [(ph, ("France", "Paris")) for ph in CAPITAL_PHRASINGS] + [(ph, CAPITALS[5]) for ph in CAPITAL_PHRASINGS]
        )
    ]
    knows["paris"] = True
    report, answers = run_judge_eval(items, ctx(), show_progress=False)
    assert report["right"] == 4
    from fusiongraph.eval.judge_eval import fit_from_answers

    summary = fit_from_answers(res.store, answers)
    # the 20 labelled by the failed calibrate-judges run are kept, and fitted on now
    assert summary["rows"] == 8 + 20 and summary["added"] == 8
    assert len(load_labels(res.store)) == 28
    assert fit_from_answers(res.store, answers)["rows"] == 28  # the same answers are not added twice
    fit = current_fit(res.store)
    assert fit is not None and fit.rows == 28
    metrics = replay_acceptance(answers, fit, 0.6)["aggregate"]
    assert metrics["answers"] == 8 and metrics["right"] == 4
    again, _ = run_judge_eval(items[:2], ctx(), show_progress=False)
    assert again["acceptance"] == {"by": "calibrated", "fitted_on_rows": 28}


def test_calibrate_with_references_labels_and_fits(fusion, tmp_path):
    def answer(prompt):
        return "It is 42." if "Add" in prompt else "Paris" if "France" in prompt else "Lyon"

    res = fusion({"cheap": ({}, ScriptedChat(script=answer, logprob=-0.2))})
    seeds = tmp_path / "seeds.jsonl"
    lines = [{"prompt": f"Add {a} and {42 - a}"} for a in range(10, 16)]  # labelled by the exact check
    lines += [{"prompt": f"Add {a} and {a}"} for a in range(30, 34)]  # wrong, labelled by the exact check
    lines += [{"prompt": "What is the capital of France?", "reference": "Paris"}]
    lines += [{"prompt": f"What is the capital of {c}?", "reference": k} for c, k in CAPITALS[1:12]]
    seeds.write_text("".join(json.dumps(x) + "\n" for x in lines))
    summary = calibrate(seeds, ctx(), show_progress=False)
    assert summary["acceptance"]["labelled"] == 22 and summary["acceptance"]["fit"].endswith(ACCEPTANCE_FILE)
    labels = load_labels(res.store)
    assert sorted({r.source for r in labels}) == ["calibrate", "exact"]
    assert sum(r.correct for r in labels) == 6 + 1
    # the ten the exact check decided are kept, but the fit is of the twelve it is ever asked about
    assert current_fit(res.store).rows == 12 and sum(r.decided for r in labels) == 10


# --------------------------------------------------------------------------------------- question sets


def test_generated_question_sets_have_true_references_and_disjoint_splits():
    for item in generate_phrasings(60, seed=5):
        expression = arithmetic_expression(item["prompt"])  # every phrasing is one the exact check reads
        assert expression is not None and safe_eval(expression) == int(item["reference"]), item
    fit, test = generate_easy(96, 0, "fit"), generate_easy(94, 1, "test")
    assert not {q["prompt"] for q in fit} & {q["prompt"] for q in test}
    assert len({q["prompt"] for q in generate_facts(48, 0, "fit")}) == 48
    capitals = dict(CAPITALS)
    assert capitals["Australia"] == "Canberra" and capitals["Canada"] == "Ottawa" and capitals["Nigeria"] == "Abuja"
    for q in facts():
        assert q["reference"] and q["match"] in ("exact", "numeric")
    assert generate_easy(4, 0) == generate_easy(4, 0) and [q["match"] for q in generate_easy(4, 0)][:2] == [
        "numeric",
        "exact",
    ]
    with pytest.raises(ValueError, match="split"):
        generate_facts(3, 0, "train")


def test_attempt_records_carry_the_acceptance(fusion):
    from pydantic import TypeAdapter

    models, _ = calibrated_models()
    fusion(models)
    out = graph.invoke({"query": "What is the capital of France?"}, context=ctx())
    for a in only(out)["attempts"]:
        TypeAdapter(Attempt).validate_python(a, strict=True)
        assert a["acceptance"]["by"] == "prior"
    labelled = LabelledAttempt.from_attempt(only(out)["attempts"][0], "factual_qa", True, "test")
    assert LabelledAttempt.from_dict(json.loads(json.dumps(labelled.as_dict()))) == labelled


def test_an_answer_that_only_restates_the_question_names_nothing():
    from fusiongraph.judging.kinds.rules import rule_verdict

    task = "What is the capital city of Zimbabwe?"
    restated = rule_verdict(task, "Zimbabwe is the capital city of Zimbabwe.", "stop", "factual_qa")
    assert restated.score == 0.5 and "restates" in restated.detail
    assert rule_verdict(task, "The capital city of Zimbabwe is Harare.", "stop", "factual_qa").score == 1.0
    assert rule_verdict("Is the sky blue?", "Yes.", "stop", "factual_qa").score == 1.0  # not a wh-question
    same = "Uruguay is the capital of Uruguay."
    assert agreement("Which city is the capital of Uruguay?", same, same, lambda t: np.ones(2) / np.sqrt(2)) == 0.0


def test_the_l2_strength_is_chosen_by_cross_validation_on_the_fitting_rows():
    from fusiongraph.judging.acceptance import C_DEFAULT, C_GRID, choose_c

    informative = {"self": {"math", "factual_qa"}, "consistency": {"math", "factual_qa"}}
    sharp = fit_acceptance(labelled_attempts(400, 5, informative), JUDGE_ORDER)
    assert sharp.c in C_GRID and sharp.c > C_DEFAULT  # clean signal: little shrinkage pays
    noise = fit_acceptance(labelled_attempts(400, 5, {"self": set(), "consistency": set()}), JUDGE_ORDER)
    assert noise.c < sharp.c  # no signal: strong shrinkage
    assert choose_c(np.zeros((6, 2)), np.array([0, 1, 0, 1, 0, 1])) == C_DEFAULT  # too few to cross-validate
    assert AcceptanceFit.from_bytes(sharp.to_bytes()).c == sharp.c


def _tokens(pairs):
    from langchain_core.messages import AIMessage

    texts, lps = zip(*pairs)
    return AIMessage(
        content="".join(texts), response_metadata={"token_texts": list(texts), "token_logprobs": list(lps)}
    )


def test_the_key_judge_reads_only_the_tokens_of_the_answer_itself():
    from fusiongraph.judging.kinds.key_confidence import key_verdict

    task = "What is the capital of Peru?"
    sure_wording = [("The", -0.01), (" capital", -0.01), (" of", -0.0), (" Peru", -0.01), (" is", -0.02)]
    unsure = _tokens([*sure_wording, (" L", -2.3), ("ima", -0.1), (".", -0.05)])
    sure = _tokens([*sure_wording, (" L", -0.05), ("ima", -0.01), (".", -0.05)])
    low, high = key_verdict(task, unsure), key_verdict(task, sure)
    assert low.score == pytest.approx(math.exp(-2.3)) and high.score == pytest.approx(math.exp(-0.05))
    # the self judge's mean over every token hardly tells them apart; the key judge does
    from fusiongraph.judging.kinds.self_confidence import self_verdict

    assert self_verdict(unsure).score > 0.7 and low.score < 0.2
    # numbers: the last one; option letters: the letter chosen
    n = key_verdict(
        "How many legs does a spider have?", _tokens([("It", -0.1), (" has", -0.2), (" 8", -1.2), (" legs", -3.0)])
    )
    assert n.score == pytest.approx(math.exp(-1.2))
    letter = key_verdict(
        "Pick one.\n(A) red\n(B) blue", _tokens([("The", -0.3), (" answer", -0.1), (" is", -0.1), (" B", -0.7)])
    )
    assert letter.score == pytest.approx(math.exp(-0.7))


def test_the_key_judge_abstains_without_a_key_or_token_text():
    from langchain_core.messages import AIMessage

    from fusiongraph.judging.kinds.key_confidence import key_verdict

    no_text = AIMessage(content="Lima", response_metadata={"token_logprobs": [-0.1]})
    assert key_verdict("What is the capital of Peru?", no_text) is None  # no token text: no verdict at all
    restates = _tokens([("The", -0.1), (" capital", -0.1), (" of", -0.1), (" Peru", -0.1), (".", -0.1)])
    assert key_verdict("What is the capital of Peru?", restates).score is None
    openai_style = AIMessage(
        content="Lima",
        response_metadata={
            "logprobs": {"content": [{"token": "L", "logprob": -0.4}, {"token": "ima", "logprob": -0.2}]}
        },
    )
    assert key_verdict("What is the capital of Peru?", openai_style).score == pytest.approx(math.exp(-0.4))


def test_the_focus_judge_tells_a_direct_answer_from_an_evasion():
    from fusiongraph.judging.kinds.focus import focus_score

    assert focus_score("Name the capital of Belgium.", "The capital of Belgium is Brussels.") == 1.0
    assert focus_score("Name the capital of Belgium.", "Belgium is a European country. Its capital ...") == 0.5
    assert focus_score("What is the capital of Peru?", "Lima.") == 0.0
    assert focus_score("Which is it?\n(A) red\n(B) blue", "B") is None  # options: the answer is a letter
    assert focus_score("Tell me.", "Sure.") is None  # nothing asked to take up
