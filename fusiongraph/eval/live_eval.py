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

import dataclasses
import json
import math
import re
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

from fusiongraph.context import FusionContext
from fusiongraph.eval.judge_eval import judge_metrics
from fusiongraph.text import OPTION_LETTERS, jsonl_objects, normalise, option_letter, parse_number
from fusiongraph.text import is_correct as plain_correct

MATCHES = ("numeric", "exact", "option")
ANSWERS_FILE = "answers.jsonl"
LIVE_FILE = "live.jsonl"
RESULTS_FILE = "results.json"
PLOT_FILE = "frontier.png"
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # the replayed cascade's accept thresholds (the frontier)
PRICE_SENSITIVITIES = (0.0, 0.1, 0.3, 1.0, 3.0, 10.0)  # the graph's route replayed at these too (the frontier)

# ---------------------------------------------------------------------------------------------- matching


def numbers_in(text: str) -> list[float]:
    from fusiongraph.text import NUMBER

    return [float(n.replace(",", "")) for n in NUMBER.findall(text or "")]


def part_correct(answer: str, reference: str, match: str, whole: bool = True) -> bool:
    """One gold part against an answer. `whole`: the answer answers only this part (numeric: its last number;
    option: the letter it settles on); else the part is one of several in the answer (numeric: any number
    equals the reference; option: the letter as "(X)" or "X." anywhere; exact: as a phrase)."""
    if match == "option":
        want = reference.strip().upper()
        if whole:
            return option_letter(answer) == want
        return bool(re.search(rf"(?:\({want}\)|\b{want}[\.\)])", answer or ""))
    if match == "numeric" and not whole:
        want = parse_number(reference)
        return any(math.isclose(n, want, rel_tol=1e-6, abs_tol=1e-9) for n in numbers_in(answer))
    return plain_correct(answer or "", reference, match)


def is_right(answer: str, item: dict) -> bool:
    """All of the question's parts are right (a one-part question: by its whole answer)."""
    parts = item["parts"]
    return all(part_correct(answer, p["reference"], p["match"], whole=len(parts) == 1) for p in parts)


# ------------------------------------------------------------------------------------------------- input


def _part(raw: Any, where: str) -> dict:
    if not isinstance(raw, dict) or "reference" not in raw:
        raise ValueError(f'{where}: a part must be an object with "reference" (and "match")')
    reference = raw["reference"]
    if isinstance(reference, (int, float)) and not isinstance(reference, bool):
        reference = str(reference)
    if not isinstance(reference, str) or not normalise(reference):
        raise ValueError(f'{where}: "reference" must be a non-empty string or a number')
    match = raw.get("match") or ("numeric" if parse_number(reference) is not None else "exact")
    if match not in MATCHES:
        raise ValueError(f'{where}: "match" must be one of {list(MATCHES)}, got {match!r}')
    if match == "numeric" and parse_number(reference) is None:
        raise ValueError(f'{where}: "match" is numeric but the reference {reference!r} is not a number')
    if match == "option" and (len(reference.strip()) != 1 or reference.strip().upper() not in OPTION_LETTERS):
        raise ValueError(f'{where}: "match" is option but the reference {reference!r} is not one option letter')
    return {"reference": reference.strip(), "match": match}


def load_questions(paths: list[str | Path], limit: int | None = None, skip: int = 0) -> list[dict]:
    """The questions of each JSONL file (``{"id", "prompt", "reference", "match"}`` or ``{"id", "prompt",
    "parts": [{"reference", "match"}, ...]}``), `skip` then at most `limit` of each file. A bad line raises
    ValueError naming the file and the line; ids must be unique across the files."""
    from fusiongraph.text import clean_query

    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be >= 1, got {limit}")
    if skip < 0:
        raise ValueError(f"--skip must be >= 0, got {skip}")
    items: list[dict] = []
    seen: dict[str, str] = {}
    for path in paths:
        path = Path(path)
        taken = []
        for n, where, raw in jsonl_objects(path, '"id", "prompt" and "reference" or "parts"'):
            for key in ("id", "prompt"):
                if not isinstance(raw.get(key), (str, int)) or isinstance(raw.get(key), bool):
                    raise ValueError(f'{where}: missing or bad field "{key}"')
            if ("parts" in raw) == ("reference" in raw):
                raise ValueError(f'{where}: give either "reference" (one answer) or "parts" (several)')
            if "parts" in raw:
                if not isinstance(raw["parts"], list) or not raw["parts"]:
                    raise ValueError(f'{where}: "parts" must be a non-empty list')
                parts = [_part(p, f"{where}, part {i + 1}") for i, p in enumerate(raw["parts"])]
            else:
                parts = [_part(raw, where)]
            try:
                prompt = clean_query(str(raw["prompt"]))
            except ValueError as exc:
                raise ValueError(f'{where}: "prompt": {exc}') from None
            qid = str(raw["id"])
            if qid in seen:
                raise ValueError(f"{where}: id {qid!r} is also in {seen[qid]}")
            seen[qid] = where
            taken.append({"id": qid, "prompt": prompt, "parts": parts, "file": path.name, "line": n})
        taken = taken[skip:]
        items.extend(taken[:limit] if limit else taken)
    if not items:
        raise ValueError(f"no questions in {', '.join(str(p) for p in paths)} (after --skip {skip})")
    return items


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
    items: list[dict], ctx: FusionContext, models: list[str], out: Path, progress: bool = True
) -> list[dict]:
    """Every question answered and judged by every model (cheapest first); rows already in ``answers.jsonl``
    (an earlier, interrupted run) are kept, not answered again."""
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
        task_class = res.taxonomy.classify(res.embedder.embed_one(item["prompt"]), res.embedder).task_class
        asked = dataclasses.replace(ctx, max_tokens=res.taxonomy.answer_tokens(task_class, ctx.max_tokens))
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


def _single(row: dict) -> Scored:
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


def graph_plan(item: dict, ctx: FusionContext) -> tuple[list[str], dict]:
    """The plan the live graph makes for a one-part question: its privacy, taxonomy and neighbours nodes, run
    on it (the same code, the same store); returns (plan, the route's state)."""
    from fusiongraph.nodes.neighbours import neighbours
    from fusiongraph.nodes.privacy import privacy
    from fusiongraph.nodes.taxonomy import taxonomy

    runtime = SimpleNamespace(context=ctx)
    state: dict[str, Any] = {"subtask": item["prompt"], "index": 0, "n_subtasks": 1, "trace": []}
    for node in (privacy, taxonomy, neighbours):
        update = node(state, runtime)
        state.update({k: v for k, v in update.items() if k != "trace"})
    return list(state.get("candidates") or []), state


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
            per_question[i["id"]][f"single:{m}"] = _single(by_q[i["id"]][m])
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
    return {"strategies": out, "frontier": frontier, "per_question": per_question}


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
    rows = answer_all(single + [i for i in items if len(i["parts"]) > 1], ctx, chosen, out, progress)
    fit = current_fit(res.store)
    plans = {i["id"]: graph_plan(i, ctx)[0] for i in single}
    price_plans = {
        lam: {i["id"]: graph_plan(i, dataclasses.replace(ctx, price_sensitivity=lam))[0] for i in single}
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
        "judges": judges_report(rows, fit, ctx.quality_threshold),
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
            **{f"single:{m}": summarise([_single(by[(q, m)]) for q in multi]) for m in chosen},
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
            for name, s in results["strategies"].items()
            if s.get("accuracy") is not None and name in ("graph_replay", "fixed_cascade", "oracle")
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
