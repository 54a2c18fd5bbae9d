"""``kind: openai_compatible``: any OpenAI-compatible server (vLLM, Ollama, llama.cpp's server) set by URL."""

from __future__ import annotations

from fusiongraph.models.kinds.base import env, register_kind
from fusiongraph.models.kinds.openai_api import OpenAIStyleKind


@register_kind
class OpenAICompatibleKind(OpenAIStyleKind):
    name = "openai_compatible"

    def validate(self, spec) -> None:
        if not (spec.base_url or spec.base_url_env):
            raise ValueError(f"OpenAI-compatible model {spec.id!r} needs base_url or base_url_env")

    def unavailable_reason(self, spec, local_only):
        if reason := super().unavailable_reason(spec, local_only):
            return reason
        return None if spec.base_url or env(spec.base_url_env) else f"${spec.base_url_env} is not set"
