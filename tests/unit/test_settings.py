"""The FUSIONGRAPH_* environment is read in one place (fusiongraph/settings.py), as it is when asked."""

import pytest

from fusiongraph.models.discovery import discover_enabled
from fusiongraph.settings import settings


def test_settings_read_the_environment_when_asked(monkeypatch):
    monkeypatch.delenv("FUSIONGRAPH_LOCAL_PARALLEL", raising=False)
    assert settings().local_parallel == 1
    monkeypatch.setenv("FUSIONGRAPH_LOCAL_PARALLEL", "3")
    assert settings().local_parallel == 3
    monkeypatch.setenv("FUSIONGRAPH_DISCOVER_LOCAL", "off")
    assert discover_enabled(None) is False and discover_enabled(True) is True
    monkeypatch.setenv("FUSIONGRAPH_DISCOVER_LOCAL", "")  # empty: the default
    assert discover_enabled(None) is True


@pytest.mark.parametrize(
    "name, value",
    [("LOCAL_PARALLEL", "0"), ("LLAMA_THREADS", "two"), ("RETENTION_DAYS", "-1"), ("DISCOVER_LOCAL", "maybe")],
)
def test_a_bad_setting_is_an_error_naming_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(f"FUSIONGRAPH_{name}", value)
    with pytest.raises(ValueError, match=f"FUSIONGRAPH_{name}={value!r}"):
        settings()
