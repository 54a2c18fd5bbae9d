"""Real clients against a real `langgraph dev` on the embedded default (SmolLM2-135M, no API key): the official
`openai` Python client, LangChain's ChatOpenAI (bind_tools, with_structured_output), an agent built with
LangGraph's prebuilt ReAct agent completing a tool loop, threads through the LangGraph SDK, the OpenAI JS client
from npm streaming and creating responses, the Responses API through the openai client and the OpenAI Agents SDK's default model, and
the Messages API through the anthropic client, each with a tool. One server for the whole module."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest

from tests.devserver import run_langgraph_dev
from tests.unit.test_conversations_tools import WEATHER

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

LOCAL = {"local_only": True}
WEATHER_PARAMS = WEATHER["function"]["parameters"]
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The current time in a time zone",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]},
    },
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with run_langgraph_dev(tmp_path_factory.mktemp("clients")) as (url, _log):
        yield url


@pytest.fixture(scope="module")
def oai(server):
    import openai

    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", timeout=300)


def test_a_named_tool_choice_returns_a_valid_call_of_that_tool(oai):
    reply = oai.chat.completions.create(
        model="fusiongraph",
        max_tokens=48,
        extra_body=LOCAL,
        messages=[{"role": "user", "content": "What is the weather in Paris right now?"}],
        tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (tool_call,) = choice.message.tool_calls
    assert tool_call.function.name == "get_weather" and tool_call.id
    jsonschema.validate(json.loads(tool_call.function.arguments), WEATHER_PARAMS)
    fg = reply.model_extra["fusiongraph"]
    assert fg["subtasks"] == ["What is the weather in Paris right now?"]  # a tool request is not decomposed
    assert fg["results"][0]["answered_by"] == "smollm2-135m"


def test_a_streamed_tool_call_arrives_as_openai_tool_call_deltas(oai):
    stream = oai.chat.completions.create(
        model="fusiongraph",
        max_tokens=48,
        stream=True,
        extra_body=LOCAL,
        messages=[{"role": "user", "content": "Weather in Rome?"}],
        tools=[WEATHER],
        tool_choice="required",
    )
    name, arguments, finish, ids = "", "", None, set()
    for chunk in stream:
        if not chunk.choices:
            continue
        for tc in chunk.choices[0].delta.tool_calls or []:
            assert tc.index == 0
            ids |= {tc.id} if tc.id else set()
            name += (tc.function.name or "") if tc.function else ""
            arguments += (tc.function.arguments or "") if tc.function else ""
        finish = chunk.choices[0].finish_reason or finish
    assert name == "get_weather" and finish == "tool_calls" and len(ids) == 1
    jsonschema.validate(json.loads(arguments), WEATHER_PARAMS)


def test_json_object_returns_parseable_json(oai):
    reply = oai.chat.completions.create(
        model="fusiongraph",
        max_tokens=64,
        extra_body=LOCAL,
        response_format={"type": "json_object"},
        messages=[{"role": "user", "content": "Give the name and age of Ann, who is 31, as JSON."}],
    )
    message = reply.choices[0].message
    assert message.refusal is None and isinstance(json.loads(message.content), dict)


def test_an_image_with_no_vision_model_is_a_400_naming_the_capability(oai):
    import openai

    with pytest.raises(openai.BadRequestError) as err:
        oai.chat.completions.create(
            model="fusiongraph",
            extra_body=LOCAL,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in this picture?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                    ],
                }
            ],
        )
    body = err.value.body
    assert err.value.status_code == 400 and body["code"] == "capability_not_available"
    assert "'vision' capability" in body["message"] and "models.yaml" in body["message"]


def test_a_three_turn_conversation_answers_only_the_last_turn(oai):
    reply = oai.chat.completions.create(
        model="fusiongraph",
        max_tokens=32,
        extra_body=LOCAL,
        messages=[
            {"role": "user", "content": "Say hello."},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Now say goodbye in French."},
        ],
    )
    fg = reply.model_extra["fusiongraph"]
    assert fg["standalone"] == "Now say goodbye in French."
    assert fg["subtasks"] and not any("Say hello" in s or "hello" in s.lower() for s in fg["subtasks"])
    assert reply.choices[0].message.content.strip()


def test_a_thread_continues_a_conversation_of_messages(server):
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=server)
    thread = client.threads.create()
    context = {"local_only": True, "max_tokens": 24, "llm_judge": False}
    client.runs.wait(
        thread["thread_id"], "fusion", input={"messages": [{"role": "user", "content": "Say hello."}]}, context=context
    )
    out = client.runs.wait(
        thread["thread_id"],
        "fusion",
        input={"messages": [{"role": "user", "content": "What is the capital of France?"}]},
        context=context,
    )
    assert [m["type"] for m in out["messages"]] == ["human", "ai", "human", "ai"]
    assert out["standalone"] == "What is the capital of France?" and len(out["results"]) == 1
    state = client.threads.get_state(thread["thread_id"])
    assert len(state["values"]["messages"]) == 4


def test_langchain_chatopenai_binds_tools_and_gives_structured_output(server):
    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel

    llm = ChatOpenAI(model="fusiongraph", base_url=f"{server}/v1", api_key="unused", max_tokens=48, extra_body=LOCAL)

    def get_weather(city: str) -> str:
        """The current weather of a city."""
        return "sunny"

    message = llm.bind_tools([get_weather], tool_choice="get_weather").invoke("What is the weather in Oslo?")
    (tool_call,) = message.tool_calls
    assert tool_call["name"] == "get_weather" and isinstance(tool_call["args"].get("city"), str)

    class Person(BaseModel):
        name: str
        age: int

    person = llm.with_structured_output(Person).invoke("Ann is 31 years old. Give her name and age.")
    assert isinstance(person, Person) and isinstance(person.age, int)


@pytest.mark.filterwarnings("ignore:create_react_agent has been moved")  # its successor needs `langchain`
def test_a_prebuilt_react_agent_completes_a_tool_loop_with_fusiongraph_as_its_model(server):
    from langchain_core.messages import AIMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI
    from langgraph.prebuilt import create_react_agent

    calls = []

    @tool
    def get_weather(city: str) -> str:
        """The current weather of a city."""
        calls.append(city)
        return f"It is sunny and 21 C in {city}."

    llm = ChatOpenAI(model="fusiongraph", base_url=f"{server}/v1", api_key="unused", max_tokens=48, extra_body=LOCAL)
    agent = create_react_agent(llm, [get_weather])
    out = agent.invoke({"messages": [("user", "What is the weather in Paris?")]}, {"recursion_limit": 8})
    messages = out["messages"]
    assert calls, [m.pretty_repr() for m in messages]  # the model called the tool
    assert any(isinstance(m, ToolMessage) for m in messages)
    final = messages[-1]
    assert isinstance(final, AIMessage) and not final.tool_calls and final.text.strip()  # and answered
    assert "sunny" in final.text.lower() or "21" in final.text, final.text  # with the tool's result


@pytest.fixture(scope="session")
def openai_js(tmp_path_factory):
    """The `openai` npm package in a cache dir (installed once), or a skip with the reason when node is missing."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        print("SKIP: the OpenAI JS client test needs node and npm, which are not on PATH")
        pytest.skip("node/npm not on PATH: the OpenAI JS client test needs them")
    cache = Path(os.environ.get("FUSIONGRAPH_NPM_CACHE") or Path.home() / ".cache" / "fusiongraph-npm")
    if not (cache / "node_modules" / "openai" / "package.json").exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(cache), "openai@4"],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return node, cache


