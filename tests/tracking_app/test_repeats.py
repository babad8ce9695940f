"""Repeats flagged after the fact (tracking_app/repeats.py), on PostgreSQL and SQLite: hits of
one key stored as human by two app processes become one human hit and a repeat; the scheduled
repair and the app's catch-up at start make the figures exact again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select

from leadflow import tokens
from models import Email, EmailEvent
from models.db import session_scope
from tests.tracking_app.conftest import (
    RunningApp,
    make_outreach,
    path_of,
    start_app,
    stop_app,
)
from tracking_app.bots import load_rules
from tracking_app.figures import refresh_engagement

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)


def hit(email_id: int, at: datetime, kind: str = "open", network: str = "203.0.113.0/24",
        link: int | None = None, machine: str | None = None) -> EmailEvent:
    return EmailEvent(email_id=email_id, kind=kind, link_position=link, occurred_at=at,
                      method="GET", user_agent="Mozilla/5.0 (X11) Firefox/127.0",
                      ip_network=network, is_machine=machine is not None,
                      machine_reason=machine)


def store(url: str, *events: EmailEvent) -> None:
    with session_scope(url) as s:
        s.add_all(events)


def verdicts(url: str, email_id: int) -> list[tuple[str, float, str | None]]:
    """(kind, seconds after T0, machine reason) of the email's events, in time order."""
    with session_scope(url) as s:
        rows = s.execute(select(EmailEvent.kind, EmailEvent.occurred_at,
                                EmailEvent.machine_reason)
                         .where(EmailEvent.email_id == email_id)
                         .order_by(EmailEvent.occurred_at, EmailEvent.id)).all()
    return [(k, round((a.replace(tzinfo=UTC) if a.tzinfo is None else a).timestamp()
                      - T0.timestamp(), 3), r) for k, a, r in rows]


