"""After a tool result that echoes the call's arguments ("sunny and 21 C in Paris" for city=Paris), a reply that
only restates the call is still a tool loop: the echoed words are no sign that the result was used (found by
the Vercel AI SDK's and the OpenAI Agents SDK's tool loops against the real SmolLM2, which answered
'function.get_weather: {"city": "Paris"}'). Scripted models only."""

from __future__ import annotations

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from fusiongraph.graphs.fusion import graph
from fusiongraph.judging.verifiers import TOOL_LOOP, repeats_call
from tests.conftest import ctx
from tests.unit.test_conversations_tools import WEATHER, call, models

ECHOED = [
    HumanMessage("Weather in Paris?"),
    call(city="Paris"),
    ToolMessage("sunny and 21 C in Paris", tool_call_id="c1"),
]
RESTATED = 'function.get_weather: {"city": "Paris"}'


def test_a_restated_call_is_a_tool_loop_even_when_the_result_echoes_its_arguments():
    assert repeats_call(ECHOED, AIMessage(RESTATED)).startswith(f"{TOOL_LOOP}: restates the call of get_weather")
    assert repeats_call(ECHOED, AIMessage("get_weather says it is sunny in Paris.")) is None  # uses the result
    assert repeats_call(ECHOED, AIMessage("It is 21 C in Paris.")) is None
    assert repeats_call(ECHOED, AIMessage("Paris is the capital of France.")) is None  # not a restatement


def test_when_every_model_restates_the_call_the_answer_is_the_echoing_result(fusion):
    spec, _, _ = models(RESTATED, RESTATED)
    fusion(spec)
    out = graph.invoke({"messages": ECHOED, "tools": [WEATHER]}, context=ctx())
    (result,) = out["results"]
    assert [a["verdicts"][0]["detail"].split(":")[0] for a in result["attempts"]] == [TOOL_LOOP, TOOL_LOOP]
    assert out["answer"] == "get_weather returned: sunny and 21 C in Paris" and "tool_calls" not in out
