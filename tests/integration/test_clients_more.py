"""More real clients against a real `langgraph dev` on the embedded default (SmolLM2-135M, no API key): litellm
(a plain, a streamed and a tool-calling completion), the Vercel AI SDK from npm (`generateText`, `streamText`,
`generateObject` with a zod schema and a multi-step tool loop on the chat-completions provider; `generateText`
on its default Responses provider) and the OpenAI Agents SDK through its chat-completions model. One server for
the module (the `server` fixture of test_clients.py); the npm packages go into the same cache dir as the OpenAI
JS client's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest

from tests.integration.test_clients import LOCAL, TIME, WEATHER_PARAMS, run_js, server, weather_agent  # noqa: F401 (a fixture)
from tests.unit.test_conversations_tools import WEATHER

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(600),
    pytest.mark.filterwarnings("ignore:Item .* is using the `ReadOnly` qualifier"),  # pydantic on litellm's types
]

# litellm offline: its bundled model cost map (no fetch from GitHub), its bundled copies of anything else it would
# fetch (LITELLM_OFFLINE_MODE); telemetry off below (`litellm.telemetry`, for the versions that have it)
LITELLM_ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_OFFLINE_MODE": "true"}
# the Vercel AI SDK: majors that go together (ai 5 and @ai-sdk/openai 2 share @ai-sdk/provider 2)
AI_SDK = ("ai@5", "@ai-sdk/openai@2", "zod@3")


# ------------------------------------------------------------------------------------------------ litellm


@pytest.fixture(scope="module")
def litellm():
    with pytest.MonkeyPatch.context() as mp:
        for name, value in LITELLM_ENV.items():
            mp.setenv(name, value)
        import litellm

        litellm.telemetry = False
        litellm.suppress_debug_info = True
        yield litellm


def _litellm_kwargs(url: str, **extra) -> dict:
    return {
        "model": "openai/fusiongraph",
        "api_base": f"{url}/v1",
        "api_key": "unused",
        "extra_body": {"fusiongraph": LOCAL},
        "timeout": 300,
        "num_retries": 0,
        **extra,
    }


def test_litellm_gets_an_answer_with_the_delivered_answers_usage(litellm, server):  # noqa: F811
    reply = litellm.completion(
        **_litellm_kwargs(server, max_tokens=24),
        messages=[{"role": "user", "content": "What is the capital of France?"}],
    )
    choice = reply.choices[0]
    assert choice.message.content.strip() and choice.finish_reason in ("stop", "length")
    usage = reply.usage
    # the answer's own tokens (at most max_tokens), not the decomposer's, judges' and answerer's spend
    assert 0 < usage.completion_tokens <= 24 and usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    spent = reply.model_extra["fusiongraph"]["summary"]
    assert spent["tokens_in"] + spent["tokens_out"] > usage.total_tokens


def test_litellm_streams_an_answer(litellm, server):  # noqa: F811
    stream = litellm.completion(
        **_litellm_kwargs(server, max_tokens=24, stream=True),
        messages=[{"role": "user", "content": "Name a colour."}],
    )
    text, finish, chunks = "", None, 0
    for chunk in stream:
        chunks += 1
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
    assert text.strip() and finish in ("stop", "length") and chunks >= 2


def test_litellm_gets_a_valid_call_of_the_named_tool(litellm, server):  # noqa: F811
    reply = litellm.completion(
        **_litellm_kwargs(server, max_tokens=48),
        messages=[{"role": "user", "content": "What is the weather in Paris right now?"}],
        tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    (tool_call,) = choice.message.tool_calls
    assert tool_call.function.name == "get_weather" and tool_call.id
    jsonschema.validate(json.loads(tool_call.function.arguments), WEATHER_PARAMS)


# ------------------------------------------------------------------------------------------ Vercel AI SDK


@pytest.fixture(scope="session")
def ai_sdk():
    """The Vercel AI SDK (`ai`, `@ai-sdk/openai`, `zod`) in the npm cache dir of the OpenAI JS client (installed
    once), or a skip with the reason when node is missing."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        print("SKIP: the Vercel AI SDK tests need node and npm, which are not on PATH")
        pytest.skip("node/npm not on PATH: the Vercel AI SDK tests need them")
    cache = Path(os.environ.get("FUSIONGRAPH_NPM_CACHE") or Path.home() / ".cache" / "fusiongraph-npm")
    wanted = {spec.rsplit("@", 1)[0]: spec.rsplit("@", 1)[1] for spec in AI_SDK}
    installed = {}
    for name in wanted:
        manifest = cache / "node_modules" / name / "package.json"
        if manifest.exists():
            installed[name] = json.loads(manifest.read_text())["version"].split(".")[0]
    if installed != wanted:
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(cache), *AI_SDK],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return node, cache


# a custom fetch adds the fusiongraph knobs to every request body (the SDK's documented hook for that)
JS_PRELUDE = """
const { generateText, streamText, generateObject, tool, stepCountIs } = require("ai");
const { createOpenAI } = require("@ai-sdk/openai");
const { z } = require("zod");
const provider = createOpenAI({
  baseURL: process.env.BASE_URL,
  apiKey: "unused",
  fetch: async (url, init) => {
    const body = JSON.parse(init.body);
    body.fusiongraph = { local_only: true };
    return fetch(url, { ...init, body: JSON.stringify(body) });
  },
});
const chat = provider.chat("fusiongraph");
const out = (value) => console.log(JSON.stringify(value));
"""

