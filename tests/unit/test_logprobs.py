"""Token log-probabilities and their alternatives (``top_logprobs``): what a model's reply carries, what an
attempt keeps, and what the endpoint sends, whole and streamed (fake models only; the local kind's binding
and the llama.cpp processor are in test_model_kinds.py, a real GGUF in tests/integration)."""

from __future__ import annotations

import json

from langchain_core.messages import AIMessage

from fusiongraph.judging.kinds.key_confidence import token_entries, token_pieces
from fusiongraph.records import new_attempt
from fusiongraph.server.response import answer_logprobs, delivered_logprobs
from tests.fakes import ScriptedChat
from tests.unit.test_server import chat as server_chat

# the answer cache off: a cached answer comes from no model call, so it has no log-probabilities
KNOBS = {"planner_model": "planner", "judge_model": "judge", "budget_usd": 1.0, "guides": 0, "cache": False}
FREE = {"price_in": 0.0, "price_out": 0.0, "logprobs": True}  # an API model that returns them


class AlternativesChat(ScriptedChat):
    """As an OpenAI-style API answers when asked for ``logprobs``: each token (4 characters of the reply) with
    its log-probability and ``top_logprobs`` alternatives, the chosen token first."""

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        result = super()._generate(messages, stop, run_manager, **kwargs)
        message = result.generations[0].message
        if kwargs.get("logprobs"):
            text, k = message.text, kwargs.get("top_logprobs") or 0
            message.response_metadata["logprobs"] = {
                "content": [
                    {
                        "token": text[i : i + 4],
                        "logprob": -0.25,
                        "top_logprobs": [{"token": text[i : i + 4], "logprob": -0.25}]
                        + [{"token": f"<alt{j}>", "logprob": -1.0 - j} for j in range(1, k)],
                    }
                    for i in range(0, len(text), 4)
                ],
                "refusal": None,
            }
        return result


def chat(client, content="What is the capital of France?", **extra):
    return server_chat(client, content, **{"fusiongraph": dict(KNOBS)} | extra)


def sse_events(response) -> list:
    lines = [line for line in response.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line[6:]) for line in lines[:-1]]


def content_events(events) -> list[dict]:
    return [e["choices"][0] for e in events if e.get("choices") and e["choices"][0]["delta"].get("content")]


# --- what a reply carries, what an attempt keeps ------------------------------------------------------------


def test_token_entries_read_the_alternatives_of_openai_style_and_llama_cpp_replies():
    openai_style = AIMessage(
        "Lima",
        response_metadata={
            "logprobs": {
                "content": [
                    {
                        "token": "L",
                        "logprob": -0.4,
                        "top_logprobs": [{"token": "L", "logprob": -0.4}, {"token": "C", "logprob": -1.3}],
                    },
                    {"token": "ima", "logprob": -0.2, "top_logprobs": []},
                    {"token": None, "logprob": None},
                ]
            }
        },
    )
    assert token_entries(openai_style) == [("L", -0.4, [("L", -0.4), ("C", -1.3)]), ("ima", -0.2, [])]
    assert token_pieces(openai_style) == [("L", -0.4), ("ima", -0.2)]  # what the judges read: unchanged
    meta = {"token_texts": ["L", "ima"], "token_logprobs": [-0.4, -0.2]}
    local = AIMessage("Lima", response_metadata=meta | {"token_top": [[["L", -0.4], ["C", -1.3]], [["ima", -0.2]]]})
    assert token_entries(local) == [("L", -0.4, [("L", -0.4), ("C", -1.3)]), ("ima", -0.2, [("ima", -0.2)])]
    misaligned = AIMessage("Lima", response_metadata=meta | {"token_top": [[["L", -0.4]]]})
    assert token_entries(misaligned) == [("L", -0.4, []), ("ima", -0.2, [])]


def test_an_attempt_keeps_the_alternatives_as_each_tokens_third_element():
    with_alts = new_attempt(
        "m", [], 0.1, answer="Lima", logprobs=[("L", -0.4, [("L", -0.4), ("C", -1.3)]), ("ima", -0.2, [])]
    )
    assert with_alts["logprobs"] == [["L", -0.4, [["L", -0.4], ["C", -1.3]]], ["ima", -0.2, []]]
    plain = new_attempt("m", [], 0.1, answer="Lima", logprobs=[("L", -0.4, []), ("ima", -0.2)])
    assert plain["logprobs"] == [["L", -0.4], ["ima", -0.2]]  # no alternatives given: as before


