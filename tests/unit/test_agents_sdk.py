"""The OpenAI Agents SDK's default model (the Responses API) with a function tool and a multi-turn run, against
the endpoint in-process with scripted models."""

import asyncio

import httpx
from agents import Agent, ModelSettings, OpenAIResponsesModel, RunConfig, Runner, function_tool, set_tracing_disabled
from openai import AsyncOpenAI

from fusiongraph.server.openai_app import app
from tests.unit.test_conversations_tools import call, models
from tests.unit.test_server import KNOBS


@function_tool
def get_weather(city: str) -> str:
    """Current weather of a city."""
    return f"sunny, 21 C in {city}"


def test_an_agent_calls_its_tool_and_answers_with_the_result(fusion):
    set_tracing_disabled(True)

    def cheap(prompt):  # first a call of the tool, then (once its result is in the conversation) an answer
        return "GOOD: it is sunny, 21 C." if "sunny, 21 C" in prompt else call(name="get_weather", city="Paris")

    spec, cheap_chat, strong = models(cheap, cheap)
    fusion(spec)

    async def run():
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
        client = AsyncOpenAI(base_url="http://testserver/v1", api_key="unused", http_client=http, max_retries=0)
        model = OpenAIResponsesModel(model="fusiongraph", openai_client=client)
        agent = Agent(
            name="weather",
            instructions="Use the tool.",
            tools=[get_weather],
            model=model,
            model_settings=ModelSettings(extra_body={"fusiongraph": KNOBS}),
        )
        first = await Runner.run(agent, "What is the weather in Paris?", run_config=RunConfig(tracing_disabled=True))
        second = await Runner.run(
            agent, first.to_input_list() + [{"role": "user", "content": "And tomorrow?"}],
            run_config=RunConfig(tracing_disabled=True),
        )  # fmt: skip
        await http.aclose()
        return first, second

    first, second = asyncio.run(run())
    kinds = [item.type for item in first.new_items]
    assert kinds == ["tool_call_item", "tool_call_output_item", "message_output_item"]
    assert first.final_output == "GOOD: it is sunny, 21 C."
    assert second.final_output  # the multi-turn run: the whole conversation sent back as input items
