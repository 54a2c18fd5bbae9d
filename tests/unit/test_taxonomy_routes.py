"""The taxonomy routes: a task class changes the plan (candidates), the verdict (verifiers) and the answer
length; a roster of one's own that lacks the taxonomy's models just works."""

import builtins

import pytest
from typer.testing import CliRunner

from fusiongraph.defaults import DEFAULT_TAXONOMY
from fusiongraph.graphs.fusion import graph
from fusiongraph.judging.kinds.rules import rule_verdict
from fusiongraph.judging.verifiers import (
    VERIFIERS,
    UnsafeExpression,
    arithmetic_expression,
    check_arithmetic,
    check_code,
    check_json,
    for_class,
    safe_eval,
)
from fusiongraph.models.roster import ModelSpec, Roster
from fusiongraph.resources import Resources, use_resources
from fusiongraph.routing.embeddings import Embedder
from fusiongraph.routing.taxonomy import TaskClass, Taxonomy
from fusiongraph.store import OutcomeStore
from tests.conftest import ctx, judge_script, planner_script
from tests.fakes import BagOfWordsEmbeddings, ScriptedChat

LOCAL, SMALL_API, BIG_API = "smollm2-135m", "gpt-4o-mini", "gpt-4o"
CODE_TASK = "Implement binary search in C."
FACT_TASK = "What is the capital of Australia?"
MATH_TASK = "What is 17 times 23?"


def shipped() -> Taxonomy:
    return Taxonomy.from_yaml(DEFAULT_TAXONOMY)


def roster_models(local_reply="GOOD local", small_reply="GOOD small", big_reply="GOOD big", api_keys=True):
    """The shipped roster's ids with scripted models; without `api_keys` only the local one is callable."""
    chats = {
        m: ScriptedChat(script=lambda p, r=r: r(p) if callable(r) else r)
        for m, r in ((LOCAL, local_reply), (SMALL_API, small_reply), (BIG_API, big_reply))
    }
    models = {LOCAL: ({"price_in": 0.0, "price_out": 0.0}, chats[LOCAL])}
    for m, price in ((SMALL_API, (0.15, 0.60)), (BIG_API, (2.50, 10.0))):
        kwargs = {"price_in": price[0], "price_out": price[1]}
        if not api_keys:  # a real API tier whose key is not set
            kwargs.update(kind="openai", model=m, api_key_env="FG_TEST_MISSING_KEY")
        models[m] = (kwargs, chats[m] if api_keys else None)
    return models, chats


@pytest.fixture
def shipped_fusion(fusion, monkeypatch):
    monkeypatch.delenv("FG_TEST_MISSING_KEY", raising=False)

    def build(**kwargs):
        models, chats = roster_models(**kwargs)
        res = fusion(models)
        res.taxonomy = shipped()
        return res, chats

    return build


def by_subtask(out) -> dict:
    return {r["subtask"]: r for r in out["results"]}


# ------------------------------------------------------------------------------------------ the shipped file


def test_the_shipped_classes_differ_in_candidates_verifiers_and_answer_length():
    tax = shipped()
    assert len(tax.classes) == 11
    assert len({tuple(c.candidates) for c in tax.classes.values()}) > 1
    for name in ("code", "math", "reasoning", "translation"):
        assert LOCAL not in tax.classes[name].candidates, name
    for name in ("factual_qa", "conversation", "classification"):
        assert tax.classes[name].candidates[0] == LOCAL, name
    assert "arithmetic" in tax.verifiers("math") and tax.verifiers("code") == ["code"]
    assert tax.verifiers("extraction") == ["json"] and tax.verifiers("creative_writing") == []
    lengths = {name: tax.answer_tokens(name, 4096) for name in tax.classes}
    assert lengths["code"] > lengths["factual_qa"] > lengths["classification"]
    assert tax.answer_tokens("code", 256) == 256  # the run's max_tokens caps every class


def test_the_shipped_verifiers_are_the_defaults_the_rules_judge_falls_back_on():
    # rule_verdict given only a class name (as run_attempt passes it) must judge as the shipped file says
    for name, c in shipped().classes.items():
        assert c.checks == for_class(name), name


def test_a_taxonomy_file_with_an_unknown_verifier_or_a_bad_length_is_a_clear_error(tmp_path):
    (tmp_path / "t.yaml").write_text("classes:\n  math: {description: sums, candidates: [a], verifiers: [magic]}")
    with pytest.raises(ValueError, match="unknown verifiers \\['magic'\\]"):
        Taxonomy.from_yaml(tmp_path / "t.yaml")
    (tmp_path / "t.yaml").write_text("classes:\n  math: {description: sums, candidates: [a], max_tokens: 0}")
    with pytest.raises(ValueError, match="max_tokens must be a positive integer"):
        Taxonomy.from_yaml(tmp_path / "t.yaml")


