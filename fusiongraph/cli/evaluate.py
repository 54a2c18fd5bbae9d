"""`fusiongraph bench`, `calibrate`, `judge-eval`, `eval`, `calibrate-judges`: offline and live evaluation."""

from __future__ import annotations

import json
from typing import Optional

import typer
from rich.table import Table

from fusiongraph.cli import common
from fusiongraph.cli.common import app, console


@app.command()
def bench(
    table: str = typer.Argument(..., help="Outcome table (CSV) to replay."),
    test: Optional[str] = typer.Option(None, "--test", help="Train on TABLE, test on this table."),
    folds: int = typer.Option(5, "--folds", help="Cross-validation folds (without --test)."),
    online: bool = typer.Option(False, "--online", help="Also replay in order, learning as it goes."),
    out: str = typer.Option("bench-out", "--out", help="Directory for results.json and the plots."),
    shuffle: bool = typer.Option(False, "--shuffle", help="With --online: replay in a shuffled order (--seed)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the fold split (and of --shuffle)."),
    cache: Optional[str] = typer.Option(None, "--cache", help="Embedding cache (SQLite)."),
    class_column: bool = typer.Option(
        False,
        "--class-column",
        help="Use the table's category column as the task class (gold labels) "
        "instead of the graph's taxonomy classifier.",
    ),
    judge_accuracy: list[float] = typer.Option(
        [0.85],
        "--judge-accuracy",
        help="Replay the cascade with a judge that agrees with the recorded "
        "outcome with this probability (repeatable).",
    ),
    price_sensitivity: Optional[float] = typer.Option(
        None, "--price-sensitivity", help="Headline knob (default: the graph's)."
    ),
    introduce: Optional[str] = typer.Option(
        None, "--introduce", help="With --online: MODEL@N hides MODEL's outcomes before prompt N."
    ),
) -> None:
    """Replay routing strategies on recorded outcomes: quality, cost, curves, AIQ, RouteLLM's APGR/CPT."""
    from fusiongraph.eval.bench import run_bench

    intro = None
    if introduce is not None:
        model, _, at = introduce.rpartition("@")
        if not model or not at.isdigit():
            common.fail(f"--introduce takes MODEL@N (N a prompt index), got {introduce!r}")
        intro = (model, int(at))
    for a in judge_accuracy:
        if not 0.5 <= a <= 1.0:
            common.fail(f"--judge-accuracy must be in [0.5, 1], got {a}")
    try:
        run_bench(
            table,
            out,
            test_path=test,
            folds=folds,
            online=online,
            seed=seed,
            cache_path=cache,
            shuffle_online=shuffle,
            class_column=class_column,
            judge_accuracies=tuple(judge_accuracy),
            price_sensitivity=price_sensitivity,
            introduce=intro,
        )
    except (ValueError, FileNotFoundError) as exc:
        common.fail(str(exc))


@app.command("calibrate")
def calibrate_models(
    prompts: str = typer.Argument(..., help='JSONL of seed prompts: a string or {"prompt": ...} per line.'),
    store_dir: Optional[str] = typer.Option(None, "--store-dir", help="Outcome store directory."),
    local_only: bool = typer.Option(False, "--local-only", help="Only local models."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="Most output tokens per call."),
    models: Optional[str] = typer.Option(None, "--models", help="Model roster YAML."),
) -> None:
    """Run every seed prompt through every configured model, judge and record; resumes if interrupted."""
    from fusiongraph.eval.calibrate import calibrate

    try:
        summary = calibrate(
            prompts,
            common.context(store_dir=store_dir, local_only=local_only, max_tokens=max_tokens, models_path=models),
        )
    except (ValueError, FileNotFoundError) as exc:
        common.fail(str(exc))
    console.print(summary)


