"""Model kinds: the registry (a toy kind end to end), the built-in kinds, and the llama.cpp chat model
(langchain-community's ChatLlamaCpp subclassed) against a fake llama.cpp and, marked integration, the real GGUF."""

import threading
import warnings

import httpx
import numpy as np
import openai
import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy
from pydantic import BaseModel
from typing_extensions import TypedDict

warnings.filterwarnings("ignore", module="langchain_community")

from fusiongraph.models import kinds as model_kinds  # noqa: E402
from fusiongraph.models.kinds import MODEL_KINDS, ModelKind, register_kind  # noqa: E402
from fusiongraph.models.local_llm import LocalLlamaChat, SampledTokenLogprobs  # noqa: E402
from fusiongraph.models.roster import ModelSpec, Roster  # noqa: E402


class ToyBusy(Exception):
    """The toy provider's 'try again'."""


class ToyBroken(Exception):
    """The toy provider's 'never works'."""


class Flaky(FakeListChatModel):
    """Raises the given errors first, then answers."""

    errors: list = []
    calls: int = 0

    def _call(self, *args, **kwargs):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return super()._call(*args, **kwargs)


@pytest.fixture
def toy_kind():
    """A kind registered from outside the package, as an application would; removed afterwards."""

    @register_kind
    class ToyKind(ModelKind):
        name = "toy"
        built: list = []

        def validate(self, spec):
            if not spec.model:
                raise ValueError(f"toy model {spec.id!r} needs `model`")

        def unavailable_reason(self, spec, local_only):
            return super().unavailable_reason(spec, local_only) or (
                "the toy is asleep" if spec.model == "asleep" else None
            )

        def build(self, spec, max_tokens, timeout_s):
            model = Flaky(responses=[f"{spec.model} says hi"], errors=list(spec.options.get("errors", [])))
            self.built.append((spec.id, max_tokens, timeout_s, model))
            return model

        def is_transient(self, exc):
            if isinstance(exc, ToyBusy):
                return True
            if isinstance(exc, ToyBroken):
                return False
            return None

    yield MODEL_KINDS["toy"]
    model_kinds.unregister_kind("toy")


