"""The `fusiongraph` command: ask a question through the graph, inspect models and the outcome store."""

from __future__ import annotations

import json
import os
import sys
import warnings
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

warnings.filterwarnings("ignore", module="langchain_community")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

app = typer.Typer(
    help="Use many LLMs as one: decompose, route, judged cascade, record, synthesise.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(width=max(Console().width, 110))


def _context(**knobs):
    from fusiongraph.context import FusionContext

    return FusionContext(**{k: v for k, v in knobs.items() if v is not None})


def _fail(message: str) -> None:
    Console(stderr=True).print(f"[bold red]error:[/] {message}")
    raise typer.Exit(2)


@app.command()
def ask(
    query: str = typer.Argument(..., help="The question or task; '-' reads it from standard input."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole result as JSON."),
    local_only: Optional[bool] = typer.Option(None, "--local-only/--api", help="Use only local models."),
    budget: Optional[float] = typer.Option(None, "--budget", help="Most USD this query may spend."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Quality threshold (0-1) to accept."),
    max_subtasks: Optional[int] = typer.Option(None, "--max-subtasks", help="Cap on subtasks."),
    store_dir: Optional[str] = typer.Option(None, "--store-dir", help="Outcome store directory."),
    models: Optional[str] = typer.Option(None, "--models", help="Model roster YAML."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="Most output tokens per call."),
    require_verified: Optional[bool] = typer.Option(
        None,
        "--require-verified/--best-effort",
        help="Answer what no judge accepted with a plain 'not verified' message instead of its best-effort text.",
    ),
    cache: Optional[bool] = typer.Option(
        None, "--cache/--no-cache", help="Reuse an accepted answer of a near-identical subtask (default: on)."
    ),
    privacy: Optional[str] = typer.Option(
        None, "--privacy", help="off | route (sensitive subtasks only to trusted models; default) | redact."
    ),
    discover: Optional[bool] = typer.Option(
        None,
        "--discover/--no-discover",
        help="Add the local model servers and GGUF files found on this machine to the roster "
        "(default: $FUSIONGRAPH_DISCOVER_LOCAL, on).",
    ),
) -> None:
    """Answer QUERY through the fusion graph; print the answer and the route of every subtask."""
    if query == "-":
        query = sys.stdin.read()
    try:
        ctx = _context(
            local_only=local_only,
            budget_usd=budget,
            quality_threshold=threshold,
            max_subtasks=max_subtasks,
            store_dir=store_dir,
            models_path=models,
            max_tokens=max_tokens,
            require_verified=require_verified,
            discover_local=discover,
            cache=cache,
            privacy=privacy,
        )
        from fusiongraph.text import clean_query

        clean_query(query)
    except ValueError as exc:
        _fail(str(exc))
    from fusiongraph.graphs.fusion import graph

    try:
        result = graph.invoke({"query": query}, context=ctx)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        _fail(str(exc))
    if as_json:
        print(json.dumps(result, indent=2, ensure_ascii=False, default=str))
        return
    results = result.get("results", [])
    unverified = [r for r in results if not r.get("verified", False)]
    if unverified:
        from fusiongraph.records import UNVERIFIED

        line = UNVERIFIED
        if len(unverified) < len(results):
            parts = ", ".join(str(r["index"] + 1) for r in sorted(unverified, key=lambda r: r["index"]))
            line = f"not verified: part {parts} of {len(results)}" + UNVERIFIED.split("not verified", 1)[1]
        console.print(line, style="bold yellow", markup=False, highlight=False)
    console.print(result["answer"] or "[italic](no answer)[/]", markup=False, highlight=False)
    console.print()
    print_routes(result)


def judge_columns() -> tuple[str, ...]:
    """The judge-score columns of `ask`'s route tables: one per registered judge, in the order they run."""
    from fusiongraph.judges import JUDGES

    return tuple(JUDGES)


def acceptance_line(acc: dict) -> str:
    """How P(right) was decided, in one line: by what, and each judge's part."""
    unit = " (log-odds)" if acc["by"] == "calibrated" else ""
    parts = ", ".join(f"{j} {w:+.2f}" for j, w in acc["parts"].items()) or "-"
    line = f"P(right) {acc['p_right']:.2f} by {acc['by']}; parts{unit}: {parts}"
    return line + (f"; no say here: {', '.join(acc['no_say'])}" if acc["no_say"] else "")


def print_routes(result: dict) -> None:
    """The route of every subtask of a graph output (fusiongraph.state.FusionOutput), and the totals."""
    from fusiongraph.records import attempt_cost, attempt_scores

    judges = judge_columns()
    for r in sorted(result.get("results", []), key=lambda r: r["index"]):
        table = Table(
            title=f"subtask {r['index'] + 1}: {r['subtask'][:90]}",
            title_justify="left",
            caption=f"class {r['task_class']} ({r['class_confidence']:.2f}) | route: {r['route_source']}"
            f" | plan: {' -> '.join(r['candidates']) or '-'} | {r['status']}",
            caption_justify="left",
        )
        for col in ("model", "/".join(judges), "P(right)", "ok", "tokens", "USD", "s"):
            table.add_column(col, overflow="fold")
        for a in r["attempts"]:
            scores = attempt_scores(a)
            cells = " / ".join("-" if scores.get(j) is None else f"{scores[j]:.2f}" for j in judges)
            table.add_row(
                a["model"],
                a.get("error", cells)[:80],
                f"{a.get('confidence', 0):.2f}",
                "yes" if a.get("accepted") else "no",
                f"{a.get('tokens_in', 0)}/{a.get('tokens_out', 0)}",
                f"{attempt_cost(a):.6f}",
                f"{a.get('latency_s', 0):.2f}",
            )
        console.print(table)
        if r.get("cache"):
            c = r["cache"]
            console.print(
                f"  from the answer cache: {c['model']}'s accepted answer to a subtask {c['similarity']:.3f} similar, "
                f"{c['age_s']:.0f} s old ($0)",
                style="dim",
                markup=False,
                highlight=False,
            )
        if r.get("sensitive"):
            kinds = ", ".join(sorted({f"{f['detector']}: {f['kind']}" for f in r["sensitive"]}))
            console.print(f"  sensitive: {kinds}", style="dim", markup=False, highlight=False)
        for a in r["attempts"]:
            if a.get("acceptance"):
                console.print(f"  {a['model']}: {acceptance_line(a['acceptance'])}", style="dim", markup=False)
        skipped = [f"{s['model']} ({s['reason']})" for s in r.get("skipped", []) if s.get("model")]
        if skipped:
            console.print(f"  skipped: {'; '.join(skipped)}", style="dim", markup=False, highlight=False)
        for note in (s["reason"] for s in r.get("skipped", []) if not s.get("model")):
            console.print(f"  note: {note}", style="dim", markup=False, highlight=False)
    s = result.get("summary", {})
    if s:
        alone = s["strongest_alone_cost_usd"]
        tokens = (
            (f" ({s['strongest_alone_tokens_in']} in / {s['strongest_alone_tokens_out']} out, estimated per subtask)")
            if "strongest_alone_tokens_in" in s
            else " (on the answers' tokens)"
        )
        console.print(
            f"total cost ${s['cost_usd']:.6f} ({s['tokens_in']} in / {s['tokens_out']} out tokens); "
            f"{s['strongest_model']} alone would have cost ${alone:.6f}{tokens}",
            markup=False,
            highlight=False,
        )
    for e in result.get("trace", []):
        if e.get("fallback") or e.get("capped") or e.get("trimmed_chars"):
            console.print(
                f"  note ({e['node']}): {e.get('fallback') or e.get('capped') or e.get('trimmed_chars')}",
                style="yellow",
            )


models_app = typer.Typer(no_args_is_help=False)


@models_app.callback(invoke_without_command=True)
def list_models(
    ctx: typer.Context,
    local_only: bool = typer.Option(False, "--local-only", help="As a local-only run would see them."),
    models: Optional[str] = typer.Option(None, "--models", help="Model roster YAML."),
    discover: Optional[bool] = typer.Option(
        None,
        "--discover/--no-discover",
        help="Add the models found on this machine (default: $FUSIONGRAPH_DISCOVER_LOCAL, on).",
    ),
) -> None:
    """List the roster: kind, prices, context, where each model came from, and whether it is available now
    (`models discover` shows what discovery finds and skips)."""
    if ctx.invoked_subcommand is not None:
        return
    from fusiongraph.discovery import discover_enabled
    from fusiongraph.resources import resolve_paths
    from fusiongraph.roster import Roster

    path = resolve_paths(_context(models_path=models))[0]
    try:
        roster = Roster.from_yaml(path, discover=discover_enabled(discover))
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    available, skipped = roster.availability(local_only)
    reasons = {s["model"]: s["reason"] for s in skipped}
    table = Table(title=str(path))
    for col in ("id", "kind", "$/1M in", "$/1M out", "context", "source", "available"):
        table.add_column(col)
    for model_id in roster.by_cost():
        spec = roster[model_id]
        source = spec.source + (" (trusted)" if spec.trusted else "")
        if spec.strength:
            source += f", ~{spec.strength:g}B"
        if spec.capabilities:
            source += ", " + "+".join(spec.capabilities)
        table.add_row(
            model_id,
            spec.kind,
            f"{spec.price_in:.2f}",
            f"{spec.price_out:.2f}",
            str(spec.context),
            source,
            "yes" if model_id in available else f"no: {reasons[model_id]}",
        )
    console.print(table)
    for note in roster.notes:
        console.print(f"  note: {note}", style="yellow")


@models_app.command("discover")
def discover_models(
    models: Optional[str] = typer.Option(
        None, "--models", help="Model roster YAML (its `discovery:` section excludes or pins)."
    ),
    url: Optional[list[str]] = typer.Option(
        None, "--url", help="Also probe this OpenAI-compatible base URL (repeatable; or $FUSIONGRAPH_LOCAL_URLS)."
    ),
    gguf_dir: Optional[list[str]] = typer.Option(
        None, "--gguf-dir", help="Also scan this folder for GGUF files (repeatable; or $FUSIONGRAPH_GGUF_DIRS)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the models found and the notes as JSON."),
) -> None:
    """Find the models this machine already has: OpenAI-compatible servers on loopback (Ollama, llama.cpp,
    LM Studio, vLLM, $FUSIONGRAPH_LOCAL_URLS) and GGUF files (Hugging Face cache, LM Studio, $FUSIONGRAPH_GGUF_DIRS)."""
    import time
    from pathlib import Path

    from fusiongraph import discovery
    from fusiongraph.resources import resolve_paths
    from fusiongraph.roster import Roster

    path = resolve_paths(_context(models_path=models))[0]
    started = time.perf_counter()
    urls = discovery.server_urls() + list(url or [])
    dirs = discovery.gguf_dirs() + [Path(d) for d in gguf_dir or []]
    found = discovery.discover(urls, dirs)
    try:
        roster = Roster.from_yaml(path, discovered=found)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    elapsed = time.perf_counter() - started
    rows = [roster[i] for i in roster.ids() if roster[i].source.startswith("discovered:")]
    if as_json:
        print(
            json.dumps(
                {
                    "models": [r.model_dump(exclude_defaults=True) for r in rows],
                    "notes": roster.notes,
                    "seconds": round(elapsed, 3),
                }
            )
        )
        return
    table = Table(title=f"discovered in {elapsed:.2f} s (probed {len(urls)} URLs, scanned {len(dirs)} folders)")
    for col in ("id", "kind", "strength (B params)", "capabilities", "source"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r.id, r.kind, f"{r.strength:g}" if r.strength else "?", ", ".join(r.capabilities) or "-", r.source
        )
    console.print(table)
    for note in roster.notes:
        console.print(f"  note: {note}", style="yellow")


app.add_typer(models_app, name="models")


def show_store(
    ctx: typer.Context,
    store_dir: Optional[str] = typer.Option(
        None, "--store-dir", help="Outcome store directory, or a postgresql:// URL."
    ),
    last: int = typer.Option(10, "--last", help="Show the last N outcomes."),
    as_json: bool = typer.Option(False, "--json", help="Print the counts (subtasks, outcomes, vectors) as JSON."),
) -> None:
    """Show what the outcome store holds (`store migrate --to URL` copies it into Postgres)."""
    if ctx.invoked_subcommand is not None:
        return
    from fusiongraph.resources import get_resources

    try:
        res = get_resources(_context(store_dir=store_dir))
        counts = res.store.counts()
    except Exception as exc:
        _fail(str(exc))
    where = str(getattr(res.store, "location", res.store.directory))
    if as_json:
        print(json.dumps({"store": where, **counts}))
        return
    console.print(where, counts)
    rows = res.store.outcomes()[-last:] if last else []
    table = Table()
    for col in ("id", "subtask", "class", "model", "success", "accepted", "after rejection", "cost $", "error"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["subtask"][:50],
            str(r["task_class"]),
            r["model"],
            f"{r['success']:.2f}",
            str(r["accepted"]),
            str(r["after_rejection"]),
            f"{r['cost_usd']:.6f}",
            (r["error"] or "")[:40],
        )
    console.print(table)


@app.command("import")
def import_outcomes(
    table: str = typer.Argument(..., help="Outcome table (CSV): prompt, [category], score:<model>, [cost:<model>]..."),
    store_dir: Optional[str] = typer.Option(None, "--store-dir", help="Outcome store directory."),
) -> None:
    """Seed the outcome store from an outcome table (each prompt embedded once)."""
    from tqdm import tqdm

    from fusiongraph.resources import get_resources
    from fusiongraph.tables import import_table, load_table

    try:
        loaded = load_table(table)
        res = get_resources(_context(store_dir=store_dir))
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    with tqdm(total=len(loaded), desc="embedding", unit="prompt") as bar:
        counts = import_table(res.store, res.embedder, loaded, progress=bar.update)
    res.store.save()
    unknown = [m for m in loaded.models if m not in res.roster.ids()]
    console.print(
        f"imported {counts['prompts']} prompts, {counts['outcomes']} outcomes into "
        f"{res.store.directory}: {res.store.counts()}"
    )
    if unknown:
        console.print(
            f"note: models not in the roster ({', '.join(unknown[:6])}) inform routing only once "
            f"the roster has models with those ids",
            style="yellow",
        )


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
    from fusiongraph.bench import run_bench

    intro = None
    if introduce is not None:
        model, _, at = introduce.rpartition("@")
        if not model or not at.isdigit():
            _fail(f"--introduce takes MODEL@N (N a prompt index), got {introduce!r}")
        intro = (model, int(at))
    for a in judge_accuracy:
        if not 0.5 <= a <= 1.0:
            _fail(f"--judge-accuracy must be in [0.5, 1], got {a}")
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
        _fail(str(exc))


@app.command("calibrate")
def calibrate_models(
    prompts: str = typer.Argument(..., help='JSONL of seed prompts: a string or {"prompt": ...} per line.'),
    store_dir: Optional[str] = typer.Option(None, "--store-dir", help="Outcome store directory."),
    local_only: bool = typer.Option(False, "--local-only", help="Only local models."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="Most output tokens per call."),
    models: Optional[str] = typer.Option(None, "--models", help="Model roster YAML."),
) -> None:
    """Run every seed prompt through every configured model, judge and record; resumes if interrupted."""
    from fusiongraph.calibrate import calibrate

    try:
        summary = calibrate(
            prompts, _context(store_dir=store_dir, local_only=local_only, max_tokens=max_tokens, models_path=models)
        )
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
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
    from fusiongraph import judge_eval as je

    if generate is not None:
        if generate not in je.GENERATORS or questions is not None:
            _fail(f"--generate takes one of {sorted(je.GENERATORS)} and no FILE (it prints to standard output)")
        try:
            items = je.GENERATORS[generate](n, seed, split)
        except ValueError as exc:
            _fail(str(exc))
        print("\n".join(json.dumps(i) for i in items))
        return
    if questions is None:
        _fail("give a JSONL FILE of questions, or --generate arithmetic")
    try:
        items = je.load_items(questions)
        ctx = _context(
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
        _fail(str(exc))
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
    from fusiongraph import live_eval as le

    try:
        ctx = _context(local_only=local_only, quality_threshold=threshold, store_dir=store_dir, models_path=roster)
        wanted = [m.strip() for m in models.split(",") if m.strip()] if models else None
        results = le.run_eval(
            files, out, ctx, limit=limit, skip=skip, live=live, models=wanted, record=record, progress=not as_json
        )
    except (ValueError, OSError, KeyError) as exc:
        _fail(str(exc))
    if as_json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
        return
    table = Table(title=f"eval: {results['questions']} questions, {', '.join(results['files'])}", title_justify="left")
    for col in ("strategy", "questions", "accuracy", "cost USD", "compute s"):
        table.add_column(col, justify="left" if col == "strategy" else "right")
    rows = [*results["strategies"].items()]
    rows += [(f"multi-part: {k}", v) for k, v in (results.get("multi_part") or {}).items() if isinstance(v, dict)]
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
    from fusiongraph import judge_eval as je
    from fusiongraph.acceptance import current_fit
    from fusiongraph.resources import get_resources

    try:
        ctx = _context(store_dir=store_dir, quality_threshold=threshold)
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
        _fail(str(exc))
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


def migrate_store_command(
    to: str = typer.Option(..., "--to", help="Target store: a postgresql:// URL (or a directory)."),
    store_dir: Optional[str] = typer.Option(
        None, "--store-dir", help="Source store directory (default: $FUSIONGRAPH_STORE_DIR or the user data dir)."
    ),
    append: bool = typer.Option(False, "--append", help="Add to a target store that already holds rows."),
    as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
) -> None:
    """Copy an outcome store (SQLite) into another (Postgres) without loss, with its API keys, their spend and
    charges, in one transaction; counts checked. A key the target already has is refused."""
    from fusiongraph.resources import default_store_dir
    from fusiongraph.store import StoreError, migrate_store

    source = store_dir or str(default_store_dir())
    try:
        result = migrate_store(source, to, append=append)
    except StoreError as exc:
        _fail(str(exc))
    if as_json:
        print(json.dumps(result))
        return
    copied, target = result["copied"], result["target"]
    console.print(
        f"copied {copied['subtasks']} subtasks and {copied['outcomes']} outcomes of "
        f"{result['source']['subtasks']} / {result['source']['outcomes']} from {source}; the target now "
        f"holds {target['subtasks']} subtasks, {target['outcomes']} outcomes, {target['vectors']} vectors; "
        f"API keys copied with their spend and charges: {copied['api_keys']} keys, {copied['api_key_spend']} "
        f"spend rows, {copied['api_key_charges']} charges",
        markup=False,
        highlight=False,
    )


def _parse_before(value: str) -> float:
    """An ISO date or date-time (UTC unless it says otherwise) as epoch seconds."""
    from datetime import datetime, timezone

    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        _fail(f"--before {value!r} is not a date: use YYYY-MM-DD or an ISO date-time")
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def forget_command(
    match: Optional[str] = typer.Option(
        None, "--match", help="Erase every subtask whose text, or an answer to it, contains TEXT (any case)."
    ),
    before: Optional[str] = typer.Option(None, "--before", help="Erase what was recorded before this date (UTC)."),
    store_dir: Optional[str] = typer.Option(
        None, "--store-dir", help="Outcome store directory, or a postgresql:// URL."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
) -> None:
    """Erase subtasks with their outcomes, vectors and cached answers, together (both store backends; every
    worker sharing the store drops them too). With --match and --before, what matches both."""
    from fusiongraph.resources import get_resources

    if match is None and before is None:
        _fail("give --match TEXT, --before DATE or both")
    when = _parse_before(before) if before is not None else None
    try:
        res = get_resources(_context(store_dir=store_dir))
        counts = res.store.forget(match, when)
    except Exception as exc:
        _fail(str(exc))
    if as_json:
        print(json.dumps(counts))
        return
    console.print(
        f"erased {counts['subtasks']} subtasks, {counts['outcomes']} outcomes, {counts['vectors']} vectors and "
        f"{counts['cached_answers']} cached answers",
        markup=False,
        highlight=False,
    )


store_app = typer.Typer(no_args_is_help=False)
store_app.callback(invoke_without_command=True)(show_store)
store_app.command("migrate")(migrate_store_command)
store_app.command("forget")(forget_command)
app.add_typer(store_app, name="store")


# --- API keys (fusiongraph/keys.py, server/auth.py) --------------------------------------------------------
keys_app = typer.Typer(
    no_args_is_help=True,
    help="API keys of the server, with USD budgets, kept in the outcome store's database (shared by every replica).",
)
app.add_typer(keys_app, name="keys")
_STORE_HELP = (
    "The store whose keys these are: a directory or a postgresql:// URL (default: $FUSIONGRAPH_STORE_URL, "
    "$FUSIONGRAPH_STORE_DIR or the user data dir, as the server)."
)


def _key_store(store_dir: Optional[str]):
    from fusiongraph.keys import key_store
    from fusiongraph.store import StoreError

    try:
        return key_store(store_dir)
    except StoreError as exc:
        _fail(str(exc))


def _key_json(key, spent: float | None = None) -> dict:
    from dataclasses import asdict

    return asdict(key) | {"revoked": key.revoked} | ({} if spent is None else {"spent_usd": spent})


@keys_app.command("create")
def keys_create(
    name: str = typer.Argument(..., help="A name for the key (unique; the metrics' key label)."),
    budget: float = typer.Option(..., "--budget", help="USD the key may spend per period."),
    period: str = typer.Option("month", "--period", help="day | month (UTC; the spend resets) | total (never resets)."),
    store_dir: Optional[str] = typer.Option(None, "--store-dir", help=_STORE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the key and its record as JSON."),
) -> None:
    """Create a key and print it (only its hash is stored: it cannot be shown again). Once a store holds a
    key, the server it backs refuses requests without a valid one."""
    from fusiongraph.store import StoreError

    keys = _key_store(store_dir)
    try:
        token, key = keys.create(name, budget, period)
    except (ValueError, StoreError) as exc:
        _fail(str(exc))
    if as_json:
        print(json.dumps({"key": token} | _key_json(key)))
        return
    console.print(
        f"created key {key.name!r} ({key.id}): ${key.budget_usd:g} per {key.period} in {keys.label}",
        markup=False,
        highlight=False,
    )
    print(token)
    Console(stderr=True).print("keep it now: only its hash is stored", markup=False, highlight=False)


@keys_app.command("list")
def keys_list(
    store_dir: Optional[str] = typer.Option(None, "--store-dir", help=_STORE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the keys as JSON."),
) -> None:
    """Every key: name, id, the start of the token, budget, spend in the current period, revoked or not."""
    import datetime

    from fusiongraph.store import StoreError

    keys = _key_store(store_dir)
    try:
        rows = keys.list()
    except StoreError as exc:
        _fail(str(exc))
    if as_json:
        print(json.dumps([_key_json(k, spent) for k, spent in rows]))
        return
    if not rows:
        console.print(
            f"no keys in {keys.label}: the server is open (FUSIONGRAPH_REQUIRE_API_KEY=1 closes it)",
            markup=False,
            highlight=False,
        )
        return
    table = Table(title=f"API keys in {keys.label}")
    for column in ("name", "id", "key", "budget USD", "period", "spent USD", "created", "status"):
        table.add_column(column)
    for k, spent in rows:
        created = datetime.datetime.fromtimestamp(k.created_at, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
        status = "revoked" if k.revoked else ("over budget" if spent >= k.budget_usd else "active")
        table.add_row(k.name, k.id, k.prefix + "...", f"{k.budget_usd:g}", k.period, f"{spent:.6f}", created, status)
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key: str = typer.Argument(..., help="The key's name or id."),
    store_dir: Optional[str] = typer.Option(None, "--store-dir", help=_STORE_HELP),
) -> None:
    """Revoke a key: every replica refuses it from its next request on (it stays listed, the server stays closed)."""
    from fusiongraph.store import StoreError

    keys = _key_store(store_dir)
    try:
        done = keys.revoke(key)
    except StoreError as exc:
        _fail(str(exc))
    if not done:
        _fail(f"no active key named or with id {key!r} in {keys.label}")
    console.print(f"revoked {key!r}", markup=False, highlight=False)


if __name__ == "__main__":
    app()
