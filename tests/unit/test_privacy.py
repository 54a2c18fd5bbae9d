"""Privacy-aware routing (fusiongraph/privacy.py, nodes/privacy.py): detection on adversarial formats,
sensitive subtasks only to trusted models, redaction, the planner and synthesiser, the store; the real
presidio/spaCy/detect-secrets detectors, and a real loopback HTTP tier that logs what it receives."""

from __future__ import annotations

import json
import re

import pytest

from fusiongraph import privacy as pv
from fusiongraph.graphs.fusion import graph
from tests.conftest import ctx
from tests.fakes import ScriptedChat
from tests.unit.test_faults import FaultServer, completion

CARD = "4111 1111 1111 1111"
CARD_DIGITS = CARD.replace(" ", "")


@pytest.mark.parametrize(
    "text,kind",
    [
        (f"My card {CARD} was charged twice", "CREDIT_CARD"),
        ("Card 4111-1111-1111-1111 please", "CREDIT_CARD"),
        ("card 4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 refund", "CREDIT_CARD"),  # spaced digit by digit
        ("card 4111.1111.1111.1111", "CREDIT_CARD"),
        ("Karte ４１１１ １１１１ １１１１ １１１１ bitte", "CREDIT_CARD"),  # full-width digits
        ("card ٤١١١١١١١١١١١١١١١ here", "CREDIT_CARD"),  # Arabic-Indic digits
        ("Pay to IBAN DE89 3704 0044 0532 0130 00 today", "IBAN_CODE"),
        ("write to jane.roe@example.org about it", "EMAIL_ADDRESS"),
        ("write to jane.roe at example dot org about it", "EMAIL_ADDRESS"),  # obfuscated
        ("card 41111111\n11111111 split over two lines", "CREDIT_CARD"),
        ("call me on +44 20 7946 0958 tomorrow", "PHONE_NUMBER"),
        ("my SSN is 536-22-8726", "US_SSN"),
        ("aws key AKIAIOSFODNN7EXAMPLE in the config", "AWS Access Key"),
        ("token ghp_1234567890abcdefghijklmnopqrstuvwxyz in CI", "GitHub Token"),
        ("Patient Maria Gonzalez reports chest pain", "PERSON"),
        ("Ship it to 742 Evergreen Terrace, Springfield", "STREET_ADDRESS"),
    ],
)
def test_sensitive_values_are_found_in_adversarial_formats(text, kind):
    found = pv.scan(text)
    assert kind in {f.kind for f in found}, [(f.kind, text[f.start : f.end]) for f in found]


def test_a_secret_split_over_lines_is_found_and_masked_whole():
    text = "my key is sk-proj-abcdEFGH12345678\n90abcdEFGH1234567890abcdEF, keep it safe"
    found = pv.scan(text)
    assert found, "the split key was not found"
    masked, placeholders = pv.mask(text, found)
    assert "abcdEFGH" not in masked and "90abcd" not in masked
    assert pv.restore(masked, placeholders) == text


@pytest.mark.parametrize(
    "text",
    [
        "What is the capital of France?",
        "According to Kant, what is the categorical imperative?",
        "What is 17 times 23?",
        "Translate 'good morning' into French.",
        "Which of these is a prime number: 21, 23, 25 or 27?",
        "In 1905 Einstein published four papers; summarise the one on special relativity.",
        "Compute 4111 + 1111 and 1111 * 1111.",
        "Mr. Haines bought a tractor for $2,895.00; find its depreciation.",
        "The stock was trading at 1000. It then fell by 4%.",
        "Which is true? G. Birds form societies H. Birds do not",
    ],
)
def test_everyday_prompts_are_not_flagged(text):
    assert pv.scan(text) == [], [(f.kind, text[f.start : f.end]) for f in pv.scan(text)]