# ------------------------------------------------------------------------------------------ the verdict


def test_the_class_changes_the_verdict_of_the_same_answer():
    wrong = rule_verdict(MATH_TASK, "17 times 23 is 381", "stop", "math")
    assert wrong.veto and wrong.exact and wrong.score == 0.0 and "391" in wrong.detail
    # plain arithmetic is checked exactly whatever class the taxonomy gave it
    assert rule_verdict(MATH_TASK, "17 times 23 is 381", "stop", "factual_qa").veto
    right = rule_verdict(MATH_TASK, "It is 391.", "stop", "factual_qa")
    assert right.score == 1.0 and right.exact and not right.veto
    # the class's other verifiers still differ: math wants a number in the answer of a calculation
    assert rule_verdict("Calculate the area of a 3 by 4 room", "Twelve.", "stop", "math").score == 0.5
    assert rule_verdict("Calculate the area of a 3 by 4 room", "Twelve.", "stop", "factual_qa").score == 1.0

    broken = "```python\ndef search(xs, x)\n    return xs.index(x)\n```"
    assert rule_verdict("Write a Python function that finds x", broken, "stop", "code").veto  # exact: it cannot run
    assert rule_verdict("Write a Python function that finds x", broken, "stop", "conversation").score == 1.0

    task = "Return the product name and price from this listing as JSON."
    assert rule_verdict(task, "name: lamp, price: 3", "stop", "extraction").score == 0.0  # strict
    assert rule_verdict(task, "name: lamp, price: 3", "stop", "factual_qa").score == 0.5  # a format penalty
    assert rule_verdict(task, '```json\n{"name": "lamp", "price": 3}\n```', "stop", "extraction").score == 1.0


def test_a_taxonomy_class_object_brings_its_own_verifiers():
    plain = TaskClass("sums", "sums", [], ["a"], verifiers=[])
    checked = TaskClass("sums", "sums", [], ["a"], verifiers=["arithmetic"])
    task = "Calculate the area of a 3 by 4 room"
    numeric = TaskClass("sums", "sums", [], ["a"], verifiers=["numeric"])
    assert rule_verdict(task, "Twelve.", "stop", plain).score == 1.0
    assert rule_verdict(task, "Twelve.", "stop", numeric).score == 0.5
    # the exact arithmetic check applies with or without the class naming it
    assert rule_verdict(MATH_TASK, "381", "stop", plain).veto and rule_verdict(MATH_TASK, "381", "stop", checked).veto


@pytest.mark.parametrize(
    "task,expression",
    [
        ("What is 17 times 23?", "17 * 23"),
        ("Compute 15% of 240.", "(15 / 100 * 240)"),
        ("Calculate (3 + 4) * 5", "(3 + 4) * 5"),
        ("What is 2^10?", "2 ** 10"),
        ("What is 1,234 plus 6?", "1234 + 6"),
        ("What is 17 mod 5?", "17 % 5"),
        ("Solve for x in 3x + 5 = 20.", None),
        ("A train travels 120 km in 1.5 hours. What is its average speed?", None),
        ("What is the capital of Australia?", None),
        ("What is 2017?", None),
    ],
)
def test_only_plain_arithmetic_gets_an_exact_check(task, expression):
    assert arithmetic_expression(task) == expression


@pytest.mark.parametrize(
    "task,answer,ok",
    [
        ("Compute 15% of 240.", "15% of 240 is 36.", True),
        ("What is 10 divided by 3?", "About 3.33", True),
        ("What is 10 divided by 3?", "3.4", False),
        ("What is 17 times 23?", "17 × 23 = 391", True),
        ("What is 17 times 23?", "17 × 23 = 401", False),
        ("What is 1,234 plus 6?", "1,240", True),
    ],
)
def test_the_exact_check_reads_the_final_number(task, answer, ok):
    check = check_arithmetic(task, answer)
    assert check.exact and (check.score == 1.0) == ok and check.veto == (not ok)


def test_the_safe_evaluator_allows_plain_arithmetic_only_and_never_calls_eval(monkeypatch):
    def no_eval(*args, **kwargs):
        raise AssertionError("eval must not be used")

    monkeypatch.setattr(builtins, "eval", no_eval)
    assert safe_eval("(2 + 3) * 4 - 6 / 3 + 7 // 2 + 7 % 4 + 2 ** 10 - -1") == 20 - 2.0 + 3 + 3 + 1024 + 1
    assert safe_eval("2 ** 64") == 2**64
    for bad in (
        "__import__('os').system('true')",
        "abs(-3)",
        "x + 1",
        "[1, 2]",
        "1 if 1 else 2",
        "1 < 2",
        "2 ** 65",
        "2 ** 2 ** 10",
        "(10 ** 60) ** 60",
        "True + 1",
        "'a' * 3",
        "1e400",
        "1" * 201,
    ):
        with pytest.raises(UnsafeExpression):
            safe_eval(bad)
    with pytest.raises(ZeroDivisionError):
        safe_eval("1 / 0")
    assert check_arithmetic("What is 1 divided by 0?", "undefined: 0") is None  # no truth to check against


