"""The rules judge: cheap checks (empty, refusal, truncation, an answer to a wh-question that only restates
it, JSON when asked) and the task class's verifiers
(:mod:`fusiongraph.judging.verifiers`: a number for a calculation, an exact check of plain arithmetic, valid JSON for
extraction, Python code that parses); an empty answer, a refusal or a failed exact check vetoes."""

from __future__ import annotations

import json
import re

from fusiongraph.judging.base import CallsNoModel, Judging, Verdict, register_judge
from fusiongraph.judging.verifiers import (
    WANTS_JSON,
    check_output,
    for_class,
    new_words,
    repeats_call,
    run_verifiers,
    strip_fence,
)

_REFUSAL = re.compile(
    r"^\s*(i('| a)m sorry|sorry,|i can(no|')t (help|assist|answer|do)|i am unable|i'm unable|as an ai\b|"
    r"i (will|would) not be able|i cannot provide)",
    re.IGNORECASE,
)


_WH_QUESTION = re.compile(r"^\s*(what|which|who|whom|where|when|name|tell me)\b", re.IGNORECASE)
_WANTS_DIGITS = re.compile(r"\d|\bhow\s+(many|much)\b", re.IGNORECASE)


def rule_verdict(
    task: str, answer: str, finish_reason: str | None, task_class=None, verifiers: list[str] | None = None
) -> Verdict:
    """The rules judge. `task_class`: a class name (its default verifiers), or a taxonomy ``TaskClass``
    (its configured verifiers), plus the exact arithmetic check whatever the class; `verifiers` overrides
    all of them. Each applicable verifier caps the score (a failed check scores 0 or 0.5); an exact check
    decides: a wrong answer is a veto, a right one an exact pass (``exact``) that overrides the soft judges."""
    text = (answer or "").strip()
    if not text:
        return Verdict("rules", 0.0, True, "empty answer")
    if _REFUSAL.search(text):
        return Verdict("rules", 0.0, True, "refusal")
    name = getattr(task_class, "name", task_class)
    if verifiers is None:
        verifiers = task_class.checks if hasattr(task_class, "checks") else for_class(name)
        if "arithmetic" not in verifiers:  # plain arithmetic is checked exactly whatever class it was given
            verifiers = [*verifiers, "arithmetic"]
    problems, score = [], 1.0
    if finish_reason == "length":
        problems.append("truncated at max_tokens")
        score -= 0.5
    if _WH_QUESTION.search(task) and not _WANTS_DIGITS.search(task) and not new_words(task, text):
        problems.append("the answer only restates the question")  # "Uruguay is the capital of Uruguay."
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
            return Verdict("rules", 0.0, True, f"{verifier}: {check.reason}", exact=check.exact)
        if check.exact:  # a computed truth agrees: it decides, whatever the softer checks say
            return Verdict("rules", 1.0, False, f"{verifier}: {check.reason}", exact=True)
        if check.score < 1.0:
            problems.append(check.reason)
            score = min(score, check.score)
        else:
            passed.append(check.reason)
    return Verdict("rules", max(score, 0.0), False, "; ".join(problems) or "; ".join(["ok", *passed]))


@register_judge
class RulesJudge(CallsNoModel):
    name = "rules"
    weight = 0.3

    def judge(self, j: Judging) -> Verdict:
        """The request's output checks first (tool calls, JSON format: fusiongraph.judging.verifiers.OUTPUT_VERIFIERS;
        a failed one vetoes), then, for a text answer, the text rules."""
        if loop := repeats_call(j.messages, j.message):  # after a tool result: use it, never repeat the call
            return Verdict("rules", 0.0, True, loop, tool_loop=True)
        checks = check_output(j.request, j.message)
        for name, check in checks:
            if check.veto:
                return Verdict("rules", 0.0, True, f"{name}: {check.reason}")
        if getattr(j.message, "tool_calls", None):
            return Verdict("rules", 1.0, False, "; ".join(c.reason for _, c in checks) or "ok")
        verdict = rule_verdict(j.task, j.answer, j.finish_reason, j.task_class)
        if checks and not verdict.veto:
            verdict.detail = "; ".join([verdict.detail, *(c.reason for _, c in checks)])
        return verdict
