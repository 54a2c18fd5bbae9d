"""API keys for the LangGraph server: LangGraph custom auth over every route, the mounted OpenAI-compatible
app too (langgraph.json ``"auth": {"path": "fusiongraph.server.auth:auth"}``, ``"http": {"enable_custom_route_auth": true}``).
The auth path names a module, not a file: loaded by file path it would be a second copy of this module,
whose :class:`KeyRejected` the mounted app's exception handler would not recognise.

* No key was ever created in the server's store (and ``FUSIONGRAPH_REQUIRE_API_KEY`` is unset): open, as a
  local dev server should be; requests run as ``anonymous``.
* Otherwise every request needs a key, as ``Authorization: Bearer fg-...`` (the OpenAI clients) or
  ``x-api-key: fg-...`` (the LangGraph SDK's ``api_key``): a missing, unknown or revoked key is a 401, a key
  whose spend in its period has reached its budget a 429, both with OpenAI's error body (plus LangGraph's
  ``detail``). The meta routes (``/ok``, ``/info``, ``/docs``) are not covered: LangGraph serves them outside
  auth; ``/metrics`` is guarded by :class:`MetricsGuard`.

Every run is charged its actual cost to the key that made it and its metrics are recorded
(fusiongraph/settlement.py): runs of the OpenAI endpoint by the endpoint once the run is done (:func:`settle`),
runs through LangGraph's own API (``/runs``, the SDK, Studio) by the graph's last node, ``settle``
(``fusiongraph.settlement.settle_run``), from the key that LangGraph's auth put into the run's config
(``configurable.langgraph_auth_user``, which a client cannot set). The endpoint runs the graph in process,
without that config, so no run is charged twice; a run id is charged at most once in any case.
"""

from __future__ import annotations

import asyncio
import hmac
import logging

from langgraph_sdk import Auth
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from fusiongraph.keys import PREFIX, ApiKey, KeyRefused, key_store, require_keys_env
from fusiongraph.rate_limit import over_limit
from fusiongraph.server import metrics
from fusiongraph.settings import settings
from fusiongraph.settlement import ANONYMOUS, charge, run_cost
from fusiongraph.store.backend import StoreError, mask_url

log = logging.getLogger(__name__)

SCOPE_KEY = "fusiongraph.api_key"  # the request's ApiKey (None when the server is open)

auth = Auth()


class KeyRejected(HTTPException):
    """A refused request. A starlette HTTPException so LangGraph's auth passes it on untouched, answered by
    :func:`openai_error` (registered on the app by :func:`install`) in OpenAI's error format."""

    def __init__(self, status: int, message: str, code: str, kind: str):
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        super().__init__(status, message, headers)
        self.message, self.code, self.kind = message, code, kind


def _token(authorization: str | None, headers: dict) -> str | None:
    """The key a request carries: ``Authorization: Bearer ...`` or ``x-api-key``; an ``fg-`` one first."""
    found = []
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        found.append(value.strip() if scheme.lower() == "bearer" else authorization.strip())
    for name, value in (headers or {}).items():
        name = name.decode("latin-1") if isinstance(name, bytes) else name
        if name.lower() == "x-api-key" and value:
            found.append((value.decode("latin-1") if isinstance(value, bytes) else value).strip())
    found = [t for t in found if t]
    return next((t for t in found if t.startswith(PREFIX)), found[0] if found else None)


@auth.authenticate
def authenticate(authorization: str | None, headers: dict, scope: dict) -> dict:
    """Every protected request (LangGraph runs it in a thread: the key store is a blocking database)."""
    try:
        keys = key_store()
        if not keys.any_keys() and not require_keys_env():
            scope[SCOPE_KEY] = None
            return {"identity": ANONYMOUS, "permissions": [], "is_authenticated": True}
        key = keys.check(_token(authorization, headers))
    except KeyRefused as exc:
        scope[SCOPE_KEY] = exc.key  # for the metrics' key label (a key over budget)
        kind = "insufficient_quota" if exc.status == 429 else "invalid_request_error"
        raise KeyRejected(exc.status, exc.message, exc.code, kind) from None
    except StoreError as exc:
        log.error("API key check failed: %s", exc)
        raise KeyRejected(
            503,
            f"the API key store is unavailable ({mask_url(str(exc))[:300]}); retry later",
            "key_store_unavailable",
            "server_error",
        ) from None
    scope[SCOPE_KEY] = key
    if (retry_after := over_limit(key.id)) is not None:
        rejected = KeyRejected(
            429,
            f"the API key {key.name!r} is over its {settings().key_rpm} requests a minute; retry after {retry_after} s",
            "rate_limit_exceeded",
            "requests",
        )
        rejected.headers = {"Retry-After": str(retry_after)}
        raise rejected
    return {
        "identity": key.id,
        "display_name": key.name,
        "key_name": key.name,
        "permissions": [],
        "is_authenticated": True,
    }