def run_js(node_and_cache: tuple[str, Path], url: str, tmp_path: Path, source: str) -> dict:
    """Run a node script against the server (BASE_URL: its /v1) with the npm cache's packages; its last stdout
    line, as JSON."""
    node, cache = node_and_cache
    script = tmp_path / "client.js"
    script.write_text(source)
    env = dict(os.environ, BASE_URL=f"{url}/v1", NODE_PATH=str(cache / "node_modules"))
    run = subprocess.run([node, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


JS_STREAM = """
const OpenAI = require("openai");
const client = new OpenAI({ baseURL: process.env.BASE_URL, apiKey: "unused" });
(async () => {
  const stream = await client.chat.completions.create({
    model: "fusiongraph", stream: true, max_tokens: 24, local_only: true,
    messages: [{ role: "user", content: "Name a colour." }],
  });
  let text = "", finish = null, chunks = 0;
  for await (const chunk of stream) {
    chunks += 1;
    if (chunk.choices.length) {
      text += chunk.choices[0].delta.content || "";
      finish = chunk.choices[0].finish_reason || finish;
    }
  }
  console.log(JSON.stringify({ text, finish, chunks }));
})().catch((e) => { console.error(e); process.exit(1); });
"""


def test_the_openai_js_client_streams_a_reply(server, openai_js, tmp_path):
    result = run_js(openai_js, server, tmp_path, JS_STREAM)
    assert result["text"].strip() and result["finish"] in ("stop", "length") and result["chunks"] >= 3


def test_the_responses_api_with_a_function_tool_and_a_continued_conversation(oai):
    tool = {"type": "function", **WEATHER["function"]}
    first = oai.responses.create(
        model="fusiongraph", input="What is the weather in Paris right now?", tools=[tool], tool_choice="required",
        max_output_tokens=48, extra_body={"fusiongraph": LOCAL},
    )  # fmt: skip
    (item,) = [o for o in first.output if o.type == "function_call"]
    assert item.name == "get_weather" and item.call_id
    jsonschema.validate(json.loads(item.arguments), WEATHER_PARAMS)
    after = oai.responses.create(
        model="fusiongraph", previous_response_id=first.id, tools=[tool], max_output_tokens=48,
        input=[{"type": "function_call_output", "call_id": item.call_id, "output": "sunny and 21 C in Paris"}],
        extra_body={"fusiongraph": LOCAL},
    )  # fmt: skip
    assert after.status == "completed" and after.output
    calls = [(o.name, o.arguments) for o in after.output if o.type == "function_call"]
    if calls:  # a new call, never the one just answered
        assert (item.name, item.arguments) not in calls, calls
    else:  # or an answer that uses the result
        assert "sunny" in after.output_text.lower() or "21" in after.output_text, after.output_text
    events = list(
        oai.responses.create(
            model="fusiongraph", input="What is the capital of France?", stream=True, max_output_tokens=24,
            extra_body={"fusiongraph": LOCAL},
        )
    )  # fmt: skip
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert events[-1].response.output_text.strip()


def test_the_anthropic_client_with_a_tool(server):
    import anthropic

    claude = anthropic.Anthropic(base_url=server, api_key="unused", timeout=300, max_retries=0)
    tool = {"name": "get_weather", "description": WEATHER["function"]["description"], "input_schema": WEATHER_PARAMS}
    first = claude.messages.create(
        model="fusiongraph", max_tokens=48, tools=[tool], tool_choice={"type": "tool", "name": "get_weather"},
        messages=[{"role": "user", "content": "What is the weather in Paris right now?"}],
        extra_body={"fusiongraph": LOCAL},
    )  # fmt: skip
    assert first.stop_reason == "tool_use"
    (use,) = first.content
    jsonschema.validate(use.input, WEATHER_PARAMS)
    done = claude.messages.create(
        model="fusiongraph", max_tokens=48, tools=[tool], extra_body={"fusiongraph": LOCAL},
        messages=[
            {"role": "user", "content": "What is the weather in Paris right now?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": use.id, "name": use.name, "input": use.input}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": use.id, "content": "sunny and 21 C in Paris"}
            ]},
        ],
    )  # fmt: skip
    # the result is used, or a new call made: never the same call again, as a tool_use or restated as text
    if done.stop_reason == "tool_use":
        calls = [(b.name, b.input) for b in done.content if b.type == "tool_use"]
        assert calls and (use.name, use.input) not in calls, calls
    else:
        text = " ".join(b.text for b in done.content if b.type == "text")
        assert "sunny" in text.lower() or "21" in text, text


