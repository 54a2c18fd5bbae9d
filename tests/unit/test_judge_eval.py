"""`fusiongraph judge-eval`: answer matching, judge metrics, the question reader, and a run on the shipped GGUF."""

import json

import pytest
from typer.testing import CliRunner

from fusiongraph.cli import app
from fusiongraph.eval.judge_eval import generate_arithmetic, judge_kinds, judge_metrics, load_items, run_judge_eval
from fusiongraph.text import is_correct, last_number
from tests.conftest import ctx
from tests.fakes import ScriptedChat

# ---------------------------------------------------------------------------------------------- matching


@pytest.mark.parametrize(
    "answer,expected",
    [
        ("7 times 8 is 56.", 56),
        ("The answer is -5", -5),
        ("1,234 apples", 1234),
        ("about 3.50", 3.5),
        ("pages 7-8", 8),
        ("no digits here", None),
        ("", None),
        ("12 * 7 = 84\n", 84),
    ],
)
def test_last_number(answer, expected):
    assert last_number(answer) == expected


@pytest.mark.parametrize(
    "answer,reference,match,right",
    [
        ("7 times 8 is 56.", "56", None, True),
        ("56 is wrong, it is 54", "56", None, False),  # the last number counts
        ("The result is 84.0", "84", "numeric", True),
        ("0.1 + 0.2 = 0.3000000001", "0.3", None, True),  # within 1e-6 relative
        ("It is 0.31", "0.3", None, False),
        ("fifty-six", "56", None, False),  # numbers in words are not read
        ("Paris.", "paris", None, True),
        ("The capital of France is PARIS!", "Paris", None, True),
        ("A Parisian café", "Paris", None, False),  # whole words only
        ("It was written by William Shakespeare.", "william shakespeare", "exact", True),
        ("Shakespeare, William", "William Shakespeare", "exact", False),
        ("don't", "don t", "exact", True),  # punctuation becomes a space on both sides
        ("The answer is 56", "56", "exact", True),  # exact on a number: the word "56" appears
    ],
)
def test_is_correct(answer, reference, match, right):
    assert is_correct(answer, reference, match) is right


def test_a_numeric_match_needs_a_numeric_reference():
    with pytest.raises(ValueError, match="numeric reference"):
        is_correct("Paris", "Paris", "numeric")


# ----------------------------------------------------------------------------------------------- metrics


def test_metrics_on_hand_made_rows():
    rows = [
        ({"rules": 1.0, "self": 0.9, "llm": None, "aggregate": 0.9}, True),
        ({"rules": 1.0, "self": 0.8, "llm": None, "aggregate": 0.8}, False),
        ({"rules": 1.0, "self": None, "llm": 1.0, "aggregate": 0.7}, True),
        ({"rules": 0.0, "self": 0.2, "llm": 0.0, "aggregate": 0.2}, False),
    ]
    m = judge_metrics(rows, threshold=0.6)
    agg = m["aggregate"]
    # pairs (right, wrong): 0.9>0.8, 0.9>0.2, 0.7<0.8, 0.7>0.2 -> 3/4
    assert agg["auroc"] == pytest.approx(0.75)
    counts = ("answers", "right", "accepted", "right_accepted", "wrong_accepted")
    assert tuple(agg[k] for k in counts) == (4, 2, 3, 2, 1)
    assert agg["accept_accuracy"] == pytest.approx(0.75) and agg["majority_baseline"] == pytest.approx(0.5)
    assert (agg["right_rejected"], agg["right_rejected_share"]) == (0, 0.0)
    rules = m["rules"]  # ties: (1.0 right, 1.0 wrong) counts a half: (0.5 + 1 + 0.5 + 1) / 4
    assert rules["auroc"] == pytest.approx(0.75) and rules["accept_accuracy"] == pytest.approx(0.75)
    self_ = m["self"]  # abstained on one answer: scored on 3, right 1 of them (0.9 > 0.8, 0.9 > 0.2)
    assert (self_["answers"], self_["abstained"], self_["right"], self_["auroc"]) == (3, 1, 1, 1.0)
    assert self_["accepted"] == 2 and self_["accept_accuracy"] == pytest.approx(2 / 3, abs=1e-4)
    llm = m["llm"]  # one right, one wrong, perfectly separated
    assert (llm["answers"], llm["auroc"], llm["accept_accuracy"]) == (2, 1.0, 1.0)
    assert set(m) == set(judge_kinds())


def test_metrics_with_one_class_or_no_rows():
    m = judge_metrics([({"aggregate": 0.9}, True), ({"aggregate": 0.1}, True)], threshold=0.5)
    assert m["aggregate"]["auroc"] is None  # one class only
    assert m["aggregate"]["accept_accuracy"] == 0.5 and m["aggregate"]["majority_baseline"] == 1.0
    assert m["llm"] == {
        "answers": 0,
        "abstained": 2,
        "right": 0,
        "accepted": 0,
        "right_accepted": 0,
        "wrong_accepted": 0,
        "right_rejected": 0,
        "right_rejected_share": None,
        "accept_accuracy": None,
        "majority_baseline": None,
        "auroc": None,
    }
    assert judge_metrics([], 0.6)["aggregate"]["answers"] == 0


def test_a_perfectly_inverted_judge_has_auroc_zero():
    rows = [({"aggregate": 0.1}, True), ({"aggregate": 0.9}, False)]
    assert judge_metrics(rows, 0.5)["aggregate"]["auroc"] == 0.0


# ------------------------------------------------------------------------------------------------- input


