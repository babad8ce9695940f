"""The analysts' views (migration 0003) on the known dataset of conftest.py, PostgreSQL and
SQLite: every figure worked out by hand. And on PostgreSQL, the read-only analyst role."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import ProgrammingError

from models.db import get_engine
from models.views import VIEWS


def rows(url: str, sql: str) -> list[dict[str, Any]]:
    engine = get_engine(url)
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            # Far from UTC: a view that took the session's time zone would move days and months.
            conn.execute(text("SET TIME ZONE 'Pacific/Auckland'"))
        result = [dict(r._mapping) for r in conn.execute(text(sql))]
        conn.rollback()
    return result


def utc_minute(value: Any) -> str:
    """A timestamp to the minute in UTC: timestamptz in the session's zone on PostgreSQL,
    UTC text on SQLite."""
    if isinstance(value, datetime):
        value = value.astimezone(UTC)
    return str(value)[:16]


def as_day(value: Any) -> str:
    """A DATE on PostgreSQL, 'YYYY-MM-DD' text on SQLite."""
    return str(value)[:10]


@pytest.mark.parametrize("db", ["pg_url", "sqlite_url"])
def test_every_documented_view_exists_with_its_documented_columns(
    db: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue(db)
    engine = get_engine(url)
    assert set(inspect(engine).get_view_names()) >= {v.name for v in VIEWS}
    undocumented = {n for n in inspect(engine).get_view_names() if n.startswith("v_")} - {
        v.name for v in VIEWS
    }
    assert not undocumented
    with engine.connect() as conn:
        for view in VIEWS:
            columns = list(conn.execute(text(f"SELECT * FROM {view.name} LIMIT 0")).keys())
            assert columns == [c for c, _ in view.columns], view.name


def test_campaign_funnel_counts_human_events_per_step_with_rates(warehouse_url: str) -> None:
    got = rows(warehouse_url, "SELECT * FROM v_campaign_funnel ORDER BY campaign_id, step_number")
    zero = dict(sent=0, delivered=0, human_opens=0, human_clicks=0, replies=0, unsubscribes=0,
                bounces=0, open_rate=None, click_rate=None, reply_rate=None,
                unsubscribe_rate=None, bounce_rate=None)
    expected = [
        # Step 1: emails 1-4 sent, 4 bounced at send; 2 has only machine opens and clicks.
        dict(campaign_id=1, campaign_name="Austin salons", step_number=1, step_name="Step 1",
             sent=4, delivered=3, human_opens=2, human_clicks=1, replies=1, unsubscribes=1,
             bounces=1, open_rate=pytest.approx(2 / 3), click_rate=pytest.approx(1 / 3),
             reply_rate=pytest.approx(1 / 3), unsubscribe_rate=pytest.approx(1 / 3),
             bounce_rate=0.25),
        # Step 2: 5 and 7 sent (6 only queued), 5 bounced later, 7 opened on two days.
        dict(campaign_id=1, campaign_name="Austin salons", step_number=2, step_name="Step 2",
             sent=2, delivered=1, human_opens=1, human_clicks=0, replies=0, unsubscribes=0,
             bounces=1, open_rate=1.0, click_rate=0.0, reply_rate=0.0, unsubscribe_rate=0.0,
             bounce_rate=0.5),
        dict(campaign_id=1, campaign_name="Austin salons", step_number=3, step_name="Step 3",
             **zero),
        *(dict(campaign_id=2, campaign_name="Dallas clinics", step_number=n,
               step_name=f"Step {n}", **zero) for n in (1, 2, 3)),
    ]
    assert got == expected


def test_campaign_funnel_keeps_what_was_sent_when_the_campaign_changes_sequence(
    warehouse_url: str,
) -> None:
    """Campaign 1 sent steps 1 and 2 of its three-step sequence, then moves to a one-step
    sequence: its funnel still counts the emails by the steps they were sent as, with those
    steps' names; step 3, never sent and no longer in its sequence, has no row. Campaign 2,
    which sent nothing, shows its current sequence."""
    from models import Campaign, Sequence, SequenceStep
    from models.db import session_scope

    query = ("SELECT campaign_id, step_number, step_name, sent, delivered, human_opens, "
             "replies, bounces FROM v_campaign_funnel ORDER BY campaign_id, step_number")
    before = rows(warehouse_url, query)
    with session_scope(warehouse_url) as s:
        s.add(Sequence(id=2, name="one step"))
        s.flush()
        s.add(SequenceStep(id=4, sequence_id=2, step_number=1, name="Only email", delay_days=0,
                           lead_status="contacted"))
        s.get_one(Campaign, 1).sequence_id = 2
    after = rows(warehouse_url, query)
    assert [r for r in after if r["campaign_id"] == 1] == [
        r for r in before if r["campaign_id"] == 1 and r["step_number"] in (1, 2)]
    assert [(r["step_number"], r["step_name"], r["sent"]) for r in after
            if r["campaign_id"] == 1] == [(1, "Step 1", 4), (2, "Step 2", 2)]
    assert [r for r in after if r["campaign_id"] == 2] == [
        r for r in before if r["campaign_id"] == 2]
    with session_scope(warehouse_url) as s:  # campaign 2 moves too: nothing sent, new steps
        s.get_one(Campaign, 2).sequence_id = 2
    assert [(r["step_number"], r["step_name"], r["sent"])
            for r in rows(warehouse_url, query) if r["campaign_id"] == 2] == [
        (1, "Only email", 0)]


def test_lead_quality_groups_leads_by_source_and_tier(warehouse_url: str) -> None:
    got = rows(warehouse_url, "SELECT * FROM v_lead_quality")
    by_key = {(r.pop("source"), r.pop("tier")): r for r in got}
    assert by_key == {
        ("apollo", "hot"): dict(leads=2, avg_quality_score=85.0, with_email=2,
                                with_valid_email=2, with_website=2, with_booking_tool=1),
        ("apollo", "warm"): dict(leads=1, avg_quality_score=50.0, with_email=0,
                                 with_valid_email=0, with_website=0, with_booking_tool=0),
        ("google_places", "warm"): dict(leads=1, avg_quality_score=60.0, with_email=1,
                                        with_valid_email=0, with_website=1,
                                        with_booking_tool=1),
        ("google_places", "cold"): dict(leads=1, avg_quality_score=20.0, with_email=1,
                                        with_valid_email=0, with_website=0,
                                        with_booking_tool=0),
        ("google_places", None): dict(leads=1, avg_quality_score=None, with_email=0,
                                      with_valid_email=0, with_website=0, with_booking_tool=0),
    }


def test_source_roi_divides_api_cost_by_leads_hot_leads_and_replies(warehouse_url: str) -> None:
    got = {r.pop("source"): r for r in rows(warehouse_url, "SELECT * FROM v_source_roi")}
    assert got == {
        "apollo": dict(api_cost=6.0, leads=3, hot_leads=2, replies=1, cost_per_lead=2.0,
                       cost_per_hot_lead=3.0, cost_per_reply=6.0),
        "google_places": dict(api_cost=1.5, leads=3, hot_leads=0, replies=0, cost_per_lead=0.5,
                              cost_per_hot_lead=None, cost_per_reply=None),
        "hunter": dict(api_cost=0.75, leads=0, hot_leads=0, replies=0, cost_per_lead=None,
                       cost_per_hot_lead=None, cost_per_reply=None),
        "pdl": dict(api_cost=0.5, leads=0, hot_leads=0, replies=0, cost_per_lead=None,
                    cost_per_hot_lead=None, cost_per_reply=None),
    }


def test_api_usage_monthly_sums_utc_months_against_the_limit(warehouse_url: str) -> None:
    got = {(r.pop("source"), as_day(r.pop("month"))): r
           for r in rows(warehouse_url, "SELECT * FROM v_api_usage_monthly")}
    assert got == {
        # 31 March 23:59 UTC stays in March; 1 April 00:00 UTC is April.
        ("apollo", "2026-03-01"): dict(calls=2, units=500, cost=5.0, monthly_limit=1000,
                                       limit_used_share=0.5),
        ("apollo", "2026-04-01"): dict(calls=1, units=100, cost=1.0, monthly_limit=1000,
                                       limit_used_share=0.1),
        ("google_places", "2026-03-01"): dict(calls=1, units=50, cost=1.5, monthly_limit=500,
                                              limit_used_share=0.1),
        ("hunter", "2026-03-01"): dict(calls=1, units=20, cost=0.75, monthly_limit=100,
                                       limit_used_share=0.2),
        ("pdl", "2026-03-01"): dict(calls=1, units=10, cost=0.5, monthly_limit=None,
                                    limit_used_share=None),
    }


def test_daily_activity_counts_each_utc_day(warehouse_url: str) -> None:
    got = {as_day(r.pop("day")): r for r in rows(warehouse_url, "SELECT * FROM v_daily_activity")}
    quiet = dict(leads_created=0, emails_sent=0, human_opens=0, human_clicks=0, replies=0,
                 unsubscribes=0, bounces=0)
    assert got == {
        "2026-03-01": {**quiet, "leads_created": 2},
        "2026-03-02": dict(leads_created=4, emails_sent=4, human_opens=2, human_clicks=1,
                           replies=0, unsubscribes=1, bounces=1),
        "2026-03-03": {**quiet, "replies": 1},
        "2026-03-05": {**quiet, "emails_sent": 2, "human_opens": 1, "bounces": 1},
        "2026-03-06": {**quiet, "human_opens": 1},
    }


@contextmanager
def as_analyst(url: str) -> Iterator[Connection]:
    """A connection acting as leadflow_analyst, inside a transaction that is rolled back."""
    with get_engine(url).connect() as conn:
        conn.execute(text("SET LOCAL ROLE leadflow_analyst"))
        try:
            yield conn
        finally:
            conn.rollback()


def test_analyst_role_reads_tables_and_views(pg_clean: str) -> None:
    with as_analyst(pg_clean) as conn:
        assert conn.execute(text("SELECT count(*) FROM v_campaign_funnel")).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM leads")).scalar() == 0
        assert conn.execute(text("SELECT current_user")).scalar() == "leadflow_analyst"


def test_analyst_role_reads_tables_created_after_the_migration(pg_clean: str) -> None:
    with get_engine(pg_clean).connect() as conn:
        conn.execute(text("CREATE TABLE later_table (x int)"))
        conn.execute(text("INSERT INTO later_table VALUES (7)"))
        conn.execute(text("SET LOCAL ROLE leadflow_analyst"))
        assert conn.execute(text("SELECT x FROM later_table")).scalar() == 7
        conn.rollback()


@pytest.mark.parametrize("statement", [
    "INSERT INTO leads (company_name, source) VALUES ('x', 'csv')",
    "UPDATE leads SET company_name = 'x'",
    "DELETE FROM email_events",
    "TRUNCATE api_usage",
    "CREATE TABLE analyst_scratch (x int)",
    "DROP VIEW v_daily_activity",
    "ALTER TABLE leads ADD COLUMN x int",
])  # fmt: skip
def test_analyst_role_cannot_change_anything(pg_clean: str, statement: str) -> None:
    with as_analyst(pg_clean) as conn, pytest.raises(ProgrammingError) as failure:
        conn.execute(text(statement))
    # 42501 insufficient_privilege: "permission denied for ..." or "must be owner of ..."
    assert getattr(failure.value.orig, "sqlstate", None) == "42501", str(failure.value)


def test_email_engagement_gives_the_seed_status_from_human_figures(warehouse_url: str) -> None:
    from tracking_app.figures import refresh_engagement

    refresh_engagement(warehouse_url)  # the figures, as the tracking app keeps them
    got = {r["email_id"]: r for r in rows(warehouse_url, "SELECT * FROM v_email_engagement")}
    assert {i: (r["status"], r["delivery_status"]) for i, r in got.items()} == {
        1: ("clicked", "sent"),  # a human opened and clicked
        2: ("sent", "sent"),  # only machine opens and clicks
        3: ("opened", "sent"),
        4: ("bounced", "bounced"),
        5: ("sent", "sent"),  # a bounce event does not make it opened
        6: ("queued", "queued"),
        7: ("opened", "sent"),
    }
    figures = {i: (r["human_opens"], r["human_clicks"], r["machine_events"])
               for i, r in got.items()}
    assert figures == {1: (1, 1, 1), 2: (0, 0, 2), 3: (1, 0, 0), 4: (0, 0, 0), 5: (0, 0, 0),
                       6: (0, 0, 0), 7: (2, 0, 0)}
    assert utc_minute(got[7]["first_opened_at"]) == "2026-03-05 10:00"
    assert utc_minute(got[1]["first_clicked_at"]) == "2026-03-02 10:01"
    assert (got[3]["campaign_id"], got[3]["lead_id"], got[3]["step_number"],
            got[3]["to_email"]) == (1, 4, 1, "owner4@business4.example")


def test_a_click_only_email_counts_as_opened_in_the_views_as_in_the_figures(
    warehouse_url: str,
) -> None:
    """Email 2 had only machine events; a human now clicks it without loading its images."""
    from models import Campaign, EmailEvent
    from models.db import session_scope
    from tests.models.conftest import at
    from tracking_app.figures import refresh_engagement

    with session_scope(warehouse_url) as s:
        s.add(EmailEvent(email_id=2, kind="click", occurred_at=at(4, 9), is_machine=False))
    refresh_engagement(warehouse_url)
    funnel = rows(warehouse_url, "SELECT step_number, human_opens, human_clicks FROM "
                                 "v_campaign_funnel WHERE campaign_id = 1 ORDER BY step_number")
    assert [(r["step_number"], r["human_opens"], r["human_clicks"]) for r in funnel] == [
        (1, 3, 2), (2, 1, 0), (3, 0, 0)]
    day = rows(warehouse_url, "SELECT day, human_opens, human_clicks FROM v_daily_activity")
    assert [(r["human_opens"], r["human_clicks"]) for r in day
            if as_day(r["day"]) == "2026-03-04"] == [(1, 1)]
    with session_scope(warehouse_url) as s:
        assert s.get_one(Campaign, 1).emails_opened == sum(r["human_opens"] for r in funnel)


def test_an_email_the_server_refused_is_sent_on_its_day_as_in_the_funnel(
    warehouse_url: str,
) -> None:
    """Email 8 is recorded as the sender records a refusal: status bounced, no sent_at."""
    from models import Email
    from models.db import session_scope
    from tests.models.conftest import at

    with session_scope(warehouse_url) as s:
        s.add(Email(id=8, campaign_id=1, lead_id=3, step_id=1, step_number=1, status="bounced",
                    scheduled_at=at(7, 9), to_email="owner3@business3.example", sent_at=None,
                    smtp_response="550 5.1.1 no such user", failed_at=at(7, 9, 1)))
    day = {as_day(r.pop("day")): r for r in rows(warehouse_url, "SELECT * FROM v_daily_activity")}
    assert day["2026-03-07"] == dict(leads_created=0, emails_sent=1, human_opens=0,
                                     human_clicks=0, replies=0, unsubscribes=0, bounces=1)
    funnel = rows(warehouse_url, "SELECT sent, bounces FROM v_campaign_funnel")
    assert sum(r["emails_sent"] for r in day.values()) == sum(r["sent"] for r in funnel) == 7
    assert sum(r["bounces"] for r in day.values()) == sum(r["bounces"] for r in funnel) == 3


def test_email_engagement_documents_the_sent_at_of_an_email_the_server_refused(
    warehouse_url: str,
) -> None:
    """A refused email (status bounced, no sent_at) is *sent* in DEFINITIONS and in the funnel:
    v_email_engagement's doc may not say that a NULL sent_at means not sent."""
    from models import Email
    from models.db import session_scope
    from tests.models.conftest import at

    with session_scope(warehouse_url) as s:
        s.add(Email(id=8, campaign_id=1, lead_id=3, step_id=1, step_number=1, status="bounced",
                    scheduled_at=at(7, 9), to_email="owner3@business3.example", sent_at=None,
                    smtp_response="550 5.1.1 no such user", failed_at=at(7, 9, 1)))
    (got,) = rows(warehouse_url, "SELECT * FROM v_email_engagement WHERE email_id = 8")
    assert (got["sent_at"], got["status"]) == (None, "bounced")
    funnel = rows(warehouse_url, "SELECT sent FROM v_campaign_funnel WHERE step_number = 1 "
                                 "AND campaign_id = 1")
    assert funnel == [{"sent": 5}]  # counted among the emails sent
    (view,) = [v for v in VIEWS if v.name == "v_email_engagement"]
    meaning = dict(view.columns)["sent_at"]
    assert "NULL = not sent" not in meaning
    assert "refused" in meaning


