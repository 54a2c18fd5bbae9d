"""The Responses API (POST /v1/responses) through the official openai client: text, a function tool and its
result, a conversation continued with previous_response_id, structured output and the streaming events."""

import json

import openai
import pytest
from starlette.testclient import TestClient

from fusiongraph.server.openai_app import app
from tests.unit.test_conversations_tools import call, models
from tests.unit.test_server import KNOBS, one_model

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture
def oai():
    with TestClient(app) as client:
        yield openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client, max_retries=0)


def test_a_text_answer_and_a_continued_conversation(oai, fusion):
    spec = one_model()
    fusion(spec)
    first = oai.responses.create(model="fusiongraph", input="Capital of France?", extra_body={"fusiongraph": KNOBS})
    assert first.status == "completed" and first.output_text == "GOOD: Paris"
    assert first.usage.output_tokens > 0 and first.model_extra["fusiongraph"]["results"][0]["answered_by"] == "cheap"
    second = oai.responses.create(
        model="fusiongraph",
        input="And of Italy?",
        instructions="Answer briefly.",
        previous_response_id=first.id,
        extra_body={"fusiongraph": KNOBS},
    )
    assert second.output_text == "GOOD: Paris"
    messages, _ = spec["cheap"][1].seen[-1]  # the answering call saw the earlier turn and its answer
    assert [(type(m).__name__, m.content) for m in messages][-3:] == [
        ("HumanMessage", "Capital of France?"),
        ("AIMessage", "GOOD: Paris"),
        ("HumanMessage", "And of Italy?"),
    ]
    with pytest.raises(openai.NotFoundError):
        oai.responses.create(model="fusiongraph", input="x", previous_response_id="resp_nope")


def test_a_function_tool_is_called_then_its_output_is_answered(oai, fusion):
    spec, cheap, strong = models(call(city="Paris"), call(city="Paris"))
    fusion(spec)
    r = oai.responses.create(
        model="fusiongraph", input="Weather in Paris?", tools=[WEATHER], tool_choice="required",
        extra_body={"fusiongraph": KNOBS},
    )  # fmt: skip
    (item,) = r.output
    assert (
        item.type == "function_call" and item.name == "get_weather" and json.loads(item.arguments) == {"city": "Paris"}
    )
    _, kwargs = cheap.seen[0]
    assert kwargs["tools"][0]["function"]["name"] == "get_weather"
    reply = "GOOD: it is sunny in Paris, 21 C."
    spec, cheap, strong = models(reply, reply)
    fusion(spec)
    after = oai.responses.create(
        model="fusiongraph",
        previous_response_id=r.id,
        input=[{"type": "function_call_output", "call_id": item.call_id, "output": "sunny, 21 C"}],
        tools=[WEATHER],
        extra_body={"fusiongraph": KNOBS},
    )
    assert after.output_text == reply
    (messages, _), *_ = cheap.seen or strong.seen
    assert [type(m).__name__ for m in messages][-3:] == [
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
    ]  # the call, its result


def test_streaming_events_in_the_responses_shape(oai, fusion):
    fusion(one_model())
    events = list(
        oai.responses.create(
            model="fusiongraph", input="Capital of France?", stream=True, extra_body={"fusiongraph": KNOBS}
        )
    )
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds and "response.output_item.done" in kinds
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "GOOD: Paris" and events[-1].response.output_text == "GOOD: Paris"
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_bad_responses_requests_are_openai_errors(oai, fusion):
    fusion(one_model())
    with pytest.raises(openai.BadRequestError) as bad:
        oai.responses.create(model="fusiongraph", input=[{"type": "web_search_call"}])
    assert bad.value.body["param"] == "input[0].type"
    with pytest.raises(openai.BadRequestError) as bad:
        oai.responses.create(model="fusiongraph", input="x", tools=[{"type": "web_search"}])
    assert bad.value.body["param"] == "tools[0].type"
