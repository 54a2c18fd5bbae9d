"""The key judge: how sure the answering model was of the *answer itself*, not of its wording.

The self judge averages the log-probabilities of every token, so "The capital of Peru is Lima." is mostly
the confidence of "The capital of ... is", which the model is sure of whether or not the city is right. This
judge reads only the tokens of the answer's key: the option letter when the task lists options, the last
number when the task asks for one, the entity (the content words of the first sentence that the task does
not contain) otherwise: the same normalised final answer the consistency judge compares (`answer_key`). Its
score is the probability of the least likely of those tokens, ``exp(min log p)``: the weakest decision in
the key, as SelfCheckGPT's grey-box "max(-log p)" score reads it. Free text (no key) and a model that
returns no per-token log-probabilities with their text make it abstain (the latter with no verdict at all,
as for a judge that is not asked). It calls no model.
"""

from __future__ import annotations

import math
import re

from langchain_core.messages import AIMessage

from fusiongraph.judging.base import CallsNoModel, Judging, Verdict, register_judge
from fusiongraph.text import NUMBER, option_letter_span


def token_pieces(message: AIMessage) -> list[tuple[str, float]]:
    """(text, log-probability) of each generated token: llama.cpp's ``token_texts`` with ``token_logprobs``,
    or an OpenAI-style ``logprobs.content``; empty when the model gives no text for its tokens."""
    return [(text, lp) for text, lp, _ in token_entries(message)]


def _alternatives(pairs) -> list[tuple[str, float]]:
    """[[text, logprob], ...] or OpenAI's [{token, logprob}, ...] as (text, logprob) pairs."""
    out = []
    for alt in pairs or []:
        text, lp = (alt.get("token"), alt.get("logprob")) if isinstance(alt, dict) else (alt[0], alt[1])
        if text is not None and lp is not None:
            out.append((str(text), float(lp)))
    return out


def token_entries(message: AIMessage) -> list[tuple[str, float, list[tuple[str, float]]]]:
    """:func:`token_pieces` with each token's alternatives, the most likely tokens of its step as
    (text, log-probability): llama.cpp's ``token_top`` (a bound ``top_logprobs``) or OpenAI-style
    ``logprobs.content[i].top_logprobs``; empty lists when the model gives none."""
    meta = message.response_metadata or {}
    texts, lps = meta.get("token_texts"), meta.get("token_logprobs")
    if texts and lps and len(texts) == len(lps):
        tops = meta.get("token_top")
        tops = tops if isinstance(tops, list) and len(tops) == len(texts) else [()] * len(texts)
        return [(str(t), float(lp), _alternatives(top)) for t, lp, top in zip(texts, lps, tops)]
    content = (meta.get("logprobs") or {}).get("content") if isinstance(meta.get("logprobs"), dict) else None
    return [
        (str(t["token"]), float(t["logprob"]), _alternatives(t.get("top_logprobs")))
        for t in content or []
        if t.get("logprob") is not None and t.get("token") is not None
    ]


def key_spans(task: str, text: str) -> list[tuple[int, int]]:
    """Character spans of the answer's key in `text` (empty: no key, or free text)."""
    from fusiongraph.judging.kinds.consistency import answer_key  # here: the judges register in order

    key = answer_key(task, text)
    if key is None or key[1] is None or key[1] == frozenset():
        return []
    kind, value = key
    if kind == "letter":
        found = option_letter_span(text)
        return [found[1]] if found and found[0] == value else []
    if kind == "number":
        found = list(NUMBER.finditer(text))
        return [found[-1].span()] if found else []
    spans = []
    for word in value:  # the first place each entity word is written
        m = re.search(rf"(?<![^\W_]){re.escape(word)}(?![^\W_])", text, re.IGNORECASE)
        if m:
            spans.append(m.span())
    return spans


def key_logprobs(task: str, pieces: list[tuple[str, float]]) -> list[float]:
    """The log-probabilities of the tokens that overlap the answer's key."""
    text = "".join(t for t, _ in pieces)
    spans = key_spans(task, text)
    out, start = [], 0
    for piece, lp in pieces:
        end = start + len(piece)
        if any(a < end and start < b for a, b in spans):
            out.append(lp)
        start = end
    return out


def key_verdict(task: str, message: AIMessage) -> Verdict | None:
    """None (no verdict at all) when the model gives no token text with log-probabilities."""
    pieces = token_pieces(message)
    if not pieces:
        return None
    lps = key_logprobs(task, pieces)
    if not lps:
        return Verdict("key", None, False, "no key answer (free text) in the tokens")
    low, mean = math.exp(min(lps)), math.exp(sum(lps) / len(lps))
    return Verdict("key", low, False, f"key tokens: {len(lps)}; least likely p={low:.3f}, mean p={mean:.3f}")


@register_judge
class KeyConfidenceJudge(CallsNoModel):
    name = "key"
    weight = 0.0  # no part in the cold-start prior: it speaks once a fit gives it a say

    def judge(self, j: Judging) -> Verdict | None:
        return key_verdict(j.subtask, j.message)
