"""Anthropic's Messages API (POST /v1/messages) through the anthropic client: text, a tool used and its result
answered, stop sequences, the streaming events and errors in Anthropic's shape."""

import json

import anthropic
import pytest
from starlette.testclient import TestClient

from fusiongraph.server.openai_app import app
from tests.unit.test_conversations_tools import WEATHER as CHAT_WEATHER
from tests.unit.test_conversations_tools import call, models
from tests.unit.test_server import KNOBS, one_model

FN = CHAT_WEATHER["function"]
WEATHER = {"name": FN["name"], "description": FN["description"], "input_schema": FN["parameters"]}  # Anthropic's form


@pytest.fixture
def claude():
    with TestClient(app) as client:
        yield anthropic.Anthropic(base_url="http://testserver", api_key="unused", http_client=client, max_retries=0)


def test_a_text_answer(claude, fusion):
    fusion(one_model())
    msg = claude.messages.create(
        model="fusiongraph", max_tokens=64, system="Be brief.",
        messages=[{"role": "user", "content": "Capital of France?"}], extra_body={"fusiongraph": KNOBS},
    )  # fmt: skip
    assert msg.type == "message" and msg.role == "assistant" and msg.stop_reason == "end_turn"
    assert [b.type for b in msg.content] == ["text"] and msg.content[0].text == "GOOD: Paris"
    assert msg.usage.output_tokens > 0 and msg.usage.input_tokens > 0


def test_a_tool_is_used_then_its_result_answered(claude, fusion):
    spec, cheap, strong = models(call(city="Paris"), call(city="Paris"))
    fusion(spec)
    first = claude.messages.create(
        model="fusiongraph", max_tokens=64, tools=[WEATHER], tool_choice={"type": "any"},
        messages=[{"role": "user", "content": "Weather in Paris?"}], extra_body={"fusiongraph": KNOBS},
    )  # fmt: skip
    assert first.stop_reason == "tool_use"
    (use,) = first.content
    assert use.type == "tool_use" and use.name == "get_weather" and use.input == {"city": "Paris"}
    reply = "GOOD: sunny in Paris, 21 C."
    spec, cheap, strong = models(reply, reply)
    fusion(spec)
    done = claude.messages.create(
        model="fusiongraph",
        max_tokens=64,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": use.id, "name": use.name, "input": use.input}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny, 21 C"}]},
        ],
        extra_body={"fusiongraph": KNOBS},
    )
    assert done.stop_reason == "end_turn" and done.content[0].text == reply
    (messages, _), *_ = cheap.seen or strong.seen
    assert [type(m).__name__ for m in messages][-3:] == ["HumanMessage", "AIMessage", "ToolMessage"]
    assert messages[-1].content == "sunny, 21 C" and messages[-1].tool_call_id == use.id


def test_stop_sequences_and_streaming(claude, fusion):
    fusion(one_model("GOOD: Paris. Observation: more"))
    msg = claude.messages.create(
        model="fusiongraph", max_tokens=64, stop_sequences=["Observation:"],
        messages=[{"role": "user", "content": "Capital of France?"}], extra_body={"fusiongraph": KNOBS},
    )  # fmt: skip
    assert msg.content[0].text == "GOOD: Paris. " and msg.stop_reason == "stop_sequence"
    assert msg.stop_sequence == "Observation:"
    with claude.messages.stream(
        model="fusiongraph", max_tokens=64, messages=[{"role": "user", "content": "Capital of France?"}],
        extra_body={"fusiongraph": KNOBS},
    ) as stream:  # fmt: skip
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "GOOD: Paris. Observation: more" and final.stop_reason == "end_turn"


def test_errors_are_in_anthropics_shape(claude, fusion):
    fusion(one_model())
    with pytest.raises(anthropic.BadRequestError) as bad:
        claude.messages.create(model="fusiongraph", max_tokens=64, messages=[])
    assert bad.value.body["type"] == "error" and bad.value.body["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.BadRequestError):
        claude.messages.create(
            model="fusiongraph", max_tokens=64, messages=[{"role": "user", "content": "x"}],
            tools=[{"type": "web_search_20250305", "name": "web_search"}],
        )  # fmt: skip


def test_structured_output_gives_json_of_the_schema(claude, fusion):
    """Anthropic's structured outputs (``output_config.format``, and its beta name ``output_format``): a text
    block holding JSON that the schema validates; a model whose JSON misses the schema is not the answer."""
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    spec, cheap, strong = models('{"town": "Paris"}', '{"city": "Paris"}')
    fusion(spec)
    for field in ("output_config", "output_format"):
        fmt = {"type": "json_schema", "schema": schema}
        msg = claude.messages.create(
            model="fusiongraph", max_tokens=64, messages=[{"role": "user", "content": "Capital of France as JSON"}],
            extra_body={"fusiongraph": KNOBS, field: {"format": fmt} if field == "output_config" else fmt},
        )  # fmt: skip
        assert [b.type for b in msg.content] == ["text"] and json.loads(msg.content[0].text) == {"city": "Paris"}
        assert msg.stop_reason == "end_turn"
    with pytest.raises(anthropic.BadRequestError) as bad:
        claude.messages.create(
            model="fusiongraph", max_tokens=64, messages=[{"role": "user", "content": "x"}],
            extra_body={"output_config": {"format": {"type": "xml"}}},
        )  # fmt: skip
    assert "output_config.format" in bad.value.body["error"]["message"]
