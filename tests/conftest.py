"""Shared fixtures: a fresh PostgreSQL database per test session, a SQLite file database, and
the sandbox started as a real HTTP server on loopback.

PostgreSQL is the machine's server (LEADFLOW_TEST_PG_ADMIN_URL, default trust auth on
127.0.0.1:5432); each session creates its own database and drops it at the end."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
# Task-level retries wait 2 s, 4 s... in production; tests keep the behaviour, not the wait.
os.environ.setdefault("LEADFLOW_TASK_RETRY_DELAY_S", "0.1")

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
PG_ADMIN_URL = os.environ.get(
    "LEADFLOW_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up: {last}")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """SQLAlchemy URL of a fresh, migrated PostgreSQL database for this test session."""
    from models.db import dispose_engines, upgrade_database

    name = f"leadflow_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    url = f"{base}/{name}"
    upgrade_database(url)
    yield url
    dispose_engines()
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture()
def pg_clean(pg_url: str) -> str:
    """The session's PostgreSQL database with every table emptied."""
    from sqlalchemy import text

    import models
    from models.db import get_engine

    tables = ", ".join(t.name for t in models.Base.metadata.sorted_tables)
    with get_engine(pg_url).begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    return pg_url


@pytest.fixture()
def sqlite_url(tmp_path: Path) -> str:
    from models.db import upgrade_database

    url = f"sqlite:///{tmp_path / 'leadflow.db'}"
    upgrade_database(url)
    return url


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request: pytest.FixtureRequest) -> str:
    """A migrated, empty database: the session's PostgreSQL one, then a SQLite file."""
    return request.getfixturevalue("pg_clean" if request.param == "postgresql" else "sqlite_url")


@dataclass
class Sandbox:
    base_url: str
    port: int

    def api(self, name: str) -> str:
        """Base URL of one emulated API: apollo, google_places, pdl, hunter, openai."""
        return {
            "apollo": f"{self.base_url}/apollo/api/v1",
            "google_places": f"{self.base_url}/google_places/v1",
            "pdl": f"{self.base_url}/pdl/v5",
            "hunter": f"{self.base_url}/hunter/v2",
            "openai": f"{self.base_url}/openai/v1",
        }[name]

    def set_faults(self, faults: dict) -> None:  # type: ignore[type-arg]
        httpx.post(f"{self.base_url}/_sandbox/faults", json=faults, timeout=5).raise_for_status()

    def reset_stats(self) -> None:
        httpx.post(f"{self.base_url}/_sandbox/stats/reset", timeout=5).raise_for_status()

    def stats(self) -> dict:  # type: ignore[type-arg]
        return httpx.get(f"{self.base_url}/_sandbox/stats", timeout=5).json()

    def env(self) -> dict[str, str]:
        """Environment that points leadflow's settings at this sandbox."""
        from sandbox.environment import sandbox_env

        return sandbox_env("127.0.0.1", self.port)


def start_sandbox(port: int, *extra: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "sandbox", "--host", "127.0.0.1", "--port", str(port), *extra]
    return subprocess.Popen(cmd, cwd=ROOT)


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    """The sandbox as a real server on loopback (2,000 businesses, no latency, no faults)."""
    port = free_port()
    proc = start_sandbox(port, "--businesses", "2000", "--seed", "7", "--latency-ms", "0")
    try:
        wait_http(f"http://127.0.0.1:{port}/_sandbox/health")
        yield Sandbox(base_url=f"http://127.0.0.1:{port}", port=port)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture()
def sandbox_clean(sandbox: Sandbox) -> Iterator[Sandbox]:
    """The session sandbox with faults cleared before and after the test."""
    sandbox.set_faults({})
    yield sandbox
    sandbox.set_faults({})


@pytest.fixture()
def sandbox_env(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    """Settings pointed at the sandbox for this test (environment, then a fresh settings cache)."""
    from leadflow.settings import reset_settings_cache

    for key, value in sandbox.env().items():
        monkeypatch.setenv(key, value)
    reset_settings_cache()
    yield sandbox
    reset_settings_cache()
