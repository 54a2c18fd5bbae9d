"""Settling a finished graph run: its actual cost (its summary's ``spent_usd.total``) charged to the API key
that made it, atomically in the key store (fusiongraph.keys), and its metrics recorded
(fusiongraph/run_metrics.py).

Runs through LangGraph's own API (``/runs``, the SDK, Studio) are settled by the graph's last node
(nodes/settle.py, :func:`settle_run`), from the key LangGraph's auth put into the run's config
(``configurable.langgraph_auth_user``, which a client cannot set), once per run id. Runs of the OpenAI
endpoint are settled by the endpoint (server/auth.py ``settle``) with :func:`charge`. Nothing here raises: the
answer is already paid for, a failed charge is logged.
"""

from __future__ import annotations

import logging
import time

from fusiongraph import run_metrics
from fusiongraph.budget import spent_breakdown
from fusiongraph.keys import ApiKey, key_store

log = logging.getLogger(__name__)

ANONYMOUS = "anonymous"  # the identity of requests to an open server (no key was ever created)


def run_cost(out: dict | None) -> float:
    """A run's actual cost: its summary's ``spent_usd.total``; a run stopped before its summary (cancelled),
    what its finished calls cost (its results' attempts and the plan in its trace)."""
    summary = (out or {}).get("summary") or {}
    if not summary:
        return float(spent_breakdown((out or {}).get("results") or [], (out or {}).get("trace") or [])["total"])
    return float((summary.get("spent_usd") or {}).get("total", summary.get("cost_usd", 0.0)) or 0.0)


def charge(key: ApiKey, cost: float, run_id: str | None = None) -> None:
    """Add `cost` to the key's spend of its current period (a run id is charged at most once)."""
    try:
        key_store().charge(key, cost, run_id)
    except Exception as exc:  # noqa: BLE001 - the answer is already paid for: a failed charge is logged
        log.error("charging $%.6f to API key %s (%s) failed: %s", cost, key.name, key.id, exc)


def _user_field(user, name: str):
    """A field of LangGraph's auth user (a mapping-like proxy of what server/auth.py's ``authenticate``
    returned)."""
    if user is None:
        return None
    try:
        return user[name]
    except (KeyError, TypeError, IndexError):
        return getattr(user, name, None)


def settle_run(configurable: dict, run_id: str | None, out: dict) -> None:
    """After a run through LangGraph's own API: charge its actual cost to the key LangGraph authenticated it
    with, once per run id, and record its metrics (mode ``runs``). Never raises."""
    user = configurable.get("langgraph_auth_user")
    identity = _user_field(user, "identity")
    label = _user_field(user, "identity") or ANONYMOUS  # the key's id: /metrics names no key
    started_ms = configurable.get("__request_start_time_ms__")
    seconds = time.time() - float(started_ms) / 1000 if started_ms else None
    run_metrics.observe(out, "runs", label, seconds)
    if not identity or identity == ANONYMOUS:
        return
    try:
        key = key_store().get(str(identity))
    except Exception as exc:  # noqa: BLE001
        log.error("charging run %s to API key %s failed: %s", run_id, identity, exc)
        return
    if key is None:
        log.error("run %s was authenticated as %s, which is not a key of the store: not charged", run_id, identity)
        return
    charge(key, run_cost(out), run_id)
