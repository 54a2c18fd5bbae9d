"""``fusiongraph eval``: the whole graph, live, against gold answers, beside every model alone.

One run (see docs/live-eval.md):

1. **answers**: every question is answered once by every available answering model, cheapest first, through
   the cascade's own attempt code (:func:`fusiongraph.attempt.run_attempt`: the class's prompt and answer
   length, every judge asked), each cheaper model's answer given to the consistency judge as the cascade
   would. Each row keeps the answer, whether it is right, tokens, compute seconds, USD and every judge's
   verdict; rows go to ``DIR/answers.jsonl`` as they come, so an interrupted run resumes where it stopped.
2. **strategies**, from those rows: each model alone, the oracle (the cheapest right model), a fixed
   cheapest-first cascade with the same judges (FrugalGPT), and the graph's own route (its privacy, taxonomy
   and neighbours nodes, run on the question) with the judged cascade replayed on the **recorded verdicts**,
   decided by the current acceptance (:func:`fusiongraph.judging.acceptance.decide`).
3. **live**: the compiled graph itself, end to end, on a sample (and on every multi-part line: decomposition
   and synthesis are measured only there); its accuracy, cost and seconds, and how often the replay made the
   same call (the same answering model, the same correctness).

``--record`` then keeps the answers as outcomes in the store and refits the acceptance on them (the run's
questions become training data: measure on other questions afterwards).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from fusiongraph.context import FusionContext
from fusiongraph.eval.gold import is_right, load_questions
from fusiongraph.eval.live_replay import (
    PRICE_SENSITIVITIES,
    THRESHOLDS,
    Scored,
    best_single,
    cheapest_matching,
    graph_plan,
    judges_report,
    plot_frontier,
    route_state,
    single_model,
    strategies,
    summarise,
)

ANSWERS_FILE = "answers.jsonl"
LIVE_FILE = "live.jsonl"
RESULTS_FILE = "results.json"
PLOT_FILE = "frontier.png"


# ------------------------------------------------------------------------------------------------ answers


def read_jsonl(path: Path) -> list[dict]:
    """The rows of a results file; a torn last line (an interrupted write) is dropped, any other bad line is
    an error naming it."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if n == len(lines):
                break  # torn by an interruption: answered again
            raise ValueError(f"{path}, line {n}: not valid JSON; move the file away to start over") from None
    return rows


