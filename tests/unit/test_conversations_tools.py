"""Conversations, tools, structured output and images, with scripted models (fast; the real GGUF and a real
`langgraph dev` are in tests/integration/test_clients.py)."""

from __future__ import annotations

import json

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver

from fusiongraph.conversation import depends_on_history, first_part, make_request, rewrite_problem
from fusiongraph.graphs.fusion import build_graph, graph
from fusiongraph.judging.verifiers import check_response_format, check_tool_calls
from fusiongraph.models.roster import CapabilityError, ModelSpec
from tests.conftest import ctx, planner_script
from tests.fakes import ScriptedChat

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
FORCED = {"type": "function", "function": {"name": "get_weather"}}


def call(name="get_weather", **args):
    return AIMessage("", tool_calls=[{"name": name, "args": args, "id": "c1"}])


def models(cheap_reply, strong_reply="GOOD strong", caps=("tools", "json")):
    cheap = ScriptedChat(script=cheap_reply if callable(cheap_reply) else lambda p: cheap_reply)
    strong = ScriptedChat(script=strong_reply if callable(strong_reply) else lambda p: strong_reply)
    spec = {"capabilities": list(caps)}
    return (
        {
            "cheap": ({"price_in": 0.1, "price_out": 0.1, **spec}, cheap),
            "strong": ({"price_in": 5.0, "price_out": 5.0, **spec}, strong),
        },
        cheap,
        strong,
    )


def recording_planner(rewrite: str):
    """The scripted planner, answering the standalone rewrite prompt with `rewrite`."""
    return ScriptedChat(script=lambda p: rewrite if p.startswith("Conversation:") else planner_script(p))


# --- the verifiers --------------------------------------------------------------------------------------


def test_the_tool_call_verifier_checks_name_choice_and_arguments_against_the_schema():
    request = make_request([WEATHER], "auto")
    assert check_tool_calls(request, call(city="Paris")).score == 1.0
    assert check_tool_calls(request, call(name="get_time", city="Paris")).veto  # not offered
    bad = check_tool_calls(request, call(town="Paris"))
    assert bad.veto and "'city' is a required property" in bad.reason
    assert check_tool_calls(request, call(city=5)).veto  # wrong type
    assert check_tool_calls(request, AIMessage("It is sunny.")) is None  # auto: text is fine
    assert check_tool_calls(make_request([WEATHER], "required"), AIMessage("sunny")).veto
    assert check_tool_calls(make_request([WEATHER], FORCED), AIMessage("sunny")).veto
    assert check_tool_calls(make_request(), call(city="Paris")).veto  # no tools were offered
    two = AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": c}, "id": c} for c in "ab"])
    assert check_tool_calls(make_request([WEATHER], "auto", False), two).veto


def test_the_response_format_verifier_parses_and_validates():
    obj = make_request(response_format={"type": "json_object"})
    assert check_response_format(obj, AIMessage('{"a": 1}')).score == 1.0
    assert check_response_format(obj, AIMessage("```json\n{}\n```")).veto  # fenced is not JSON as it stands
    assert check_response_format(obj, AIMessage("[1, 2]")).veto
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    strict = make_request(response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": schema}})
    assert check_response_format(strict, AIMessage('{"age": 31}')).score == 1.0
    assert check_response_format(strict, AIMessage('{"age": "31"}')).veto


def test_requests_are_validated_and_name_what_is_wrong():
    for kwargs, words in [
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "nope"}}}]}, "tools[0]"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "x"}}}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"response_format": {"type": "xml"}}, "response_format"),
    ]:
        with pytest.raises(ValueError, match=words.replace("[", r"\[")):
            make_request(**kwargs)
    assert make_request([WEATHER], "none")["requires"] == []
    assert make_request([WEATHER], images=True, response_format={"type": "json_object"})["requires"] == [
        "tools",
        "json",
        "vision",
    ]