def test_generated_arithmetic_is_reproducible_and_right():
    items = generate_arithmetic(10, seed=3)
    assert items == generate_arithmetic(10, seed=3) and items != generate_arithmetic(10, seed=4)
    for item in items:
        a, op, b = item["prompt"].removeprefix("What is ").rstrip("?").split()
        assert int(item["reference"]) == (int(a) * int(b) if op == "times" else int(a) + int(b))
        assert (2 <= int(a) <= 12) if op == "times" else (10 <= int(a) <= 99)


def test_load_items_reads_defaults_and_skips_blank_lines(tmp_path):
    f = tmp_path / "q.jsonl"
    f.write_text(
        '{"prompt": "What is 2 plus 2?", "reference": "4"}\n\n'
        '{"prompt": "Capital of France?", "reference": "Paris", "id": 7}\n'
        '{"prompt": "Six times seven?", "reference": 42, "match": "exact"}\n'
    )
    items = load_items(f)
    assert [(i["line"], i["match"], i["reference"]) for i in items] == [
        (1, "numeric", "4"),
        (3, "exact", "Paris"),
        (4, "exact", "42"),
    ]


@pytest.mark.parametrize(
    "text,message",
    [
        ("", "no questions"),
        ("\n  \n", "no questions"),
        ('{"prompt": "a", "reference": "b"}\nnot json\n', "line 2: not valid JSON"),
        ('{"prompt": "a"}\n', "line 1: missing field 'reference'"),
        ('{"reference": "b"}\n', "line 1: missing field 'prompt'"),
        ('["a", "b"]\n', "line 1: expected an object"),
        ('{"prompt": "   ", "reference": "b"}\n', 'line 1: "prompt": query is empty'),
        ('{"prompt": "a", "reference": ""}\n', 'line 1: "reference" must be a non-empty'),
        ('{"prompt": "a", "reference": "b", "match": "fuzzy"}\n', 'line 1: "match" must be one of'),
        ('{"prompt": "a", "reference": "Paris", "match": "numeric"}\n', 'line 1: "match" is numeric'),
    ],
)
def test_bad_input_names_the_line(tmp_path, text, message):
    f = tmp_path / "q.jsonl"
    f.write_text(text)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        load_items(f)


def test_cli_bad_input_exits_2_without_a_traceback(tmp_path):
    f = tmp_path / "q.jsonl"
    f.write_text('{"prompt": "What is 2 plus 2?", "reference": "4"}\n{"prompt": "x"\n')
    runner = CliRunner()
    for args, message in [
        ([str(f)], "line 2"),
        ([str(tmp_path / "missing.jsonl")], "No such file"),
        ([], "FILE"),
        (["--generate", "poems"], "--generate"),
    ]:
        result = runner.invoke(app, ["judge-eval", *args])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "Traceback" not in result.output
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = runner.invoke(app, ["judge-eval", str(empty)])
    assert result.exit_code == 2 and "empty" in result.output


def test_cli_generates_question_sets():
    result = CliRunner().invoke(app, ["judge-eval", "--generate", "arithmetic", "--n", "5", "--seed", "1"])
    assert result.exit_code == 0
    assert [json.loads(line) for line in result.output.splitlines()] == generate_arithmetic(5, seed=1)


# ------------------------------------------------------------------------------ the cascade's attempt path


def test_every_judge_scores_every_answer_through_the_attempt_path(fusion, tmp_path):
    def answer(prompt):
        if "3 times 3" in prompt:
            raise ConnectionError("tier down")
        return "GOOD: the answer is 56"

    res = fusion(
        {
            "cheap": ({"price_in": 0.0, "price_out": 0.0}, ScriptedChat(script=answer, logprob=-0.1)),
            "other": ({"price_in": 1.0, "price_out": 1.0}, ScriptedChat(script=lambda p: "BAD 6")),
        }
    )
    items = [
        {"line": i + 1, "prompt": p, "reference": r, "match": "numeric"}
        for i, (p, r) in enumerate(
            [("What is 7 times 8?", "56"), ("What is 2 times 3?", "6"), ("What is 3 times 3?", "9")]
        )
    ]
    report, answers = run_judge_eval(items, ctx(), models=["cheap"], show_progress=False)
    assert report["models"] == ["cheap"] and report["llm_judge"] == "judge"
    assert {"model": "other", "reason": "not in --models"} in report["skipped_models"]
    assert (report["answers"], report["right"], report["failed_calls"]) == (2, 1, 1)
    agg = report["judges"]["aggregate"]
    counts = ("answers", "right", "accepted", "right_accepted", "wrong_accepted")
    # "56" for 2 times 3 is vetoed by the math class's exact arithmetic check (the LLM judge is not asked)
    assert tuple(agg[k] for k in counts) == (2, 1, 1, 1, 0)
    assert agg["auroc"] == 1.0
    # the exact check decided both (56 is 7 times 8): the model-calling judges are not asked after it
    for kind, n in (("rules", 2), ("self", 2), ("llm", 0), ("consistency", 0)):
        assert report["judges"][kind]["answers"] == n
    ok = answers[0]
    assert ok["correct"] is True and ok["scores"]["llm"] is None and ok["acceptance"]["by"] == "exact"
    assert ok["scores"]["self"] == pytest.approx(0.9048, 1e-3)
    assert answers[2]["error"] and answers[2]["correct"] is None
    assert res.store.counts()["outcomes"] == 0  # nothing recorded
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        run_judge_eval(items, ctx(), models=["nope"], show_progress=False)
    with pytest.raises(ValueError, match="only judges"):
        run_judge_eval(items, ctx(), models=["judge"], show_progress=False)
    both, _ = run_judge_eval(items[:1], ctx(llm_judge=False), show_progress=False)
    assert both["models"] == ["cheap", "other"] and both["llm_judge"] is None
    assert both["judges"]["llm"]["answers"] == 0 and both["judges"]["aggregate"]["answers"] == 2


# ----------------------------------------------------------------------------------------- the real thing