@app.command("judge-eval")
def judge_eval(
    questions: Optional[str] = typer.Argument(None, help='JSONL: {"prompt", "reference", "match"?} per line.'),
    local_only: bool = typer.Option(False, "--local-only", help="Only local models."),
    models: Optional[str] = typer.Option(
        None, "--models", help="Answering model ids, comma-separated (default: all available)."
    ),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="Most output tokens per call."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Quality threshold (0-1) to accept."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    out: Optional[str] = typer.Option(None, "--out", help="Directory for judge_eval.json and answers.jsonl."),
    roster: Optional[str] = typer.Option(None, "--roster", help="Model roster YAML."),
    store_dir: Optional[str] = typer.Option(None, "--store-dir", help="Outcome store directory (read only here)."),
    generate: Optional[str] = typer.Option(
        None, "--generate", help="Print a question set instead: arithmetic, phrasings, facts or easy."
    ),
    n: int = typer.Option(30, "--n", help="With --generate: how many questions."),
    seed: int = typer.Option(0, "--seed", help="With --generate: random seed."),
    split: str = typer.Option("all", "--split", help="With --generate: all, fit or test (disjoint halves)."),
    fit: bool = typer.Option(
        False, "--fit", help="Then fit the calibrated acceptance on these labelled answers (and earlier ones)."
    ),
    llm_judge: Optional[bool] = typer.Option(None, "--llm-judge/--no-llm-judge", help="Ask the LLM judge."),
    samples: Optional[int] = typer.Option(None, "--consistency-samples", help="The consistency judge's samples."),
    temperature: Optional[float] = typer.Option(
        None, "--consistency-temperature", help="The consistency judge's sampling temperature."
    ),
) -> None:
    """Measure the judges: AUROC and accept accuracy of each judge kind against reference answers."""
    from fusiongraph.eval import judge_eval as je

    if generate is not None:
        if generate not in je.GENERATORS or questions is not None:
            common.fail(f"--generate takes one of {sorted(je.GENERATORS)} and no FILE (it prints to standard output)")
        try:
            items = je.GENERATORS[generate](n, seed, split)
        except ValueError as exc:
            common.fail(str(exc))
        print("\n".join(json.dumps(i) for i in items))
        return
    if questions is None:
        common.fail("give a JSONL FILE of questions, or --generate arithmetic")
    try:
        items = je.load_items(questions)
        ctx = common.context(
            local_only=local_only,
            max_tokens=max_tokens,
            quality_threshold=threshold,
            models_path=roster,
            store_dir=store_dir,
            llm_judge=llm_judge,
            consistency_samples=samples,
            consistency_temperature=temperature,
        )
        wanted = [m.strip() for m in models.split(",") if m.strip()] if models else None
        report, answers = je.run_judge_eval(items, ctx, wanted, show_progress=not as_json, source=questions)
        if fit:
            from fusiongraph.resources import get_resources

            report["fit"] = je.fit_from_answers(get_resources(ctx).store, answers)
    except (ValueError, OSError, KeyError) as exc:
        common.fail(str(exc))
    if out:
        je.write_outputs(out, report, answers)
    if as_json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        je.print_report(report, console)


