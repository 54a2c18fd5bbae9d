"""`fusiongraph eval`'s strategies replayed on the recorded answers and verdicts: single models, the oracle, a
fixed cascade and the graph's own route with the judged cascade; the judges' report and the frontier plot."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from fusiongraph.context import FusionContext
from fusiongraph.eval.judge_eval import judge_metrics

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # the replayed cascade's accept thresholds (the frontier)
PRICE_SENSITIVITIES = (0.0, 0.1, 0.3, 1.0, 3.0, 10.0)  # the graph's route replayed at these too (the frontier)


# --------------------------------------------------------------------------------------------- decisions


ASKED_BY_SAY = ("llm", "consistency", "crosscheck")  # judges not asked where the fit gives them no say


def judged(row: dict, fit) -> tuple[float, float, float]:
    """(P(right), USD, compute seconds) of the row's attempt as the live cascade would make it now: its
    recorded verdicts decided by `fit` (None: the fixed weights), leaving out the judges that `fit` gives no
    say in the row's class (the cascade does not ask them there) and, when the LLM judge is one of them, its
    cost (the recorded cost above the answer's: no other judge is priced with the default knobs)."""
    from fusiongraph.judging.acceptance import decide, without_say
    from fusiongraph.judging.base import Verdict

    if row.get("error"):
        return 0.0, row["cost_usd"], row["compute_s"]
    skip = without_say(fit, row.get("task_class")) & set(ASKED_BY_SAY)
    verdicts = [
        Verdict(v["judge"], v["score"], bool(v["veto"]), v.get("detail", ""), exact=bool(v.get("exact")))
        for v in row["verdicts"]
        if v["judge"] not in skip
    ]
    p = decide(fit, verdicts, row.get("task_class"), row["model"], row.get("answer") or "", row.get("finish_reason"))
    cost, seconds = row["cost_usd"], row["compute_s"]
    if "llm" in skip and any(v["judge"] == "llm" for v in row["verdicts"]):
        cost, seconds = row["answer_cost_usd"], row["answer_s"]
    return p["p_right"], cost, seconds


def p_right(row: dict, fit) -> float:
    """The row's P(right) as the live cascade would decide it now (see :func:`judged`)."""
    return judged(row, fit)[0]


@dataclasses.dataclass
class Scored:
    """One strategy's result on one question."""

    correct: bool
    cost_usd: float
    seconds: float
    answered_by: str | None
    tried: list[str]


def single_model(row: dict) -> Scored:
    return Scored(bool(row["correct"]), row["answer_cost_usd"], row["answer_s"], row["model"], [row["model"]])


def run_cascade(plan: list[str], rows: dict[str, dict], judging: dict[str, tuple], threshold: float) -> Scored:
    """The judged cascade on recorded rows (`judging`: model -> :func:`judged`): each tier's answer and judges
    are paid for; the first answer whose P(right) reaches `threshold` is taken, else the best-scored one (as
    nodes/cascade.py does)."""
    tried, cost, seconds = [], 0.0, 0.0
    for model in plan:
        row = rows[model]
        p, c, s = judging[model]
        tried.append(model)
        cost += c
        seconds += s
        if not row.get("error") and p >= threshold:
            return Scored(bool(row["correct"]), cost, seconds, model, tried)
    answered = [m for m in tried if not rows[m].get("error")]
    if not answered:
        return Scored(False, cost, seconds, None, tried)
    best = max(answered, key=lambda m: judging[m][0])
    return Scored(bool(rows[best]["correct"]), cost, seconds, best, tried)


def perfect_cascade(plan: list[str], rows: dict[str, dict]) -> Scored:
    """The cascade on `plan` with a perfect, free judge (:func:`run_cascade` with P(right) = the gold label and
    only the answers paid for): the first right answer is taken. No judged cascade on this plan can be more
    accurate or, at that accuracy, cheaper."""
    judging = {m: (1.0 if rows[m]["correct"] else 0.0, rows[m]["answer_cost_usd"], rows[m]["answer_s"]) for m in plan}
    return run_cascade(plan, rows, judging, 0.5)


MAX_PLAN_MODELS = 3  # with more than 5 models, the hindsight plans try at most this many tiers


def ordered_plans(models: list[str]) -> list[list[str]]:
    """Every non-empty ordered subset of `models` (a cascade's possible plans); with more than 5 models, those
    of at most MAX_PLAN_MODELS tiers (there are 13,699 plans of 7 models)."""
    import itertools

    longest = len(models) if len(models) <= 5 else MAX_PLAN_MODELS
    return [list(p) for k in range(1, longest + 1) for p in itertools.permutations(models, k)]


def ceilings(single_items: list[dict], by_q: dict[str, dict[str, dict]], models: list[str], plans: dict) -> dict:
    """What judged cascades could reach at best, each with a perfect and free judge: on the graph's own plans,
    cheapest to dearest, and with one plan per task class chosen in hindsight (every ordered subset of the
    models tried): the cheapest plan as accurate as the class's best single model (``class_plan_matching``), the
    cheapest as accurate as any plan can be (``class_plan_best``), and the cheapest set of class plans that beats
    the best single model by 2 points pooled (``class_plan_plus_2_points``; ``reachable: false`` when none can).
    The gap between a strategy and its
    ceiling is the judges'; the gap between a ceiling and the oracle is what no cascade closes, only a router
    that knows in advance which model will be right."""
    out = {
        "perfect_judge_graph_plan": summarise(
            [
                perfect_cascade([m for m in plans.get(i["id"], []) if m in models] or models[:1], by_q[i["id"]])
                for i in single_items
            ]
        ),  # fmt: skip
        "perfect_judge_cheapest_first": summarise([perfect_cascade(models, by_q[i["id"]]) for i in single_items]),
    }
    classes: dict[str, list[dict]] = {}
    for i in single_items:
        classes.setdefault(by_q[i["id"]][models[0]].get("task_class") or "-", []).append(i)
    matching: list[Scored] = []
    best: list[Scored] = []
    chosen: dict[str, dict] = {}
    # the cheapest per-class plans, pooled, as accurate as the best single model plus 2 points: a small knapsack
    # over classes (right answers -> the cheapest cost and its plans)
    pooled: dict[int, tuple[float, dict]] = {0: (0.0, {})}
    for cls, members in sorted(classes.items()):
        runs = {tuple(plan): [perfect_cascade(plan, by_q[i["id"]]) for i in members] for plan in ordered_plans(models)}
        score = {plan: (sum(r.correct for r in rs), sum(r.cost_usd for r in rs)) for plan, rs in runs.items()}
        single_best = max(score[(m,)][0] for m in models)
        top = max(right for right, _ in score.values())
        match_plan = min((p for p in score if score[p][0] >= single_best), key=lambda p: score[p][1])
        best_plan = min((p for p in score if score[p][0] == top), key=lambda p: score[p][1])
        matching += runs[match_plan]
        best += runs[best_plan]
        chosen[cls] = {"questions": len(members), "matching": list(match_plan), "best": list(best_plan)}
        step: dict[int, tuple[float, dict]] = {}
        for right, (cost, picks) in pooled.items():
            for plan, (r, c) in score.items():
                if right + r not in step or cost + c < step[right + r][0]:
                    step[right + r] = (cost + c, picks | {cls: plan})
        pooled = step
    n = len(single_items)
    best_single_right = max(sum(bool(by_q[i["id"]][m]["correct"]) for i in single_items) for m in models) if n else 0
    need = best_single_right + 0.02 * n
    reachable = [(cost, right, picks) for right, (cost, picks) in pooled.items() if right >= need - 1e-9]
    if n and reachable:
        cost, right, picks = min(reachable, key=lambda x: x[0])
        out["class_plan_plus_2_points"] = {
            "questions": n,
            "accuracy": round(right / n, 4),
            "cost_usd": round(cost, 8),
            "plans": {cls: list(plan) for cls, plan in picks.items()},
        }
    else:
        out["class_plan_plus_2_points"] = {"questions": n, "accuracy": None, "reachable": False}
    out["class_plan_matching"] = summarise(matching)
    out["class_plan_best"] = summarise(best)
    out["class_plans"] = chosen
    return out


def route_state(item: dict, ctx: FusionContext) -> dict:
    """The live graph's state for a question after its privacy and taxonomy nodes (the same code, the same
    store): its class, masked text and candidates, before the neighbours node."""
    from fusiongraph.nodes.privacy import privacy
    from fusiongraph.nodes.taxonomy import taxonomy

    return _run_nodes((privacy, taxonomy), {"subtask": item["prompt"], "index": 0, "n_subtasks": 1, "trace": []}, ctx)


def graph_plan(item: dict, ctx: FusionContext, routed: dict | None = None) -> tuple[list[str], dict]:
    """The plan the live graph makes for a one-part question: its privacy, taxonomy and neighbours nodes run on
    it (`routed`: the state :func:`route_state` gave, so only the neighbours node, which reads the price
    sensitivity and the store, runs again); returns (plan, the route's state)."""
    from fusiongraph.nodes.neighbours import neighbours

    state = _run_nodes((neighbours,), dict(routed if routed is not None else route_state(item, ctx)), ctx)
    return list(state.get("candidates") or []), state


def _run_nodes(nodes, state: dict[str, Any], ctx: FusionContext) -> dict:
    runtime = SimpleNamespace(context=ctx)
    for node in nodes:
        update = node(state, runtime)
        state.update({k: v for k, v in update.items() if k != "trace"})
    return state


def summarise(outcomes: list[Scored]) -> dict:
    n = len(outcomes)
    return {
        "questions": n,
        "accuracy": round(sum(o.correct for o in outcomes) / n, 4) if n else None,
        "cost_usd": round(sum(o.cost_usd for o in outcomes), 8),
        "seconds": round(sum(o.seconds for o in outcomes), 2),
    }


def strategies(
    items: list[dict],
    rows: list[dict],
    ctx: FusionContext,
    models: list[str],
    fit,
    plans: dict[str, list[str]],
    price_plans: dict[float, dict[str, list[str]]] | None = None,
) -> dict:
    """accuracy, cost_usd and seconds of every strategy on the one-part questions (see the module docstring),
    with the replayed cascades' frontier over accept thresholds."""
    by_q: dict[str, dict[str, dict]] = {}
    for r in rows:
        by_q.setdefault(r["id"], {})[r["model"]] = r
    single_items = [i for i in items if len(i["parts"]) == 1 and all(m in by_q.get(i["id"], {}) for m in models)]
    probs = {i["id"]: {m: judged(by_q[i["id"]][m], fit) for m in models} for i in single_items}
    out: dict[str, dict] = {}
    per_question: dict[str, dict[str, Scored]] = {i["id"]: {} for i in single_items}
    for m in models:
        for i in single_items:
            per_question[i["id"]][f"single:{m}"] = single_model(by_q[i["id"]][m])
    for i in single_items:
        q = by_q[i["id"]]
        right = [m for m in models if q[m]["correct"]]
        pick = right[0] if right else models[0]
        per_question[i["id"]]["oracle"] = Scored(
            bool(right), q[pick]["answer_cost_usd"], q[pick]["answer_s"], pick, [pick]
        )
        per_question[i["id"]]["fixed_cascade"] = run_cascade(models, q, probs[i["id"]], ctx.quality_threshold)
        plan = [m for m in plans.get(i["id"], []) if m in q] or models[:1]
        per_question[i["id"]]["graph_replay"] = run_cascade(plan, q, probs[i["id"]], ctx.quality_threshold)
    names = [f"single:{m}" for m in models] + ["oracle", "fixed_cascade", "graph_replay"]
    for name in names:
        out[name] = summarise([per_question[i["id"]][name] for i in single_items])
        out[name]["by_file"] = {
            f: summarise([per_question[i["id"]][name] for i in single_items if i["file"] == f])
            for f in sorted({i["file"] for i in single_items})
        }
    frontier = {"fixed_cascade": [], "graph_replay": []}
    for t in THRESHOLDS:
        for name, plan_of in (("fixed_cascade", lambda i: models), ("graph_replay", lambda i: plans.get(i["id"]))):
            point = summarise(
                [
                    run_cascade(
                        [m for m in (plan_of(i) or []) if m in by_q[i["id"]]] or models[:1],
                        by_q[i["id"]],
                        probs[i["id"]],
                        t,
                    )
                    for i in single_items
                ]
            )
            frontier[name].append({"quality_threshold": t, **point})
    for lam, lam_plans in sorted((price_plans or {}).items()):  # the graph's route at other price sensitivities
        point = summarise(
            [
                run_cascade(
                    [m for m in lam_plans.get(i["id"], []) if m in by_q[i["id"]]] or models[:1],
                    by_q[i["id"]],
                    probs[i["id"]],
                    ctx.quality_threshold,
                )
                for i in single_items
            ]
        )
        frontier.setdefault("graph_replay_price", []).append({"price_sensitivity": lam, **point})
    return {
        "strategies": out,
        "frontier": frontier,
        "per_question": per_question,
        "ceilings": ceilings(single_items, by_q, models, plans),
    }


def best_single(strats: dict) -> str | None:
    """The most accurate single model (the cheaper at a tie); None with no one-part question."""
    singles = {k: v for k, v in strats.items() if k.startswith("single:") and v["accuracy"] is not None}
    return max(singles, key=lambda k: (singles[k]["accuracy"], -singles[k]["cost_usd"]), default=None)


def cheapest_matching(frontier: list[dict], target: dict) -> dict | None:
    """The cheapest frontier point whose accuracy is at least the target's, else None."""
    ok = [p for p in frontier if p["accuracy"] is not None and p["accuracy"] >= target["accuracy"]]
    return min(ok, key=lambda p: p["cost_usd"], default=None)


# ------------------------------------------------------------------------------------------------- judges


def judges_report(rows: list[dict], fit, threshold: float) -> dict:
    """Per judge kind and for the acceptance decision: AUROC, accept accuracy, right answers rejected."""
    scored = [r for r in rows if not r.get("error") and r.get("correct") is not None]
    pairs = []
    for r in scored:
        scores = {v["judge"]: v["score"] for v in r["verdicts"]}
        scores["aggregate"] = p_right(r, fit)
        pairs.append((scores, bool(r["correct"])))
    metrics = judge_metrics(pairs, threshold)
    out = {}
    for kind, m in metrics.items():
        name = "acceptance" if kind == "aggregate" else kind
        out[name] = {
            "answers": m["answers"],
            "auroc": m["auroc"],
            "accept_accuracy": m["accept_accuracy"],
            "right_rejected": m["right_rejected_share"],
            "wrong_accepted": m["wrong_accepted"],
        }
    return out


# ---------------------------------------------------------------------------------------------------- plot


def plot_frontier(results: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, point in results["strategies"].items():
        if point.get("accuracy") is None:
            continue
        ax.scatter(point["cost_usd"], point["accuracy"], label=f"{name} ({point['questions']} q)", zorder=3)
    for name, points in results["frontier"].items():
        pts = sorted((p["cost_usd"], p["accuracy"]) for p in points if p["accuracy"] is not None)
        if pts:
            knob = "price sensitivity" if name.endswith("_price") else "accept threshold"
            ax.plot(*zip(*pts), linestyle="--", alpha=0.6, label=f"{name.removesuffix('_price')} by {knob}")
    ax.set_xlabel("cost, USD (local models: compute seconds x the machine's hourly price)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"fusiongraph eval: {results['questions']} questions")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
