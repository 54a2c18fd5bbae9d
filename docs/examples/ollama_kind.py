"""``kind: ollama``: a model served by Ollama, through its OpenAI-compatible API."""

from __future__ import annotations

from langchain_openai import ChatOpenAI

from fusiongraph.models.kinds.base import ModelKind, register_kind

DEFAULT_URL = "http://127.0.0.1:11434/v1"


@register_kind
class OllamaKind(ModelKind):
    name = "ollama"  # the roster's `kind:`

    def validate(self, spec) -> None:
        if not spec.model:
            raise ValueError(f"Ollama model {spec.id!r} needs `model:` (the name Ollama serves it under)")

    def build(self, spec, max_tokens: int, timeout_s: float) -> ChatOpenAI:
        return ChatOpenAI(
            model=spec.model,
            base_url=spec.base_url or DEFAULT_URL,
            api_key="ollama",  # Ollama asks for no key; the client needs one
            max_tokens=max_tokens,
            timeout=timeout_s,
            max_retries=0,  # the graph's RetryPolicy retries what is_transient allows
            temperature=0,
        )