def test_a_registered_kind_makes_roster_entries_of_it_buildable(toy_kind, tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text(
        "models:\n  - {id: t1, kind: toy, model: robot, options: {x: 1}}\n  - {id: t2, kind: toy, model: asleep}\n"
    )
    roster = Roster.from_yaml(path)
    assert roster["t1"].model_kind is toy_kind and roster["t1"].options == {"x": 1}
    assert roster.availability(local_only=False) == (["t1"], [{"model": "t2", "reason": "the toy is asleep"}])
    assert roster.availability(local_only=True)[0] == []  # not a local kind
    chat = roster.chat_model("t1", max_tokens=7, timeout_s=3.0)
    assert chat.invoke("hello").content == "robot says hi"
    assert roster.chat_model("t1", 7, 3.0) is chat  # cached per (model, max_tokens, timeout)
    assert toy_kind.built[-1][:3] == ("t1", 7, 3.0)
    with pytest.raises(ValueError, match="toy model 'bad' needs `model`"):
        ModelSpec(id="bad", kind="toy")


def test_a_kinds_transient_errors_are_retried_and_its_other_errors_are_not(toy_kind):
    assert model_kinds.is_transient(ToyBusy()) is True
    assert model_kinds.is_transient(ToyBroken()) is False
    assert model_kinds.is_transient(ValueError()) is False
    roster = Roster(
        [
            ModelSpec(id="busy", kind="toy", model="m", options={"errors": [ToyBusy(), ToyBusy()]}),
            ModelSpec(id="broken", kind="toy", model="m", options={"errors": [ToyBroken()]}),
        ]
    )

    class S(TypedDict):
        model: str
        answer: str

    def call(state: S) -> dict:
        return {"answer": roster.chat_model(state["model"], 8, 1.0).invoke("hi").content}

    builder = StateGraph(S)
    builder.add_node(
        "call",
        call,
        retry_policy=RetryPolicy(
            max_attempts=3, initial_interval=0.01, jitter=False, retry_on=model_kinds.is_transient
        ),
    )
    builder.add_edge(START, "call")
    builder.add_edge("call", END)
    graph = builder.compile()
    assert graph.invoke({"model": "busy"})["answer"] == "m says hi"
    assert roster.chat_model("busy", 8, 1.0).calls == 3  # two transient failures retried
    with pytest.raises(ToyBroken):
        graph.invoke({"model": "broken"})
    assert roster.chat_model("broken", 8, 1.0).calls == 1


def test_the_cascade_retries_what_the_kinds_call_transient(toy_kind):
    from fusiongraph import attempt

    assert attempt.is_transient is model_kinds.is_transient, "the cascade must ask the registered kinds"
    assert attempt.is_transient(ToyBusy()) and not attempt.is_transient(ToyBroken())


def test_an_unknown_kind_names_the_known_ones(tmp_path):
    with pytest.raises(
        ValueError, match="unknown model kind 'anthropic'; known kinds: local, openai, openai_compatible"
    ):
        ModelSpec(id="x", kind="anthropic", model="claude")
    path = tmp_path / "models.yaml"
    path.write_text("models:\n  - {id: x, kind: nope}\n")
    with pytest.raises(ValueError, match=r"(?s)entry 0 \('x'\).*unknown model kind 'nope'; known kinds: local,"):
        Roster.from_yaml(path)


def test_registering_a_taken_name_needs_replace(toy_kind):
    class Again(ModelKind):
        name = "toy"

        def build(self, spec, max_tokens, timeout_s):
            return FakeListChatModel(responses=["again"])

    with pytest.raises(ValueError, match="'toy' is already registered"):
        register_kind(Again)
    register_kind(Again, replace=True)
    assert isinstance(MODEL_KINDS["toy"], Again)
    with pytest.raises(TypeError, match="needs a class attribute `name`"):
        register_kind(type("Nameless", (ModelKind,), {"build": lambda *a: None}))


def _response(status: int, headers: dict | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers or {}, request=httpx.Request("POST", "http://x/v1/chat"))


def test_the_openai_kinds_transient_errors(monkeypatch):
    slept = []
    monkeypatch.setattr("fusiongraph.models.kinds.openai_api.time.sleep", slept.append)
    assert model_kinds.is_transient(
        openai.RateLimitError("slow", response=_response(429, {"retry-after": "2"}), body=None)
    )
    assert slept == [2.0]
    assert not model_kinds.is_transient(
        openai.RateLimitError("slow", response=_response(429, {"retry-after": "60"}), body=None)
    )
    assert model_kinds.is_transient(openai.InternalServerError("boom", response=_response(500), body=None))
    assert model_kinds.is_transient(openai.APITimeoutError(request=httpx.Request("POST", "http://x")))
    assert not model_kinds.is_transient(openai.BadRequestError("bad", response=_response(400), body=None))
    assert not model_kinds.is_transient(openai.APIConnectionError(request=httpx.Request("POST", "http://x")))
    assert model_kinds.is_transient(TimeoutError()) and model_kinds.is_transient(httpx.ReadTimeout("slow"))
    assert not model_kinds.is_transient(ValueError("junk"))


def test_the_builtin_kinds(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("FG_KEY", "sk-test-1234")
    monkeypatch.setenv("FG_MODEL", "gpt-from-env")
    api = ModelSpec(
        id="a", kind="openai", model="gpt-x", model_env="FG_MODEL", api_key_env="FG_KEY", options={"temperature": 0.5}
    )
    chat = Roster([api]).chat_model("a", 64, 9.0)
    assert (chat.model_name, chat.max_retries, chat.request_timeout, chat.temperature) == ("gpt-from-env", 0, 9.0, 0.5)
    assert chat.extra_body == {"max_tokens": 64} and chat.openai_api_key.get_secret_value() == "sk-test-1234"
    assert ModelSpec(id="b", kind="openai", model="m").unavailable_reason(False) == "$OPENAI_API_KEY is not set"
    compat = ModelSpec(id="c", kind="openai_compatible", base_url_env="FG_UNSET_URL")
    assert compat.unavailable_reason(False) == "$FG_UNSET_URL is not set"
    assert compat.unavailable_reason(True) == "local_only is set"
    local = ModelSpec(id="l", kind="local", gguf_path="/nonexistent.gguf")
    assert local.is_local and local.unavailable_reason(True) is None and not compat.is_local
    with pytest.raises(ValueError, match="needs gguf_path"):
        ModelSpec(id="l2", kind="local")
    roster = Roster([local, compat, api])
    assert roster.helper(["l", "c"]) == "c"  # a helper role prefers a non-local model


# --- the local kind: langchain-community's ChatLlamaCpp, subclassed -------------------------------------


class FakeLlama:
    """Stands for llama_cpp.Llama: runs the logits processor over scripted logits, records every call."""

    def __init__(self, tokens=(3, 1, 2), vocab=5):
        self.tokens, self.vocab, self.calls, self.lock = list(tokens), vocab, [], None

    def tokenize(self, text: bytes, add_bos: bool = False):
        return list(text.split())

    def detokenize(self, ids):
        return "".join(f"w{t} " for t in ids).encode()

    def _run(self, kwargs):
        assert self.lock is None or self.lock.locked(), "llama.cpp called without the model's lock"
        self.calls.append(kwargs)
        processors = kwargs.get("logits_processor") or []
        ids = [0]
        for t in self.tokens + [0]:  # the processor sees the logits of each step, then the sampled id
            scores = np.log(np.full(self.vocab, 1.0 / self.vocab, dtype=np.float32))
            for p in processors:
                scores = p(np.array(ids), scores)
            ids.append(t)
        return "".join(f"w{t} " for t in self.tokens).strip()

    def create_chat_completion(self, messages, stream=False, **kwargs):
        kwargs.update(messages=messages, stream=stream)
        text = self._run(kwargs)
        if kwargs.get("response_format"):
            text = '{"score": 7}'  # what the grammar lets through
        if kwargs.get("tool_choice"):
            msg = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_0",
                        "type": "function",
                        "function": {"name": kwargs["tool_choice"]["function"]["name"], "arguments": '{"score": 7}'},
                    }
                ],
            }
        else:
            msg = {"role": "assistant", "content": text}
        usage = {"prompt_tokens": 11, "completion_tokens": len(self.tokens), "total_tokens": 11 + len(self.tokens)}
        if not stream:
            return {"choices": [{"message": msg, "finish_reason": "stop"}], "usage": usage}
        parts = [{"choices": [{"delta": {"role": "assistant"}, "finish_reason": None}]}]
        if kwargs.get("tool_choice"):  # as llama-cpp-python streams a forced tool call: the name in every chunk
            name = kwargs["tool_choice"]["function"]["name"]
            parts += [
                {
                    "choices": [
                        {
                            "delta": {
                                "function_call": {"name": name, "arguments": piece},
                                "tool_calls": [
                                    {
                                        "index": 0,
                                        "id": "call_0",
                                        "type": "function",
                                        "function": {"name": name, "arguments": piece},
                                    }
                                ],
                            },
                            "finish_reason": None,
                        }
                    ]
                }
                for piece in ('{"score"', ": 7", "}")
            ]
            return iter(parts + [{"choices": [{"delta": {}, "finish_reason": "tool_calls"}]}])
        parts += [{"choices": [{"delta": {"content": w + " "}, "finish_reason": None}]} for w in text.split()]
        parts += [{"choices": [{"delta": {}, "finish_reason": "stop"}]}]
        return iter(parts)


