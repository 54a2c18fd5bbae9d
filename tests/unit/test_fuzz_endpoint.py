"""Every bad input to the OpenAI-compatible endpoint is a 4xx in OpenAI's error shape, never a 500
(property-based: random bodies, types, sizes and nesting, raw bytes, other methods and paths).
$FUSIONGRAPH_FUZZ_EXAMPLES sets the random bodies' count (benchmarks/bench_fuzz.py runs 10,000)."""

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from fusiongraph.server.openai_app import app

SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=30,
)
FIELDS = {
    "model": st.just("fusiongraph") | SCALARS,
    "messages": st.lists(
        st.fixed_dictionaries(
            {"role": st.sampled_from(["user", "system", "assistant", "tool", "x"]) | SCALARS},
            optional={"content": JSON, "tool_call_id": SCALARS, "tool_calls": JSON},
        ),
        max_size=3,
    )
    | JSON,
    "stream": JSON,
    "max_tokens": JSON,
    "temperature": JSON,
    "tools": JSON,
    "tool_choice": JSON,
    "response_format": JSON,
    "stop": JSON,
    "n": JSON,
    "fusiongraph": st.dictionaries(
        st.sampled_from(["budget_usd", "quality_threshold", "router", "k", "nope"]), JSON, max_size=3
    )
    | JSON,
}
BODIES = st.fixed_dictionaries({}, optional=FIELDS) | JSON


@pytest.fixture(scope="module")
def client():
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def fused(fusion):
    """Scripted models for the whole test (every example shares them: one store, opened once)."""
    from tests.unit.test_server import two_models

    return fusion(two_models())


def assert_openai_error(r):
    assert r.status_code < 500, (r.status_code, r.text[:500])
    if r.status_code >= 400 and r.status_code != 499:
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["message"]


@settings(
    max_examples=int(os.environ.get("FUSIONGRAPH_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=BODIES)
def test_random_bodies_are_never_a_500(client, fused, body):
    assert_openai_error(client.post("/v1/chat/completions", content=json.dumps(body)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300))
def test_random_bytes_are_never_a_500(client, raw):
    assert_openai_error(client.post("/v1/chat/completions", content=raw))


def test_deep_nesting_other_methods_and_unknown_paths_are_openai_errors(client):
    deep = "[" * 5000 + "]" * 5000
    r = client.post("/v1/chat/completions", content=deep)
    assert r.status_code == 400 and "too deeply" in r.json()["error"]["message"]
    r = client.get("/v1/chat/completions")
    assert r.status_code == 405 and r.headers["Allow"] == "POST" and r.json()["error"]["code"] == "method_not_allowed"
    r = client.post("/v1/embeddings", json={})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert client.get("/v1/models").status_code == 200


def test_a_knob_out_of_range_names_the_real_parameter(client):
    body = {"model": "fusiongraph", "messages": [{"role": "user", "content": "hi"}]}
    r = client.post("/v1/chat/completions", json=body | {"max_tokens": 0})
    assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens"
    r = client.post("/v1/chat/completions", json=body | {"max_completion_tokens": 0})
    assert r.json()["error"]["param"] == "max_completion_tokens"
    r = client.post("/v1/chat/completions", json=body | {"fusiongraph": {"quality_threshold": 3}})
    assert r.json()["error"]["param"] == "fusiongraph.quality_threshold"
