"""The query budget is a limit for the whole query: every call (plan, answers, judges, synthesis) is charged
and reserved at a worst case that cannot be exceeded (fusiongraph/budget.py)."""

from __future__ import annotations

import json
import random
import tempfile
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import RunnableLambda
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict

from fusiongraph.budget import prompt_bound, shares, token_bound, usable
from fusiongraph.graphs.fusion import graph
from fusiongraph.judging.acceptance import save_fit
from fusiongraph.judging.kinds.llm import JUDGE_MAX_TOKENS
from fusiongraph.models.roster import ModelSpec, Roster
from fusiongraph.resources import Resources, use_resources
from fusiongraph.routing.embeddings import Embedder
from fusiongraph.state import Decomposition, JudgeVerdict
from fusiongraph.store import OutcomeStore
from fusiongraph.text import estimate_tokens, fit_to_tokens
from tests.conftest import ctx, make_taxonomy
from tests.fakes import BagOfWordsEmbeddings, ScriptedChat, fit_where_every_judge_speaks

TEXTS = [
    "What is the capital of France?",
    "日本の首都はどこですか。東京について三つの事実を教えてください。",
    "用一句话解释量子纠缠，并给出一个例子。",
    "한국의 수도는 어디입니까?",
    "Explain 🚀🔥 emoji usage 👍🏽👨‍👩‍👧‍👦 in chat",
    "Ünïcödé çàfé naïve résumé — “quotes” and ellipsis…",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645 (Arabic) and \u05e9\u05dc\u05d5\u05dd",
    "ﷺ ﬁ ㎏ ① Ⅻ",  # characters NFKC expands
    "x = [i ** 2 for i in range(10)]  # code\n\tindented\r\n",
    "",
]


# ------------------------------------------------------------------------------------------- the bounds


def test_the_byte_bound_counts_every_byte():
    assert token_bound("hello world") == 11
    assert token_bound("日本語") == 9  # 3 bytes a character: len//3 would say 1
    assert token_bound("👍🏽") == 8
    assert token_bound("ﷺ") >= 18  # NFKC spells it out in 18 characters
    assert token_bound("") == 0
    for text in TEXTS:
        assert token_bound(text) >= len(text.encode("utf-8"))


def test_the_estimate_no_longer_treats_cjk_as_english():
    assert estimate_tokens("日本の首都はどこですか") >= len("日本の首都はどこですか")
    assert estimate_tokens("hello world, how are you?") == len("hello world, how are you?") // 3 + 1


def test_a_prompt_bound_adds_framing_and_the_tool_schema():
    messages = [SystemMessage("sys"), HumanMessage("日本")]
    plain = prompt_bound(messages)
    assert plain >= 3 + 6 + 2 * 4
    assert prompt_bound(messages, schema=JudgeVerdict) > plain + len(json.dumps(convert_to_openai_tool(JudgeVerdict)))


@pytest.mark.parametrize("limit", [0, 1, 5, 40, 400])
def test_fit_to_tokens_never_passes_the_limit(limit):
    for text in TEXTS + ["長" * 5000, "word " * 3000]:
        fitted, removed = fit_to_tokens(text, limit, token_bound)
        assert token_bound(fitted) <= limit
        if token_bound(text) <= limit:
            assert (fitted, removed) == (text, 0)  # what fits is never cut
        else:
            assert removed > 0 and fitted != text


def test_shares_never_pass_what_is_left():
    for budget, plan, n, synth in [(1.0, 0.3, 3, 0.1), (0.01, 0.0, 7, 0.5), (0.0, 0.0, 2, 0.0), (1e-7, 0, 3, 1e-9)]:
        held, share = shares(budget, plan, n, synth)
        assert plan + held + n * share <= budget
        assert held in (0.0, synth)
    assert shares(1.0, 0.5, 1, 0.2) == (0.0, usable(1.0) - 0.5)


# ------------------------------------------------------------------------ fakes that cost money


class World:
    """Shared by the fakes of one run: their random choices and the ledger of what every call cost."""

    def __init__(self, seed: int, worst: bool, answers: list[str], fail_rate: float = 0.0):
        self.rng = random.Random(seed)
        self.worst = worst
        self.answers = answers
        self.fail_rate = fail_rate
        self.ledger: list[tuple[str, float]] = []
        self.calls: list[tuple[str, str]] = []