def weather_agent(server: str, model_class, calls: list | None = None):
    """An Agents SDK agent on `model_class` (its Responses or chat-completions model) with one function tool,
    made to call it first; `calls` collects the cities it was called with."""
    from agents import Agent, ModelSettings, function_tool
    from openai import AsyncOpenAI

    @function_tool
    def get_weather(city: str) -> str:
        """Current weather of a city."""
        (calls if calls is not None else []).append(city)
        return f"sunny and 21 C in {city}"

    client = AsyncOpenAI(base_url=f"{server}/v1", api_key="unused", timeout=300, max_retries=0)
    return Agent(
        name="weather",
        instructions="Answer with the tool's result.",
        tools=[get_weather],
        model=model_class(model="fusiongraph", openai_client=client),
        model_settings=ModelSettings(tool_choice="get_weather", max_tokens=48, extra_body={"fusiongraph": LOCAL}),
    )


def test_the_openai_agents_sdk_default_model_runs_a_tool_using_agent(server):
    import asyncio

    from agents import OpenAIResponsesModel, RunConfig, Runner

    async def run():
        agent = weather_agent(server, OpenAIResponsesModel)
        config = RunConfig(tracing_disabled=True)
        first = await Runner.run(agent, "What is the weather in Paris right now?", run_config=config, max_turns=4)
        second = await Runner.run(
            agent, first.to_input_list() + [{"role": "user", "content": "Thanks. Is that warm?"}], run_config=config,
            max_turns=4,
        )  # fmt: skip
        return first, second

    first, second = asyncio.run(run())
    kinds = [item.type for item in first.new_items]
    assert kinds[:2] == ["tool_call_item", "tool_call_output_item"] and kinds[-1] == "message_output_item"
    assert first.final_output and second.final_output


JS_RESPONSES = """
const OpenAI = require("openai");
const client = new OpenAI({ baseURL: process.env.BASE_URL, apiKey: "unused" });
(async () => {
  const first = await client.responses.create({
    model: "fusiongraph", input: "Name a colour.", max_output_tokens: 24, fusiongraph: { local_only: true },
  });
  const more = await client.responses.create({
    model: "fusiongraph", input: "Another one?", previous_response_id: first.id, max_output_tokens: 24,
    fusiongraph: { local_only: true },
  });
  console.log(JSON.stringify({ first: first.output_text, more: more.output_text, status: more.status }));
})().catch((e) => { console.error(e); process.exit(1); });
"""


def test_the_openai_js_client_creates_responses(server, openai_js, tmp_path):
    result = run_js(openai_js, server, tmp_path, JS_RESPONSES)
    assert result["first"].strip() and result["more"].strip() and result["status"] == "completed"