@pytest.mark.parametrize("db", ["pg_clean", "sqlite_url"])
def test_the_repair_flags_repeats_two_processes_stored_as_human(
        db: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(db)
    email = make_outreach(url).email_ids[0]
    s = timedelta(seconds=1)
    store(url,
          hit(email, T0), hit(email, T0 + 0.005 * s),  # one open, stored by two processes
          hit(email, T0 + 1 * s, network="198.51.100.0/24"),  # another network: human
          hit(email, T0 + 1 * s, kind="click", link=0),  # another kind: human
          hit(email, T0 + 2 * s, kind="click", link=0),  # a repeat of that click
          hit(email, T0 + 30 * s, machine="head_request"),  # machine already; a repeat too
          hit(email, T0 + 200 * s))  # past the 60 s window after the last one: human

    refresh_engagement(url, repeats_since=T0 - timedelta(hours=2))

    assert verdicts(url, email) == [
        ("open", 0.0, None), ("open", 0.005, "repeat"), ("open", 1.0, None),
        ("click", 1.0, None), ("click", 2.0, "repeat"), ("open", 30.0, "head_request"),
        ("open", 200.0, None)]
    with session_scope(url) as session:
        e = session.get_one(Email, email)
        assert (e.open_count, e.click_count, e.machine_event_count) == (3, 1, 3)
    # Run again: nothing more to flag, nothing changes.
    assert refresh_engagement(url, repeats_since=T0 - timedelta(hours=2)).emails == 0


def test_only_events_from_since_on_are_flagged_against_earlier_ones(sqlite_url: str) -> None:
    email = make_outreach(sqlite_url).email_ids[0]
    since = T0
    store(sqlite_url,
          hit(email, since - timedelta(seconds=40)), hit(email, since - timedelta(seconds=35)),
          hit(email, since - timedelta(seconds=10)), hit(email, since + timedelta(seconds=5)))
    refresh_engagement(sqlite_url, repeats_since=since, rules=load_rules())
    # Before `since`: left as stored (an earlier repair's business); after: flagged against
    # the hit just before it, which is older than `since`.
    assert [r for _, _, r in verdicts(sqlite_url, email)] == [None, None, None, "repeat"]


def test_the_app_catches_up_at_start_on_what_a_dead_process_left(sqlite_url: str,
                                                                   tracking_env: None) -> None:
    """Events another process committed but never refreshed (it was killed): the figures are
    right once the app has started, repeats included."""
    email = make_outreach(sqlite_url).email_ids[1]
    now = datetime.now(UTC)
    store(sqlite_url, hit(email, now - timedelta(minutes=5)),
          hit(email, now - timedelta(minutes=5) + timedelta(milliseconds=3)),
          hit(email, now - timedelta(minutes=4), kind="click", link=1))
    app, thread = start_app(sqlite_url)
    try:
        app.wait_idle()
        with session_scope(sqlite_url) as s:
            e = s.get_one(Email, email)
            assert (e.open_count, e.click_count, e.machine_event_count) == (1, 1, 1)
    finally:
        stop_app(app, thread)


@pytest.fixture(params=["pg", "sqlite"])
def app_on(request: pytest.FixtureRequest) -> Iterator[tuple[RunningApp, str]]:
    """The tracking app on PostgreSQL or SQLite, and its database URL."""
    if request.param == "pg":
        yield request.getfixturevalue("app_pg"), request.getfixturevalue("pg_clean")
        return
    request.getfixturevalue("tracking_env")
    url = request.getfixturevalue("sqlite_url")
    app, thread = start_app(url)
    try:
        yield app, url
    finally:
        stop_app(app, thread)


def test_a_hit_is_no_repeat_of_a_later_one_another_process_stored(
        app_on: tuple[RunningApp, str]) -> None:
    """Two processes record one open a moment apart; the later one commits first. The earlier
    hit is the first of the two, not a repeat of the later one: otherwise the repair (which
    orders them by time) flags the later one too, and the open counts nowhere."""
    app, url = app_on
    email = make_outreach(url).email_ids[0]
    later = datetime.now(UTC) + timedelta(seconds=5)
    store(url, hit(email, later))  # committed by another process
    r = httpx.get(app.base_url + path_of(tokens.open_url(email)), timeout=10,
                  headers={"user-agent": "Mozilla/5.0 (X11) Firefox/127.0",
                           "x-forwarded-for": "203.0.113.7"})
    assert r.status_code == 200
    assert [reason for _, _, reason in verdicts(url, email)] == [None, None]
    app.wait_idle()
    refresh_engagement(url, repeats_since=later - timedelta(hours=1))
    assert [reason for _, _, reason in verdicts(url, email)] == [None, "repeat"]
    with session_scope(url) as s:
        assert s.get_one(Email, email).open_count == 1


def test_office_checking_a_link_does_not_make_the_readers_click_a_repeat(
        app_on: tuple[RunningApp, str]) -> None:
    """Outlook for Windows checks a link (ms-office user agent, flagged) and then opens the
    reader's browser on it, from the same network a second later: the browser's click is the
    reader's, not a repeat of Office's check. The same browser clicking again is a repeat."""
    app, url = app_on
    email = make_outreach(url).email_ids[0]
    link = app.base_url + path_of(tokens.click_url(email, 0))
    for user_agent, address in [
        ("Mozilla/4.0 (compatible; ms-office; MSOffice 16)", "203.0.113.7"),
        ("Mozilla/5.0 (Windows NT 10.0) Chrome/126.0 Safari/537.36", "203.0.113.7"),
        ("Mozilla/5.0 (Windows NT 10.0) Chrome/126.0 Safari/537.36", "203.0.113.9"),
    ]:
        r = httpx.get(link, timeout=10, headers={"user-agent": user_agent,
                                                 "x-forwarded-for": address})
        assert r.status_code == 302
    app.wait_idle()
    expected = ["scanner_microsoft", None, "repeat"]
    assert [reason for _, _, reason in verdicts(url, email)] == expected
    # The repair after the fact judges them the same way.
    refresh_engagement(url, repeats_since=datetime.now(UTC) - timedelta(hours=1))
    assert [reason for _, _, reason in verdicts(url, email)] == expected
    with session_scope(url) as s:
        assert s.get_one(Email, email).click_count == 1
