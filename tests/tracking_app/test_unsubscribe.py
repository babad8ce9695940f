"""Unsubscribe through real HTTP: GET only shows a button (link scanners unsubscribe nobody);
POST, from the button or an RFC 8058 one-click client, suppresses the address, stops the lead's
sequence and records one event; doing it again changes nothing."""

from __future__ import annotations

import logging
import re
import socket
import time

import httpx
import psycopg
import pytest
from sqlalchemy import select

from leadflow import tokens
from leadflow.settings import reset_settings_cache
from models import CampaignLead, Email, Lead, Suppression
from models.db import session_scope
from tests.tracking_app.conftest import (
    Outreach,
    RunningApp,
    event_count,
    events,
    path_of,
    start_app,
    stop_app,
)

ONE_CLICK = "List-Unsubscribe=One-Click"


def state(db_url: str, outreach: Outreach) -> dict[str, object]:
    """What an unsubscribe may change: suppressions, the lead's emails, its campaign link."""
    lead_id = outreach.lead_ids[0]
    with session_scope(db_url) as s:
        return {
            "suppressions": [(x.kind, x.value, x.reason, x.email_id)
                             for x in s.scalars(select(Suppression))],
            "emails": sorted((e.id, e.status) for e in s.scalars(
                select(Email).where(Email.lead_id == lead_id))),
            "lead": s.get_one(Lead, lead_id).status,
            "campaign_lead": [(c.status, c.stop_reason) for c in s.scalars(
                select(CampaignLead).where(CampaignLead.lead_id == lead_id))],
            "events": [(e.email_id, e.kind) for e in events(db_url)],
        }


def link_lead(db_url: str, outreach: Outreach) -> None:
    with session_scope(db_url) as s:
        s.add(CampaignLead(campaign_id=outreach.campaign_id, lead_id=outreach.lead_ids[0],
                           status="active"))


def test_get_and_head_show_a_confirmation_form_and_write_nothing(
    app_pg: RunningApp, outreach: Outreach, pg_clean: str
) -> None:
    link_lead(pg_clean, outreach)
    before = state(pg_clean, outreach)
    url = app_pg.base_url + path_of(tokens.unsubscribe_url(outreach.email_ids[0]))
    r = httpx.get(url, timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    form = re.search(r'<form method="post">(.*?)</form>', r.text, re.S)
    assert form is not None
    assert 'name="List-Unsubscribe" value="One-Click"' in form.group(1)
    assert "no-store" in r.headers["cache-control"]
    assert httpx.head(url, timeout=10).status_code == 200
    assert state(pg_clean, outreach) == before


def test_posting_the_form_unsubscribes_the_address_and_stops_the_sequence(
    app_pg: RunningApp, outreach: Outreach, pg_clean: str
) -> None:
    link_lead(pg_clean, outreach)
    email_id = outreach.email_ids[0]
    url = app_pg.base_url + path_of(tokens.unsubscribe_url(email_id))
    # What a browser sends for the page's form.
    r = httpx.post(url, data={"List-Unsubscribe": "One-Click"}, timeout=10)
    assert r.status_code == 200 and "unsubscribed" in r.text
    after = state(pg_clean, outreach)
    assert after["suppressions"] == [("address", "owner0@salon0.example", "unsubscribed",
                                      email_id)]
    assert after["emails"] == sorted([(email_id, "sent")] + [
        (i, "cancelled") for i in outreach.unsent_email_ids])
    assert after["lead"] == "unsubscribed"
    assert after["campaign_lead"] == [("stopped", "unsubscribed")]
    assert after["events"] == [(email_id, "unsubscribe")]


def test_rfc8058_one_click_post_unsubscribes(
    app_pg: RunningApp, outreach: Outreach, pg_clean: str
) -> None:
    email_id = outreach.email_ids[0]
    url = app_pg.base_url + path_of(tokens.unsubscribe_url(email_id))
    # The body a mail client POSTs for `List-Unsubscribe-Post: List-Unsubscribe=One-Click`,
    # as multipart/form-data (RFC 8058 section 3.1).
    r = httpx.post(url, files={"List-Unsubscribe": (None, "One-Click")}, timeout=10)
    assert r.status_code == 200
    after = state(pg_clean, outreach)
    assert [s[:3] for s in after["suppressions"]] == [  # type: ignore[attr-defined]
        ("address", "owner0@salon0.example", "unsubscribed")]
    assert after["lead"] == "unsubscribed"
    assert after["events"] == [(email_id, "unsubscribe")]


def test_unsubscribing_again_changes_nothing(
    app_pg: RunningApp, outreach: Outreach, pg_clean: str
) -> None:
    url = app_pg.base_url + path_of(tokens.unsubscribe_url(outreach.email_ids[0]))
    headers = {"content-type": "application/x-www-form-urlencoded"}
    assert httpx.post(url, content=ONE_CLICK, headers=headers, timeout=10).status_code == 200
    first = state(pg_clean, outreach)
    for _ in range(3):
        assert httpx.post(url, content=ONE_CLICK, headers=headers, timeout=10).status_code == 200
    assert state(pg_clean, outreach) == first
    assert len(first["suppressions"]) == 1  # type: ignore[arg-type]
    assert len(first["events"]) == 1  # type: ignore[arg-type]
    # The link followed again says so, with no button to press.
    page = httpx.get(url, timeout=10)
    assert page.status_code == 200 and "You are unsubscribed" in page.text
    assert "<form" not in page.text
    assert state(pg_clean, outreach) == first


def test_bad_unsubscribe_posts_get_a_4xx_and_write_nothing(
    app_pg: RunningApp, outreach: Outreach, pg_clean: str
) -> None:
    before = state(pg_clean, outreach)
    url = app_pg.base_url + path_of(tokens.unsubscribe_url(outreach.email_ids[0]))
    form = "application/x-www-form-urlencoded"
    cases = [
        (form, b"", 400),
        (form, b"List-Unsubscribe=Yes", 400),
        (form, b"\xff\xfe=\x00", 400),
        (form, b"a" * 5000, 413),
        ("application/json", b'{"List-Unsubscribe": "One-Click"}', 415),
        ("multipart/form-data; boundary=x", b"--x\r\nnonsense", 400),
        (None, ONE_CLICK.encode(), 415),
    ]
    for content_type, body, status in cases:
        headers = {"content-type": content_type} if content_type else {}
        r = httpx.post(url, content=body, headers=headers, timeout=10)
        assert r.status_code == status, (content_type, body[:40], r.text)
    assert state(pg_clean, outreach) == before


def test_forged_unsubscribe_tokens_are_404_and_write_nothing(
    app_pg: RunningApp, outreach: Outreach, pg_clean: str
) -> None:
    good = path_of(tokens.unsubscribe_url(outreach.email_ids[0]))
    forged = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    open_token = path_of(tokens.open_url(outreach.email_ids[0]))[3:-4]
    for path in (forged, f"/u/{open_token}", f"/u/u{outreach.email_ids[1]}.{good[-22:]}"):
        assert httpx.get(app_pg.base_url + path, timeout=10).status_code == 404
        r = httpx.post(app_pg.base_url + path, content=ONE_CLICK, timeout=10,
                       headers={"content-type": "application/x-www-form-urlencoded"})
        assert r.status_code == 404
    assert event_count(pg_clean) == 0
    assert state(pg_clean, outreach)["suppressions"] == []


def test_a_client_that_leaves_before_its_body_arrives_changes_nothing_and_is_no_error(
    app_pg: RunningApp, outreach: Outreach, pg_clean: str
) -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    path = path_of(tokens.unsubscribe_url(outreach.email_ids[0]))
    host, port = app_pg.base_url.removeprefix("http://").split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 26\r\n"
                         "Content-Type: application/x-www-form-urlencoded\r\n\r\n"
                         "List-Unsu".encode())
            sock.shutdown(socket.SHUT_WR)
            sock.recv(1024)  # whatever the server says (or nothing) before it closes
        assert httpx.get(app_pg.base_url + "/healthz", timeout=10).status_code == 200
    finally:
        logger.removeHandler(handler)
    assert [r.getMessage() for r in records] == []
    assert event_count(pg_clean) == 0