def test_the_dependence_heuristic_and_the_rewrite_guard():
    assert depends_on_history("and in French?") and depends_on_history("What about Spain?")
    assert depends_on_history("Translate it into German.")
    assert not depends_on_history("Now say goodbye in French.")
    assert not depends_on_history("What is the capital of France?")
    history = [HumanMessage("Say hello."), AIMessage("Hello!")]
    assert rewrite_problem("Say hello in French.", "and in French?", history) is None
    assert "repeats an earlier user turn" in rewrite_problem("Say hello.", "and?", history)
    assert "not grounded" in rewrite_problem("Compute the integral of cosine", "and in French?", history)
    assert "drops" in rewrite_problem("Say hello.", "and in German and Spanish?", history)
    assert "repeats" in rewrite_problem("Say hello in French. Then say hello.", "and in French?", history)
    echo = 'When was Shakespeare born? The original message was: "Who wrote Hamlet?'
    assert first_part(echo + "\nmore", "When was he born?") == "When was Shakespeare born?"


# --- conversations ---------------------------------------------------------------------------------------

THREE_TURNS = [HumanMessage("Say hello."), AIMessage("Hello!"), HumanMessage("Now say goodbye in French.")]


def test_a_three_turn_conversation_answers_the_last_turn_with_the_history(fusion):
    spec, cheap, _ = models("GOOD Au revoir !")
    planner = recording_planner("unused")
    fusion(spec, planner=planner)
    out = graph.invoke({"messages": [SystemMessage("Be brief."), *THREE_TURNS]}, context=ctx())
    assert out["subtasks"] == ["Now say goodbye in French."] and out["answer"] == "GOOD Au revoir !"
    assert not any("Say hello" in s for s in out["subtasks"])
    assert not any(p.startswith("Conversation:") for p in planner.calls)  # reads as standalone: no rewrite
    assert out["standalone"] == "Now say goodbye in French."
    sent, _ = cheap.seen[0]  # the answering model got the real history, then the subtask
    assert [m.text for m in sent[1:]] == ["Be brief.", "Say hello.", "Hello!", "Now say goodbye in French."]
    assert isinstance(out["messages"][-1], AIMessage) and out["messages"][-1].text == "GOOD Au revoir !"
    (event,) = [e for e in out["trace"] if e["node"] == "standalone"]
    assert event["rewrite"].startswith("skipped") and event["standalone"] == "Now say goodbye in French."


def test_a_dependent_last_message_is_rewritten_and_a_junk_rewrite_falls_back(fusion):
    spec, cheap, _ = models("GOOD Bonjour")
    fusion(spec, planner=recording_planner("Say hello in French."))
    turns = [HumanMessage("Say hello."), AIMessage("Hello!"), HumanMessage("and in French?")]
    out = graph.invoke({"messages": turns}, context=ctx())
    assert out["standalone"] == "Say hello in French." and out["subtasks"] == ["Say hello in French."]
    event = next(e for e in out["trace"] if e["node"] == "standalone")
    assert event["rewrite"] == "rewritten" and "cost_usd" in event and "reserved_usd" in event
    off = graph.invoke({"messages": turns}, context=ctx(rewrite_standalone=False))
    assert off["standalone"] == "and in French?"
    assert next(e for e in off["trace"] if e["node"] == "standalone")["rewrite"].endswith("knob is off")
    fusion(spec, planner=recording_planner("Conversation: the integral of cosine"))
    out = graph.invoke({"messages": turns}, context=ctx())
    assert out["standalone"] == "and in French?"
    assert "fallback" in next(e for e in out["trace"] if e["node"] == "standalone")["rewrite"]


def test_no_earlier_turns_means_no_rewrite_call_and_the_budget_bounds_the_rewrite(fusion):
    spec, _, _ = models("GOOD")
    planner = recording_planner("Say hello in French.")
    fusion(spec, planner=planner)
    graph.invoke({"messages": [SystemMessage("Be brief."), HumanMessage("and in French?")]}, context=ctx())
    assert not any(p.startswith("Conversation:") for p in planner.calls)
    turns = [HumanMessage("Say hello."), AIMessage("Hello!"), HumanMessage("and in French?")]
    # a priced planner and a budget below its worst case: the rewrite is skipped, nothing is spent on it
    spec["dear-planner"] = ({"price_in": 1000.0, "price_out": 1000.0, "answers": False}, planner)
    fusion(spec)
    out = graph.invoke({"messages": turns}, context=ctx(budget_usd=0.01, planner_model="dear-planner"))
    event = next(e for e in out["trace"] if e["node"] == "standalone")
    assert event["rewrite"].startswith("skipped: budget") and "cost_usd" not in event
    assert out["summary"]["spent_usd"]["total"] <= 0.01


