"""The focus judge: does the answer take up what was asked?

A direct answer to a short question names what the question asked about ("What is the capital of Peru?" ->
"The capital of Peru is Lima."); an evasion talks about something near it ("Peru is a country in South
America."). The score is the share of the question's content words (stop words and instruction verbs such as
"name" or "tell" left out) that the answer's first sentence contains. It reads only text and calls no model;
it abstains on a task that lists options (the answer is a letter) and on a question with no content word. It
is a soft signal with no part in the cold-start prior: the calibrated acceptance weighs it where it tells
right from wrong, and gives it no say where it does not.
"""

from __future__ import annotations

from fusiongraph.judging.base import CallsNoModel, Judging, Verdict, register_judge

INSTRUCTIONS = frozenset(
    "name give tell list state say write explain describe please me us briefly short one word answer".split()
)


def focus_score(task: str, answer: str) -> float | None:
    """The share of the task's content words in the answer's first sentence (None: nothing to compare)."""
    from fusiongraph.judging.verifiers import STOP
    from fusiongraph.text import OPTION_LABEL, SENTENCE_BREAK, normalise

    if len({m.upper() for m in OPTION_LABEL.findall(task)}) >= 2:
        return None
    asked = {w for w in normalise(task).split() if w not in STOP and w not in INSTRUCTIONS}
    if not asked:
        return None
    first = SENTENCE_BREAK.split((answer or "").strip(), maxsplit=1)[0]
    return len(asked & set(normalise(first).split())) / len(asked)


@register_judge
class FocusJudge(CallsNoModel):
    name = "focus"
    weight = 0.0  # no part in the cold-start prior: it speaks once a fit gives it a say

    def judge(self, j: Judging) -> Verdict | None:
        score = focus_score(j.subtask, j.answer)
        if score is None:
            return Verdict(self.name, None, False, "nothing to compare (options, or no content word asked)")
        return Verdict(self.name, score, False, f"{score:.0%} of the question's content words taken up")
