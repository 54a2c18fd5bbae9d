"""Measuring the judges: how well does each judge kind (and their aggregate) tell right answers from wrong?

Questions with known answers (JSONL: ``{"prompt", "reference", "match"?}``) go through the answering
models by the cascade's own attempt code (`prepare_call` / `run_attempt`: the same prompt and answer
length of the task class, the same judges, the same acceptance compared with `quality_threshold`: an
exact check, else the calibrated P(right) saved beside the store, else the fixed weights), without
worked examples (guides) and without recording outcomes. Every judge speaks on every answer it can (a
judge the calibrator gives no say is still asked, to be measured; none is asked after a veto or an exact
verdict). ``--fit`` then keeps the labelled answers in the store and fits the calibrator on them and on
the earlier ones (:func:`fit_from_answers`); ``calibrate-judges`` does the same from saved answers.jsonl
files and replays the decision on a held-out file (:func:`replay_acceptance`). Each answer is marked
right or wrong against the reference:

* ``numeric`` (the default when the reference is a number): the *last* number in the answer equals the
  reference within a relative 1e-6 (``1,234`` and ``-5`` are read; words such as "fifty" are not).
* ``exact``: answer and reference are normalised (Unicode NFKC, lower case, every run of punctuation or
  whitespace becomes one space); right when they are equal or when the reference appears in the answer
  as a whole word or phrase ("paris" is in "it is paris." but not in "parisian").

Per registered judge (:data:`fusiongraph.judging.base.JUDGES`: rules, self, llm, ...) and for the aggregate:
AUROC of the score against correctness, and the accuracy of the accept decision (score >=
quality_threshold), with the counts behind them. A judge that abstained on an answer (no
log-probabilities; the LLM judge off, or not asked after a rules veto) is scored only on the answers it
spoke on.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from fusiongraph.context import FusionContext
from fusiongraph.records import Attempt
from fusiongraph.text import gold_reference, is_correct

# ------------------------------------------------------------------------------------------------ input


def load_items(path: str | Path) -> list[dict]:
    """JSONL of {"prompt": str, "reference": str, "match": "exact"|"numeric" (optional)}; blank lines are
    skipped, other keys ignored. A bad line raises ValueError naming the file and the line."""
    from fusiongraph.text import clean_query, jsonl_objects

    items = []
    for n, where, item in jsonl_objects(path, '"prompt" and "reference"'):
        missing = [k for k in ("prompt", "reference") if k not in item]
        if missing:
            raise ValueError(f"{where}: missing field {', '.join(repr(k) for k in missing)}")
        reference, match = gold_reference(item["reference"], item.get("match"), where)
        try:
            prompt = clean_query(item["prompt"])
        except ValueError as exc:
            raise ValueError(f'{where}: "prompt": {exc}') from None
        items.append({"line": n, "prompt": prompt, "reference": reference, "match": match})
    if not items:
        raise ValueError(f"{path}: no questions (the file is empty)")
    return items


def generate_arithmetic(n: int, seed: int = 0) -> list[dict]:
    """Arithmetic questions with references: products of 2..12 and sums of two two-digit numbers, alternating."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = random.Random(seed)
    items = []
    for i in range(n):
        if i % 2 == 0:
            a, b = rng.randint(2, 12), rng.randint(2, 12)
            items.append({"prompt": f"What is {a} times {b}?", "reference": str(a * b), "match": "numeric"})
        else:
            a, b = rng.randint(10, 99), rng.randint(10, 99)
            items.append({"prompt": f"What is {a} plus {b}?", "reference": str(a + b), "match": "numeric"})
    return items


def _arithmetic(n: int, seed: int = 0, split: str = "all") -> list[dict]:
    if split != "all":
        raise ValueError("--split works with the sets phrasings, facts and easy; 'arithmetic' is one set")
    return generate_arithmetic(n, seed)