def test_a_thread_continues_the_conversation_and_starts_each_run_fresh(fusion):
    spec, cheap, _ = models(lambda p: f"GOOD reply to {p}")
    fusion(spec)
    threaded = build_graph(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t1"}}
    first = threaded.invoke({"query": "What is the capital of France?"}, config, context=ctx())
    second = threaded.invoke({"messages": [HumanMessage("What is the capital of Spain?")]}, config, context=ctx())
    assert len(first["results"]) == 1 and len(second["results"]) == 1  # not the earlier run's results again
    assert [m.type for m in second["messages"]] == ["human", "ai", "human", "ai"]
    sent, _ = cheap.seen[-1]
    assert [m.text for m in sent[1:]] == [
        "What is the capital of France?",
        "GOOD reply to What is the capital of France?",
        "What is the capital of Spain?",
    ]
    third = threaded.invoke({"query": "And of Italy?"}, config, context=ctx())
    assert third["messages"][-2].text == "And of Italy?" and len(third["results"]) == 1


# --- tools ---------------------------------------------------------------------------------------------


def test_a_tool_request_is_one_subtask_and_an_invalid_call_escalates(fusion):
    spec, cheap, strong = models(call(town="Paris"), call(city="Paris"))
    planner = recording_planner("unused")
    fusion(spec, planner=planner)
    out = graph.invoke(
        {"query": "What is the weather in Paris and in Rome?", "tools": [WEATHER], "tool_choice": FORCED},
        context=ctx(),
    )
    assert out["subtasks"] == ["What is the weather in Paris and in Rome?"]  # not decomposed
    assert "answered whole" in next(e for e in out["trace"] if e["node"] == "decompose")["whole"]
    assert planner.calls == []
    (result,) = out["results"]
    assert [a["model"] for a in result["attempts"]] == ["cheap", "strong"]
    assert "do not validate" in result["attempts"][0]["verdicts"][0]["detail"]
    assert out["tool_calls"][0]["name"] == "get_weather" and out["tool_calls"][0]["args"] == {"city": "Paris"}
    assert out["answer"] == "" and out["messages"][-1].tool_calls
    _, kwargs = cheap.seen[0]
    assert kwargs["tools"] == [WEATHER] and kwargs["tool_choice"] == FORCED


def test_a_tool_result_continues_the_loop_and_only_capable_models_are_tried(fusion):
    spec, cheap, strong = models("GOOD It is sunny in Paris.")
    spec["plain"] = ({"price_in": 0.0, "price_out": 0.0}, ScriptedChat(script=lambda p: "GOOD plain"))
    fusion(spec)
    turns = [HumanMessage("Weather in Paris?"), call(city="Paris"), ToolMessage("sunny, 21 C", tool_call_id="c1")]
    out = graph.invoke({"messages": turns, "tools": [WEATHER]}, context=ctx())
    assert out["answer"] == "GOOD It is sunny in Paris." and "tool_calls" not in out
    (result,) = out["results"]
    assert [a["model"] for a in result["attempts"]] == ["cheap"]
    assert {"model": "plain", "reason": "lacks the tools capability"} in result["skipped"]
    sent, _ = cheap.seen[0]
    assert [type(m) for m in sent[-3:]] == [HumanMessage, AIMessage, ToolMessage]


def test_no_valid_tool_call_is_refused_not_returned(fusion):
    spec, _, _ = models(call(town="Paris"), call(name="other"))
    fusion(spec)
    out = graph.invoke({"query": "Weather in Paris?", "tools": [WEATHER], "tool_choice": FORCED}, context=ctx())
    assert out["answer"] == "" and "tool_calls" not in out
    assert "no available model gave a valid tool call" in out["refusal"]


# --- structured output ---------------------------------------------------------------------------------


def test_json_output_is_validated_escalated_and_refused_when_invalid(fusion):
    spec, cheap, strong = models("Sure! name: Ann", '{"name": "Ann", "age": 31}')
    fusion(spec)
    fmt = {"type": "json_object"}
    out = graph.invoke({"query": "Ann is 31. Her name and age?", "response_format": fmt}, context=ctx())
    assert json.loads(out["answer"]) == {"name": "Ann", "age": 31}
    assert [a["model"] for a in out["results"][0]["attempts"]] == ["cheap", "strong"]
    assert cheap.seen[0][1]["response_format"] == fmt
    spec, _, _ = models("not json", "still not json")
    fusion(spec)
    out = graph.invoke({"query": "Ann is 31. Her name and age?", "response_format": fmt}, context=ctx())
    assert out["answer"] == "" and "valid JSON" in out["refusal"]


# --- images --------------------------------------------------------------------------------------------

IMAGE = HumanMessage(
    [{"type": "text", "text": "What is in this picture?"}, {"type": "image_url", "image_url": {"url": "data:,"}}]
)


def test_an_image_goes_only_to_a_vision_model_and_with_none_is_a_clear_error(fusion):
    spec, cheap, strong = models("GOOD a cat", "GOOD a cat", caps=())
    fusion(spec)
    with pytest.raises(CapabilityError, match="'vision' capability.*capabilities: \\[vision\\]"):
        graph.invoke({"messages": [IMAGE]}, context=ctx())
    spec, cheap, strong = models("GOOD a cat", "GOOD a cat", caps=())
    fusion(spec, extra_specs=[])
    spec["eyes"] = (
        {"price_in": 1.0, "price_out": 1.0, "capabilities": ["vision"]},
        ScriptedChat(script=lambda p: "GOOD a cat"),
    )
    res = fusion(spec)
    out = graph.invoke({"messages": [IMAGE]}, context=ctx())
    assert out["answer"] == "GOOD a cat" and out["results"][0]["attempts"][0]["model"] == "eyes"
    sent, _ = res.roster.chat_model("eyes", 1, 1).seen[0]
    assert sent[-1].content == IMAGE.content  # the user's own message, image part and all
    assert isinstance(ModelSpec(id="x", kind="openai", model="m", capabilities=["vision"]).capabilities, list)


def test_after_a_tool_result_a_repeated_call_is_vetoed_and_the_next_model_uses_the_result(fusion):
    spec, cheap, strong = models('get_weather({"city": "Paris"})', "GOOD It is sunny in Paris, 21 C.")
    fusion(spec)
    turns = [HumanMessage("Weather in Paris?"), call(city="Paris"), ToolMessage("sunny, 21 C", tool_call_id="c1")]
    out = graph.invoke({"messages": turns, "tools": [WEATHER]}, context=ctx())
    (result,) = out["results"]
    first, second = result["attempts"]
    assert first["verdicts"][0]["veto"] and first["verdicts"][0]["detail"].startswith("tool loop: restates")
    assert out["answer"] == "GOOD It is sunny in Paris, 21 C." and "tool_calls" not in out


def test_when_every_model_repeats_the_call_the_answer_is_the_tool_result(fusion):
    spec, cheap, strong = models(call(city="Paris"), "Calling get_weather with city Paris")
    fusion(spec)
    turns = [HumanMessage("Weather in Paris?"), call(city="Paris"), ToolMessage("sunny, 21 C", tool_call_id="c1")]
    out = graph.invoke({"messages": turns, "tools": [WEATHER]}, context=ctx())
    (result,) = out["results"]
    assert [a["verdicts"][0]["detail"].split(":")[0] for a in result["attempts"]] == ["tool loop", "tool loop"]
    assert out["answer"] == "get_weather returned: sunny, 21 C" and "tool_calls" not in out
    assert any(e.get("event") == "tool result used" for e in result["trace"])