def _drop_torn_tail(path: Path) -> None:
    """Cut a last line left without its newline by an interruption, so appended rows start on a line."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def _append(path: Path, row: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")


def answer_all(
    items: list[dict],
    ctx: FusionContext,
    models: list[str],
    out: Path,
    progress: bool = True,
    routed: dict[str, dict] | None = None,
) -> list[dict]:
    """Every question answered and judged by every model (cheapest first), in the class the live graph's
    taxonomy node gives it (`routed`: question id -> :func:`route_state`, else worked out here); rows already in
    ``answers.jsonl`` (an earlier, interrupted run) are kept, not answered again."""
    from tqdm import tqdm

    from fusiongraph.attempt import invoke_with_retries, prepare_call, run_attempt
    from fusiongraph.eval.judge_eval import attempt_scores
    from fusiongraph.records import attempt_cost
    from fusiongraph.resources import get_resources

    res = get_resources(ctx)
    path = out / ANSWERS_FILE
    _drop_torn_tail(path)
    done = {(r["id"], r["model"]): r for r in read_jsonl(path) if r.get("model") in models}
    by_id = {item["id"]: item for item in items}
    for r in done.values():  # marked again by the current matcher, and the answer's own seconds (as written now)
        r["answer_s"] = _answer_seconds(res.roster[r["model"]], {**r, "cost_usd": r["answer_cost_usd"]})
        if r["id"] in by_id and not r.get("error"):
            r["correct"] = is_right(r.get("answer") or "", by_id[r["id"]])
    available, _ = res.roster.availability(ctx.local_only)
    judge_id = res.roster.helper(available, ctx.judge_model, ctx.budget_usd) if ctx.llm_judge else None
    todo = sum((item["id"], m) not in done for item in items for m in models)
    bar = tqdm(total=todo, desc="eval: answers", unit="answer", disable=not progress)
    for item in items:
        task_class = ((routed or {}).get(item["id"]) or route_state(item, ctx)).get("task_class")
        asked = ctx.replace(max_tokens=res.taxonomy.answer_tokens(task_class, ctx.max_tokens))
        earlier: list[dict] = []
        for model_id in models:
            row = done.get((item["id"], model_id))
            if row is None:
                call = prepare_call(
                    res, asked, model_id, item["prompt"], [], judge_id, task_class=task_class, measure=True
                )
                attempt = run_attempt(
                    res, asked, call, item["prompt"], task_class, judge_id, invoke_with_retries, earlier=earlier
                )
                row = {
                    "id": item["id"],
                    "file": item["file"],
                    "prompt": item["prompt"],
                    "parts": item["parts"],
                    "model": model_id,
                    "task_class": task_class,
                    "judge_model": judge_id,
                    "answer": attempt.get("answer"),
                    "finish_reason": attempt.get("finish_reason"),
                    "error": attempt.get("error"),
                    "verdicts": attempt.get("verdicts", []),
                    "scores": attempt_scores(attempt),
                    "acceptance": attempt.get("acceptance"),
                    "tokens_in": attempt.get("tokens_in", 0),
                    "tokens_out": attempt.get("tokens_out", 0),
                    "latency_s": attempt.get("latency_s", 0.0),
                    "answer_cost_usd": attempt.get("cost_usd", 0.0),
                    "cost_usd": round(attempt_cost(attempt), 8),
                    "answer_s": _answer_seconds(res.roster[model_id], attempt),
                    "compute_s": attempt.get("compute_s", 0.0),
                }
                row["correct"] = None if row["error"] else is_right(row["answer"] or "", item)
                _append(path, row)
                done[(item["id"], model_id)] = row
                bar.update(1)
            # the cascade shows the consistency judge the cheaper tiers' answers (all rejected, on its way here)
            earlier.append({"model": model_id, "answer": row.get("answer") or "", "accepted": False})
    bar.close()
    return [done[(item["id"], m)] for item in items for m in models]


def _answer_seconds(spec, attempt: dict) -> float:
    """The answer call's own compute seconds (the attempt's include its judges'): what an hourly-priced model
    was charged for it, else its latency."""
    if spec.usd_per_hour:
        return round(attempt.get("cost_usd", 0.0) * 3600 / spec.usd_per_hour, 4)
    return attempt.get("latency_s", 0.0)


# --------------------------------------------------------------------------------------------------- live


def run_live(
    items: list[dict], ctx: FusionContext, out: Path, progress: bool = True, invoke: Callable | None = None
) -> list[dict]:
    """The compiled graph on each item, end to end (resumable through ``live.jsonl``)."""
    from tqdm import tqdm

    path = out / LIVE_FILE
    _drop_torn_tail(path)
    done = {r["id"]: r for r in read_jsonl(path)}
    if invoke is None:
        from fusiongraph.graphs.fusion import graph

        def invoke(query):
            return graph.invoke({"query": query}, context=ctx)

    for item in tqdm(
        [i for i in items if i["id"] not in done], desc="eval: live graph", unit="query", disable=not progress
    ):
        started = time.perf_counter()
        result = invoke(item["prompt"])
        results = result.get("results") or []
        summary = result.get("summary") or {}
        row = {
            "id": item["id"],
            "file": item["file"],
            "parts": item["parts"],
            "answer": result.get("answer") or "",
            "correct": is_right(result.get("answer") or "", item),
            "subtasks": len(results),
            "answered_by": [r.get("answered_by") for r in sorted(results, key=lambda r: r["index"])],
            "tried": [[a["model"] for a in r.get("attempts") or []] for r in sorted(results, key=lambda r: r["index"])],
            "plans": [r.get("candidates") for r in sorted(results, key=lambda r: r["index"])],
            "cost_usd": summary.get("cost_usd", 0.0),
            "seconds": summary.get("compute_s", 0.0),
            "wall_s": round(time.perf_counter() - started, 2),
        }
        _append(path, row)
        done[item["id"]] = row
    return [done[i["id"]] for i in items if i["id"] in done]


def live_summary(live: list[dict], per_question: dict[str, dict[str, Scored]]) -> dict:
    """The live graph's accuracy, cost and seconds, and its agreement with the replay on the same questions."""
    n = len(live)
    out = {
        "questions": n,
        "accuracy": round(sum(r["correct"] for r in live) / n, 4) if n else None,
        "cost_usd": round(sum(r["cost_usd"] for r in live), 8),
        "seconds": round(sum(r["seconds"] for r in live), 2),
        "multi_part": sum(len(r["parts"]) > 1 for r in live),
    }
    same = [r for r in live if r["id"] in per_question and r["subtasks"] == 1]
    if same:
        replay = [per_question[r["id"]]["graph_replay"] for r in same]
        out["replay_check"] = {
            "questions": len(same),
            "same_answering_model": round(
                sum(r["answered_by"][0] == o.answered_by for r, o in zip(same, replay)) / len(same), 4
            ),
            "same_correctness": round(sum(r["correct"] == o.correct for r, o in zip(same, replay)) / len(same), 4),
            "replay": summarise(replay),
        }
    return out