JS_GENERATE = """
(async () => {
  const r = await generateText({ model: chat, prompt: "What is the capital of France?", maxOutputTokens: 24 });
  out({ text: r.text, usage: r.usage, finish: r.finishReason });
})().catch((e) => { console.error(e); process.exit(1); });
"""

JS_STREAM = """
(async () => {
  let error = null;
  const r = streamText({
    model: chat, prompt: "Name a colour.", maxOutputTokens: 24, onError: ({ error: e }) => { error = e; },
  });
  let text = "", parts = 0;
  for await (const delta of r.textStream) { text += delta; parts += 1; }
  if (error) throw error;
  out({ text, parts, finish: await r.finishReason, usage: await r.usage });
})().catch((e) => { console.error(e); process.exit(1); });
"""

JS_OBJECT = """
(async () => {
  const schema = z.object({ name: z.string() });
  const r = await generateObject({
    model: chat, schema, maxOutputTokens: 32,
    prompt: "The person is called Ann. Give her name as JSON.",
  });
  out({ object: r.object, valid: schema.safeParse(r.object).success, finish: r.finishReason });
})().catch((e) => { console.error(e); process.exit(1); });
"""

JS_TOOLS = """
(async () => {
  const calls = [];
  const r = await generateText({
    model: chat, maxOutputTokens: 48, stopWhen: stepCountIs(4),
    prompt: "What is the weather in Paris right now?",
    tools: {
      get_weather: tool({
        description: "The current weather of a city",
        inputSchema: z.object({ city: z.string() }),
        execute: async ({ city }) => { calls.push(city); return `sunny and 21 C in ${city}`; },
      }),
    },
    // the first step must call the tool; then the model is free to answer
    prepareStep: ({ stepNumber }) =>
      stepNumber === 0 ? { toolChoice: { type: "tool", toolName: "get_weather" } } : { toolChoice: "auto" },
  });
  out({
    calls, text: r.text, finish: r.finishReason,
    steps: r.steps.map((s) => ({ finish: s.finishReason, tools: s.toolCalls.map((c) => c.toolName), text: s.text })),
  });
})().catch((e) => { console.error(e); process.exit(1); });
"""

JS_RESPONSES = """
(async () => {
  const r = await generateText({
    model: provider.responses("fusiongraph"), prompt: "Name a colour.", maxOutputTokens: 24,
  });
  out({ text: r.text, usage: r.usage, finish: r.finishReason });
})().catch((e) => { console.error(e); process.exit(1); });
"""


def _run_js(ai_sdk, url: str, tmp_path: Path, body: str) -> dict:
    return run_js(ai_sdk, url, tmp_path, JS_PRELUDE + body)


def test_the_vercel_ai_sdk_generates_text(server, ai_sdk, tmp_path):  # noqa: F811
    result = _run_js(ai_sdk, server, tmp_path, JS_GENERATE)
    usage = result["usage"]
    assert result["text"].strip() and result["finish"] in ("stop", "length")
    assert 0 < usage["outputTokens"] <= 24 and usage["inputTokens"] > 0


def test_the_vercel_ai_sdk_streams_text(server, ai_sdk, tmp_path):  # noqa: F811
    result = _run_js(ai_sdk, server, tmp_path, JS_STREAM)
    assert result["text"].strip() and result["finish"] in ("stop", "length") and result["parts"] >= 1
    assert 0 < result["usage"]["outputTokens"] <= 24


def test_the_vercel_ai_sdk_generates_an_object_of_a_zod_schema(server, ai_sdk, tmp_path):  # noqa: F811
    result = _run_js(ai_sdk, server, tmp_path, JS_OBJECT)
    assert result["valid"] and isinstance(result["object"]["name"], str), result


def test_the_vercel_ai_sdk_runs_a_multi_step_tool_loop(server, ai_sdk, tmp_path):  # noqa: F811
    result = _run_js(ai_sdk, server, tmp_path, JS_TOOLS)
    steps = result["steps"]
    assert result["calls"] and steps[0]["tools"] == ["get_weather"] and steps[0]["finish"] == "tool-calls", result
    assert len(steps) >= 2 and not steps[-1]["tools"] and result["finish"] in ("stop", "length"), result
    assert "sunny" in result["text"].lower() or "21" in result["text"], result  # the tool's result is used


def test_the_vercel_ai_sdk_responses_provider_generates_text(server, ai_sdk, tmp_path):  # noqa: F811
    result = _run_js(ai_sdk, server, tmp_path, JS_RESPONSES)
    assert result["text"].strip() and result["finish"] in ("stop", "length")
    assert 0 < result["usage"]["outputTokens"] <= 24


# ------------------------------------------------------------------- OpenAI Agents SDK (chat completions)


def test_the_openai_agents_sdk_chat_completions_model_runs_a_tool_using_agent(server):  # noqa: F811
    import asyncio

    from agents import OpenAIChatCompletionsModel, Runner, set_tracing_disabled

    set_tracing_disabled(True)
    calls: list = []

    async def run():
        agent = weather_agent(server, OpenAIChatCompletionsModel, calls)
        return await Runner.run(agent, "What is the weather in Paris right now?", max_turns=4)

    result = asyncio.run(run())
    kinds = [item.type for item in result.new_items]
    assert calls and kinds[:2] == ["tool_call_item", "tool_call_output_item"], kinds
    assert kinds[-1] == "message_output_item", kinds
    final = str(result.final_output)
    assert "sunny" in final.lower() or "21" in final, final  # the tool's result is used
