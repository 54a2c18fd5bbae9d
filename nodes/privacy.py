"""privacy: look for sensitive values in the subtask before any model sees it (fusiongraph/privacy.py).

What is found decides who may answer (trusted models only under ``privacy="route"``; masked text for the
others under ``"redact"``), and the masked text is what the router embeds and the store keeps. The trace
names the detectors and kinds that fired, never the values.
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from fusiongraph import privacy as pv
from fusiongraph.context import FusionContext, as_context
from fusiongraph.state import SubtaskState


def privacy(state: SubtaskState, runtime: Runtime[FusionContext]) -> dict:
    ctx = as_context(runtime.context)
    findings = pv.scan_for(ctx, state["subtask"])
    if not findings:
        return {"sensitive": [], "masked": None, "placeholders": {}}
    masked, placeholders = pv.mask(state["subtask"], findings)
    return {
        "sensitive": [f.public() for f in findings],
        "masked": masked,
        "placeholders": placeholders,
        "trace": [{"node": "privacy", "mode": ctx.privacy, "found": pv.summary(findings)}],
    }