class MeteredChat(BaseChatModel):
    """A chat model that bills like an API: input tokens up to what a real tokenizer could make of the
    prompt (one token a byte, ChatML framing, the tool schema), output up to its max_tokens, at its prices."""

    model_id: str
    price_in: float
    price_out: float
    max_tokens: int
    world: Any
    model_config = ConfigDict(arbitrary_types_allowed=True)

    @property
    def _llm_type(self) -> str:
        return "metered"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop=None,
        run_manager=None,
        schema: str | None = None,
        role: str = "",
        **kwargs,
    ) -> ChatResult:
        w = self.world
        last = messages[-1].text
        tags = (run_manager.tags or []) if run_manager is not None else []
        role = role or (
            "synthesize" if last.startswith("Request:") else "consistency" if "consistency" in tags else "answer"
        )
        w.calls.append((self.model_id, role))
        if w.fail_rate and w.rng.random() < w.fail_rate:
            raise ValueError("scripted failure")  # not transient: no retry, nothing billed
        most_in = sum(len(m.text.encode("utf-8")) + 5 for m in messages) + 3  # <|im_start|>role\n...<|im_end|>\n
        if schema is not None:
            most_in += len(schema.encode("utf-8")) + 20
        tokens_in = most_in if w.worst else w.rng.randint(0, most_in)
        tokens_out = self.max_tokens if w.worst else w.rng.randint(0, self.max_tokens)
        if role == "decompose":
            reply = json.dumps({"subtasks": [p.strip() for p in last.split(" AND ")]})
        elif role == "judge":
            reply = json.dumps({"reason": "metered", "score": w.rng.randint(1, 10)})
        elif role == "synthesize":
            reply = "FUSED"
        else:
            reply = w.rng.choice(w.answers)
        cost = (tokens_in * self.price_in + tokens_out * self.price_out) / 1e6
        w.ledger.append((role, cost))
        msg = AIMessage(
            content=reply,
            response_metadata={"finish_reason": "stop"},
            usage_metadata={
                "input_tokens": tokens_in,
                "output_tokens": tokens_out,
                "total_tokens": tokens_in + tokens_out,
            },
        )
        return ChatResult(generations=[ChatGeneration(message=msg)])

    def with_structured_output(self, schema, *, include_raw: bool = False, **kwargs):
        role = "decompose" if schema is Decomposition else "judge"

        def parse(message: AIMessage):
            try:
                parsed, err = schema.model_validate_json(message.content), None
            except ValueError as exc:
                parsed, err = None, exc
            return {"raw": message, "parsed": parsed, "parsing_error": err}

        return self.bind(schema=json.dumps(convert_to_openai_tool(schema)), role=role) | RunnableLambda(parse)


class MeteredRoster(Roster):
    """Builds each model at the max_tokens it is asked for, as the real roster does."""

    def __init__(self, specs: list[ModelSpec], world: World):
        super().__init__(specs, {s.id: ScriptedChat(script=str) for s in specs})  # all available
        self.world = world

    def chat_model(self, model_id: str, max_tokens: int, timeout_s: float) -> BaseChatModel:
        key = (model_id, max_tokens)
        if key not in self._chat:
            spec = self[model_id]
            self._chat[key] = MeteredChat(
                model_id=model_id,
                price_in=spec.price_in,
                price_out=spec.price_out,
                max_tokens=max_tokens,
                world=self.world,
            )
        return self._chat[key]


def metered_run(
    query: str, prices: dict[str, tuple[float, float]], world: World, consistency: bool = False, **knobs
) -> dict:
    """One run on metered fakes; `consistency`: with a saved calibrator fit in which every judge has a say
    (the consistency judge's samples are drawn, and charged, on every answer it is asked about)."""
    specs = [
        ModelSpec(
            id=m,
            kind="openai_compatible",
            base_url="http://127.0.0.1:9/v1",
            price_in=pi,
            price_out=po,
            context=knobs.pop(f"{m}_context", 128_000),
            answers=m not in ("planner", "judge"),
        )
        for m, (pi, po) in prices.items()
    ]
    roster = MeteredRoster(specs, world)
    with tempfile.TemporaryDirectory() as tmp:
        embedder = Embedder(BagOfWordsEmbeddings())
        res = Resources(
            roster,
            make_taxonomy([m for m in prices if m not in ("planner", "judge")]),
            embedder,
            OutcomeStore(tmp, embedder.dim, embedder.name),
        )
        if consistency:
            save_fit(res.store, fit_where_every_judge_speaks())
        with use_resources(res):
            return graph.invoke({"query": query}, context=ctx(**knobs))


