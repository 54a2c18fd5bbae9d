"""Judges: several kinds of evidence that an answer is good, aggregated into one confidence.

- rules: cheap checks (empty, refusal, truncation, JSON when asked) and the task class's verifiers
  (:mod:`fusiongraph.verifiers`: a number for a calculation, an exact check of plain arithmetic, valid
  JSON for extraction, Python code that parses); an empty answer, a refusal or a failed exact check vetoes.
- self: the answering model's own confidence, exp(mean token log-probability), where the model returns them.
- llm: an LLM judge scoring 1-10 with the prompt in prompts/judge.md; junk or an error counts as low confidence.
A judge that cannot speak (no log-probabilities, judge turned off) abstains; the others are re-weighted.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from fusiongraph.state import JudgeVerdict
from fusiongraph.verifiers import WANTS_JSON, for_class, run_verifiers, strip_fence
from prompts import load_prompt

WEIGHTS = {"llm": 0.5, "self": 0.2, "rules": 0.3}

_REFUSAL = re.compile(
    r"^\s*(i('| a)m sorry|sorry,|i can(no|')t (help|assist|answer|do)|i am unable|i'm unable|as an ai\b|"
    r"i (will|would) not be able|i cannot provide)", re.IGNORECASE)


@dataclass
class Verdict:
    judge: str
    score: float | None  # None: abstained
    veto: bool = False
    detail: str = ""

    def as_dict(self) -> dict:
        return {"judge": self.judge, "score": None if self.score is None else round(self.score, 4),
                "veto": self.veto, "detail": self.detail}


def rule_verdict(task: str, answer: str, finish_reason: str | None, task_class=None,
                 verifiers: list[str] | None = None) -> Verdict:
    """The rules judge. `task_class`: a class name (its default verifiers), or a taxonomy ``TaskClass``
    (its configured verifiers); `verifiers` overrides both. Each applicable verifier caps the score
    (a failed check scores 0 or 0.5); one that vetoes (a wrong exact answer) makes the verdict a veto."""
    text = (answer or "").strip()
    if not text:
        return Verdict("rules", 0.0, True, "empty answer")
    if _REFUSAL.search(text):
        return Verdict("rules", 0.0, True, "refusal")
    name = getattr(task_class, "name", task_class)
    if verifiers is None:
        verifiers = task_class.checks if hasattr(task_class, "checks") else for_class(name)
    problems, score = [], 1.0
    if finish_reason == "length":
        problems.append("truncated at max_tokens")
        score -= 0.5
    # JSON asked for: a format check for every class; code mentions JSON as data, extraction checks strictly
    if name != "code" and "json" not in verifiers and WANTS_JSON.search(task):
        try:
            json.loads(strip_fence(text))
        except ValueError:
            problems.append("JSON requested, answer is not valid JSON")
            score -= 0.5
    passed = []
    for verifier, check in run_verifiers(verifiers, task, text):
        if check.veto:
            return Verdict("rules", 0.0, True, f"{verifier}: {check.reason}")
        if check.score < 1.0:
            problems.append(check.reason)
            score = min(score, check.score)
        else:
            passed.append(check.reason)
    return Verdict("rules", max(score, 0.0), False, "; ".join(problems) or "; ".join(["ok", *passed]))


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


def llm_verdict(judge_model, task: str, answer: str) -> tuple[Verdict, AIMessage | None]:
    """Ask the judge model; returns the verdict and the raw message (for its token usage and cost)."""
    messages = [SystemMessage(load_prompt("judge")),
                HumanMessage(f"Task:\n{task}\n\nCandidate answer:\n{answer}")]
    try:
        out = judge_model.with_structured_output(JudgeVerdict, method="function_calling", include_raw=True)\
            .invoke(messages)
    except Exception as exc:  # a judge that fails or returns junk never accepts
        return Verdict("llm", 0.0, False, f"judge failed ({type(exc).__name__}: {str(exc)[:160]}); counted as 0"), None
    raw = out.get("raw")
    parsed = out.get("parsed")
    if parsed is None:
        err = out.get("parsing_error")
        return Verdict("llm", 0.0, False, f"judge returned junk ({str(err)[:160]}); counted as 0"), raw
    return Verdict("llm", (parsed.score - 1) / 9.0, False, f"{parsed.score}/10: {parsed.reason[:200]}"), raw


def aggregate(verdicts: list[Verdict], weights: dict[str, float] = WEIGHTS) -> float:
    """Weighted mean of the judges that spoke; any veto makes the confidence 0."""
    if any(v.veto for v in verdicts):
        return 0.0
    spoken = [(weights.get(v.judge, 0.0), v.score) for v in verdicts if v.score is not None]
    total = sum(w for w, _ in spoken)
    return sum(w * s for w, s in spoken) / total if total else 0.0
