"""The `fusiongraph` command: ask a question through the graph, inspect models and the outcome store."""

# the command groups: one line each (a module registers its commands on `app`)
from fusiongraph.cli import (
    ask,  # noqa: E402,F401
    evaluate,  # noqa: E402,F401
    keys,  # noqa: E402,F401
    models,  # noqa: E402,F401
    store,  # noqa: E402,F401
)
from fusiongraph.cli.common import app

__all__ = ["app"]
