"""The log-probabilities of the tokens a llama.cpp model samples, read from its raw logits.

llama-cpp-python returns logprobs only for a model built with ``logits_all=True`` (much slower generation);
:class:`SampledTokenLogprobs`, a logits processor, reads the logits of each step instead, at no measurable
cost (fusiongraph/models/local_llm.py passes one to every call).
"""

from __future__ import annotations

import math

import numpy as np


class SampledTokenLogprobs:
    """Logits processor that records the log-probability of each sampled token (raw logits, pre-temperature)
    and, with ``top`` > 0, the ``top`` most likely tokens of each step (most likely first)."""

    def __init__(self, top: int = 0) -> None:
        self._prev: tuple[np.ndarray, float] | None = None
        self.top = max(0, int(top))
        self.logprobs: list[float] = []
        self.ids: list[int] = []  # the sampled tokens, aligned with `logprobs`
        self.top_ids: list[list[int]] = []  # with `top`: per step, the most likely tokens, aligned with `logprobs`
        self.top_logprobs: list[list[float]] = []

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if self._prev is not None:
            logits, lse = self._prev
            self.ids.append(int(input_ids[-1]))
            self.logprobs.append(float(logits[self.ids[-1]] - lse))
            if self.top:
                k = min(self.top, logits.size)
                best = np.argpartition(logits, -k)[-k:]
                best = best[np.argsort(-logits[best], kind="stable")]
                self.top_ids.append([int(i) for i in best])
                self.top_logprobs.append([float(logits[i] - lse) for i in best])
        top = float(scores.max())
        self._prev = (scores.copy(), top + math.log(float(np.exp(scores - top).sum())))
        return scores
