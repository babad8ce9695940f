"""refresh_engagement derives the email, lead and campaign figures from email_events (human
opens and clicks only, replies per email), exactly and idempotently, on PostgreSQL and SQLite."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, update

from models import Campaign, Email, EmailEvent, Lead
from models.db import get_engine, session_scope
from tests.tracking_app.conftest import make_outreach
from tracking_app.figures import RefreshResult, refresh_engagement

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def add_events(db_url: str, rows: list[tuple[int, str, bool, int]]) -> None:
    """(email_id, kind, is_machine, minutes after T0)"""
    with session_scope(db_url) as s:
        s.add_all(EmailEvent(email_id=e, kind=k, is_machine=m,
                             machine_reason="repeat" if m else None,
                             occurred_at=T0 + timedelta(minutes=t)) for e, k, m, t in rows)


def aware(ts: datetime | None) -> datetime | None:
    # SQLite hands the stored UTC instants back without their zone.
    return ts.replace(tzinfo=UTC) if ts is not None and ts.tzinfo is None else ts


def figures(db_url: str, email_ids: list[int], lead_ids: list[int], campaign_id: int) -> dict:
    with session_scope(db_url) as s:
        emails = [s.get_one(Email, i) for i in email_ids]
        return {
            "emails": [(e.open_count, aware(e.first_opened_at), e.click_count,
                        aware(e.first_clicked_at), e.machine_event_count) for e in emails],
            "leads": [(lead.emails_opened, lead.emails_clicked)
                      for lead in (s.get_one(Lead, i) for i in lead_ids)],
            "campaign": (lambda c: (c.emails_opened, c.emails_clicked, c.emails_replied))(
                s.get_one(Campaign, campaign_id)),
        }


@pytest.mark.parametrize("db", ["pg_clean", "sqlite_url"])
def test_figures_are_derived_from_human_events_and_a_second_refresh_changes_nothing(
    db: str, request: pytest.FixtureRequest, tracking_env: None
) -> None:
    url = request.getfixturevalue(db)
    o = make_outreach(url)
    e0, e1, e2 = o.email_ids
    add_events(url, [
        (e0, "open", False, 5), (e0, "open", False, 1), (e0, "open", True, 0),
        (e1, "open", True, 0), (e1, "click", True, 0),  # machines only
        (e2, "click", False, 7), (e2, "click", False, 9), (e2, "reply", False, 30),
        (e2, "unsubscribe", False, 40),
    ])
    assert refresh_engagement(url, [e0, e1, e2]) == RefreshResult(emails=3, leads=2,
                                                                   campaigns=1)
    got = figures(url, [e0, e1, e2], o.lead_ids, o.campaign_id)
    assert got == {
        "emails": [
            (2, T0 + timedelta(minutes=1), 0, None, 1),
            (0, None, 0, None, 2),
            (0, None, 2, T0 + timedelta(minutes=7), 0),
        ],
        "leads": [(1, 0), (0, 0), (1, 1)],  # a clicked email counts as opened
        "campaign": (2, 1, 1),
    }
    assert refresh_engagement(url, [e0, e1, e2]) == RefreshResult(0, 0, 0)
    assert refresh_engagement(url) == RefreshResult(0, 0, 0)
    assert figures(url, [e0, e1, e2], o.lead_ids, o.campaign_id) == got


def test_a_full_refresh_repairs_figures_that_drifted(pg_clean: str, tracking_env: None) -> None:
    o = make_outreach(pg_clean)
    e0, e1, _ = o.email_ids
    add_events(pg_clean, [(e0, "open", False, 1)])
    refresh_engagement(pg_clean)
    good = figures(pg_clean, o.email_ids, o.lead_ids, o.campaign_id)
    with session_scope(pg_clean) as s:
        s.execute(update(Email).where(Email.id == e1).values(open_count=99, click_count=4))
        s.execute(update(Lead).values(emails_opened=7))
        s.execute(update(Campaign).values(emails_replied=5))
    result = refresh_engagement(pg_clean)
    assert result == RefreshResult(emails=1, leads=4, campaigns=1)  # every lead was set to 7
    assert figures(pg_clean, o.email_ids, o.lead_ids, o.campaign_id) == good


def test_refreshing_some_emails_leaves_the_others_alone(pg_clean: str, tracking_env: None) -> None:
    o = make_outreach(pg_clean)
    e0, e1, _ = o.email_ids
    add_events(pg_clean, [(e0, "open", False, 1), (e1, "open", False, 1)])
    refresh_engagement(pg_clean, [e0])
    got = figures(pg_clean, o.email_ids, o.lead_ids, o.campaign_id)
    assert [f[0] for f in got["emails"]] == [1, 0, 0]
    assert got["campaign"] == (1, 0, 0)


def test_leads_are_refreshed_only_when_an_email_becomes_opened_or_clicked(
    pg_clean: str, tracking_env: None
) -> None:
    """A lead's figures follow whether its emails were opened and clicked, not how often:
    on PostgreSQL a refresh after another open of an already opened email leaves the leads
    untouched (no statement on them), and one after a first click refreshes the lead.
    (SQLite refreshes the leads of every changed email: its RETURNING cannot tell.)"""
    url = pg_clean
    o = make_outreach(url)
    e0 = o.email_ids[0]
    statements: list[str] = []

    def leads_statements(refresh: Callable[[], RefreshResult]) -> list[str]:
        statements.clear()
        engine = get_engine(url)
        event.listen(engine, "before_cursor_execute", record)
        try:
            refresh()
        finally:
            event.remove(engine, "before_cursor_execute", record)
        return [sql for sql in statements if sql.lstrip().upper().startswith("UPDATE LEADS")]

    def record(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(statement)

    add_events(url, [(e0, "open", False, 1)])
    assert leads_statements(lambda: refresh_engagement(url, [e0])) != []
    add_events(url, [(e0, "open", False, 2)])
    assert leads_statements(lambda: refresh_engagement(url, [e0])) == []
    assert figures(url, [e0], o.lead_ids[:1], o.campaign_id)["emails"][0][0] == 2
    add_events(url, [(e0, "click", False, 3)])
    assert leads_statements(lambda: refresh_engagement(url, [e0])) != []
    assert figures(url, [e0], o.lead_ids[:1], o.campaign_id)["leads"] == [(1, 1)]
