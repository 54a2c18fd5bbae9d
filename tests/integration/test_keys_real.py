"""The tests of tests/store/test_keys.py that need the real thing (a shipped GGUF, a llama.cpp server, `langgraph dev`)."""

from __future__ import annotations

import httpx
import pytest

from fusiongraph.keys import KeyStore
from tests.store.test_keys import KNOBS_LOCAL


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_langgraph_dev_keys_budgets_and_metrics(langgraph_dev, tmp_path):
    import openai  # a dependency (the endpoint's response types): missing, the test fails

    url, log_path = langgraph_dev
    # no key configured: open, the OpenAI app and LangGraph's own routes alike
    assert httpx.get(f"{url}/v1/models").status_code == 200
    assert httpx.post(f"{url}/assistants/search", json={}).status_code == 200
    assert httpx.get(f"{url}/metrics").status_code == 200  # an open server's metrics are open

    ks = KeyStore(tmp_path / "store")  # the server's store (FUSIONGRAPH_STORE_DIR of the fixture)
    token, key = ks.create("ci", 5.0, "day")
    broke_token, _ = ks.create("broke", 0.0, "month")
    for path, kwargs in [("/v1/models", {}), ("/assistants/search", {"json": {}})]:
        method = httpx.get if not kwargs else httpx.post
        refused = method(f"{url}{path}", **kwargs)
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"]["code"] == "missing_api_key"
        assert method(f"{url}{path}", headers={"Authorization": "Bearer fg-wrong"}, **kwargs).status_code == 401
        assert method(f"{url}{path}", headers={"x-api-key": token}, **kwargs).status_code == 200
    # Studio's header does not bypass the keys (disable_studio_auth)
    assert httpx.post(f"{url}/assistants/search", json={}, headers={"x-auth-scheme": "langsmith"}).status_code == 401

    oai = openai.OpenAI(base_url=f"{url}/v1", api_key=token, timeout=120, max_retries=0)
    done = oai.chat.completions.create(
        model="fusiongraph",
        max_tokens=16,
        extra_body={"local_only": True},
        messages=[{"role": "user", "content": "What is the capital of France?"}],
    )
    assert done.choices[0].message.content.strip()
    runs = ks.backend._db.execute("SELECT runs FROM api_key_spend WHERE key_id = ?", (key.id,)).fetchone()
    assert runs == (1,)  # the run was charged once (the local model's compute), by the endpoint only

    # a run through LangGraph's own API (the SDK) is charged too, by the graph's settle node, under its run id
    from langgraph_sdk import get_sync_client

    with pytest.raises(Exception, match="401"):
        get_sync_client(url=url, api_key=None).runs.wait(None, "fusion", input={"query": "Hi"}, context=KNOBS_LOCAL)
    sdk = get_sync_client(url=url, api_key=token)
    thread = sdk.threads.create()
    run = sdk.runs.create(thread["thread_id"], "fusion", input={"query": "Name a colour."}, context=KNOBS_LOCAL)
    out = sdk.runs.join(thread["thread_id"], run["run_id"])
    assert out["answer"].strip(), out
    charges = ks.backend._db.execute(
        "SELECT run_id, cost_usd FROM api_key_charges WHERE key_id = ? ORDER BY id", (key.id,)
    ).fetchall()
    assert len(charges) == 2 and charges[0][0] is None and charges[0][1] > 0, charges  # a local model costs its compute
    assert charges[1] == (run["run_id"], out["summary"]["spent_usd"]["total"]), charges
    assert ks.backend._db.execute("SELECT runs FROM api_key_spend WHERE key_id = ?", (key.id,)).fetchone() == (2,)

    with pytest.raises(openai.RateLimitError) as over:
        openai.OpenAI(base_url=f"{url}/v1", api_key=broke_token, timeout=60, max_retries=0).models.list()
    assert over.value.status_code == 429 and over.value.body["code"] == "insufficient_quota"
    assert "'broke' has spent $0.000000 of its $0.000000 per-month budget" in over.value.body["message"]

    ks.revoke("ci")
    with pytest.raises(openai.AuthenticationError) as revoked:
        oai.models.list()
    assert revoked.value.body["code"] == "revoked_api_key"

    refused = httpx.get(f"{url}/metrics")  # LangGraph's /metrics, behind the keys (server/auth.py MetricsGuard)
    assert refused.status_code == 401 and "fusiongraph_" not in refused.text, refused.text
    # the process's registry, read with a key (one over its budget may still read it)
    metrics = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {broke_token}"}).text
    assert f'fusiongraph_runs_total{{key="{key.id}",mode="json"}} 1.0' in metrics  # the key's id, not its name
    assert f'fusiongraph_runs_total{{key="{key.id}",mode="runs"}} 1.0' in metrics  # the SDK run, counted once
    assert (
        f'fusiongraph_requests_total{{key="{key.id}",method="POST",route="/v1/chat/completions",status="200"}} 1.0'
        in metrics
    )
    assert 'key="ci"' not in metrics and 'key="broke"' not in metrics
    assert 'status="429"' in metrics and "fusiongraph_model_latency_seconds_bucket" in metrics
    ks.close()
