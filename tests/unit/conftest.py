"""Fixtures of the unit tests of the OpenAI-compatible app."""

import pytest
from starlette.testclient import TestClient


@pytest.fixture
def client():
    """The app in process (its lifespan run), as a test client."""
    from fusiongraph.server.openai_app import app

    with TestClient(app) as c:
        yield c