# ----------------------------------------------------------------------------------------------------- run


def run_eval(
    paths: list[str | Path],
    out: str | Path,
    ctx: FusionContext,
    *,
    limit: int | None = None,
    skip: int = 0,
    live: int = 5,
    models: list[str] | None = None,
    record: bool = False,
    progress: bool = True,
) -> dict:
    """The whole evaluation; writes answers.jsonl, live.jsonl, results.json and frontier.png into `out`."""
    from fusiongraph.eval.judge_eval import choose_models
    from fusiongraph.judging.acceptance import current_fit
    from fusiongraph.resources import get_resources

    if live < 0:
        raise ValueError(f"--live must be >= 0, got {live}")
    started = time.perf_counter()
    items = load_questions(paths, limit, skip)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    res = get_resources(ctx)
    import fusiongraph.graphs.fusion  # noqa: F401 - the live graph's modules, loaded before hours of answering

    chosen, skipped = choose_models(res, ctx, models)
    single = [i for i in items if len(i["parts"]) == 1]
    routed = {i["id"]: route_state(i, ctx) for i in items}  # privacy and taxonomy: once a question
    rows = answer_all(single + [i for i in items if len(i["parts"]) > 1], ctx, chosen, out, progress, routed)
    fit = current_fit(res.store)
    plans = {i["id"]: graph_plan(i, ctx, routed[i["id"]])[0] for i in single}
    price_plans = {
        lam: {i["id"]: graph_plan(i, ctx.replace(price_sensitivity=lam), routed[i["id"]])[0] for i in single}
        for lam in PRICE_SENSITIVITIES
    }
    replay = strategies(items, rows, ctx, chosen, fit, plans, price_plans)
    sample = _live_sample(items, live)
    live_rows = run_live(sample, ctx, out, progress) if sample else []
    results: dict[str, Any] = {
        "questions": len(items),
        "files": sorted({i["file"] for i in items}),
        "models": chosen,
        "skipped_models": skipped,
        "quality_threshold": ctx.quality_threshold,
        "acceptance": {"by": "calibrated", "fitted_on_rows": fit.rows} if fit is not None else {"by": "prior"},
        "strategies": replay["strategies"],
        "frontier": replay["frontier"],
        "ceilings": replay["ceilings"],
        "judges": judges_report(rows, fit, ctx.quality_threshold),
        "acceptance_by_threshold": {  # the accept decision at other thresholds: is any both right and kind?
            str(t): judges_report(rows, fit, t).get("acceptance") for t in (0.1, 0.2, *THRESHOLDS)
        },
        "judges_by_file": {
            f: judges_report([r for r in rows if r["file"] == f], fit, ctx.quality_threshold)
            for f in sorted({r["file"] for r in rows})
        },
    }
    if live_rows:
        results["strategies"]["graph"] = live_summary(live_rows, replay["per_question"])
    multi = [i["id"] for i in items if len(i["parts"]) > 1]
    if multi:  # decomposition and synthesis: the live graph against each model answering the whole query
        by = {(r["id"], r["model"]): r for r in rows}
        live_by = {r["id"]: r for r in live_rows}
        results["multi_part"] = {
            "questions": len(multi),
            "graph": summarise(
                [Scored(live_by[q]["correct"], live_by[q]["cost_usd"], live_by[q]["seconds"], None, []) for q in multi]
            ),
            **{f"single:{m}": summarise([single_model(by[(q, m)]) for q in multi]) for m in chosen},
        }
    best = best_single(results["strategies"])
    results["best_single"] = best
    if best is not None:
        target = results["strategies"][best]
        results["cheapest_matching_best_single"] = {
            name: cheapest_matching(points, target) for name, points in results["frontier"].items()
        }
        results["vs_best_single"] = {
            name: {
                "accuracy_points": round(100 * (s["accuracy"] - target["accuracy"]), 2),
                "cost_share": round(s["cost_usd"] / target["cost_usd"], 4) if target["cost_usd"] else None,
            }
            for name, s in [*results["strategies"].items(), *results["ceilings"].items()]
            if s.get("accuracy") is not None
            and (name in ("graph_replay", "fixed_cascade", "oracle") or name.startswith(("perfect_", "class_plan_")))
        }
    if record:
        results["recorded"] = record_rows(res, rows, out)
    results["wall_time_s"] = round(time.perf_counter() - started, 1)
    (out / RESULTS_FILE).write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    plot_frontier(results, out / PLOT_FILE)
    return results


