"""Per-key request rate limits (fusiongraph/rate_limit.py): counted per key in one-minute windows, shared
through the real Redis (127.0.0.1:6379) by every replica, per worker without it; over the limit a request gets
a 429 rate_limit_exceeded with Retry-After."""

import uuid

from starlette.testclient import TestClient

from fusiongraph import keys as keys_mod
from fusiongraph import rate_limit
from fusiongraph.server.openai_app import app

REDIS = "redis://127.0.0.1:6379/0"


def test_per_worker_counts_without_redis(monkeypatch):
    monkeypatch.setenv("FUSIONGRAPH_KEY_RPM", "2")
    monkeypatch.delenv("FUSIONGRAPH_REDIS_URL", raising=False)
    key = f"key_{uuid.uuid4().hex[:8]}"
    assert rate_limit.over_limit(key, now=120.0) is None and rate_limit.over_limit(key, now=121.0) is None
    assert rate_limit.over_limit(key, now=150.0) == 30  # the third in the window: retry when it ends
    assert rate_limit.over_limit(key, now=181.0) is None  # a new window
    assert rate_limit.over_limit(f"{key}-other", now=150.0) is None  # each key its own count


def test_redis_counts_are_shared_by_every_replica(monkeypatch):
    monkeypatch.setenv("FUSIONGRAPH_KEY_RPM", "3")
    monkeypatch.setenv("FUSIONGRAPH_REDIS_URL", REDIS)
    key = f"key_{uuid.uuid4().hex[:8]}"
    replica_a, replica_b = rate_limit.RedisCounts(REDIS), rate_limit.RedisCounts(REDIS)
    now = 60.0 * 16_667  # the start of a window
    window = int(now // 60)
    assert replica_a.incr(key, window) == 1 and replica_b.incr(key, window) == 2  # one count, two clients
    assert rate_limit.over_limit(key, now=now) is None  # the third
    assert rate_limit.over_limit(key, now=now + 1) == 59  # the fourth: over, whichever worker counts it


def test_a_key_over_its_rate_gets_a_429_with_retry_after(monkeypatch, tmp_path, fusion):
    from tests.store.test_keys import keyed
    from tests.unit.test_server import KNOBS, two_models

    monkeypatch.delenv("FUSIONGRAPH_STORE_URL", raising=False)
    monkeypatch.setenv("FUSIONGRAPH_STORE_DIR", str(tmp_path / "server-store"))
    monkeypatch.setattr(keys_mod, "_stores", {})
    monkeypatch.setenv("FUSIONGRAPH_KEY_RPM", "1")
    monkeypatch.setenv("FUSIONGRAPH_REDIS_URL", REDIS)
    fusion(two_models())
    token, key = keys_mod.key_store().create("burst", 10.0)
    body = {"model": "fusiongraph", "messages": [{"role": "user", "content": "Hi"}], "fusiongraph": dict(KNOBS)}
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(keyed(app)) as client:  # a third request in case a minute's window ends between the two
        replies = [client.post("/v1/chat/completions", json=body, headers=headers) for _ in range(3)]
    assert replies[0].status_code == 200
    over = next(r for r in replies[1:] if r.status_code == 429)
    for ks in keys_mod._stores.values():
        ks.close()
    assert over.status_code == 429 and int(over.headers["Retry-After"]) >= 1
    error = over.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and "'burst' is over its 1 requests a minute" in error["message"]