@pytest.mark.parametrize("kind", ["bounced", "failed"])
def test_a_refused_or_failed_email_keeps_its_day_when_its_row_changes_later(
    warehouse_url: str, kind: str,
) -> None:
    """Email 8 is claimed on 03-07 and the sender records the SMTP server's refusal (bounced) or
    a permanent failure; weeks later something touches its row (any UPDATE moves updated_at).
    v_daily_activity keeps a refused email sent and bounced on 03-07, and a failed one out."""
    from sqlalchemy import update

    from leadflow.settings import get_settings
    from models import Email
    from models.db import session_scope
    from tasks.outreach.outcomes import Outcome, record_outcomes
    from tests.models.conftest import at

    with session_scope(warehouse_url) as s:
        s.add(Email(id=8, campaign_id=1, lead_id=3, step_id=1, step_number=1, status="sending",
                    scheduled_at=at(7, 9), to_email="owner3@business3.example", attempts=1,
                    claimed_by="w1", claimed_at=at(7, 9), claim_expires_at=at(7, 9, 10)))
    counts = record_outcomes(warehouse_url, "w1", [
        Outcome(8, kind, at(7, 9, 1), response="550 5.1.1 no such user")], get_settings())
    assert counts[kind] == 1
    with session_scope(warehouse_url) as s:
        s.execute(update(Email).where(Email.id == 8).values(last_error="checked by a person"))
        assert s.get_one(Email, 8).updated_at.date().isoformat() != "2026-03-07"
    (email,) = rows(warehouse_url, "SELECT status, failed_at FROM emails WHERE id = 8")
    assert (email["status"], utc_minute(email["failed_at"])) == (kind, "2026-03-07 09:01")
    day = {as_day(r.pop("day")): r for r in rows(warehouse_url, "SELECT * FROM v_daily_activity")}
    refused = kind == "bounced"
    assert day.get("2026-03-07") == (dict(leads_created=0, emails_sent=1, human_opens=0,
                                          human_clicks=0, replies=0, unsubscribes=0, bounces=1)
                                     if refused else None)
    funnel = rows(warehouse_url, "SELECT sent, bounces FROM v_campaign_funnel")
    assert sum(r["emails_sent"] for r in day.values()) == sum(r["sent"] for r in funnel)
    assert sum(r["bounces"] for r in day.values()) == sum(r["bounces"] for r in funnel)
