"""``kind: openai``: the OpenAI API (or a proxy of it at ``base_url``) through ``langchain_openai.ChatOpenAI``.

Also the shared builder and transient errors of every kind that talks to an OpenAI-style endpoint.
"""

from __future__ import annotations

import time

from fusiongraph.models.kinds.base import ModelKind, env, register_kind

MAX_RETRY_AFTER_S = 10.0  # a rate limit asking to wait longer is not retried: the cascade moves on


def openai_transient(exc: BaseException) -> bool | None:
    """The openai client's transient errors: rate limits (after a short Retry-After, slept here), server
    errors and timeouts; its other errors (4xx, refused connection, bad response) are not."""
    import openai

    if isinstance(exc, openai.RateLimitError):
        retry_after = exc.response.headers.get("retry-after") if exc.response is not None else None
        try:
            wait = float(retry_after) if retry_after is not None else 0.0
        except ValueError:
            wait = 0.0
        if wait > MAX_RETRY_AFTER_S:
            return False
        time.sleep(wait)  # then RetryPolicy's own (short) backoff
        return True
    if isinstance(exc, (openai.InternalServerError, openai.APITimeoutError)):
        return True
    return None  # not decided here: a timeout from elsewhere is still transient (model_kinds.is_transient)


class OpenAIStyleKind(ModelKind):
    """Base of the kinds served by an OpenAI-style chat completions endpoint."""

    def build(self, spec, max_tokens, timeout_s):
        from langchain_openai import ChatOpenAI

        kwargs = dict(
            model=env(spec.model_env) or spec.model or "default",
            base_url=env(spec.base_url_env) or spec.base_url,
            api_key=env(spec.api_key_env) or "not-needed",
            timeout=spec.timeout_s or timeout_s,
            max_retries=0,  # the cascade moves on instead; transient retries are the graph's RetryPolicy
            logprobs=spec.logprobs or None,
            top_logprobs=1 if spec.logprobs else None,  # llama.cpp's server sends none without it
            # max_tokens through extra_body: OpenAI-compatible servers (llama.cpp) ignore max_completion_tokens
            extra_body={"max_tokens": max_tokens},
        )
        return ChatOpenAI(**{**kwargs, **spec.options})

    def with_logprobs(self, model, top):
        """The API's ``logprobs`` with at least one alternative per token (llama.cpp's server sends no
        log-probabilities without ``top_logprobs``): ``response_metadata["logprobs"]["content"]``."""
        return model.bind(logprobs=True, top_logprobs=max(1, top))

    def is_transient(self, exc):
        return openai_transient(exc)


@register_kind
class OpenAIKind(OpenAIStyleKind):
    name = "openai"

    def validate(self, spec) -> None:
        if not (spec.model or spec.model_env):
            raise ValueError(f"OpenAI model {spec.id!r} needs `model`")

    def unavailable_reason(self, spec, local_only):
        key = spec.api_key_env or "OPENAI_API_KEY"
        return super().unavailable_reason(spec, local_only) or (None if env(key) else f"${key} is not set")
