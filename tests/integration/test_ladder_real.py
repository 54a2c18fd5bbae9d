"""The tests of tests/unit/test_ladder.py that need the real thing (a shipped GGUF, a llama.cpp server, `langgraph dev`)."""

from __future__ import annotations

import pytest

from fusiongraph.defaults import DEFAULT_MODELS
from fusiongraph.models.gguf_parts import assemble
from fusiongraph.models.roster import Roster


@pytest.mark.integration
def test_the_real_ladder_is_joined_verified_and_answers_through_the_graph(tmp_path):
    """The shipped part packages joined into the cache (their SHA-256 checked), the 0.5B tier answering a
    word problem through the whole graph on the local ladder, charged its measured compute seconds."""
    from fusiongraph.context import FusionContext
    from fusiongraph.graphs.fusion import graph
    from fusiongraph.models.gguf_parts import sha256_of

    roster = Roster.from_yaml(DEFAULT_MODELS)
    for model_id in ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"):
        parts = roster[model_id].gguf_parts
        path = assemble(parts)
        assert path.stat().st_size > 400_000_000 and path.read_bytes()[:4] == b"GGUF"
    assert (
        sha256_of(assemble(roster["qwen2.5-coder-0.5b"].gguf_parts)) == roster["qwen2.5-coder-0.5b"].gguf_parts.sha256
    )
    ctx = FusionContext(
        local_only=True, store_dir=str(tmp_path / "store"), cache=False, models_path=str(DEFAULT_MODELS)
    )
    out = graph.invoke(
        {"query": "Tom has 3 boxes of 12 pencils and gives away 10. How many pencils are left?"}, context=ctx
    )
    [result] = out["results"]  # a word problem is one subtask
    assert result["task_class"] == "math" and result["candidates"][0].startswith("qwen2.5-coder")
    assert "26" in out["answer"]
    first = result["attempts"][0]
    spec = roster[first["model"]]
    assert first["compute_s"] > 0
    paid = first["cost_usd"] + first["judge_cost_usd"]  # the answer and its LLM judge (a local tier too)
    assert paid == pytest.approx(first["compute_s"] * spec.usd_per_hour / 3600, rel=1e-2)
    assert out["summary"]["compute_s"] >= first["compute_s"]
    assert out["summary"]["strongest_model"] == "qwen2.5-coder-1.5b"  # the baseline is the dearest local tier
