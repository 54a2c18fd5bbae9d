"""Online replay: the table in order (or shuffled), each window routed with only the outcomes recorded before
it; and ``introduce``: how long until routing uses a model added mid-way (see :mod:`fusiongraph.eval.bench`)."""

from __future__ import annotations

import math

import numpy as np

from fusiongraph.attempt import after_rejection
from fusiongraph.eval.bench.metrics import CostModel, routellm_metrics, two_model_curve
from fusiongraph.eval.bench.replay import (
    LAMBDAS,
    Replay,
    _record,
    _route_rows,
    replay_pick,
)
from fusiongraph.eval.tables import OutcomeTable
from fusiongraph.routing.operating_point import _predictions
from fusiongraph.routing.router import Router, RoutingParams
from fusiongraph.routing.rule import explore_bonus, plan_utility
from fusiongraph.store.outcomes import OutcomeStore


# ------------------------------------------------------------------------------------------ online
def run_online(
    table: OutcomeTable,
    vectors: np.ndarray,
    classes: list,
    class_scores: list[dict],
    costs: CostModel,
    models: list[str],
    by_cost: list[str],
    strategies: dict,
    k: int,
    min_similarity: float,
    router_params: dict,
    embedder,
    windows: int = 20,
    order_seed: int | None = None,
    *,
    lam: float | None,
    explore: float,
    introduce: tuple[str, int] | None = None,
) -> dict:
    """Replay the table in order (or shuffled by `order_seed`), routing each window with only the outcomes
    recorded before it. With `introduce` = (MODEL, N): MODEL's outcomes are hidden before prompt N; from N
    on, MODEL's outcome is recorded only on prompts where the cascade plan (at `lam`) tried it, as the live
    graph records only what it ran (bandit feedback) -- so a new model is learnt only if it is explored --
    and flagged ``after_rejection`` where models before it in the plan were rejected, as the live cascade
    flags it (:func:`cascade_reach`). The other models' outcomes are all recorded, unconditioned, as an
    imported table's are."""
    n, m = table.scores.shape
    two = m == 2
    best_single = max((s for s in strategies if s.startswith("single:")), key=lambda s: strategies[s]["quality"])
    budget = 0.5 if two else 0.5 * strategies[best_single]["cost"]
    store = OutcomeStore(None, vectors.shape[1], embedder.name)
    known: dict[str, int] = {}
    router = Router(store, probe_background=False, **router_params)
    size = max(1, math.ceil(n / windows))
    per = costs.per_prompt
    hint = None if costs.unit.startswith("USD") else dict(zip(models, costs.means.tolist()))
    points = []
    replay = Replay.empty(n, m, ("hybrid",))
    seen_outcomes = 0
    new_j = models.index(introduce[0]) if introduce else None
    knobs = RoutingParams.from_context()  # judge_accuracy and quality_threshold, as the live route reads them
    without_new = [j for j in costs.order if j != new_j]
    order = np.arange(n) if order_seed is None else np.random.default_rng(order_seed).permutation(n)
    for start in range(0, n, size):
        rows = order[start : start + size]
        _route_rows(
            router,
            models,
            vectors,
            class_scores,
            table.prompts,
            rows,
            k,
            min_similarity,
            ("hybrid",),
            replay,
            known,
            hint,
        )
        p, c, n_out = replay.p["hybrid"][rows], replay.c["hybrid"][rows], replay.n_out[rows]
        sc = table.scores[rows].copy()
        pc = per[rows]
        idx = np.arange(len(rows))
        point = {"prompts_seen": int(start), "outcomes_seen": int(seen_outcomes), "window": len(rows)}
        # before its introduction the new model is not in the roster: it is never picked
        usable = without_new if new_j is not None and start < introduce[1] else costs.order
        if two:
            weak, strong = costs.order
            q_eff = np.minimum(p + explore_bonus(p, n_out, explore), 0.999)
            _, xs, qs = two_model_curve(q_eff, sc, weak, strong)
            point["quality"] = float(np.interp(budget, xs, qs))
            point["random_quality"] = float((1 - budget) * sc[:, weak].mean() + budget * sc[:, strong].mean())
            point.update(routellm_metrics(xs, qs, float(sc[:, weak].mean()), float(sc[:, strong].mean())))
        else:
            curve = []
            for knob in LAMBDAS:
                pick = replay_pick(p, c, n_out, usable, float(knob), explore)
                curve.append((float(pc[idx, pick].mean()), float(sc[idx, pick].mean())))
            within = [q for c_, q in curve if c_ <= budget + 1e-12]
            point["quality"] = float(max(within)) if within else float(min(curve)[1])
            afford = [j for j in range(m) if per[rows, j].mean() <= budget + 1e-12]
            point["random_quality"] = float(sc[:, afford].mean()) if afford else None
        # the default knob: fixed, or chosen on the store as it stands (the live graph's operating point)
        knob = lam
        if knob is None:
            params = RoutingParams.from_context(  # the live route's knobs (judge_accuracy, quality_threshold)
                None, router="hybrid", k=k, min_similarity=min_similarity, explore=explore, price_sensitivity=None
            )
            op = router.operating_point(
                [models[j] for j in usable], params
            )  # as the live route asks for it: capped for the judged cascade the graph runs
            knob = op.price_sensitivity
            point["price_sensitivity"] = knob
        pick = replay_pick(p, c, n_out, usable, knob, explore)
        point["default_quality"] = float(sc[idx, pick].mean())
        point["default_cost"] = float(pc[idx, pick].mean())
        conditioned = None
        if new_j is not None:
            point["introduced_share"] = float((pick == new_j).mean())
            if start < introduce[1]:
                sc[:, new_j] = np.nan
            else:  # only where the cascade ran it: in the plan, and every model before it rejected
                accept = knobs.accept
                col = {name: j for j, name in enumerate(models)}
                tried = np.zeros(len(rows), bool)
                conditioned = np.zeros(sc.shape, bool)
                for r in range(len(rows)):
                    plan, _ = plan_utility(
                        by_cost,
                        _predictions(p[r], c[r], n_out[r], models),
                        knob,
                        judge_accuracy=knobs.judge_accuracy,
                        explore=explore,
                        joint=router.joint(),
                    )
                    # the recorded outcome as the judge
                    tried[r], conditioned[r, new_j] = cascade_reach(
                        plan, introduce[0], lambda b: sc[r, col[b]] >= accept
                    )
                sc[~tried, new_j] = np.nan
                point["introduced_tried"] = float(tried.mean())
                point["introduced_conditioned"] = float(conditioned[:, new_j].mean())
        points.append(point)
        _record(
            store,
            [table.prompts[i] for i in rows],
            vectors[rows],
            [classes[i] for i in rows],
            sc,
            per[rows] if costs.unit.startswith("USD") else None,
            table.tokens[rows] if table.tokens is not None else None,
            models,
            known,
            after_rejection=conditioned,
        )
        seen_outcomes += int((~np.isnan(sc)).sum())
    store.close()
    out = {
        "mode": "hybrid",
        "order": "table" if order_seed is None else f"shuffled (seed {order_seed})",
        "cost": budget,
        "window": size,
        "best_single": best_single,
        "best_single_quality": strategies[best_single]["quality"],
        "points": points,
    }
    if introduce is not None:
        out["introduce"] = introduced_summary(introduce, points, strategies, models)
    return out