def _generators() -> dict:
    from fusiongraph.eval import question_sets as qs

    return {
        "arithmetic": _arithmetic,
        "phrasings": qs.generate_phrasings,
        "facts": qs.generate_facts,
        "easy": qs.generate_easy,
    }


GENERATORS = _generators()  # name -> (n, seed, split) -> items (fusiongraph/eval/question_sets.py)


# ---------------------------------------------------------------------------------------------- metrics


def judge_kinds() -> tuple[str, ...]:
    """The rows of the report: every registered judge, in the order they run, then the aggregate."""
    from fusiongraph.judging.base import JUDGES

    return (*JUDGES, "aggregate")


def judge_metrics(rows: list[tuple[dict, bool]], threshold: float) -> dict:
    """rows: (scores by judge kind, correct); a score of None (or a missing kind) is an abstention.

    Per kind: answers scored, right, accepted (score >= threshold), right&accepted, wrong&accepted,
    right&rejected and its share of the right answers, accept_accuracy ((right&accepted + wrong&rejected) / answers), majority_baseline (the accuracy of
    always accepting or always rejecting, whichever is higher), and AUROC (None with one class only).
    """
    from sklearn.metrics import roc_auc_score

    out = {}
    for kind in judge_kinds():
        spoke = [(float(s[kind]), bool(c)) for s, c in rows if s.get(kind) is not None]
        n = len(spoke)
        right = sum(c for _, c in spoke)
        accepted = [c for s, c in spoke if s >= threshold]
        right_acc = sum(accepted)
        wrong_acc = len(accepted) - right_acc
        wrong_rej = (n - right) - wrong_acc
        right_rej = right - right_acc
        labels = [c for _, c in spoke]
        auroc = float(roc_auc_score(labels, [s for s, _ in spoke])) if 0 < right < n else None
        out[kind] = {
            "answers": n,
            "abstained": len(rows) - n,
            "right": right,
            "accepted": len(accepted),
            "right_accepted": right_acc,
            "wrong_accepted": wrong_acc,
            "right_rejected": right_rej,
            "right_rejected_share": round(right_rej / right, 4) if right else None,
            "accept_accuracy": round((right_acc + wrong_rej) / n, 4) if n else None,
            "majority_baseline": round(max(right, n - right) / n, 4) if n else None,
            "auroc": None if auroc is None else round(auroc, 4),
        }
    return out


def attempt_scores(attempt: Attempt) -> dict:
    """Scores by judge kind of one run_attempt result, plus the aggregate (its `confidence`)."""
    from fusiongraph.records import attempt_scores as by_judge_of

    by_judge = by_judge_of(attempt)
    scores = {k: by_judge.get(k) for k in judge_kinds()[:-1]}
    scores["aggregate"] = attempt.get("confidence")
    return scores


# ------------------------------------------------------------------------------------------------- runs


def choose_models(res, ctx: FusionContext, wanted: list[str] | None) -> tuple[list[str], list[dict]]:
    """The roster's available answering models (cheapest first), or the wanted ones, checked."""
    available, skipped = res.roster.availability(ctx.local_only, answering=True)
    if not wanted:
        if not available:
            raise ValueError(
                "no answering model is available: " + "; ".join(f"{s['model']} ({s['reason']})" for s in skipped)
            )
        return available, skipped
    reasons = {s["model"]: s["reason"] for s in skipped}
    for m in wanted:
        if m not in res.roster.ids():
            raise ValueError(f"unknown model {m!r}; the roster has {res.roster.ids()}")
        if not res.roster[m].answers:
            raise ValueError(f"model {m!r} only judges or plans (answers: false in the roster)")
        if m not in available:
            raise ValueError(f"model {m!r} is not available: {reasons.get(m, 'unavailable')}")
    return [m for m in available if m in wanted], skipped + [
        {"model": m, "reason": "not in --models"} for m in available if m not in wanted
    ]


