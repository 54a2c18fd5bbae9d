"""The consistency judge: does the model say the same thing again? Works offline and for any model.

It asks the answering model `consistency_samples` more times (temperature `consistency_temperature`, at
most the class's answer length and at most about twice the answer's own length: short samples) and
compares each sample with the answer by its normalised final answer:

* an option letter when the task lists options ((A) ... (D)),
* a number (the last one written in digits) when the task asks for one (digits in it, "how many", ...),
* an entity for a short answer: the content words of its first sentence that the task does not contain
  ("The capital of France is Paris." -> {paris}), compared by overlap; an answer that names nothing the
  task did not ("Uruguay is the capital of Uruguay.") agrees with nothing,
* else the embedding similarity of the two texts (free text).

When the cascade already ran a cheaper tier on this subtask, agreement with each earlier answer counts as
one more comparison. The score is the mean agreement. Its model calls are judge calls: their worst case
(each sample at the answer call's worst cost) is reserved before the answer call, and what they cost is
charged to the attempt's judges. Not asked after a veto or an exact verdict, nor where the calibrated
acceptance gives it no say (cold start included: its prior weight is 0, so it costs nothing until a fit
says it helps).
"""

from __future__ import annotations

import re

import numpy as np

from fusiongraph.budget import charge
from fusiongraph.judging.base import NO_RESERVATION, Judging, Reservation, Verdict, register_judge
from fusiongraph.judging.verifiers import new_words
from fusiongraph.text import OPTION_LABEL, last_number, option_letter

SHORT_WORDS = 12  # an answer whose first sentence has at most this many content words is read as an entity


_WANTS_NUMBER = re.compile(r"\d|\bhow\s+(many|much|old|far|long)\b|\bwhat\s+year\b|\bin\s+which\s+year\b", re.I)


def answer_key(task: str, text: str) -> tuple[str, object] | None:
    """The normalised final answer of `text`: ("letter", "B"), ("number", 84.0), ("entity", {...}) or None
    (free text: compared by embeddings). A task that asks for a number is keyed by the last number
    (("number", None) when the text gives none)."""
    text = (text or "").strip()
    if len(set(m.upper() for m in OPTION_LABEL.findall(task))) >= 2:
        return ("letter", option_letter(text))
    if _WANTS_NUMBER.search(task):
        return ("number", last_number(text))
    words = new_words(task, text)
    if len(words) <= SHORT_WORDS:  # a short answer: its entity (empty: it names nothing the task did not)
        return ("entity", frozenset(words))
    return None


def agreement(task: str, a: str, b: str, embed) -> float:
    """How far two answers to `task` say the same (0-1), by their normalised final answers."""
    if not (a or "").strip() or not (b or "").strip():
        return 0.0
    ka, kb = answer_key(task, a), answer_key(task, b)
    if ka is not None and ka[0] in ("letter", "number"):
        return 1.0 if ka[1] is not None and ka == kb else 0.0
    if ka is not None and kb is not None:  # two entities; one that names nothing new agrees with nothing
        return len(ka[1] & kb[1]) / min(len(ka[1]), len(kb[1])) if ka[1] and kb[1] else 0.0
    return float(max(0.0, min(1.0, np.dot(embed(a), embed(b)))))


def sample_tokens(max_tokens: int, answer_tokens: int) -> int:
    """Short samples: at most the class's answer length, at most the next power of two >= twice the
    answer's own length (16 at least), so a few cached model instances serve every length."""
    want = max(16, 2 * max(answer_tokens, 1))
    return max(1, min(max_tokens, 1 << (want - 1).bit_length()))


@register_judge
class ConsistencyJudge:
    name = "consistency"
    weight = 0.0  # no part in the cold-start prior: it speaks once a fit gives it a say

    def reserve(self, res, ctx, judge_id, subtask, answer) -> Reservation:
        n = ctx.consistency_samples
        # n samples at the answer call's worst cost; the relative 1e-9 covers the rounding of summing n charges
        return Reservation(n * answer.worst_usd * (1 + 1e-9)) if n and answer.worst_usd else NO_RESERVATION

    def judge(self, j: Judging) -> Verdict | None:
        n = j.ctx.consistency_samples
        if not (n or j.earlier) or not j.model_id or not j.messages or j.decided() or self.name in j.skip:
            return None  # no samples asked for and no cheaper tier's answer to compare with
        res, spec = j.res, j.res.roster[j.model_id]
        out_tokens = (getattr(j.message, "usage_metadata", None) or {}).get("output_tokens") or 0
        limit = sample_tokens(j.ctx.max_tokens, int(out_tokens))
        per_sample = spec.cost(j.prompt_bound, limit)
        if j.reserved.usd and per_sample > 0:
            n = min(n, int(j.reserved.usd / per_sample))  # never past what was reserved
        model = res.roster.chat_model(j.model_id, limit, j.ctx.request_timeout_s)
        samples: list[str] = []
        usage = {"tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0, "compute_s": 0.0}
        failed = 0
        for i in range(n):
            sampler = model.bind(temperature=j.ctx.consistency_temperature, seed=i + 1).with_config(
                run_name="consistency", tags=["judge", "consistency"]
            )
            try:
                reply = sampler.invoke(j.messages)
            except Exception:  # a sample that fails is left out; all failing: the judge abstains
                failed += 1
                continue
            used = charge(spec, reply, j.prompt_text, j.prompt_bound, limit)
            usage = {k: usage[k] + used.get(k, 0.0) for k in usage}
            samples.append(reply.text)
        cache: dict[str, np.ndarray] = {}

        def embed(text: str) -> np.ndarray:
            if text not in cache:
                cache[text] = np.asarray(res.embedder.embed_one(text), dtype=np.float64)
            return cache[text]

        with_samples = [agreement(j.subtask, j.answer, s, embed) for s in samples]
        with_tiers = [agreement(j.subtask, j.answer, a, embed) for _, a in j.earlier if a]
        every = with_samples + with_tiers
        spent = usage if samples else None
        if not every:
            return Verdict(self.name, None, False, f"no sample ({failed} failed)", usage=spent)
        detail = f"{sum(with_samples):.1f} of {len(samples)} samples agree (T={j.ctx.consistency_temperature})"
        if with_tiers:
            detail += f"; {sum(with_tiers):.1f} of {len(with_tiers)} cheaper tiers agree"
        return Verdict(self.name, float(np.mean(every)), False, detail, usage=spent)