@app.command("eval")
def eval_command(
    files: list[str] = typer.Argument(
        ...,
        help='JSONL: {"id", "prompt", "reference", "match": numeric|exact|option} or {"id", "prompt", "parts": [...]}.',
    ),
    out: str = typer.Option(..., "--out", help="Directory for answers.jsonl, live.jsonl, results.json, frontier.png."),
    limit: Optional[int] = typer.Option(None, "--limit", help="At most N questions of each file."),
    skip: int = typer.Option(0, "--skip", help="Leave out the first N questions of each file (a held-out slice)."),
    live: int = typer.Option(5, "--live", help="One-part questions of each file also run through the live graph."),
    models: Optional[str] = typer.Option(None, "--models", help="Model ids, comma-separated (default: all available)."),
    record: bool = typer.Option(
        False, "--record", help="Then keep the answers as outcomes and refit the acceptance on them (learn from it)."
    ),
    local_only: bool = typer.Option(True, "--local-only/--api", help="Only local models (default)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Quality threshold (0-1) to accept."),
    store_dir: Optional[str] = typer.Option(None, "--store-dir", help="Outcome store directory."),
    roster: Optional[str] = typer.Option(None, "--roster", help="Model roster YAML."),
    as_json: bool = typer.Option(False, "--json", help="Print results.json instead of the table."),
) -> None:
    """The whole graph, live, against gold answers: every model alone, the oracle, a fixed cascade, the graph's
    route replayed on the recorded verdicts, and the live graph on a sample (resumable: run it again)."""
    from fusiongraph.eval import live_eval as le

    try:
        ctx = common.context(
            local_only=local_only, quality_threshold=threshold, store_dir=store_dir, models_path=roster
        )
        wanted = [m.strip() for m in models.split(",") if m.strip()] if models else None
        results = le.run_eval(
            files, out, ctx, limit=limit, skip=skip, live=live, models=wanted, record=record, progress=not as_json
        )
    except (ValueError, OSError, KeyError) as exc:
        common.fail(str(exc))
    if as_json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
        return
    table = Table(title=f"eval: {results['questions']} questions, {', '.join(results['files'])}", title_justify="left")
    for col in ("strategy", "questions", "accuracy", "cost USD", "compute s"):
        table.add_column(col, justify="left" if col == "strategy" else "right")
    rows = [*results["strategies"].items()]
    rows += [(f"multi-part: {k}", v) for k, v in (results.get("multi_part") or {}).items() if isinstance(v, dict)]
    rows += [(f"ceiling: {k}", v) for k, v in (results.get("ceilings") or {}).items() if "accuracy" in v]
    for name, s in rows:
        acc = "-" if s.get("accuracy") is None else f"{s['accuracy']:.3f}"
        table.add_row(name, str(s["questions"]), acc, f"{s['cost_usd']:.5f}", f"{s['seconds']:.0f}")
    console.print(table)
    judges = Table(title="judges on real answers", title_justify="left")
    for col in ("judge", "answers", "AUROC", "accept acc.", "right rejected"):
        judges.add_column(col, justify="left" if col == "judge" else "right")
    for kind, m in results["judges"].items():
        judges.add_row(
            kind,
            str(m["answers"]),
            *("-" if m[k] is None else f"{m[k]:.3f}" for k in ("auroc", "accept_accuracy", "right_rejected")),
        )
    console.print(judges)
    console.print(
        f"best single model: {results['best_single']}; results in {out}/results.json, plot {out}/frontier.png"
    )


@app.command("calibrate-judges")
def calibrate_judges(
    answers: list[str] = typer.Argument(..., help="answers.jsonl files written by judge-eval --out."),
    test: Optional[str] = typer.Option(
        None, "--test", help="An answers.jsonl not fitted on: report the calibrated acceptance on it."
    ),
    store_dir: Optional[str] = typer.Option(None, "--store-dir", help="Outcome store (where the fit is saved)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Quality threshold (0-1) to accept."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Fit the calibrated acceptance from labelled judge-eval answers and save it beside the store."""
    from fusiongraph.eval import judge_eval as je
    from fusiongraph.judging.acceptance import current_fit
    from fusiongraph.resources import get_resources

    try:
        ctx = common.context(store_dir=store_dir, quality_threshold=threshold)
        store = get_resources(ctx).store
        rows = [row for path in answers for row in je.load_answers(path)]
        out = {"fit": je.fit_from_answers(store, rows, source="calibrate-judges")}
        if test:
            held_out = je.load_answers(test)
            out["test"] = {
                "answers": test,
                "calibrated": je.replay_acceptance(held_out, current_fit(store), ctx.quality_threshold),
                "prior": je.replay_acceptance(held_out, None, ctx.quality_threshold),
            }
    except (ValueError, OSError, KeyError) as exc:
        common.fail(str(exc))
    if as_json:
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return
    from rich.table import Table

    fit = out["fit"]
    console.print(
        f"fitted on {fit['rows']} labelled answers ({fit['right']} right, {fit['added']} new): {fit['saved']}"
    )
    for name, j in fit["judges"].items():
        silent = [c for c, ok in j["say"].items() if not ok]
        console.print(f"  {name}: weight {j['weight']}, no say in: {', '.join(silent) or '-'}")
    for which in ("calibrated", "prior"):
        if test:
            table = Table(title=f"held out ({test}): {which} acceptance", title_justify="left")
            je.print_metrics(out["test"][which], table, lambda x: "-" if x is None else f"{x:.3f}")
            console.print(table)
