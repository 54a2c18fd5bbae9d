"""A real Postgres for the tests: $FUSIONGRAPH_TEST_PG (default the local server, trust auth) and fresh
databases on it. When the server is not reachable the tests FAIL: they are not skipped."""

import os
import uuid

import psycopg
import pytest

ADMIN_URL = os.environ.get("FUSIONGRAPH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def db_url(name: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


def fresh_databases():
    """Yields a factory of fresh databases; drops every one it made when resumed (a module fixture's body)."""
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"these tests need a real Postgres at {ADMIN_URL} (set FUSIONGRAPH_TEST_PG): {exc}")
    prefix = f"fg_test_{uuid.uuid4().hex[:8]}"
    made: list[str] = []

    def make() -> str:
        name = f"{prefix}_{len(made)}"
        admin.execute(f"CREATE DATABASE {name}")
        made.append(name)
        return db_url(name)

    yield make
    for name in made:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.close()