# --------------------------------------------------------------------------------------- the fallbacks


def test_a_budget_that_cannot_cover_the_plan_answers_the_query_whole():
    world = World(0, worst=True, answers=["GOOD answer"])
    query = "What is the capital of France AND what is the capital of Spain"
    prices = {"cheap": (0.0, 0.0), "planner": (10.0, 10.0), "judge": (0.0, 0.0)}
    out = metered_run(query, prices, world, budget_usd=0.001)
    assert out["subtasks"] == [query]
    assert ("planner", "decompose") not in [(m, r) for m, r in world.calls]
    event = next(e for e in out["trace"] if e["node"] == "decompose")
    assert event["fallback"].startswith("budget: ") and event["fallback"].endswith("the whole query is one subtask")
    assert "cost_usd" not in event and event["reserved_usd"] > 0.001
    assert out["answer"] == "GOOD answer"
    assert out["summary"]["spent_usd"]["plan"] == 0.0


def test_a_budget_that_cannot_cover_the_synthesis_joins_the_answers():
    long = "GOOD " + "很长的回答。" * 400  # ~7 kB: the synthesis prompt costs more than is left
    world = World(0, worst=True, answers=[long])
    prices = {"cheap": (0.0, 0.0), "planner": (1.0, 0.0), "judge": (0.0, 0.0)}
    out = metered_run("What is the capital of France AND what is the capital of Spain", prices, world, budget_usd=0.005)
    assert [r for m, r in world.calls if m == "planner"] == ["decompose"]
    event = next(e for e in out["trace"] if e["node"] == "synthesize")
    assert event["fallback"].startswith("budget: ") and "without a model call" in event["fallback"]
    assert out["answer"] == f"1. {long}\n\n2. {long}"
    spent = out["summary"]["spent_usd"]
    assert spent["synthesis"] == 0.0 and 0 < spent["plan"] == pytest.approx(sum(c for _, c in world.ledger))
    assert spent["total"] <= out["summary"]["budget_usd"] == 0.005


def test_the_synthesis_may_use_what_the_branches_left():
    world = World(0, worst=True, answers=["GOOD answer"])
    prices = {"cheap": (0.0, 0.0), "planner": (1.0, 1.0), "judge": (0.0, 0.0)}
    out = metered_run("What is the capital of France AND what is the capital of Spain", prices, world, budget_usd=0.01)
    assert out["answer"] == "FUSED"
    spent = out["summary"]["spent_usd"]
    assert spent["plan"] > 0 and spent["synthesis"] > 0 and spent["answers"] == spent["judges"] == 0.0
    assert out["summary"]["cost_usd"] == pytest.approx(spent["total"])


def test_the_judge_reads_at_most_its_reserved_allowance_and_writes_at_most_its_max_tokens():
    long = "GOOD " + "答" * 5000
    world = World(0, worst=True, answers=[long])
    prices = {"cheap": (0.0, 0.0), "planner": (0.0, 0.0), "judge": (1.0, 1.0)}
    out = metered_run("What is the capital of France?", prices, world, budget_usd=1.0, max_tokens=32)
    (r,) = out["results"]
    (attempt,) = r["attempts"]
    assert attempt["judge_trimmed_chars"] > 0
    assert attempt["judge_tokens_out"] == JUDGE_MAX_TOKENS
    assert attempt["judge_cost_usd"] <= attempt["reserved_usd"]
    assert any(role == "judge" for _, role in world.calls)


# ---------------------------------------------------------------------------------- the property