def _out(logprobs, answer="Hi there") -> dict:
    attempt = {"model": "m", "answer": answer, "logprobs": logprobs}
    return {"answer": answer, "results": [{"answer": answer, "answered_by": "m", "attempts": [attempt]}]}


def test_answer_logprobs_fill_top_logprobs_up_to_the_number_asked():
    out = _out([["Hi", -0.1, [["Hi", -0.1], ["Hello", -2.0], ["Hey", -3.0]]], [" there", -0.2, [[" there", -0.2]]]])
    lps, note = answer_logprobs(out, "Hi there", 2)
    assert note is None and lps["refusal"] is None
    first, second = lps["content"]
    assert first["token"] == "Hi" and first["bytes"] == list(b"Hi")
    assert first["top_logprobs"] == [
        {"token": "Hi", "logprob": -0.1, "bytes": list(b"Hi")},
        {"token": "Hello", "logprob": -2.0, "bytes": list(b"Hello")},
    ]
    assert [t["token"] for t in second["top_logprobs"]] == [" there"]  # fewer given than asked: what there is
    assert all(t["top_logprobs"] == [] for t in answer_logprobs(out, "Hi there", 0)[0]["content"])
    lps, note = answer_logprobs(_out([["Hi", -0.1], [" there", -0.2]]), "Hi there", 2)
    assert [t["top_logprobs"] for t in lps["content"]] == [[], []]
    assert "only each chosen token" in note  # asked, and the model gave none
    assert answer_logprobs(_out([["Hi", -0.1], [" there", -0.2]]), "Hi there", None)[1] is None
    cut, _ = delivered_logprobs(out, "Hi", True, 1)  # cut at a stop sequence: the tokens up to the cut
    assert [t["token"] for t in cut["content"]] == ["Hi"]
    cut, _ = delivered_logprobs(out, "Hi th", True, 1)  # the last token runs past the cut
    assert [t["token"] for t in cut["content"]] == ["Hi", " there"]
    cached = {"answer": "Hi there", "results": [{"answer": "Hi there", "cache": {"model": "m"}, "attempts": []}]}
    lps, note = answer_logprobs(cached, "Hi there", 2)
    assert lps is None and "answer cache" in note


# --- the endpoint -------------------------------------------------------------------------------------------


def test_the_endpoint_returns_the_answering_calls_alternatives(client, fusion):
    cheap = AlternativesChat(script=lambda p: "GOOD: Paris")
    fusion({"cheap": (dict(FREE), cheap)})
    body = chat(client, logprobs=True, top_logprobs=3).json()
    assert cheap.seen[-1][1] | {"logprobs": True, "top_logprobs": 3} == cheap.seen[-1][1]  # the kind's hook
    content = body["choices"][0]["logprobs"]["content"]
    assert "".join(t["token"] for t in content) == "GOOD: Paris"
    for t in content:
        assert len(t["top_logprobs"]) == 3 and t["top_logprobs"][0]["token"] == t["token"]
        assert t["logprob"] == max(a["logprob"] for a in t["top_logprobs"])
    assert "logprobs_note" not in body["fusiongraph"]
    (attempt,) = body["fusiongraph"]["results"][0]["attempts"]
    assert attempt["logprobs"][0] == ["GOOD", -0.25, [["GOOD", -0.25], ["<alt1>", -2.0], ["<alt2>", -3.0]]]
    chat(client)  # no logprobs asked: the model is not asked for them
    assert "logprobs" not in cheap.seen[-1][1] and chat(client).json()["choices"][0]["logprobs"] is None