def test_an_unsubscribe_that_times_out_on_a_stalled_database_leaves_nothing_behind(
    app_pg: RunningApp, outreach: Outreach, pg_clean: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The events table is locked by someone else: the unsubscribe gets 503 after the commit
    timeout and is not applied later when the lock goes (the server cancels the statement);
    once the database is free again it works."""
    monkeypatch.setenv("LEADFLOW_TRACKING_COMMIT_TIMEOUT_S", "1")
    reset_settings_cache()
    app, thread = start_app(pg_clean)
    try:
        url = app.base_url + path_of(tokens.unsubscribe_url(outreach.email_ids[0]))
        headers = {"content-type": "application/x-www-form-urlencoded"}
        before = state(pg_clean, outreach)
        with psycopg.connect(pg_clean.replace("postgresql+psycopg", "postgresql")) as locker:
            locker.execute("LOCK TABLE email_events IN ACCESS EXCLUSIVE MODE")
            r = httpx.post(url, content=ONE_CLICK, headers=headers, timeout=30)
            assert r.status_code == 503
            time.sleep(1.5)  # past the statement's deadline, still locked
        app.wait_idle()
        assert state(pg_clean, outreach) == before
        assert httpx.post(url, content=ONE_CLICK, headers=headers, timeout=30).status_code == 200
        assert len(state(pg_clean, outreach)["suppressions"]) == 1  # type: ignore[arg-type]
    finally:
        stop_app(app, thread)


def test_one_unsubscribe_recorded_by_two_processes_at_once_is_one_event(
    app_pg: RunningApp, outreach: Outreach, pg_clean: str
) -> None:
    """Two app processes each record the same unsubscribe, neither seeing the other's
    uncommitted row: the second waits for the first and then adds nothing."""
    import threading
    from datetime import UTC, datetime

    from models.db import get_engine
    from tracking_app.bots import load_rules
    from tracking_app.hits import Hit
    from tracking_app.recording import record_hits

    hit = Hit(kind="unsubscribe", email_id=outreach.email_ids[0], link_position=None,
              method="POST", user_agent="Mozilla/5.0 (X11) Firefox/127.0", client_ip=None,
              ip_network=None, occurred_at=datetime.now(UTC))
    rules = load_rules()
    engine = get_engine(pg_clean)
    second_done = threading.Event()

    def second() -> None:
        with engine.begin() as conn:
            record_hits(conn, [hit], rules)
        second_done.set()

    with engine.begin() as first:
        assert record_hits(first, [hit], rules).outcomes[0].recorded
        other = threading.Thread(target=second)
        other.start()
        assert not second_done.wait(1.0)  # it waits for the first's row
    other.join(timeout=30)
    assert second_done.is_set()
    found = state(pg_clean, outreach)
    assert found["events"] == [(outreach.email_ids[0], "unsubscribe")]
    assert len(found["suppressions"]) == 1  # type: ignore[arg-type]