@pytest.fixture
def fake_local():
    chat = LocalLlamaChat(model_path="/nonexistent/model.gguf", model_name="tiny", max_tokens=9)
    assert chat.client is None  # ChatLlamaCpp's validator (which loads a model per instance) is replaced
    from fusiongraph.models.local_llm import _LoadedModel

    loaded = _LoadedModel.__new__(_LoadedModel)  # the real class (its compute() block), a fake llama.cpp inside
    loaded.llama, loaded.lock = FakeLlama(), threading.Lock()
    loaded.llama.lock = loaded.lock
    chat._loaded = loaded
    chat.client = loaded.llama
    return chat


class Score(BaseModel):
    score: int


def test_the_local_model_is_langchain_communitys_llama_cpp_chat_model(fake_local):
    from langchain_community.chat_models import ChatLlamaCpp

    assert isinstance(fake_local, ChatLlamaCpp)
    message = fake_local.invoke([SystemMessage("be brief"), HumanMessage(["a list", " of parts"])])
    call = fake_local.client.calls[-1]
    assert call["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "a list of parts"},
    ]
    # greedy, no repeat penalty, this instance's max_tokens: as llama-cpp-python's own defaults
    assert (call["temperature"], call["repeat_penalty"], call["max_tokens"]) == (0.0, 1.0, 9)
    assert message.content == "w3 w1 w2"
    assert message.response_metadata["finish_reason"] == "stop"
    assert message.response_metadata["token_logprobs"] == pytest.approx([np.log(0.2)] * 3)
    assert message.response_metadata["token_texts"] == ["w3 ", "w1 ", "w2 "]  # each sampled token's text
    assert message.usage_metadata == {"input_tokens": 11, "output_tokens": 3, "total_tokens": 14}
    assert fake_local.bind(max_tokens=2).invoke("x") and fake_local.client.calls[-1]["max_tokens"] == 2