def cascade_reach(plan: list[str], model: str, accepted) -> tuple[bool, bool]:
    """Whether the cascade running `plan` reaches `model` (it stops at the first answer `accepted(m)` says
    is good), and whether that attempt is ``after_rejection``, decided by the live cascade's own rule
    (:func:`fusiongraph.attempt.after_rejection` over the attempts made before it)."""
    earlier: list[dict] = []
    for m in plan:
        if m == model:
            return True, after_rejection(earlier)
        if accepted(m):
            return False, False
        earlier.append({"model": m, "answer": "", "accepted": False})  # a judged answer, rejected
    return False, False


def introduced_summary(introduce: tuple[str, int], points: list[dict], strategies: dict, models: list[str]) -> dict:
    """How long until routing uses a model introduced at prompt N as it would with every outcome known.

    ``prompts_until_used``: prompts from N to the end of the first window whose default-knob share of the
    model is between half and twice its share in the offline hybrid replay, and whose mean share over the
    rest of the replay is at least half of it (so the blind burst of optimism right after N does not count).
    """
    model, at = introduce
    reference = strategies.get("hybrid", {}).get("pick_share", {}).get(model)
    after = [pt for pt in points if pt["prompts_seen"] >= at]
    shares = [pt.get("introduced_share", 0.0) for pt in after]
    used = None
    if reference:
        for i, pt in enumerate(after):
            if 0.5 * reference <= shares[i] <= 2 * reference and np.mean(shares[i:]) >= 0.5 * reference:
                used = pt["prompts_seen"] + pt["window"] - at
                break
    return {
        "model": model,
        "at": at,
        "offline_share": reference,
        "prompts_until_used": used,
        "shares_after": [round(x, 4) for x in shares],
    }
