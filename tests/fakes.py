"""Fake chat models and embeddings for fast, deterministic tests of the graph logic."""

from __future__ import annotations

import hashlib
import re
import threading
from typing import Any, Callable

import numpy as np
from langchain_core.embeddings import Embeddings
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import RunnableLambda
from pydantic import ConfigDict, PrivateAttr


class BagOfWordsEmbeddings(Embeddings):
    """Hashes words into a small vector: texts that share words are neighbours."""

    name = "bag-of-words-64"

    def __init__(self, dim: int = 64):
        self.dim = dim

    def _one(self, text: str) -> list[float]:
        v = np.zeros(self.dim, dtype=np.float32)
        for w in re.findall(r"\w+", text.lower()):
            v[int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dim] += 1.0
        v[0] += 0.01
        return (v / np.linalg.norm(v)).tolist()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._one(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._one(text)


class ScriptedChat(BaseChatModel):
    """A chat model whose reply is `script(last_user_text)`: a string, or an exception to raise."""

    script: Callable[[str], Any]
    tokens_out: int = 10
    logprob: float | None = None
    token_texts: bool = False  # with logprob: also each token's text (the reply cut in tokens_out pieces)
    finish_reason: str = "stop"
    model_config = ConfigDict(arbitrary_types_allowed=True)
    _calls: list = PrivateAttr(default_factory=list)
    _seen: list = PrivateAttr(default_factory=list)  # (messages, call kwargs) of every call
    _lock: Any = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def calls(self) -> list[str]:
        return self._calls

    @property
    def seen(self) -> list[tuple[list[BaseMessage], dict]]:
        return self._seen

    def bind_tools(self, tools, *, tool_choice=None, **kwargs):
        return self.bind(tools=tools, tool_choice=tool_choice, **kwargs)

    def _generate(self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs) -> ChatResult:
        prompt = messages[-1].text
        with self._lock:
            self._calls.append(prompt)
            self._seen.append((list(messages), dict(kwargs)))
        reply = self.script(prompt)
        if isinstance(reply, BaseException):
            raise reply
        meta = {"finish_reason": self.finish_reason}
        if self.logprob is not None:
            meta["token_logprobs"] = [self.logprob] * self.tokens_out
            if self.token_texts and isinstance(reply, str):
                step = -(-len(reply) // self.tokens_out) or 1
                pieces = [reply[i : i + step] for i in range(0, len(reply), step)]
                meta["token_texts"] = pieces + [""] * (self.tokens_out - len(pieces))
        calls = []
        if isinstance(reply, AIMessage):  # a reply with tool calls
            reply, calls = reply.content, reply.tool_calls
        msg = AIMessage(
            content=reply,
            tool_calls=calls,
            response_metadata=meta,
            usage_metadata={
                "input_tokens": 100,
                "output_tokens": self.tokens_out,
                "total_tokens": 100 + self.tokens_out,
            },
        )
        return ChatResult(generations=[ChatGeneration(message=msg)])

    def with_structured_output(self, schema, *, include_raw: bool = False, **kwargs):
        def parse(message: AIMessage):
            try:
                parsed, err = schema.model_validate_json(message.content), None
            except ValueError as exc:
                parsed, err = None, exc
            if include_raw:
                return {"raw": message, "parsed": parsed, "parsing_error": err}
            if err:
                raise err
            return parsed

        return self | RunnableLambda(parse)


def labelled_attempts(
    n: int,
    seed: int,
    informative: dict[str, set[str]],
    classes: tuple[str, ...] = ("math", "factual_qa"),
    models: tuple[str, ...] = ("cheap",),
    right_rate: float = 0.5,
):
    """Synthetic labelled attempts for the calibrator: judge j's score follows correctness (plus noise) in
    the classes `informative[j]`, and is a coin toss (chance) elsewhere."""
    import random

    from fusiongraph.judging.acceptance import LabelledAttempt

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        task_class = classes[i % len(classes)]
        correct = rng.random() < right_rate
        scores = {}
        for judge, where in informative.items():
            if task_class in where:
                scores[judge] = min(1.0, max(0.0, (0.8 if correct else 0.2) + rng.gauss(0.0, 0.2)))
            else:
                scores[judge] = rng.random()
        rows.append(
            LabelledAttempt(
                scores=scores,
                exact=False,
                task_class=task_class,
                model=models[i % len(models)],
                answer_chars=rng.randint(5, 200),
                truncated=False,
                correct=correct,
                source="synthetic",
                prompt=f"synthetic question {seed}-{i}",
            )
        )
    return rows


def fit_where_every_judge_speaks(classes: tuple[str, ...] = ("math", "factual_qa", "creative_writing"), **kw):
    """A calibrator fit in which every shipped judge has a say in every class (all informative)."""
    from fusiongraph.judging.acceptance import fit_acceptance
    from fusiongraph.judging.base import JUDGES

    every = set(classes)
    informative = {j: every for j in JUDGES}
    return fit_acceptance(labelled_attempts(200, 0, informative, classes, **kw), JUDGES)


class WindowedEmbeddings(BagOfWordsEmbeddings):
    """A bag of words that, like a real sentence encoder, reads only its first `window_tokens` words (the
    rest of a long text is dropped) and says so, so the Embedder represents long texts by what they ask."""

    name = "bag-of-words-windowed"

    def __init__(self, dim: int = 256, window_tokens: int = 64, says_window: bool = True):
        super().__init__(dim)
        self.reads = window_tokens
        self.window_tokens = window_tokens if says_window else 0  # 0: the Embedder does not know it truncates

    def _one(self, text: str) -> list[float]:
        words = [m.group(0) for m in re.finditer(r"\S+", text)][: self.reads]
        return super()._one(" ".join(words))