def test_code_and_json_verifiers():
    assert check_code("Write a Python function", "```python\ndef f(x):\n    return x\n```").score == 1.0
    assert check_code("Write a Python function", "def f(x):\n    return x\nThis returns x unchanged.").score == 1.0
    assert check_code("Write a Python function", "```\ndef f(x)\n    return x\n```").score == 0.0
    assert check_code("Write a bash one-liner", "```bash\nwc -l $(find . -name '*.py')\n```") is None
    assert check_code("Write a Python function", "Sure, that is easy.").score == 0.5
    assert check_code("Explain what this SQL query does", "It selects rows.") is None
    assert check_json("List the dates", "May 1") is None
    assert check_json("List the dates as JSON", '["May 1"]').score == 1.0
    assert set(VERIFIERS) == {"numeric", "arithmetic", "json", "code"}


# ------------------------------------------------------------------------------------------ the plan


def test_the_class_changes_the_plan(shipped_fusion):
    shipped_fusion()
    out = graph.invoke({"query": f"{CODE_TASK} AND {FACT_TASK}"}, context=ctx(max_tokens=2048))
    rs = by_subtask(out)
    code, fact = rs[CODE_TASK], rs[FACT_TASK]
    assert (code["task_class"], fact["task_class"]) == ("code", "factual_qa")
    assert code["route_source"] == fact["route_source"] == "taxonomy"
    assert LOCAL not in code["candidates"] and code["candidates"][0] == SMALL_API
    assert fact["candidates"][0] == LOCAL
    assert [a["model"] for a in fact["attempts"]] == [LOCAL]
    # the answer length of the class: in the trace and in the route's predicted cost
    tokens = {
        r["task_class"]: next(e for e in r["trace"] if e["node"] == "taxonomy")["answer_tokens"] for r in out["results"]
    }
    assert tokens == {"code": 1024, "factual_qa": 128}
    cost = {r["task_class"]: r["predictions"][SMALL_API]["cost_usd"] for r in out["results"]}
    assert cost["code"] > 4 * cost["factual_qa"]


def test_the_class_changes_the_verdict_in_the_cascade(shipped_fusion):
    _, chats = shipped_fusion(small_reply="GOOD: 17 times 23 is 381", big_reply="GOOD: 391")
    r = by_subtask(graph.invoke({"query": MATH_TASK}, context=ctx()))[MATH_TASK]
    assert r["task_class"] == "math" and LOCAL not in r["candidates"]
    first, second = r["attempts"]
    assert first["model"] == SMALL_API and not first["accepted"] and first["confidence"] == 0.0
    rules = next(v for v in first["verdicts"] if v["judge"] == "rules")
    assert rules["veto"] and "17 * 23 = 391" in rules["detail"]
    assert second["model"] == BIG_API and second["accepted"] and r["answer"] == "GOOD: 391"
    assert chats[LOCAL].calls == []


def test_only_the_local_model_still_answers_every_class_with_a_note(shipped_fusion):
    _, chats = shipped_fusion(api_keys=False)
    out = graph.invoke({"query": CODE_TASK}, context=ctx(judge_model=""))
    r = by_subtask(out)[CODE_TASK]
    assert r["task_class"] == "code" and r["candidates"] == [LOCAL]
    assert [a["model"] for a in r["attempts"]] == [LOCAL] and r["answer"] == "GOOD local"
    reasons = [s["reason"] for s in r["skipped"]]
    assert any("no candidate of the task class is available" in x for x in reasons)
    assert any("FG_TEST_MISSING_KEY" in x for x in reasons)


# ------------------------------------------------------------------------------------------ a roster of one's own

OWN_ROSTER = """
models:
  - {id: helper, kind: openai_compatible, base_url: "http://127.0.0.1:9/v1", answers: false}
  - {id: mine-small, kind: openai_compatible, base_url: "http://127.0.0.1:9/v1", price_in: 0.1, price_out: 0.4}
  - {id: gpt-4o-mini, kind: openai_compatible, base_url: "http://127.0.0.1:9/v1", price_in: 0.15, price_out: 0.6}
"""


HELPERS = ctx(planner_model="helper", judge_model="helper")


def helper_script(prompt: str) -> str:
    if "Candidate answer:" in prompt:
        return judge_script(prompt)
    return planner_script(prompt)


