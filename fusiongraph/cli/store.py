"""`fusiongraph store`, `import`, `store migrate`, `store forget`: the outcome store."""

from __future__ import annotations

import json
from typing import Optional

import typer
from rich.table import Table

from fusiongraph.cli import common
from fusiongraph.cli.common import app, console


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
        res = get_resources(common.context(store_dir=store_dir))
        counts = res.store.counts()
        blind = res.store.blindness()
    except Exception as exc:
        common.fail(str(exc))
    where = str(getattr(res.store, "location", res.store.directory))
    if as_json:
        print(json.dumps({"store": where, **counts, "blind": blind}))
        return
    console.print(where, counts)
    if blind["same_vector"]:
        console.print(
            f"[yellow]routing is blind on {blind['same_vector']} of the newest {blind['sampled']} subtasks[/]: "
            "distinct texts with the same vector (cosine >= 0.999), so the neighbours cannot tell them apart"
        )
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

    from fusiongraph.eval.tables import import_table, load_table
    from fusiongraph.resources import get_resources

    try:
        loaded = load_table(table)
        res = get_resources(common.context(store_dir=store_dir))
    except (ValueError, FileNotFoundError) as exc:
        common.fail(str(exc))
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
        common.fail(str(exc))
    if as_json:
        print(json.dumps(result))
        return
    copied, target = result["copied"], result["target"]
    console.print(
        f"copied {copied['subtasks']} subtasks and {copied['outcomes']} outcomes of "
        f"{result['source']['subtasks']} / {result['source']['outcomes']} from {source}; the target now "
        f"holds {target['subtasks']} subtasks, {target['outcomes']} outcomes, {target['vectors']} vectors; "
        f"API keys copied with their spend and charges: {copied['api_keys']} keys, {copied['api_key_spend']} "
        f"spend rows, {copied['api_key_charges']} charges; {copied['responses']} stored Responses conversations",
        markup=False,
        highlight=False,
    )


def _parse_before(value: str) -> float:
    """An ISO date or date-time (UTC unless it says otherwise) as epoch seconds."""
    from datetime import datetime, timezone

    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        common.fail(f"--before {value!r} is not a date: use YYYY-MM-DD or an ISO date-time")
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
    """Erase subtasks with their outcomes, vectors and cached answers, together, and the stored Responses
    conversations that hold the text (both store backends; every worker sharing the store drops them too). With
    --match and --before, what matches both."""
    from fusiongraph.resources import get_resources

    if match is None and before is None:
        common.fail("give --match TEXT, --before DATE or both")
    when = _parse_before(before) if before is not None else None
    try:
        from fusiongraph.response_store import response_store

        res = get_resources(common.context(store_dir=store_dir))
        counts = res.store.forget(match, when)
        counts["conversations"] = response_store(store_dir).forget(match, when)
    except Exception as exc:
        common.fail(str(exc))
    if as_json:
        print(json.dumps(counts))
        return
    console.print(
        f"erased {counts['subtasks']} subtasks, {counts['outcomes']} outcomes, {counts['vectors']} vectors, "
        f"{counts['cached_answers']} cached answers, and {counts['conversations']} stored Responses conversations",
        markup=False,
        highlight=False,
    )


store_app = typer.Typer(no_args_is_help=False)
store_app.callback(invoke_without_command=True)(show_store)
store_app.command("migrate")(migrate_store_command)
store_app.command("forget")(forget_command)
app.add_typer(store_app, name="store")
