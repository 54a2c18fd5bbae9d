"""The `fusiongraph` command's app, console and shared helpers; each command group is a module beside this one."""

from __future__ import annotations

import os
import warnings

import typer
from rich.console import Console

warnings.filterwarnings("ignore", module="langchain_community")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

app = typer.Typer(
    help="Use many LLMs as one: decompose, route, judged cascade, record, synthesise.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(width=max(Console().width, 110))


def context(**knobs):
    from fusiongraph.context import FusionContext

    return FusionContext(**{k: v for k, v in knobs.items() if v is not None})


def fail(message: str) -> None:
    Console(stderr=True).print(f"[bold red]error:[/] {message}")
    raise typer.Exit(2)