@pytest.fixture
def own_roster(tmp_path):
    (tmp_path / "models.yaml").write_text(OWN_ROSTER)
    chats = {
        "helper": ScriptedChat(script=helper_script),
        "mine-small": ScriptedChat(script=lambda p: "GOOD small"),
        "gpt-4o-mini": ScriptedChat(script=lambda p: "GOOD mini"),
    }
    roster = Roster(list(Roster.from_yaml(tmp_path / "models.yaml").specs.values()), chats)
    embedder = Embedder(BagOfWordsEmbeddings())
    res = Resources(roster, shipped(), embedder, OutcomeStore(tmp_path / "store", embedder.dim, embedder.name))
    with use_resources(res):
        yield res, chats


def test_a_roster_lacking_the_taxonomys_models_just_works(own_roster):
    res, chats = own_roster
    assert res.taxonomy.check_models(res.roster.ids())["math"] == [
        "qwen2.5-coder-0.5b",
        "qwen2.5-coder-1.5b",
        "openai-compatible",
        "gpt-4o",
    ]
    out = graph.invoke({"query": f"{CODE_TASK} AND Hi, how are you today?"}, context=HELPERS)
    rs = by_subtask(out)
    code = rs[CODE_TASK]
    assert code["candidates"] == ["gpt-4o-mini"] and code["answer"] == "GOOD mini"
    notes = {s["model"]: s["reason"] for s in code["skipped"]}
    assert "not in the roster" in notes["openai-compatible"] and "not in the roster" in notes["gpt-4o"]
    chat = rs["Hi, how are you today?"]
    assert chat["task_class"] == "conversation" and LOCAL in {s["model"] for s in chat["skipped"]}


def test_ask_with_a_roster_of_ones_own_prints_the_answer_and_the_notes(own_roster):
    from fusiongraph.cli import app

    result = CliRunner().invoke(app, ["ask", CODE_TASK, "--budget", "1"])
    assert result.exit_code == 0, result.output
    assert "GOOD mini" in result.output and "not in the roster" in result.output
    assert "alone would have cost $" in result.output


def test_a_class_without_any_candidate_in_the_roster_uses_every_model_with_a_note(own_roster):
    res, _ = own_roster
    res.taxonomy = Taxonomy([TaskClass("code", "code", ["implement binary search"], ["somebody-else"])])
    r = by_subtask(graph.invoke({"query": CODE_TASK}, context=HELPERS))[CODE_TASK]
    assert set(r["candidates"]) <= {"mine-small", "gpt-4o-mini"} and r["candidates"]
    reasons = [s["reason"] for s in r["skipped"]]
    assert any("no candidate of the task class is available" in x for x in reasons)
    assert {"model": "somebody-else", "reason": "not in the roster (a candidate of taxonomy class 'code')"} in r[
        "skipped"
    ]
    from fusiongraph.cli import app

    shown = CliRunner().invoke(app, ["ask", CODE_TASK, "--budget", "1", "--no-cache"])
    assert shown.exit_code == 0 and "note: no candidate of the task class is available" in shown.output


# ------------------------------------------------------------------------------------------ strongest model alone


def test_the_strongest_model_alone_is_estimated_on_every_subtask():
    roster = Roster(
        [
            ModelSpec(id="free", kind="openai_compatible", base_url="http://x/v1"),
            ModelSpec(id="paid", kind="openai_compatible", base_url="http://x/v1", price_in=2.5, price_out=10.0),
        ]
    )
    answered = {
        "subtask": "What is 2 plus 2?",
        "answered_by": "free",
        "answer": "4",
        "attempts": [{"model": "free", "answer": "4", "tokens_in": 100, "tokens_out": 10}],
    }
    unanswered = {
        "subtask": "Write a long essay about rivers.",
        "answered_by": None,
        "answer": "",
        "attempts": [],
        "answer_tokens": 384,
    }
    one = roster.strongest_alone([answered])
    assert one["strongest_model"] == "paid" and (
        one["strongest_alone_tokens_in"],
        one["strongest_alone_tokens_out"],
    ) == (100, 10)
    assert one["strongest_alone_cost_usd"] == pytest.approx((100 * 2.5 + 10 * 10.0) / 1e6)
    none = roster.strongest_alone([unanswered])
    assert none["strongest_alone_tokens_in"] > 10 and none["strongest_alone_tokens_out"] == 384
    assert none["strongest_alone_cost_usd"] > 0
    both = roster.strongest_alone([answered, unanswered])
    assert both["strongest_alone_cost_usd"] == pytest.approx(
        one["strongest_alone_cost_usd"] + none["strongest_alone_cost_usd"]
    )


def test_the_summary_prices_unanswered_subtasks_on_the_strongest_model(shipped_fusion):
    shipped_fusion()
    out = graph.invoke({"query": CODE_TASK}, context=ctx(budget_usd=0.0))  # the budget stops every call
    assert out["results"][0]["attempts"] == []
    assert out["summary"]["strongest_model"] == BIG_API and out["summary"]["strongest_alone_cost_usd"] > 0
