"""A real Prefect server on loopback (backed by its own PostgreSQL database), the deployments of
prefect.yaml registered on a process work pool, and two workers: the multi-machine set-up on
one machine."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from deployments.local_cluster import LocalCluster
from tests.conftest import PG_ADMIN_URL, Sandbox


@pytest.fixture(scope="module")
def cluster_db(pg_url: str) -> str:
    """leadflow's database for the workers (the session's PostgreSQL database)."""
    return pg_url


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, sandbox: Sandbox,
            cluster_db: str) -> Iterator[LocalCluster]:
    name = f"prefect_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    home: Path = tmp_path_factory.mktemp("prefect-cluster")
    env = {
        **sandbox.env(),
        "LEADFLOW_DATABASE_URL": cluster_db,
        "LEADFLOW_OUTBOX_DIR": str(home / "outbox"),
        "LEADFLOW_TRACKING_SECRET": "cluster-test-secret-0123456789",
        "LEADFLOW_TASK_RETRY_DELAY_S": "0.1",
    }
    cluster = LocalCluster(home=home, prefect_db_url=f"{base}/{name}", env=env)
    try:
        cluster.start_server()
        cluster.deploy_all()
        cluster.start_workers(2, limit=2)
        yield cluster
    except Exception:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
