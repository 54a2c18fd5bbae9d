"""The deployment settings: every ``FUSIONGRAPH_*`` environment variable, read in one place and validated.

Per-run knobs are :class:`fusiongraph.context.FusionContext`; these are the machine's and the deployment's.
:func:`settings` reads the environment when called, so a change (or a test's ``monkeypatch.setenv``) is seen
by the next caller. A bad value is a clear error naming the variable.
"""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FUSIONGRAPH_", extra="ignore", frozen=True, env_ignore_empty=True)

    # the outcome store
    store_url: str = Field("", description="The outcome store: a postgresql:// URL (or sqlite:///dir).")
    store_dir: str = Field("", description="The SQLite outcome store's directory (default: the user data dir).")
    store_cache_dir: str = Field("", description="Where a worker keeps its FAISS index and probe fit between starts.")
    retention_days: float | None = Field(None, gt=0, description="Erase what the store recorded longer ago.")
    faiss_threads: int = Field(1, ge=1, description="FAISS search threads.")
    # configuration files
    models: str = Field("", description="The model roster YAML (default: fusiongraph/defaults/models.yaml).")
    taxonomy: str = Field("", description="The task taxonomy YAML (default: fusiongraph/defaults/taxonomy.yaml).")
    privacy_patterns: str = Field("", description="A YAML file of your own sensitive patterns.")
    shipped_acceptance: bool = Field(True, description="A fresh store's acceptance fit is the shipped labels'.")
    # models on this machine
    discover_local: bool = Field(True, description="Add the models this machine already has to the roster.")
    local_urls: str = Field("", description="OpenAI-compatible servers to discover (comma or space separated).")
    gguf_dirs: str = Field("", description="More folders to look for GGUF files in (os.pathsep separated).")
    model_cache: str = Field("", description="Where GGUF part packages are joined (default: the user cache).")
    local_parallel: int = Field(1, ge=1, description="In-process models computing at once.")
    llama_threads: int | None = Field(None, ge=1, description="llama.cpp threads per model (default: cores/slots).")
    llama_extra_bufts: bool = Field(False, description="Keep llama.cpp's extra (repacked) weight buffers.")
    crosscheck_gguf: str = Field("", description="The cross-check judge's scorer GGUF (default: the shipped one).")
    # the server
    require_api_key: bool = Field(False, description="Refuse requests without a valid API key.")
    max_runs: int = Field(2, ge=1, description="Chat runs in flight per worker; more wait in the queue.")
    max_queued: int = Field(8, ge=0, description="Chat runs waiting per worker; past it, an immediate 429.")
    key_rpm: int = Field(0, ge=0, description="Requests a minute allowed to each API key (0: no limit).")
    metrics_key: str = Field(
        "",
        description="A token that alone may read GET /metrics (for a Prometheus scraper); unset: any valid API "
        "key may once keys exist, anybody while the server is open.",
    )
    responses_retention_days: float = Field(
        30.0, gt=0, description="Keep a Responses API conversation (for previous_response_id) this many days."
    )
    redis_url: str = Field(
        "", description="Redis for counts every replica shares (rate limits), e.g. redis://127.0.0.1:6379/0."
    )


def settings() -> Settings:
    """The settings as the environment says now (parsed once per distinct FUSIONGRAPH_* environment: asking is
    cheap on hot paths, and a changed variable is seen at once)."""
    raw = getattr(os.environ, "_data", None)  # CPython's undecoded mapping: no decoding of every variable
    if isinstance(raw, dict) and all(isinstance(k, bytes) for k in raw):
        found = tuple(sorted((k, v) for k, v in raw.items() if k.startswith(b"FUSIONGRAPH_")))
    else:
        found = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("FUSIONGRAPH_")))
    return _parsed(found)


@lru_cache(maxsize=32)
def _parsed(environment: tuple) -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"FUSIONGRAPH_{'_'.join(str(p) for p in e['loc']).upper()}={e.get('input')!r}: {e['msg']}"
            for e in exc.errors()
        )
        raise ValueError(f"bad environment setting: {problems}") from None