def _live_sample(items: list[dict], n: int) -> list[dict]:
    """Every multi-part item, and the first `n` one-part items of each file."""
    multi = [i for i in items if len(i["parts"]) > 1]
    picked: list[dict] = []
    for f in sorted({i["file"] for i in items}):
        picked += [i for i in items if i["file"] == f and len(i["parts"]) == 1][:n]
    return picked + multi


RECORDED_FILE = "recorded.json"


def record_rows(res, rows: list[dict], out: Path) -> dict:
    """Keep the answers as outcomes (each model's first answer to the question: unconditioned) and refit the
    acceptance on them and the earlier labels. The questions recorded are listed in ``DIR/recorded.json``: a
    re-run records only the others."""
    from fusiongraph.judging.acceptance import LabelledAttempt, refit
    from fusiongraph.store import Outcome

    marker = out / RECORDED_FILE
    before = set(json.loads(marker.read_text(encoding="utf-8"))) if marker.is_file() else set()
    answered = [
        r
        for r in rows
        if not r.get("error") and r.get("correct") is not None and len(r["parts"]) == 1 and r["id"] not in before
    ]
    by_q: dict[str, list[dict]] = {}
    for r in answered:
        by_q.setdefault(r["id"], []).append(r)
    recorded = 0
    for group in by_q.values():
        outcomes = [
            Outcome(
                model=r["model"],
                success=1.0 if r["correct"] else 0.0,  # the gold label is the outcome, as in an imported table
                accepted=bool(r["correct"]),
                judges={v["judge"]: v["score"] for v in r["verdicts"]},
                answer=r["answer"],
                tokens_in=r["tokens_in"],
                tokens_out=r["tokens_out"],
                cost_usd=r["cost_usd"],
                latency_s=r["latency_s"],
                source="eval",
                after_rejection=False,  # every model answered the question first-hand
            )
            for r in group
        ]
        res.store.record(
            group[0]["prompt"], res.embedder.embed_one(group[0]["prompt"]), group[0]["task_class"], outcomes
        )
        recorded += len(outcomes)
    marker.write_text(json.dumps(sorted(before | set(by_q))), encoding="utf-8")
    labels = [
        LabelledAttempt.from_attempt(r, r.get("task_class"), bool(r["correct"]), "eval", r.get("prompt", ""))
        for r in answered
    ]
    done = {"outcomes": recorded, "subtasks": len(by_q), "labels": len(labels)}
    try:
        fit, where = refit(res.store, labels)
    except ValueError as exc:  # too few labelled answers to fit yet: the outcomes are kept all the same
        return {**done, "acceptance": f"not refitted: {exc}"}
    return {**done, "acceptance_saved": where, **fit.summary()}
