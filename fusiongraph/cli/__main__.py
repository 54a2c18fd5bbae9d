"""`python -m fusiongraph.cli`."""

from fusiongraph.cli import app

app()
