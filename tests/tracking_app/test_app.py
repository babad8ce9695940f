"""The open, click and health endpoints through real HTTP against uvicorn on PostgreSQL."""

from __future__ import annotations

import gc

import httpx
from sqlalchemy import select
from starlette.testclient import TestClient

from leadflow import tokens
from leadflow.tokens import TrackingToken
from models import Campaign, Email, Lead
from models.db import session_scope
from tests.tracking_app.conftest import (
    LINKS,
    Outreach,
    RunningApp,
    event_count,
    events,
    path_of,
)
from tracking_app.app import GC_THRESHOLDS, PIXEL_GIF, create_app

BROWSER = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/126.0 Safari/537.36")


def get(app: RunningApp, path: str, **kw: object) -> httpx.Response:
    headers = {"user-agent": BROWSER, **kw.pop("headers", {})}  # type: ignore[dict-item]
    return httpx.get(app.base_url + path, headers=headers, timeout=10, **kw)  # type: ignore[arg-type]


def test_open_pixel_returns_a_transparent_gif_uncached_and_records_a_human_open(
    app_pg: RunningApp, outreach: Outreach, pg_clean: str
) -> None:
    email_id = outreach.email_ids[0]
    r = get(app_pg, path_of(tokens.open_url(email_id)))
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/gif"
    assert r.content == PIXEL_GIF and r.content.startswith(b"GIF89a")
    assert "no-store" in r.headers["cache-control"] and r.headers["pragma"] == "no-cache"

    [event] = events(pg_clean)
    assert (event.email_id, event.kind, event.method) == (email_id, "open", "GET")
    assert (event.is_machine, event.machine_reason) == (False, None)
    assert event.ip_network == "127.0.0.0/24"
    assert event.user_agent == BROWSER

    app_pg.wait_idle()
    with session_scope(pg_clean) as s:
        email = s.get_one(Email, email_id)
        assert (email.open_count, email.click_count, email.machine_event_count) == (1, 0, 0)
        assert email.first_opened_at == event.occurred_at
        assert email.status == "sent"  # delivery state is not overwritten by engagement
        lead = s.get_one(Lead, outreach.lead_ids[0])
        assert (lead.emails_opened, lead.emails_clicked) == (1, 0)
        campaign = s.get_one(Campaign, outreach.campaign_id)
        assert (campaign.emails_opened, campaign.emails_clicked) == (1, 0)


def test_click_redirects_only_to_the_recorded_destination_whatever_the_query_string(
    app_pg: RunningApp, outreach: Outreach, pg_clean: str
) -> None:
    email_id = outreach.email_ids[1]
    path = path_of(tokens.click_url(email_id, 1))
    for query in ("", "?url=https://evil.example", "?url=https%3A%2F%2Fevil.example&next=//evil",
                  "?redirect=javascript:alert(1)"):
        r = get(app_pg, path + query)
        assert r.status_code == 302
        assert r.headers["location"] == LINKS[1]
        assert "no-store" in r.headers["cache-control"]

    clicks = events(pg_clean)
    assert [(e.kind, e.link_position) for e in clicks] == [("click", 1)] * 4
    app_pg.wait_idle()
    with session_scope(pg_clean) as s:
        email = s.get_one(Email, email_id)
        # The first click is human; the three replays from the same network are repeats.
        assert (email.click_count, email.machine_event_count) == (1, 3)
        assert email.first_clicked_at == clicks[0].occurred_at
        lead = s.get_one(Lead, outreach.lead_ids[1])
        assert (lead.emails_opened, lead.emails_clicked) == (1, 1)  # a click implies a read
        campaign = s.get_one(Campaign, outreach.campaign_id)
        assert (campaign.emails_opened, campaign.emails_clicked) == (1, 1)


def test_click_token_for_a_link_the_email_does_not_have_is_404_and_writes_nothing(
    app_pg: RunningApp, outreach: Outreach, pg_clean: str
) -> None:
    r = get(app_pg, path_of(tokens.click_url(outreach.email_ids[0], 7)) + "?url=https://evil.example")
    assert r.status_code == 404
    assert "location" not in r.headers
    assert event_count(pg_clean) == 0


def test_valid_tokens_for_an_email_that_does_not_exist_are_404_and_write_nothing(
    app_pg: RunningApp, outreach: Outreach, pg_clean: str
) -> None:
    missing = max(outreach.email_ids + outreach.unsent_email_ids) + 1000
    assert get(app_pg, path_of(tokens.open_url(missing))).status_code == 404
    assert get(app_pg, path_of(tokens.click_url(missing, 0))).status_code == 404
    assert get(app_pg, path_of(tokens.unsubscribe_url(missing))).status_code == 404
    assert event_count(pg_clean) == 0