async def openai_error(request: Request, exc: KeyRejected) -> JSONResponse:
    metrics.count_rejection(request.scope, exc.status_code)
    return JSONResponse(
        {"error": {"message": exc.message, "type": exc.kind, "param": None, "code": exc.code}, "detail": exc.message},
        status_code=exc.status_code,
        headers=exc.headers,
    )


def install(app) -> None:
    """Answer refused keys in OpenAI's error format. LangGraph merges the mounted app's exception handlers
    into the server's, so this covers its own routes too."""
    app.add_exception_handler(KeyRejected, openai_error)


METRICS_PATH = "/metrics"


class MetricsGuard:
    """ASGI middleware: ``GET /metrics`` behind the keys. LangGraph serves the route itself, outside its auth,
    but runs the mounted app's middleware on every route, so this guards its route and the app's alike.

    ``FUSIONGRAPH_METRICS_KEY`` set: only that token reads the metrics. Otherwise, once the server has keys (or
    ``FUSIONGRAPH_REQUIRE_API_KEY``), any valid key does (one over its budget too: reading metrics costs
    nothing); an open server's metrics are open. A refusal is a 401 in OpenAI's error format."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and is_metrics_path(scope):
            if (refused := await asyncio.to_thread(metrics_refusal, scope)) is not None:
                return await refused(scope, receive, send)
        await self.app(scope, receive, send)


def is_metrics_path(scope: dict) -> bool:
    """The request is for a ``/metrics`` route: at the root, under the server's ``root_path`` or a mount
    prefix (LangGraph's ``mount_prefix``)."""
    path = scope.get("path", "").rstrip("/")
    return path == METRICS_PATH or path.endswith(METRICS_PATH) and path.count("/") >= 2


def metrics_refusal(scope: dict) -> JSONResponse | None:
    """Why a request may not read /metrics (the response to give), or None."""
    headers = dict(scope.get("headers") or [])
    authorization = headers.get(b"authorization", b"").decode("latin-1") or None
    token = _token(authorization, headers)
    admin = settings().metrics_key
    if admin:
        if token and hmac.compare_digest(token.encode(), admin.encode()):
            return None
        return _refusal(401, "GET /metrics needs the metrics key (FUSIONGRAPH_METRICS_KEY)", "invalid_api_key")
    try:
        keys = key_store()
        if not keys.any_keys() and not require_keys_env():
            return None
        keys.check(token)
    except KeyRefused as exc:
        if exc.status == 429 and exc.key is not None:  # a real key over its budget may still read metrics
            return None
        return _refusal(401, f"GET /metrics needs an API key: {exc.message}", exc.code)
    except StoreError as exc:
        log.error("API key check failed: %s", exc)
        return _refusal(503, "the API key store is unavailable; retry later", "key_store_unavailable")
    return None


def _refusal(status: int, message: str, code: str) -> JSONResponse:
    body = {"message": message, "type": "invalid_request_error" if status == 401 else "server_error"}
    return JSONResponse(
        {"error": body | {"param": None, "code": code}, "detail": message},
        status_code=status,
        headers={"WWW-Authenticate": "Bearer"} if status == 401 else None,
    )


def request_key(scope: dict | None) -> ApiKey | None:
    return (scope or {}).get(SCOPE_KEY)


def settle(scope: dict | None, out: dict, mode: str = "json") -> None:
    """After a run of the OpenAI endpoint: charge its actual cost to the request's key and record its
    metrics. A failed charge is logged, not raised: the answer is already paid for."""
    metrics.observe_run(scope, out, mode)
    key = request_key(scope)
    if key is not None:
        charge(key, run_cost(out))


def settle_cancelled(scope: dict | None, partial: dict) -> None:
    """A run cancelled because its client left: charge the key what its finished calls cost (never raises)."""
    key = request_key(scope)
    cost = run_cost(partial)
    if key is not None and cost > 0:
        charge(key, cost)