def test_user_patterns_from_yaml(tmp_path):
    f = tmp_path / "patterns.yaml"
    f.write_text("patterns:\n  - name: EMPLOYEE_ID\n    regex: 'EMP-\\d{6}'\n")
    found = pv.scan("badge EMP-123456 lost", str(f))
    assert [(x.detector, x.kind) for x in found] == [("patterns", "EMPLOYEE_ID")]
    bad = tmp_path / "bad.yaml"
    bad.write_text("patterns:\n  - name: X\n    regex: '('\n")
    with pytest.raises(ValueError, match="bad.yaml.*entry 0 \\(X\\): bad regex"):
        pv.scan("anything", str(bad))


def test_mask_and_restore_round_trip_and_the_public_view_has_no_value():
    text = f"card {CARD}, again {CARD}, mail a@b.co"
    found = pv.scan(text)
    masked, placeholders = pv.mask(text, found)
    assert masked == "card [CREDIT_CARD_1], again [CREDIT_CARD_1], mail [EMAIL_ADDRESS_1]"
    assert pv.restore(masked, placeholders) == text
    assert all(CARD not in json.dumps(f.public()) for f in found)


# ----------------------------------------------------------------------------------------- the graph
def local_and_api(local_reply="GOOD local", api_reply="GOOD api"):
    local = ScriptedChat(script=lambda p: local_reply if isinstance(local_reply, str) else local_reply(p))
    api = ScriptedChat(script=lambda p: api_reply if isinstance(api_reply, str) else api_reply(p))
    models = {
        "local": ({"price_in": 0.0, "price_out": 0.0, "trusted": True}, local),
        "api": ({"price_in": 0.1, "price_out": 0.4}, api),
    }
    return models, local, api


def trusted_helpers(res):
    """Make the fixture's planner and judge trusted (a local planner), as with the local default."""
    for m in ("planner", "judge"):
        res.roster.specs[m] = res.roster.specs[m].model_copy(update={"trusted": True})


def test_a_sensitive_subtask_goes_only_to_trusted_models(fusion):
    models, local, api = local_and_api(local_reply="BAD local")  # the local answer is rejected
    res = fusion(models)
    trusted_helpers(res)
    out = graph.invoke({"query": f"My card {CARD} was charged twice, what should I do?"}, context=ctx())
    (r,) = out["results"]
    assert api.calls == [] and [a["model"] for a in r["attempts"]] == ["local"]
    assert {"model": "api", "reason": pv.reason(r["sensitive"], "route")} in r["skipped"]
    assert r["sensitive"] == [{"detector": "presidio", "kind": "CREDIT_CARD", "chars": len(CARD)}]
    event = next(e for e in r["trace"] if e["node"] == "privacy")
    assert event["found"] == {"presidio": {"CREDIT_CARD": 1}} and CARD_DIGITS[:8] not in json.dumps(event)
    # the same question without the number may use the API model
    out = graph.invoke({"query": "My card was charged twice, what should I do?"}, context=ctx())
    assert "api" in [a["model"] for a in out["results"][0]["attempts"]]


def test_redact_masks_the_values_for_an_untrusted_model_and_restores_its_answer(fusion):
    models, local, api = local_and_api(local_reply="BAD local", api_reply=lambda p: "GOOD: block card " + p[-40:])
    res = fusion(models)
    trusted_helpers(res)
    query = f"Block card {CARD} now"
    out = graph.invoke({"query": query}, context=ctx(privacy="redact"))
    (r,) = out["results"]
    assert api.calls and all(CARD not in c and CARD_DIGITS not in c for c in api.calls)
    assert any("[CREDIT_CARD_1]" in c for c in api.calls)
    accepted = next(a for a in r["attempts"] if a["model"] == "api")
    assert CARD in accepted["answer"] and "[CREDIT_CARD_1]" not in accepted["answer"]


