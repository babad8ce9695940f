"""compose_emails / compose_due_emails on a real database: scheduled -> queued with content,
links and Message-ID; idempotent; two composers at once compose each email exactly once."""

from __future__ import annotations

import threading
import time
from datetime import UTC, timedelta

import psycopg
import pytest
from sqlalchemy import func, select, text, update

from models import Email, EmailLink, Template
from models.db import session_scope
from tasks.outreach.compose import ComposeReport, compose_due_emails, compose_emails
from tasks.outreach.defaults import create_campaign
from tasks.outreach.message import make_message_id
from tests.tasks.outreach.conftest import NOW, add_leads, schedule_emails

pytestmark = pytest.mark.usefixtures("tracking_secret")


def seed(url: str, leads: int = 3, **lead_fields: object) -> tuple[int, list[int]]:
    with session_scope(url) as session:
        campaign_id = create_campaign(session, name="Austin salons", status="active")
        lead_ids = add_leads(session, leads, **lead_fields)
        return campaign_id, schedule_emails(session, campaign_id, lead_ids)


def emails(url: str, ids: list[int]) -> list[Email]:
    with session_scope(url) as session:
        return list(session.scalars(select(Email).where(Email.id.in_(ids)).order_by(Email.id)))


@pytest.mark.parametrize("db", ["pg_clean", "sqlite_url"])
def test_scheduled_emails_are_composed_and_queued(db: str, request: pytest.FixtureRequest
                                                  ) -> None:
    url = request.getfixturevalue(db)
    _, ids = seed(url)
    report = compose_emails(url, ids, NOW)
    assert (report.composed, report.not_pending, report.skipped) == (3, 0, {})
    rows = emails(url, ids)
    for row in rows:
        assert row.status == "queued" and row.ai_status == "off" and row.composed_at
        # SQLite hands back naive datetimes (stored as UTC).
        assert row.composed_at.replace(tzinfo=row.composed_at.tzinfo or UTC) == NOW
        assert row.subject == f"Online booking for Bella Salon {row.lead_id - rows[0].lead_id}"
        assert row.body_text and row.body_text.startswith("Hi Jane,\n\n")
        assert row.body_html and "/o/o" in row.body_html and row.message_id
        assert row.message_id == make_message_id(row.campaign_id, row.lead_id, 1,
                                                 "sam@booknex.example")
    with session_scope(url) as session:
        links = session.execute(select(EmailLink.email_id, EmailLink.position, EmailLink.url)
                                .order_by(EmailLink.email_id, EmailLink.position)).all()
    assert links == [(i, 0, "https://booknex.com/demo") for i in ids]


def test_second_call_composes_nothing(pg_clean: str) -> None:
    _, ids = seed(pg_clean)
    compose_emails(pg_clean, ids, NOW)
    before = [(e.subject, e.body_html, e.composed_at) for e in emails(pg_clean, ids)]
    again = compose_emails(pg_clean, ids, NOW + timedelta(hours=1))
    assert (again.composed, again.not_pending) == (0, 3)
    assert [(e.subject, e.body_html, e.composed_at) for e in emails(pg_clean, ids)] == before


def test_the_scenarios_variant_is_used_and_the_default_when_it_has_none(pg_clean: str) -> None:
    with session_scope(pg_clean) as session:
        campaign_id = create_campaign(session)
        fresha, none = add_leads(session, 2, booking_tools=["fresha"], digital_maturity=80)
        routed = schedule_emails(session, campaign_id, [fresha], scenario=None)
        odd = schedule_emails(session, campaign_id, [none], scenario="no_such_scenario")
    compose_emails(pg_clean, routed + odd, NOW)
    by_id = {e.id: e for e in emails(pg_clean, routed + odd)}
    assert by_id[routed[0]].subject == "Bella Salon 0 and Fresha"
    assert by_id[odd[0]].subject == "Quick question about bookings at Bella Salon 1"