def test_the_local_model_streams_with_logprobs_and_usage(fake_local):
    chunks = list(fake_local.stream("count"))
    assert [c.content for c in chunks if c.content] == ["w3 ", "w1 ", "w2 "]
    merged = chunks[0]
    for c in chunks[1:]:
        merged += c
    assert merged.response_metadata["finish_reason"] == "stop"
    assert merged.response_metadata["token_logprobs"] == pytest.approx([np.log(0.2)] * 3)
    assert merged.usage_metadata["output_tokens"] == 3 and merged.usage_metadata["input_tokens"] > 0
    fake_local.streaming = True  # ChatLlamaCpp's streamed invoke: through _stream, without a second lock
    assert fake_local.invoke("count").response_metadata["token_logprobs"]


@pytest.mark.parametrize("streaming", [False, True])  # True: as under LangGraph's stream_mode="messages"
@pytest.mark.parametrize("method", ["function_calling", "json_schema"])
def test_the_local_model_gives_structured_output(fake_local, method, streaming):
    fake_local.streaming = streaming
    out = fake_local.with_structured_output(Score, method=method, include_raw=True).invoke("rate it")
    assert out["parsed"] == Score(score=7) and out["parsing_error"] is None
    assert out["raw"].usage_metadata["output_tokens"] == 3 and out["raw"].response_metadata["token_logprobs"]
    call = fake_local.client.calls[-1]
    assert bool(call.get("stream")) == streaming
    if method == "function_calling":  # a forced tool call: llama.cpp builds a grammar from its parameters
        assert call["tool_choice"] == {"type": "function", "function": {"name": "Score"}}
    else:  # the response format: llama.cpp builds a grammar from the schema
        assert call["response_format"]["schema"] == Score.model_json_schema()
    assert fake_local.with_structured_output(Score).invoke("rate it") == Score(score=7)
    with pytest.raises(ValueError, match="unsupported structured output"):
        fake_local.with_structured_output(Score, method="xml")


def test_a_streamed_tool_call_is_named_once(fake_local):
    forced = {"type": "function", "function": {"name": "Score"}}
    chunks = list(fake_local.bind_tools([Score], tool_choice=forced).stream("rate it"))
    merged = chunks[0]
    for c in chunks[1:]:
        merged += c
    assert merged.tool_calls == [{"name": "Score", "args": {"score": 7}, "id": "call_0", "type": "tool_call"}]
    assert merged.additional_kwargs["tool_calls"][0]["function"] == {"name": "Score", "arguments": '{"score": 7}'}
    assert merged.additional_kwargs["function_call"]["name"] == "Score"
    assert merged.response_metadata["finish_reason"] == "tool_calls"


def test_the_local_model_serialises_calls_on_its_lock(fake_local):
    errors = []

    def work():
        try:
            fake_local.invoke("x")
            list(fake_local.stream("y"))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(fake_local.client.calls) == 16


