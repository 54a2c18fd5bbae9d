"""`fusiongraph ask`: one query through the graph, with each subtask's route."""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer
from rich.table import Table

from fusiongraph.cli import common
from fusiongraph.cli.common import app, console


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
        ctx = common.context(
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
        common.fail(str(exc))
    from fusiongraph.graphs.fusion import graph

    try:
        result = graph.invoke({"query": query}, context=ctx)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        common.fail(str(exc))
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
    from fusiongraph.judging.base import JUDGES

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
