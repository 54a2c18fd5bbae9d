"""The tests of tests/unit/test_server.py that need the real thing (a shipped GGUF, a llama.cpp server, `langgraph dev`)."""

from __future__ import annotations

import pytest


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_langgraph_dev_serves_the_graph_and_the_openai_endpoint(langgraph_dev):
    from langgraph_sdk import get_sync_client

    url, log_path = langgraph_dev
    context = {"local_only": True, "max_tokens": 24}
    question = {"query": "What is the capital of France?"}
    client = get_sync_client(url=url)
    assistants = client.assistants.search(graph_id="fusion")
    assert assistants and assistants[0]["graph_id"] == "fusion"

    # a stateless run (the first one loads the local model, the embedder and the store)
    out = client.runs.wait(None, "fusion", input=question, context=context)
    assert isinstance(out, dict) and out["answer"].strip(), out
    assert out["results"][0]["attempts"][0]["model"] == "smollm2-135m"

    # a run on a thread: the output lands in the thread's state
    thread = client.threads.create()
    client.runs.wait(thread["thread_id"], "fusion", input={"query": "What is 2 plus 2?"}, context=context)
    state = client.threads.get_state(thread["thread_id"])
    assert state["values"]["answer"].strip()

    # streaming: node updates and the local model's message chunks
    kinds, n_messages = set(), 0
    for part in client.runs.stream(
        None, "fusion", input=question, context=context, stream_mode=["updates", "messages"], stream_subgraphs=True
    ):
        kinds.add(part.event.split("|")[0].split("/")[0])
        n_messages += part.event.startswith("messages")
    assert "updates" in kinds and "messages" in kinds, kinds
    assert n_messages >= 2

    # the mounted OpenAI-compatible endpoint, through the official client
    import openai  # a dependency (the endpoint's response types): missing, the test fails

    oai = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", timeout=120)
    assert [m.id for m in oai.models.list()] == ["fusiongraph"]
    done = oai.chat.completions.create(
        model="fusiongraph",
        max_tokens=24,
        extra_body={"local_only": True},
        messages=[{"role": "user", "content": "What is the capital of France?"}],
    )
    assert done.choices[0].message.content.strip()
    assert done.usage.completion_tokens > 0 and done.usage.prompt_tokens > 0
    assert done.model_extra["fusiongraph"]["results"][0]["answered_by"] == "smollm2-135m"
    stream = oai.chat.completions.create(
        model="fusiongraph",
        max_tokens=24,
        stream=True,
        extra_body={"local_only": True},
        messages=[{"role": "user", "content": "Name a colour."}],
    )
    chunks = list(stream)
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(deltas).strip()
    final = chunks[-1].model_extra["fusiongraph"]
    assert final["streamed_live"] is True  # local_only: one answering model, its tokens are forwarded live
    assert len(deltas) >= 2 and "".join(deltas) == final["results"][0]["answer"][:500]
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model="fusiongraph", messages=[{"role": "user", "content": ""}])


def _gauge_sum(metrics: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(name))


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_a_client_that_leaves_cancels_its_run_on_a_real_server(langgraph_dev):
    """Through uvicorn and LangGraph: a non-streamed client that times out and a streamed one that stops
    reading both cancel their runs (counted), and the worker holds no run afterwards."""
    import time

    import httpx

    url, log_path = langgraph_dev
    body = {
        "model": "fusiongraph",
        "messages": [{"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}],
        "max_tokens": 256,
        "fusiongraph": {"local_only": True, "cache": False, "guides": 0},
    }
    before = _gauge_sum(httpx.get(f"{url}/metrics").text, "fusiongraph_cancelled_runs_total")
    with pytest.raises(httpx.TimeoutException):  # gives up long before any local model can answer
        httpx.post(f"{url}/v1/chat/completions", json=body, timeout=3)
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body | {"stream": True}, timeout=60) as r:
        assert r.status_code == 200
        for line in r.iter_lines():  # the first event (the role), then the client goes away
            if line.startswith("data:"):
                break
    deadline, metrics = time.monotonic() + 60, ""
    while time.monotonic() < deadline:
        metrics = httpx.get(f"{url}/metrics").text
        cancelled = _gauge_sum(metrics, "fusiongraph_cancelled_runs_total")
        running = _gauge_sum(metrics, "fusiongraph_running_runs ")
        if cancelled >= before + 2 and running == 0 and _gauge_sum(metrics, "fusiongraph_queued_runs ") == 0:
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"not cancelled and idle within 60 s:\n{metrics[-3000:]}\n{log_path.read_text()[-2000:]}")
    assert "fusiongraph_cancelled_runs_total{stage=" in metrics
