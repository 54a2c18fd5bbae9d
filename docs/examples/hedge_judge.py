"""The hedge judge: an answer that hedges ("I think", "probably", "not sure") is less likely to be right."""

from __future__ import annotations

import re

from fusiongraph.judging.base import CallsNoModel, Judging, Verdict, register_judge

HEDGES = re.compile(r"\b(?:i think|i believe|probably|possibly|maybe|not sure|might be)\b", re.IGNORECASE)


@register_judge
class HedgeJudge(CallsNoModel):
    name = "hedge"  # the verdicts' "judge", the CLI's column, judge-eval's row
    weight = 0.0  # no part in the cold-start prior: a fit gives it a say where it tells right from wrong

    def judge(self, j: Judging) -> Verdict | None:
        hedges = [h.lower() for h in HEDGES.findall(j.answer)]
        if not hedges:
            return Verdict(self.name, 1.0, detail="no hedge")
        return Verdict(self.name, 0.0, detail="hedges: " + ", ".join(hedges))
