"""Secrets never shown to a client: the roster's API keys and any environment value that looks like a key or
token are redacted from every response, error and streamed chunk of the endpoint."""

import os
import re
from functools import lru_cache
from typing import Any

from fusiongraph import resources
from fusiongraph.text import redact

_SECRET_ENV = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)", re.I)


@lru_cache(maxsize=8)
def _env_secrets(environment: tuple) -> tuple[str, ...]:
    return tuple(v for k, v in os.environ.items() if _SECRET_ENV.search(k) and v and len(v) >= 8)


def known_secrets() -> list[str]:
    """Values never to show: the roster's API keys plus any env value that looks like a key/token (the
    environment read again only when it changed: this runs for every response)."""
    raw = getattr(os.environ, "_data", None)  # CPython's undecoded mapping: cheap to compare
    values = list(_env_secrets(tuple(raw.items()) if isinstance(raw, dict) else tuple(os.environ.items())))
    try:
        loaded = ([resources._override] if resources._override is not None else []) + list(resources._built.values())
        for res in loaded:
            values += res.roster.secrets()
    except Exception:
        pass
    return sorted(set(values), key=len, reverse=True)


def scrub(value: Any, secrets: list[str] | None = None) -> Any:
    """`value` (a string, or the strings in a dict / list) with the secrets redacted (default: all known)."""
    if secrets is None:
        secrets = known_secrets()
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {k: scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v, secrets) for v in value]
    return value