def run_judge_eval(
    items: list[dict],
    ctx: FusionContext,
    models: list[str] | None = None,
    show_progress: bool = True,
    source: str | None = None,
) -> tuple[dict, list[dict]]:
    """Answer and judge every item with every chosen model; returns (report, per-answer rows)."""
    from tqdm import tqdm

    from fusiongraph.attempt import invoke_with_retries, prepare_call, run_attempt
    from fusiongraph.judging.acceptance import current_fit
    from fusiongraph.judging.base import judge_weights
    from fusiongraph.records import attempt_cost
    from fusiongraph.resources import get_resources

    started = time.perf_counter()
    res = get_resources(ctx)
    chosen, skipped = choose_models(res, ctx, models)
    available, _ = res.roster.availability(ctx.local_only)
    judge_id = res.roster.helper(available, ctx.judge_model, ctx.budget_usd) if ctx.llm_judge else None
    answers: list[dict] = []
    for item in tqdm(items, desc="judge-eval", unit="question", disable=not show_progress):
        task_class = res.taxonomy.classify(res.embedder.embed_one(item["prompt"]), res.embedder).task_class
        # the class's answer length, as in the cascade (never above the run's max_tokens)
        asked = ctx.replace(max_tokens=res.taxonomy.answer_tokens(task_class, ctx.max_tokens))
        for model_id in chosen:
            call = prepare_call(res, asked, model_id, item["prompt"], [], judge_id, task_class=task_class, measure=True)
            attempt = run_attempt(res, asked, call, item["prompt"], task_class, judge_id, invoke_with_retries)
            row = {
                **item,
                "model": model_id,
                "task_class": task_class,
                "answer": attempt.get("answer"),
                "finish_reason": attempt.get("finish_reason"),
                "error": attempt.get("error"),
                "scores": attempt_scores(attempt),
                "accepted": bool(attempt.get("accepted")),
                "acceptance": attempt.get("acceptance"),
                "verdicts": attempt.get("verdicts", []),
                "latency_s": attempt.get("latency_s", 0.0),
                "tokens_in": attempt.get("tokens_in", 0),
                "tokens_out": attempt.get("tokens_out", 0),
                "cost_usd": round(attempt_cost(attempt), 8),
            }
            row["correct"] = None if row["error"] else is_correct(row["answer"] or "", item["reference"], item["match"])
            answers.append(row)
    report = build_report(answers, ctx, chosen, skipped, judge_id, judge_weights())
    fit = current_fit(res.store)
    report["acceptance"] = (
        {"by": "calibrated", "fitted_on_rows": fit.rows} if fit is not None else {"by": "prior (fixed weights)"}
    )
    report.update(
        source=None if source is None else str(source),
        questions=len(items),
        wall_time_s=round(time.perf_counter() - started, 2),
    )
    return report, answers


def build_report(
    answers: list[dict], ctx: FusionContext, models: list[str], skipped: list[dict], judge_id: str | None, weights: dict
) -> dict:
    """Pooled and per-model judge metrics over the answered rows (failed calls are counted, not scored)."""
    scored = [a for a in answers if not a.get("error")]

    def metrics(rows):
        return judge_metrics([(a["scores"], a["correct"]) for a in rows], ctx.quality_threshold)

    return {
        "models": models,
        "skipped_models": skipped,
        "llm_judge": judge_id,
        "weights": weights,
        "quality_threshold": ctx.quality_threshold,
        "max_tokens": ctx.max_tokens,
        "answers": len(scored),
        "right": sum(bool(a["correct"]) for a in scored),
        "failed_calls": len(answers) - len(scored),
        "judges": metrics(scored),
        "by_model": {m: metrics([a for a in scored if a["model"] == m]) for m in models},
        "match_rule": "numeric: the last number in the answer equals the reference (relative 1e-6); "
        "exact: normalised answer equals the reference or contains it as a whole word/phrase",
    }


# --------------------------------------------------------------------------------- fitting the calibrator


