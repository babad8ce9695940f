"""Outreach and tracking together, as a recipient would meet them: an email composed and sent to
a real SMTP server, parsed as received, its pixel, a link and its List-Unsubscribe header
followed with an HTTP client against the tracking app on uvicorn; then what the database says
about the email, the lead, the campaign and the suppression list."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default as default_policy

import httpx
import pytest
from sqlalchemy import select, update

from leadflow.settings import reset_settings_cache
from models import Campaign, Email, EmailEvent, Lead, SmtpProvider, Suppression
from models.db import session_scope
from tasks.outreach.campaign_leads import link_leads
from tasks.outreach.compose import compose_due_emails
from tasks.outreach.defaults import create_campaign
from tasks.outreach.queue import drain_queue, enqueue_sequences
from tests.tasks.outreach.mailserver import plain_relay
from tests.tracking_app.conftest import RunningApp

BROWSER = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 "
           "(KHTML, like Gecko) Version/17.5 Safari/605.1.15")


def test_a_sent_email_is_opened_clicked_and_unsubscribed_through_its_own_urls(
    app_pg: RunningApp, pg_clean: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The emails' URLs point at the running app.
    monkeypatch.setenv("LEADFLOW_TRACKING_BASE_URL", app_pg.base_url)
    reset_settings_cache()
    with plain_relay() as relay:
        port = relay.port
        with session_scope(pg_clean) as s:
            s.add(SmtpProvider(name="relay", host="127.0.0.1", port=port, security="none"))
            campaign_id = create_campaign(s, name="e2e", status="active",
                                          send_window_start_hour=0, send_window_end_hour=0,
                                          send_weekdays=list(range(7)))
            lead = Lead(company_name="Rosa & <Co> Salon", contact_name="Rosa Lima",
                        email="rosa@rosa-salon.example", email_norm="rosa@rosa-salon.example",
                        website="https://rosa-salon.example", city="Austin", industry="salon",
                        source="apollo", booking_tools=[])
            s.add(lead)
            s.flush()
            lead_id = lead.id
        link_leads(pg_clean, campaign_id, [lead_id])
        now = datetime.now(UTC)
        enqueue_sequences(pg_clean, campaign_id, [lead_id], now)
        compose_due_emails(pg_clean, now)
        report = drain_queue(pg_clean, "e2e-worker")
        assert report.sent == 1
    reset_settings_cache()

    received = message_from_bytes(relay.received[0].data, policy=default_policy)
    html = received.get_body(("html",)).get_content()
    assert "Rosa &amp; &lt;Co&gt; Salon" in html and "<Co>" not in html  # lead data escaped
    pixel = re.search(r'<img src="([^"]+/o/[^"]+)"', html).group(1)  # type: ignore[union-attr]
    link = re.search(r'<a href="([^"]+/c/[^"]+)">([^<]+)</a>', html)
    assert link is not None
    click_url, shown_destination = link.group(1), link.group(2)
    unsubscribe = received["List-Unsubscribe"].strip("<>")
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    for url in (pixel, click_url, unsubscribe):
        assert url.startswith(app_pg.base_url)
    # A person reads it some minutes later (a click within seconds of delivery is a scanner's).
    with session_scope(pg_clean) as s:
        s.execute(update(Email).values(sent_at=datetime.now(UTC) - timedelta(minutes=10)))

    with httpx.Client(headers={"User-Agent": BROWSER}, timeout=10) as browser:
        opened = browser.get(pixel)
        clicked = browser.get(click_url, follow_redirects=False)
        confirm = browser.get(unsubscribe)
        # The mail client's RFC 8058 one-click request.
        unsubscribed = browser.post(unsubscribe, content=b"List-Unsubscribe=One-Click",
                                    headers={"Content-Type":
                                             "application/x-www-form-urlencoded"})

    assert opened.status_code == 200 and opened.headers["content-type"] == "image/gif"
    assert clicked.status_code == 302
    assert clicked.headers["location"] == shown_destination.replace("&amp;", "&")
    assert confirm.status_code == 200 and "<form" in confirm.text
    assert unsubscribed.status_code == 200
    app_pg.wait_idle()

    with session_scope(pg_clean) as s:
        email = s.scalars(select(Email).where(Email.step_number == 1)).one()
        kinds = [(e.kind, e.is_machine) for e in s.scalars(
            select(EmailEvent).where(EmailEvent.email_id == email.id).order_by(EmailEvent.id))]
        lead_row = s.get_one(Lead, lead_id)
        campaign = s.get_one(Campaign, campaign_id)
        later = s.scalars(select(Email.status).where(Email.step_number > 1)).all()
        suppressed = s.scalars(select(Suppression)).all()
    assert kinds == [("open", False), ("click", False), ("unsubscribe", False)]
    assert (email.status, email.open_count, email.click_count) == ("sent", 1, 1)
    assert email.first_opened_at is not None and email.first_clicked_at is not None
    assert (lead_row.status, lead_row.emails_opened, lead_row.emails_clicked) == (
        "unsubscribed", 1, 1)
    assert (campaign.emails_sent, campaign.emails_opened, campaign.emails_clicked) == (1, 1, 1)
    assert later == ["cancelled", "cancelled"]
    assert [(x.kind, x.value, x.reason) for x in suppressed] == [
        ("address", "rosa@rosa-salon.example", "unsubscribed")]
