"""`fusiongraph models`: the roster, what is available, and discovery."""

from __future__ import annotations

import json
from typing import Optional

import typer
from rich.table import Table

from fusiongraph.cli import common
from fusiongraph.cli.common import app, console

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
    from fusiongraph.models.discovery import discover_enabled
    from fusiongraph.models.roster import Roster
    from fusiongraph.resources import resolve_paths

    path = resolve_paths(common.context(models_path=models))[0]
    try:
        roster = Roster.from_yaml(path, discover=discover_enabled(discover))
    except (ValueError, FileNotFoundError) as exc:
        common.fail(str(exc))
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

    from fusiongraph.models import discovery
    from fusiongraph.models.roster import Roster
    from fusiongraph.resources import resolve_paths

    path = resolve_paths(common.context(models_path=models))[0]
    started = time.perf_counter()
    urls = discovery.server_urls() + list(url or [])
    dirs = discovery.gguf_dirs() + [Path(d) for d in gguf_dir or []]
    found = discovery.discover(urls, dirs)
    try:
        roster = Roster.from_yaml(path, discovered=found)
    except (ValueError, FileNotFoundError) as exc:
        common.fail(str(exc))
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
