"""The tests of tests/unit/test_discovery.py that need the real thing (a shipped GGUF, a llama.cpp server, `langgraph dev`)."""

import json
import os
import socket
from pathlib import Path

import pytest

from tests.devserver import serve_gguf
from tests.unit.test_discovery import GGUF, _free_port, _roster_file


def _serve_smollm2(tmp_path, port: int, alias: str):
    """A real llama.cpp server serving the shipped GGUF under `alias`."""
    return serve_gguf(GGUF, tmp_path, alias, port=port)


@pytest.fixture
def served_smollm2(tmp_path):
    with _serve_smollm2(tmp_path, _free_port(), "smollm2") as base:
        yield base


@pytest.mark.integration
def test_a_llama_server_on_8080_under_an_alias_is_a_tier_of_fusiongraph_ask(tmp_path):
    """The issue's done-when, as a user runs it: a llama.cpp server on its usual port 8080 under an alias,
    the shipped roster untouched, and `fusiongraph ask --json`: the served model is a tier of the plan,
    and every subtask says whether it was verified."""
    import subprocess
    import sys

    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", 8080)) == 0:
            pytest.skip("something already listens on 127.0.0.1:8080 (this test needs the port free)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FUSIONGRAPH_")}
    env |= {"HOME": str(tmp_path / "home"), "HF_HUB_CACHE": str(tmp_path / "hf"), "FUSIONGRAPH_DISCOVER_LOCAL": "1"}
    env["FUSIONGRAPH_STORE_DIR"] = str(tmp_path / "store")
    with _serve_smollm2(tmp_path, 8080, "my-smollm"):
        run = subprocess.run(
            [str(Path(sys.executable).parent / "fusiongraph"), "ask", "--json", "--local-only", "--max-tokens", "24"]
            + ["Name a primary colour."],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout)
    assert out["results"] and all("my-smollm@8080" in r["candidates"] for r in out["results"]), out["results"]
    assert all(isinstance(r["verified"], bool) for r in out["results"]) and "verified" in out["summary"]


@pytest.mark.integration
def test_a_discovered_llama_server_answers_through_the_cascade(served_smollm2, no_defaults, tmp_path, monkeypatch):
    """A real llama.cpp server, found only through $FUSIONGRAPH_LOCAL_URLS, answers a local-only run."""
    from fusiongraph.context import FusionContext
    from fusiongraph.defaults import DEFAULT_MODELS
    from fusiongraph.graphs.fusion import graph
    from fusiongraph.resources import get_resources

    base = served_smollm2
    monkeypatch.setenv("FUSIONGRAPH_LOCAL_URLS", base)
    ctx = FusionContext(
        store_dir=str(tmp_path / "store"),
        models_path=str(_roster_file(tmp_path)),
        taxonomy_path=str(DEFAULT_MODELS.parent / "taxonomy.yaml"),
        discover_local=True,
        local_only=True,
        max_tokens=24,
    )
    res = get_resources(ctx)
    served = f"smollm2@{base.rsplit(':', 1)[1].split('/')[0]}"
    assert res.roster[served].trusted and res.roster[served].source == f"discovered:{base}"
    assert all(served in c.candidates for c in res.taxonomy.classes.values())
    out = graph.invoke({"query": "Name a primary colour."}, context=ctx)
    (result,) = out["results"]
    attempt = result["attempts"][0]
    assert attempt["model"] == served and "error" not in attempt, attempt
    assert attempt["answer"].strip() and attempt["cost_usd"] == 0.0
