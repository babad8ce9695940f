"""Migration 0003 (warehouse) goes down and up again cleanly on both databases, leaves the
analyst role to the other databases that still use it, and does not stop a later SQLite batch
migration of a table its views read (nor lets that rebuild cascade-delete referencing rows)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
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


@pytest.fixture(params=["postgresql", "sqlite"])
def unmigrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of this test's own: PostgreSQL, then SQLite."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'unmigrated.db'}"
    url: str = request.getfixturevalue("own_pg_url")
    return url


def utc_minute(value: object) -> str | None:
    """A timestamp to the minute in UTC (timestamptz on PostgreSQL, UTC text on SQLite)."""
    if isinstance(value, datetime):
        value = value.astimezone(UTC)
    return None if value is None else str(value)[:16]


def test_0013_gives_emails_refused_or_failed_before_it_their_updated_at_as_failed_at(
    unmigrated_url: str,
) -> None:
    """Emails stored before 0013: refused (bounced, no sent_at), failed, and sent. The refused
    one is sent and bounced on its refusal day in v_daily_activity, after the upgrade and after
    its row changes again."""
    from sqlalchemy import insert, update

    from models import Campaign, Email, Sequence, SequenceStep
    from tests.models.conftest import at

    url = unmigrated_url
    command.upgrade(alembic_config(url), "0012")
    with session_scope(url) as s:
        s.add(Sequence(id=1, name="one step"))
        s.flush()
        s.add(SequenceStep(id=1, sequence_id=1, step_number=1, name="Step 1", delay_days=0,
                           lead_status="contacted"))
        s.add(Campaign(id=1, name="Austin salons", sequence_id=1, sender_name="Sam",
                       sender_email="sam@leadflow.example", sender_postal_address="1 Main St"))
        s.add_all([Lead(id=n, company_name=f"Business {n}", source="csv") for n in (1, 2, 3)])
    with get_engine(url).begin() as conn:  # Core, naming only columns 0012 has
        conn.execute(insert(Email.__table__), [
            dict(id=n, campaign_id=1, lead_id=n, step_id=1, step_number=1, status=status,
                 scheduled_at=at(7, 9), to_email=f"owner{n}@business{n}.example",
                 sent_at=sent_at, updated_at=updated_at)
            for n, status, sent_at, updated_at in (
                (1, "bounced", None, at(7, 9, 1)),
                (2, "failed", None, at(8, 9, 1)),
                (3, "sent", at(7, 9, 2), at(9, 10)),
            )
        ])
    upgrade_database(url)
    with get_engine(url).connect() as conn:
        failed_at = dict(conn.execute(text("SELECT id, failed_at FROM emails")).all())
    assert {n: utc_minute(v) for n, v in failed_at.items()} == {
        1: "2026-03-07 09:01", 2: "2026-03-08 09:01", 3: None}
    with session_scope(url) as s:  # later: a change to every row moves its updated_at
        s.execute(update(Email).values(last_error="seen"))
    with get_engine(url).connect() as conn:
        days = conn.execute(text(
            "SELECT day, emails_sent, bounces FROM v_daily_activity "
            "WHERE emails_sent > 0 OR bounces > 0")).all()
    assert [(str(day)[:10], sent, bounces) for day, sent, bounces in days] == [
        ("2026-03-07", 2, 1)]
