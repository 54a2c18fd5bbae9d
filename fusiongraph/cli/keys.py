"""`fusiongraph keys`: the server's API keys and their budgets."""

from __future__ import annotations

import json
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from fusiongraph.cli import common
from fusiongraph.cli.common import app, console

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
        common.fail(str(exc))


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
        common.fail(str(exc))
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
        common.fail(str(exc))
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
        common.fail(str(exc))
    if not done:
        common.fail(f"no active key named or with id {key!r} in {keys.label}")
    console.print(f"revoked {key!r}", markup=False, highlight=False)