def test_an_untrusted_planner_never_sees_a_sensitive_query(fusion):
    models, local, api = local_and_api()
    planner = ScriptedChat(script=lambda p: json.dumps({"subtasks": [s.strip() for s in p.split(" AND ")]}))
    res = fusion(models, planner=planner)  # the planner is an untrusted API model here
    res.roster.specs["judge"] = res.roster.specs["judge"].model_copy(update={"trusted": True})
    query = f"Is {CARD} a valid card number? AND What is the capital of France?"
    out = graph.invoke({"query": query}, context=ctx())
    plan = next(e for e in out["trace"] if e["node"] == "decompose")
    assert planner.calls == [] and plan["model"] == "local"  # a trusted model plans instead
    assert plan["privacy"]["found"] == {"presidio": {"CREDIT_CARD": 1}} and CARD not in json.dumps(plan)
    # redact: the untrusted planner sees placeholders only, and the subtasks get the values back
    out = graph.invoke({"query": query}, context=ctx(privacy="redact"))
    assert planner.calls and all(CARD not in c for c in planner.calls)
    assert any(CARD in s for s in out["subtasks"]) and len(out["subtasks"]) == 2


def test_with_no_trusted_model_a_sensitive_query_is_not_planned_nor_answered(fusion):
    models, local, api = local_and_api()
    models["local"][0]["trusted"] = False
    planner = ScriptedChat(script=lambda p: json.dumps({"subtasks": [p]}))
    fusion(models, planner=planner)
    out = graph.invoke({"query": f"Is {CARD} a valid card number?"}, context=ctx())
    plan = next(e for e in out["trace"] if e["node"] == "decompose")
    assert plan["fallback"].startswith("privacy:") and planner.calls == []
    (r,) = out["results"]
    assert r["status"] == "failed" and local.calls == [] and api.calls == [] and r["verified"] is False


def test_the_store_keeps_the_masked_subtask_or_nothing(fusion):
    models, local, api = local_and_api(local_reply=f"GOOD: card {CARD} blocked")
    res = fusion(models)
    trusted_helpers(res)
    graph.invoke({"query": f"Block card {CARD} now"}, context=ctx())
    stored = res.store.outcomes()
    texts = json.dumps(stored)
    assert stored and CARD not in texts and CARD_DIGITS not in texts and "[CREDIT_CARD_1]" in texts
    before = res.store.counts()["outcomes"]
    graph.invoke({"query": "Block card 5500 0000 0000 0004 now"}, context=ctx(privacy_store="none"))
    assert res.store.counts()["outcomes"] == before


def test_privacy_off_does_not_look(fusion):
    models, local, api = local_and_api(local_reply="BAD local")
    res = fusion(models)
    trusted_helpers(res)
    out = graph.invoke({"query": f"My card {CARD} was charged twice"}, context=ctx(privacy="off"))
    assert "sensitive" not in out["results"][0] and api.calls


# ------------------------------------------------------------------- a real HTTP tier that logs what it gets
def test_a_card_number_never_reaches_an_api_tier_over_http(fusion):
    """The issue's done-when: an API tier configured (a real HTTP endpoint, planner, judge and synthesiser
    all API models), a query with a card number: the tier's log holds none of its digits."""
    tier = FaultServer()  # a loopback OpenAI-compatible endpoint that keeps every request body
    tier.reply = (200, {}, completion("GOOD: done"), 0.0)
    local = ScriptedChat(script=lambda p: "GOOD: call your bank and block the card")
    res = fusion(
        {
            "local": ({"price_in": 0.0, "price_out": 0.0, "trusted": True}, local),
            "api": ({"price_in": 0.1, "price_out": 0.4}, None),  # a real ChatOpenAI against the tier
        }
    )
    res.roster.specs["api"].base_url = tier.url
    try:
        knobs = {"planner_model": "api", "judge_model": "api"}
        query = "My card 4111-1111-1111-1111 was charged twice. Also, what is the capital of France?"
        out = graph.invoke({"query": query}, context=ctx(**knobs))
        assert out["answer"]
        logged = "\n".join(tier.bodies)
        digits = re.sub(r"\D", "", logged)
        assert CARD_DIGITS not in digits and "4111" not in logged, "the card number reached the API tier"
        # a plain query does reach the tier (the log is real)
        graph.invoke({"query": "What is the capital of Peru?"}, context=ctx(**knobs))
        assert len(tier.bodies) > 0 and "Peru" in "\n".join(tier.bodies)
    finally:
        tier.close()
