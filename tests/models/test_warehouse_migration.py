"""Migration 0003 (warehouse) goes down and up again cleanly on both databases, leaves the
analyst role to the other databases that still use it, and does not stop a later SQLite batch
migration of a table its views read (nor lets that rebuild cascade-delete referencing rows)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from models.db import (
    MIGRATIONS_DIR,
    alembic_config,
    dispose_engines,
    get_engine,
    session_scope,
    upgrade_database,
)
from models.leads import Lead, LeadSourceRecord
from models.views import VIEWS
from tests.conftest import PG_ADMIN_URL

VIEW_NAMES = {v.name for v in VIEWS}


@pytest.fixture()
def own_pg_url(pg_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database of this test's own, while the session's database (pg_url)
    also uses the analyst role."""
    name = f"leadflow_wh_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = pg_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        dispose_engines()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _views(url: str) -> set[str]:
    return set(inspect(get_engine(url)).get_view_names()) & VIEW_NAMES


def test_sqlite_downgrade_drops_the_views_and_upgrade_restores_them(sqlite_url: str) -> None:
    assert _views(sqlite_url) == VIEW_NAMES
    command.downgrade(alembic_config(sqlite_url), "0002")
    assert _views(sqlite_url) == set()
    upgrade_database(sqlite_url)
    assert _views(sqlite_url) == VIEW_NAMES


def test_postgres_downgrade_keeps_the_role_another_database_uses(own_pg_url: str) -> None:
    upgrade_database(own_pg_url)
    comment = "SELECT col_description('leads'::regclass, 1)"  # leads.id
    with get_engine(own_pg_url).connect() as conn:
        assert conn.execute(text(comment)).scalar() == "Lead id"
    command.downgrade(alembic_config(own_pg_url), "0002")
    assert _views(own_pg_url) == set()
    with get_engine(own_pg_url).connect() as conn:
        assert conn.execute(text(comment)).scalar() is None
        # Still there for the session's database, which grants it SELECT.
        assert conn.execute(text(
            "SELECT count(*) FROM pg_roles WHERE rolname = 'leadflow_analyst'")).scalar() == 1
        # This database's grants are gone.
        assert not conn.execute(text(
            "SELECT has_table_privilege('leadflow_analyst', 'leads', 'SELECT')")).scalar()
        assert conn.execute(text(
            "SELECT count(*) FROM pg_default_acl WHERE defaclacl::text LIKE '%leadflow_analyst%'"
        )).scalar() == 0
    upgrade_database(own_pg_url)
    assert _views(own_pg_url) == VIEW_NAMES
    command.check(alembic_config(own_pg_url))


LATER_BATCH_MIGRATION = '''
import sqlalchemy as sa
from alembic import op

revision = "9999"
down_revision = "{head}"


def upgrade() -> None:
    # "always": rebuild the table and rename the copy into place, as most SQLite changes do.
    with op.batch_alter_table("leads", recreate="always") as batch:
        batch.add_column(sa.Column("later_column", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("leads") as batch:
        batch.drop_column("later_column")
'''


def test_later_sqlite_batch_migration_of_a_table_the_views_read_succeeds(
    tmp_path: Path,
) -> None:
    scripts = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    url = f"sqlite:///{tmp_path / 'later.db'}"
    cfg = alembic_config(url)
    cfg.set_main_option("script_location", str(scripts))
    current_head = ScriptDirectory.from_config(cfg).get_current_head()
    (scripts / "versions" / "9999_later.py").write_text(
        LATER_BATCH_MIGRATION.replace("{head}", str(current_head)))
    command.upgrade(cfg, str(current_head))
    with session_scope(url) as s:
        lead = Lead(company_name="Kept", source="csv")
        s.add(lead)
        s.flush()
        s.add(LeadSourceRecord(lead_id=lead.id, source="csv", external_id="row-1"))
    command.upgrade(cfg, "head")
    columns = {c["name"] for c in inspect(get_engine(url)).get_columns("leads")}
    assert "later_column" in columns
    with get_engine(url).connect() as conn:
        assert conn.execute(text("SELECT source, leads FROM v_lead_quality")).all() == [("csv", 1)]
        # Rebuilding leads did not cascade-delete the rows that reference it.
        assert conn.execute(text("SELECT count(*) FROM lead_source_records")).scalar() == 1