def labelled_rows(answers: list[dict], source: str = "judge-eval"):
    """The answered rows (a judge-eval run's, or an answers.jsonl) as labelled attempts for the calibrator."""
    from fusiongraph.judging.acceptance import LabelledAttempt

    return [
        LabelledAttempt.from_attempt(a, a.get("task_class"), bool(a["correct"]), source, a.get("prompt", ""))
        for a in answers
        if not a.get("error") and a.get("correct") is not None
    ]


def fit_from_answers(store, answers: list[dict], source: str = "judge-eval") -> dict:
    """Keep the labelled rows in the store (with earlier ones), fit the calibrator on all, save it beside the store."""
    from fusiongraph.judging.acceptance import refit

    added = labelled_rows(answers, source)
    fit, where = refit(store, added)
    return {"saved": where, "added": len(added), **fit.summary()}


def load_answers(path: str | Path) -> list[dict]:
    """An answers.jsonl written by ``judge-eval --out``."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}, line {n}: not valid JSON ({exc.msg})") from None
                if not isinstance(row, dict) or "verdicts" not in row or "model" not in row:
                    raise ValueError(f"{path}, line {n}: not a judge-eval answer row (no verdicts/model)")
                rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no answers")
    return rows


def replay_acceptance(answers: list[dict], fit, threshold: float) -> dict:
    """The judge metrics of saved answers with the aggregate decided again by `fit` (None: the fixed
    weights): the same decision the cascade makes (fusiongraph.judging.acceptance.decide) on the same verdicts."""
    from fusiongraph.judging.acceptance import decide
    from fusiongraph.judging.base import Verdict

    rows = []
    for a in answers:
        if a.get("error") or a.get("correct") is None:
            continue
        verdicts = [
            Verdict(v["judge"], v["score"], bool(v["veto"]), v.get("detail", ""), exact=bool(v.get("exact")))
            for v in a["verdicts"]
        ]
        p = decide(fit, verdicts, a.get("task_class"), a["model"], a.get("answer") or "", a.get("finish_reason"))
        scores = {v.judge: v.score for v in verdicts}
        rows.append(({**scores, "aggregate": p["p_right"]}, bool(a["correct"])))
    return judge_metrics(rows, threshold)


def write_outputs(out_dir: str | Path, report: dict, answers: list[dict]) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "judge_eval.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    with open(out / "answers.jsonl", "w", encoding="utf-8") as f:
        for a in answers:
            f.write(json.dumps(a, ensure_ascii=False) + "\n")
    return out


def print_report(report: dict, console) -> None:
    from rich.table import Table

    def fmt(x):
        return "-" if x is None else f"{x:.3f}"

    table = Table(
        title=f"judge-eval: {report['answers']} answers, {report['right']} right"
        f" | accept at >= {report['quality_threshold']}",
        title_justify="left",
        caption=f"models: {', '.join(report['models'])} | LLM judge: {report['llm_judge'] or 'off'}"
        f" | failed calls: {report['failed_calls']} | wall time {report.get('wall_time_s', 0):.1f} s",
        caption_justify="left",
    )
    print_metrics(report["judges"], table, fmt)
    console.print(table)
    if report.get("fit"):
        fit = report["fit"]
        console.print(
            f"calibrator fitted on {fit['rows']} labelled answers ({fit['added']} new), saved: {fit['saved']}"
        )


def print_metrics(judges: dict, table, fmt) -> None:
    cols = ("judge", "answers", "AUROC", "accept acc.", "majority", "right", "accepted", "right&acc", "wrong&acc")
    for col in (*cols, "right rejected"):
        table.add_column(col, justify="left" if col == "judge" else "right")
    for kind, m in judges.items():
        table.add_row(
            kind,
            str(m["answers"]),
            fmt(m["auroc"]),
            fmt(m["accept_accuracy"]),
            fmt(m["majority_baseline"]),
            str(m["right"]),
            str(m["accepted"]),
            str(m["right_accepted"]),
            str(m["wrong_accepted"]),
            fmt(m["right_rejected_share"]),
        )