def test_missing_template_fails_the_email_with_the_reason_and_time(pg_clean: str) -> None:
    _, ids = seed(pg_clean, leads=2)
    with session_scope(pg_clean) as session:
        session.execute(text("DELETE FROM templates"))
    report = compose_emails(pg_clean, ids, NOW)
    assert report.composed == 0 and set(report.skipped) == set(ids)
    for row in emails(pg_clean, ids):
        assert row.status == "failed"
        assert row.failed_at == NOW  # when it failed, kept for the views (not updated_at)
        assert row.last_error == report.skipped[row.id]
        assert row.last_error.startswith("no template for step 1")


def test_broken_template_edited_in_the_database_fails_the_email(pg_clean: str) -> None:
    _, ids = seed(pg_clean, leads=1)
    with session_scope(pg_clean) as session:
        session.execute(update(Template).values(subject="Hi {{companyNme}}"))
    report = compose_emails(pg_clean, ids, NOW)
    assert "unknown variable {{companyNme}}" in report.skipped[ids[0]]
    assert emails(pg_clean, ids)[0].status == "failed"


def test_compose_due_emails_takes_only_due_scheduled_emails(pg_clean: str) -> None:
    with session_scope(pg_clean) as session:
        campaign_id = create_campaign(session)
        a, b, c, d = add_leads(session, 4)
        due = schedule_emails(session, campaign_id, [a, b], scheduled_at=NOW - timedelta(1))
        later = schedule_emails(session, campaign_id, [c], scheduled_at=NOW + timedelta(1))
        cancelled = schedule_emails(session, campaign_id, [d], scheduled_at=NOW)
        session.execute(update(Email).where(Email.id.in_(cancelled)).values(status="cancelled"))
    assert compose_due_emails(pg_clean, NOW, limit=1).composed == 1
    assert compose_due_emails(pg_clean, NOW).composed == 1
    statuses = {e.id: e.status for e in emails(pg_clean, due + later + cancelled)}
    assert statuses == {due[0]: "queued", due[1]: "queued", later[0]: "scheduled",
                        cancelled[0]: "cancelled"}


def test_a_paused_campaigns_due_emails_wait_uncomposed(pg_clean: str) -> None:
    from models import Campaign

    campaign_id, ids = seed(pg_clean)
    with session_scope(pg_clean) as session:
        session.execute(update(Campaign).where(Campaign.id == campaign_id)
                        .values(status="paused"))
    assert compose_due_emails(pg_clean, NOW).composed == 0
    assert {e.status for e in emails(pg_clean, ids)} == {"scheduled"}
    with session_scope(pg_clean) as session:
        session.execute(update(Campaign).where(Campaign.id == campaign_id)
                        .values(status="active"))
    assert compose_due_emails(pg_clean, NOW).composed == 3


def _waiting_on_locks(admin_url: str, database: str) -> int:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
            "AND wait_event_type = 'Lock' AND query ILIKE '%%UPDATE emails AS e%%'", (database,)
        ).fetchone()
    return int(row[0]) if row else 0


def test_two_composers_at_once_compose_each_email_once(pg_clean: str) -> None:
    from sqlalchemy.engine import make_url

    from tests.conftest import PG_ADMIN_URL

    _, ids = seed(pg_clean, leads=40)
    database = make_url(pg_clean).database
    assert database
    # Hold the rows so both composers read them as `scheduled` and reach their UPDATE before
    # either can write: a true race, not two runs one after the other.
    holder = psycopg.connect(pg_clean.replace("postgresql+psycopg", "postgresql"))
    holder.execute("SELECT id FROM emails FOR UPDATE")
    reports: list[ComposeReport] = []
    threads = [threading.Thread(target=lambda: reports.append(compose_emails(pg_clean, ids, NOW)))
               for _ in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while _waiting_on_locks(PG_ADMIN_URL, database) < 2:
        assert time.monotonic() < deadline, "the composers never reached their UPDATE"
        time.sleep(0.05)
    holder.rollback()
    holder.close()
    for t in threads:
        t.join(30)
    assert sorted(r.composed for r in reports) == [0, 40]
    assert sum(r.not_pending for r in reports) == 40
    with session_scope(pg_clean) as session:
        assert session.scalar(select(func.count()).select_from(EmailLink)) == 40
        assert session.scalar(select(func.count()).where(Email.status == "queued")) == 40
