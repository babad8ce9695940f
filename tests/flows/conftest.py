"""Fixtures for end-to-end flow tests: a temporary Prefect server for the whole session, and
leadflow's settings pointed at the session's PostgreSQL database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prefect.testing.utilities import prefect_test_harness


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """Flows run against a throwaway Prefect server (its own SQLite database)."""
    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture()
def pg_settings(pg_clean: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """LEADFLOW_DATABASE_URL set to the emptied session PostgreSQL database for this test."""
    from leadflow.settings import reset_settings_cache

    monkeypatch.setenv("LEADFLOW_DATABASE_URL", pg_clean)
    reset_settings_cache()
    yield pg_clean
    reset_settings_cache()
