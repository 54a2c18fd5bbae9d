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
    masked, placeholders = pv.mask(state["subtask"], findings) if findings else (None, {})
    # the conversation the answering models also receive (earlier turns, tool results) counts too
    for m in list(state.get("history") or []) + list(state.get("tail") or []):
        if isinstance(m.content, str) and (found := pv.scan_for(ctx, m.content)):
            findings += found
            placeholders = pv.mask(m.content, found, placeholders)[1]
    if not findings:
        return {"sensitive": [], "masked": None, "placeholders": {}}
    return {
        "sensitive": [f.public() for f in findings],
        "masked": masked or state["subtask"],
        "placeholders": placeholders,
        "trace": [{"node": "privacy", "mode": ctx.privacy, "found": pv.summary(findings)}],
    }