PARTS = [t for t in TEXTS if t] + ["compute 17 times 3", "write a haiku about rain", "name the largest ocean"]
ANSWERS = ["GOOD answer", "BAD answer", "", "GOOD " + "長い答え" * 300, "I'm sorry, I cannot help", "GOOD 42 🙂" * 40]
price = st.one_of(st.just(0.0), st.floats(0.01, 60.0), st.floats(0.01, 60.0))


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    parts=st.lists(st.sampled_from(PARTS), min_size=1, max_size=5),
    prices=st.fixed_dictionaries({m: st.tuples(price, price) for m in ("cheap", "mid", "strong", "planner", "judge")}),
    scale=st.one_of(st.just(0.0), st.floats(0.0, 5.0), st.floats(5.0, 50.0), st.floats(50.0, 400.0)),
    max_tokens=st.one_of(st.integers(1, 40), st.integers(1, 600)),
    threshold=st.floats(0.3, 1.0),
    llm_judge=st.booleans(),
    worst=st.booleans(),
    fail_rate=st.sampled_from([0.0, 0.0, 0.2]),
    seed=st.integers(0, 2**16),
    planner_context=st.sampled_from([128_000, 2048, 512]),
    answers=st.lists(st.sampled_from(ANSWERS), min_size=1, max_size=3),
    consistency=st.booleans(),
    samples=st.integers(1, 8),
)
@example(  # seven consistency samples reserved at exactly seven times a 1-token answer: summing charges rounds
    parts=["What is the capital of France?"],
    prices={"cheap": (0.0, 35.640018707955), "planner": (0.0, 0.0), "strong": (0.0, 28.956430606818785)}
    | {"mid": (0.0, 0.0), "judge": (0.0, 0.0)},
    scale=3.4874363854789574,
    max_tokens=1,
    threshold=0.4,
    llm_judge=False,
    worst=True,
    fail_rate=0.0,
    seed=7,
    planner_context=128000,
    answers=["GOOD answer", ""],
    consistency=True,
    samples=7,
)
def test_the_whole_run_never_spends_past_the_budget(
    parts,
    prices,
    scale,
    max_tokens,
    threshold,
    llm_judge,
    worst,
    fail_rate,
    seed,
    planner_context,
    answers,
    consistency,
    samples,
):
    """The budget is `scale` times one typical call at the dearest price: from nothing to a few dozen calls."""
    dearest = max(max(p) for p in prices.values()) or 1.0
    budget = scale * dearest * (1000 + max_tokens) / 1e6
    world = World(seed, worst, answers, fail_rate)
    out = metered_run(
        " AND ".join(parts),
        prices,
        world,
        budget_usd=budget,
        max_tokens=max_tokens,
        quality_threshold=threshold,
        llm_judge=llm_judge,
        planner_context=planner_context,
        consistency=consistency,
        consistency_samples=samples,
    )
    billed = sum(cost for _, cost in world.ledger)
    assert billed <= budget, (billed, budget, world.ledger)
    spent = out["summary"]["spent_usd"]
    assert spent["total"] == pytest.approx(billed, rel=1e-9, abs=1e-15)  # every call is in the summary
    for kind, roles in (
        ("plan", {"decompose"}),
        ("synthesis", {"synthesize"}),
        ("judges", {"judge", "consistency"}),  # the consistency judge's samples are judge calls
        ("answers", {"answer"}),
    ):
        assert spent[kind] == pytest.approx(sum(c for r, c in world.ledger if r in roles), rel=1e-9, abs=1e-15)
    assert out["summary"]["within_budget"] is True
    # and every call kept its own promise: it cost no more than was reserved for it
    for r in out["results"]:
        for a in r["attempts"]:
            assert a.get("cost_usd", 0.0) + a.get("judge_cost_usd", 0.0) <= a.get("reserved_usd", 0.0), a
    for e in out["trace"]:
        if e["node"] in ("decompose", "synthesize"):
            assert e.get("cost_usd", 0.0) <= e.get("reserved_usd", 0.0), e
    assert out["answer"] is not None
    event(f"spent {'0' if not billed else '<50%' if billed < budget / 2 else '>=50%'} of the budget")
    event(f"consistency samples drawn: {sum(r == 'consistency' for r, _ in world.ledger) > 0}")
    event(
        f"{len(out['results'])} subtask(s); planner {'called' if ('planner', 'decompose') in world.calls else 'skipped'}"
    )
    event("statuses: " + ",".join(sorted({r["status"] for r in out["results"]})))
    event(
        "synthesis: "
        + next((("joined" if "fallback" in e else "called") for e in out["trace"] if e["node"] == "synthesize"), "none")
    )


def test_a_ledger_covers_a_call_only_within_what_is_left():
    from fusiongraph.budget import Ledger, usable

    share = Ledger(0.010)
    assert share.covers(0.010) and not share.covers(0.0101)
    share.charge(0.004)
    assert share.left_usd == pytest.approx(0.006)
    assert share.covers(0.006) and not share.covers(0.005, keep_usd=0.002)
    query = Ledger.for_query(1.0, spent_usd=0.25)
    assert query.limit_usd == usable(1.0) and query.left_usd == pytest.approx(usable(1.0) - 0.25)
