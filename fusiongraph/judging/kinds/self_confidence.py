"""The self judge: the answering model's own confidence, exp(mean token log-probability); it abstains when
the model returns no log-probabilities."""

from __future__ import annotations

import math

from langchain_core.messages import AIMessage

from fusiongraph.judging.base import CallsNoModel, Judging, Verdict, register_judge


def token_logprobs(message: AIMessage) -> list[float]:
    """Token log-probabilities from llama.cpp (`token_logprobs`) or an OpenAI-style `logprobs.content`."""
    meta = message.response_metadata or {}
    if meta.get("token_logprobs"):
        return [float(x) for x in meta["token_logprobs"]]
    content = (meta.get("logprobs") or {}).get("content") if isinstance(meta.get("logprobs"), dict) else None
    return [float(t["logprob"]) for t in content or [] if t.get("logprob") is not None]


def self_verdict(message: AIMessage) -> Verdict:
    lps = token_logprobs(message)
    if not lps:
        return Verdict("self", None, False, "no token log-probabilities from this model")
    conf = math.exp(sum(lps) / len(lps))
    return Verdict("self", conf, False, f"exp(mean logprob) over {len(lps)} tokens")


@register_judge
class SelfConfidenceJudge(CallsNoModel):
    name = "self"
    weight = 0.2

    def judge(self, j: Judging) -> Verdict:
        return self_verdict(j.message)
