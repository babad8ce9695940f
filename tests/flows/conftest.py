"""Fixtures for end-to-end flow tests: a temporary Prefect server for the whole session, and
leadflow's settings pointed at the session's PostgreSQL database."""

from __future__ import annotations

from collections.abc import Iterator

import prefect.settings
import pytest
from prefect.testing.utilities import prefect_test_harness

_users = 0  # fixtures currently holding the harness (tests/test_cli.py imports this fixture)


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """Flows run against a throwaway Prefect server (its own SQLite database); yields its API
    URL. Started once per session even when another test module imports this fixture."""
    global _users
    if _users:
        _users += 1
        try:
            yield str(prefect.settings.PREFECT_API_URL.value())
        finally:
            _users -= 1
        return
    with prefect_test_harness(server_startup_timeout=180):
        _users = 1
        try:
            yield str(prefect.settings.PREFECT_API_URL.value())
        finally:
            _users = 0


@pytest.fixture()
def pg_settings(pg_clean: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """LEADFLOW_DATABASE_URL set to the emptied session PostgreSQL database for this test."""
    from leadflow.settings import reset_settings_cache

    monkeypatch.setenv("LEADFLOW_DATABASE_URL", pg_clean)
    reset_settings_cache()
    yield pg_clean
    reset_settings_cache()
