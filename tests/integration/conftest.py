"""Fixtures of the integration tests: the real things, started once per test."""

import pytest

from tests.devserver import run_langgraph_dev


@pytest.fixture
def langgraph_dev(tmp_path):
    """A real `langgraph dev` of this checkout on a free port (see tests/devserver.py)."""
    with run_langgraph_dev(tmp_path) as server:
        yield server


def pytest_collection_modifyitems(config, items):
    """Everything in tests/integration/ is an integration test (`-m "not integration"` leaves it out)."""
    here = str(config.rootpath / "tests" / "integration")
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.integration)
