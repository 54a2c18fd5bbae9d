"""``kind: local``: a GGUF run in-process by llama.cpp (:class:`fusiongraph.local_llm.LocalLlamaChat`)."""

from __future__ import annotations

from fusiongraph.model_kinds.base import ModelKind, env, register_kind


@register_kind
class LocalKind(ModelKind):
    name = "local"
    local = True

    def validate(self, spec) -> None:
        if not (spec.gguf_path or spec.gguf_path_env or (spec.gguf_package and spec.gguf_file)):
            raise ValueError(f"local model {spec.id!r} needs gguf_path, gguf_path_env or gguf_package + gguf_file")

    def build(self, spec, max_tokens, timeout_s):
        from fusiongraph.local_llm import LocalLlamaChat, find_gguf  # llama.cpp and langchain-community: on use

        gguf = find_gguf(spec.gguf_package, spec.gguf_file, env(spec.gguf_path_env) or spec.gguf_path)
        kwargs = dict(model_path=str(gguf), model_name=spec.id, n_ctx=spec.context, max_tokens=max_tokens)
        return LocalLlamaChat(**{**kwargs, **spec.options})