def test_a_local_call_reports_its_compute_seconds_without_the_wait(fake_local, monkeypatch):
    from fusiongraph.models import local_llm

    held = threading.Event()
    release = threading.Event()
    out = {}

    def hold_the_cpu():
        with local_llm._CPU:  # another in-process model computing: this call waits for the CPU slot
            held.set()
            release.wait(5)

    t = threading.Thread(target=hold_the_cpu)
    t.start()
    held.wait(5)
    worker = threading.Thread(target=lambda: out.update(msg=fake_local.invoke("x")))
    worker.start()
    worker.join(0.3)
    assert worker.is_alive()  # waiting for the slot, not computing
    release.set()
    worker.join(5)
    t.join(5)
    compute = out["msg"].response_metadata["compute_s"]
    assert 0 <= compute < 0.25  # the 0.3 s spent waiting is not charged


def test_the_processor_keeps_the_log_probability_of_each_sampled_token():
    lp = SampledTokenLogprobs()
    scores = np.array([0.0, np.log(3.0)], dtype=np.float32)
    lp(np.array([5]), scores.copy())
    lp(np.array([5, 1]), scores.copy())
    lp(np.array([5, 1, 0]), scores.copy())
    assert lp.logprobs == pytest.approx([np.log(0.75), np.log(0.25)])


def test_the_processor_keeps_the_most_likely_tokens_of_each_step_when_asked():
    probs = np.array([0.1, 0.4, 0.05, 0.3, 0.15])
    first, second = np.log(probs).astype(np.float32), np.log(probs[::-1]).astype(np.float32)
    lp = SampledTokenLogprobs(top=3)
    lp(np.array([7]), first.copy())
    lp(np.array([7, 1]), second.copy())  # token 1 sampled from `first`
    lp(np.array([7, 1, 0]), first.copy())  # token 0 sampled from `second`
    assert lp.ids == [1, 0] and lp.top_ids == [[1, 3, 4], [3, 1, 0]]  # most likely first
    assert lp.top_logprobs[0] == pytest.approx(np.log([0.4, 0.3, 0.15]), abs=1e-5)
    assert lp.top_logprobs[1] == pytest.approx(np.log([0.4, 0.3, 0.15]), abs=1e-5)
    assert lp.logprobs == pytest.approx([np.log(0.4), np.log(0.15)], abs=1e-5)
    assert all(a >= b for step in lp.top_logprobs for a, b in zip(step, step[1:]))
    wide = SampledTokenLogprobs(top=20)  # more than the vocabulary: all of it
    wide(np.array([7]), first.copy())
    wide(np.array([7, 3]), first.copy())
    assert wide.top_ids == [[1, 3, 4, 0, 2]]
    plain = SampledTokenLogprobs()
    plain(np.array([7]), first.copy())
    plain(np.array([7, 3]), first.copy())
    assert plain.top_ids == [] and plain.logprobs == pytest.approx([np.log(0.3)], abs=1e-5)


@pytest.mark.parametrize("stream", [False, True])
def test_the_local_kind_binds_top_logprobs_that_the_model_reads_itself(fake_local, stream):
    local = MODEL_KINDS["local"]
    assert local.with_logprobs(fake_local, 0) is fake_local  # its chosen tokens' logprobs come anyway
    bound = local.with_logprobs(fake_local, 2)
    if stream:
        chunks = list(bound.stream("count"))
        message = chunks[0]
        for c in chunks[1:]:
            message += c
    else:
        message = bound.invoke("count")
    assert "top_logprobs" not in fake_local.client.calls[-1]  # not llama.cpp's own (it needs logits_all)
    meta = message.response_metadata
    assert len(meta["token_top"]) == len(meta["token_logprobs"]) == 3
    for alternatives in meta["token_top"]:
        assert len(alternatives) == 2
        assert all(text.startswith("w") and lp == pytest.approx(np.log(0.2)) for text, lp in alternatives)
    assert "token_top" not in fake_local.invoke("count").response_metadata  # not asked: not kept


def test_the_openai_style_kinds_ask_the_api_for_logprobs_and_alternatives():
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(model="m", api_key="unused", base_url="http://127.0.0.1:9/v1")
    for kind in ("openai", "openai_compatible"):
        assert MODEL_KINDS[kind].with_logprobs(chat, 3).kwargs == {"logprobs": True, "top_logprobs": 3}
        assert MODEL_KINDS[kind].with_logprobs(chat, 0).kwargs == {"logprobs": True, "top_logprobs": 1}