def test_an_api_model_not_known_to_return_logprobs_is_not_asked_for_them(client, fusion):
    """Many APIs reject ``logprobs`` (reasoning models, some providers): only a roster entry with
    ``logprobs: true`` is sent it; the reply says why it has none."""
    cheap = AlternativesChat(script=lambda p: "GOOD: Paris")
    fusion({"cheap": ({"price_in": 0.0, "price_out": 0.0}, cheap)})
    body = chat(client, logprobs=True, top_logprobs=3).json()
    assert "logprobs" not in cheap.seen[-1][1] and "top_logprobs" not in cheap.seen[-1][1]
    assert (
        body["choices"][0]["logprobs"] is None and "no token log-probabilities" in body["fusiongraph"]["logprobs_note"]
    )


def test_a_streamed_reply_with_logprobs_sends_each_token_with_its_logprob(client, fusion):
    fusion({"cheap": (dict(FREE), AlternativesChat(script=lambda p: "GOOD: Paris"))})
    events = sse_events(chat(client, stream=True, logprobs=True, top_logprobs=2))
    choices = content_events(events)
    assert "".join(c["delta"]["content"] for c in choices) == "GOOD: Paris"
    for c in choices:  # one token per chunk, as OpenAI streams them
        (tok,) = c["logprobs"]["content"]
        assert tok["token"] == c["delta"]["content"] and tok["logprob"] == -0.25
        assert tok["bytes"] == list(tok["token"].encode()) and len(tok["top_logprobs"]) == 2
        assert c["logprobs"]["refusal"] is None
    last = events[-1]
    assert last["choices"][0]["finish_reason"] == "stop" and last["choices"][0]["logprobs"] is None
    assert "logprobs_note" not in last["fusiongraph"] and last["fusiongraph"]["streamed_live"] is False
    # cut at a stop sequence on a token's edge: still token by token
    choices = content_events(sse_events(chat(client, stream=True, logprobs=True, stop="ris")))
    assert [c["delta"]["content"] for c in choices] == ["GOOD", ": Pa"] and all(c["logprobs"] for c in choices)


def test_a_streamed_reply_whose_tokens_are_not_the_answer_is_text_with_a_note(client, fusion):
    fusion({"cheap": (dict(FREE), AlternativesChat(script=lambda p: "GOOD: Paris"))})
    events = sse_events(chat(client, stream=True, logprobs=True, stop=" Paris"))  # cut inside ": Pa"
    choices = content_events(events)
    assert "".join(c["delta"]["content"] for c in choices) == "GOOD:" and all(not c["logprobs"] for c in choices)
    assert "do not join" in events[-1]["fusiongraph"]["logprobs_note"]
    fusion({"cheap": (dict(FREE), ScriptedChat(script=lambda p: "GOOD: Paris"))})  # gives no logprobs
    events = sse_events(chat(client, stream=True, logprobs=True))
    assert "".join(c["delta"]["content"] for c in content_events(events)) == "GOOD: Paris"
    assert "returns no token log-probabilities" in events[-1]["fusiongraph"]["logprobs_note"]
    events = sse_events(chat(client, stream=True))  # not asked: no logprobs, no note
    assert all(not c["logprobs"] for c in content_events(events)) and "logprobs_note" not in events[-1]["fusiongraph"]


def test_the_openai_client_reads_logprobs_streamed_and_whole(client, fusion):
    import openai
    from openai.types.chat import ChatCompletionTokenLogprob

    fusion({"cheap": (dict(FREE), AlternativesChat(script=lambda p: "GOOD: Paris"))})
    oai = openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client)
    ask = dict(
        model="fusiongraph",
        messages=[{"role": "user", "content": "Capital of France?"}],
        logprobs=True,
        top_logprobs=2,
        extra_body={"fusiongraph": KNOBS},
    )
    chunks = list(oai.chat.completions.create(stream=True, **ask))
    tokens = [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert all(isinstance(t, ChatCompletionTokenLogprob) for t in tokens)
    assert (
        "".join(t.token for t in tokens)
        == "GOOD: Paris"
        == "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    )
    assert [a.token for a in tokens[0].top_logprobs] == ["GOOD", "<alt1>"]
    done = oai.chat.completions.create(**ask)
    assert [t.token for t in done.choices[0].logprobs.content] == [t.token for t in tokens]
    assert len(done.choices[0].logprobs.content[-1].top_logprobs) == 2
