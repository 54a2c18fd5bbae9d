"""settle: the last node. A run through LangGraph's own API (``/runs``, the SDK, Studio) is charged its actual
cost to the API key it was authenticated with, and counted in the metrics (fusiongraph.settlement.settle_run).

LangGraph's server puts the authenticated user into the run's config (``configurable.langgraph_auth_user``,
a reserved key no client can set). Runs without it are not LangGraph API runs: the CLI, a Python caller, and
the OpenAI endpoint, which runs the graph in process and charges and counts its runs itself; so nothing is
charged twice. The node changes no state.
"""

from __future__ import annotations

from langgraph.config import get_config

from fusiongraph.settlement import settle_run
from fusiongraph.state import FusionState


def settle(state: FusionState) -> dict:
    try:
        config = get_config()
    except RuntimeError:  # called outside a graph run
        return {}
    configurable = config.get("configurable") or {}
    if "langgraph_auth_user" not in configurable:
        return {}
    run_id = (config.get("metadata") or {}).get("run_id") or config.get("run_id")
    out = {k: state.get(k) for k in ("summary", "results", "trace")}
    settle_run(configurable, str(run_id) if run_id else None, out)
    return {}