def test_forged_altered_and_truncated_tokens_are_404_and_write_nothing(
    app_pg: RunningApp, outreach: Outreach, pg_clean: str
) -> None:
    email_id, other = outreach.email_ids[0], outreach.email_ids[1]
    good = tokens.sign(TrackingToken("open", email_id))
    payload, sig = good.split(".")
    flipped = sig[:-1] + ("A" if sig[-1] != "A" else "B")
    click = tokens.sign(TrackingToken("click", email_id, 0))
    foreign = tokens.sign(TrackingToken("open", email_id), key=b"some-other-secret-key-0123456789")
    bad_opens = [
        f"{payload}.{flipped}",  # altered signature
        f"o{other}.{sig}",  # another email with this email's signature
        f"{payload}.{sig[:-2]}",  # truncated
        payload,  # no signature
        foreign,  # signed with another key
        tokens.sign(TrackingToken("unsubscribe", email_id)),  # right key, wrong kind
        good + "A" * 200,  # over-long
        "%00" + good,
        good + "%0A",  # a trailing newline: `$` would match before it
        "..%2F..%2Fetc%2Fpasswd",
    ]
    for raw in bad_opens:
        assert get(app_pg, f"/o/{raw}.gif").status_code == 404, raw
    cpayload, csig = click.split(".")
    bad_clicks = [
        f"c{email_id}-1.{csig}",  # another link with link 0's signature
        f"{cpayload}.{csig[:10]}",
        click + "%0A",
        tokens.sign(TrackingToken("open", email_id)),  # an open token is no click token
    ]
    for raw in bad_clicks:
        r = get(app_pg, f"/c/{raw}?url=https://evil.example")
        assert r.status_code == 404, raw
        assert "location" not in r.headers
    # A trailing slash is not a tracking URL: 404, never a redirect built from the Host header.
    unsub = tokens.sign(TrackingToken("unsubscribe", email_id))
    for path in (f"/c/{click}/", f"/u/{unsub}/", "/healthz/"):
        r = get(app_pg, path, headers={"host": "evil.example"})
        assert (r.status_code, r.headers.get("location")) == (404, None), path
    assert event_count(pg_clean) == 0


def test_a_replayed_token_records_another_event_flagged_as_a_repeat(
    app_pg: RunningApp, outreach: Outreach, pg_clean: str
) -> None:
    path = path_of(tokens.open_url(outreach.email_ids[2]))
    assert [get(app_pg, path).status_code for _ in range(3)] == [200, 200, 200]
    assert [(e.is_machine, e.machine_reason) for e in events(pg_clean)] == [
        (False, None), (True, "repeat"), (True, "repeat"),
    ]
    app_pg.wait_idle()
    with session_scope(pg_clean) as s:
        email = s.get_one(Email, outreach.email_ids[2])
        assert (email.open_count, email.machine_event_count) == (1, 2)


def test_head_requests_are_answered_and_recorded_as_machine_events(
    app_pg: RunningApp, outreach: Outreach, pg_clean: str
) -> None:
    email_id = outreach.email_ids[0]
    r = httpx.head(app_pg.base_url + path_of(tokens.open_url(email_id)),
                   headers={"user-agent": BROWSER}, timeout=10)
    assert r.status_code == 200 and r.content == b""
    assert r.headers["content-type"] == "image/gif"
    r = httpx.head(app_pg.base_url + path_of(tokens.click_url(email_id, 0)),
                   headers={"user-agent": BROWSER}, timeout=10)
    assert r.status_code == 302 and r.headers["location"] == LINKS[0]
    assert [(e.kind, e.method, e.is_machine, e.machine_reason) for e in events(pg_clean)] == [
        ("open", "HEAD", True, "head_request"), ("click", "HEAD", True, "head_request"),
    ]
    app_pg.wait_idle()
    with session_scope(pg_clean) as s:
        email = s.get_one(Email, email_id)
        assert (email.open_count, email.click_count, email.machine_event_count) == (0, 0, 2)
        assert s.get_one(Lead, outreach.lead_ids[0]).emails_opened == 0


def test_other_methods_are_refused_without_writing(
    app_pg: RunningApp, outreach: Outreach, pg_clean: str
) -> None:
    path = path_of(tokens.open_url(outreach.email_ids[0]))
    for method in ("POST", "PUT", "DELETE"):
        assert httpx.request(method, app_pg.base_url + path, timeout=10).status_code == 405
    assert event_count(pg_clean) == 0


def test_healthz_reports_ok_when_the_database_answers(app_pg: RunningApp) -> None:
    r = httpx.get(f"{app_pg.base_url}/healthz", timeout=5)
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
    assert "no-store" in r.headers["cache-control"]


def test_emails_seed_status_is_derived_from_human_engagement(
    app_pg: RunningApp, outreach: Outreach, pg_clean: str
) -> None:
    from tracking_app.figures import seed_status

    opened, clicked, untouched = outreach.email_ids
    assert get(app_pg, path_of(tokens.open_url(opened))).status_code == 200
    assert get(app_pg, path_of(tokens.click_url(clicked, 0))).status_code == 302
    app_pg.wait_idle()
    with session_scope(pg_clean) as s:
        rows = {r[0]: r[1] for r in s.execute(select(Email.id, seed_status()).where(
            Email.id.in_([opened, clicked, untouched, *outreach.unsent_email_ids])))}
        stored = {r[0]: r[1] for r in s.execute(select(Email.id, Email.status))}
    assert rows == {opened: "opened", clicked: "clicked", untouched: "sent",
                    outreach.unsent_email_ids[0]: "queued",
                    outreach.unsent_email_ids[1]: "scheduled"}
    assert stored[opened] == stored[clicked] == "sent"


def test_the_collector_runs_less_often_while_the_app_runs_and_as_before_after(
    pg_url: str, tracking_env: None
) -> None:
    original = gc.get_threshold()
    gc.set_threshold(701, 11, 12)  # whatever the process had before the app started
    try:
        with TestClient(create_app(pg_url)):
            assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_threshold() == (701, 11, 12)
    finally:
        gc.set_threshold(*original)
