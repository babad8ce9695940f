"""Fixtures of the tracking-app tests: the app served by uvicorn on loopback (PostgreSQL, or a
SQLite file), and a campaign with a sequence, a step, leads and sent emails with links, made
through the models."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import uvicorn
from sqlalchemy import func, select

from leadflow.settings import reset_settings_cache
from models import Campaign, Email, EmailEvent, EmailLink, Lead, Sequence, SequenceStep
from models.db import session_scope
from tests.conftest import free_port, wait_http

SECRET = "test-tracking-secret-0123456789abcdef"
LINKS = ("https://booknex.example/demo", "https://booknex.example/pricing?plan=pro&x=1")
# Connections from 127.0.0.1 are a trusted proxy (their X-Forwarded-For is believed); tests
# that must not be believed connect from 127.0.0.2.
TRACKING_ENV = {
    "LEADFLOW_TRACKING_SECRET": SECRET,
    "LEADFLOW_TRACKING_BASE_URL": "http://tracking.test",
    "LEADFLOW_TRACKING_TRUSTED_PROXIES": '["127.0.0.1/32"]',
    "LEADFLOW_TRACKING_REFRESH_INTERVAL_S": "0.05",
}


@pytest.fixture(scope="session")
def tracking_env() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in TRACKING_ENV.items():
            mp.setenv(key, value)
        reset_settings_cache()
        yield
    reset_settings_cache()


@dataclass
class RunningApp:
    base_url: str
    server: uvicorn.Server

    def health(self) -> dict:  # type: ignore[type-arg]
        return httpx.get(f"{self.base_url}/healthz", timeout=5).json()

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Until every event is committed and every touched email's figures refreshed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            h = self.health()
            if h["events_pending"] == 0 and h["figures_pending"] == 0:
                return
            time.sleep(0.02)
        raise AssertionError(f"tracking app not idle: {self.health()}")


def start_app(db_url: str) -> tuple[RunningApp, threading.Thread]:
    from tracking_app.app import create_app
    from tracking_app.serve import server_config

    port = free_port()
    server = uvicorn.Server(server_config(create_app(db_url), "127.0.0.1", port))
    thread = threading.Thread(target=server.run, name="tracking-app", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/healthz")
    return RunningApp(base, server), thread


def stop_app(app: RunningApp, thread: threading.Thread) -> None:
    app.server.should_exit = True
    thread.join(timeout=30)
    assert not thread.is_alive(), "tracking app did not stop"


@pytest.fixture(scope="session")
def tracking_app(pg_url: str, tracking_env: None) -> Iterator[RunningApp]:
    """The tracking app on the session's PostgreSQL database, served by uvicorn."""
    app, thread = start_app(pg_url)
    yield app
    stop_app(app, thread)


@pytest.fixture()
def app_pg(tracking_app: RunningApp, request: pytest.FixtureRequest) -> Iterator[RunningApp]:
    """The running app with the database emptied for this test (once the app is idle: its
    figure refresh must not race the TRUNCATE)."""
    tracking_app.wait_idle()
    request.getfixturevalue("pg_clean")
    yield tracking_app
    tracking_app.wait_idle()


@dataclass
class Outreach:
    campaign_id: int
    lead_ids: list[int]
    email_ids: list[int]  # email i is for lead i, sent an hour ago, with LINKS
    just_sent_email_id: int  # sent a moment ago (delivery-time scanner rule applies)
    unsent_email_ids: list[int]  # later steps of lead 0, still pending


def make_outreach(db_url: str, leads: int = 3) -> Outreach:
    now = datetime.now(UTC)
    with session_scope(db_url) as s:
        seq = Sequence(name=f"seq-{time.monotonic_ns()}")
        s.add(seq)
        s.flush()
        steps = [SequenceStep(sequence_id=seq.id, step_number=n, name=f"step {n}",
                              delay_days=0 if n == 1 else 3, lead_status="contacted")
                 for n in (1, 2, 3)]
        s.add_all(steps)
        campaign = Campaign(name="Austin salons", sequence_id=seq.id, status="active",
                            sender_name="Sam", sender_email="sam@booknex.example",
                            sender_postal_address="1 Example St, Springfield")
        s.add(campaign)
        s.flush()
        lead_rows = [Lead(company_name=f"Salon {i}", source="apollo", status="contacted",
                          email=f"owner{i}@salon{i}.example") for i in range(leads + 1)]
        s.add_all(lead_rows)
        s.flush()

        def email(lead: Lead, step: SequenceStep, status: str, sent_at: datetime | None) -> Email:
            row = Email(campaign_id=campaign.id, lead_id=lead.id, step_id=step.id,
                        step_number=step.step_number, status=status, scheduled_at=now,
                        to_email=lead.email or "", sent_at=sent_at, subject="Hello")
            s.add(row)
            s.flush()
            s.add_all(EmailLink(email_id=row.id, position=p, url=u) for p, u in enumerate(LINKS))
            return row

        sent = [email(lead, steps[0], "sent", now - timedelta(hours=1))
                for lead in lead_rows[:leads]]
        just_sent = email(lead_rows[leads], steps[0], "sent", now)
        pending = [email(lead_rows[0], steps[1], "queued", None),
                   email(lead_rows[0], steps[2], "scheduled", None)]
        return Outreach(campaign.id, [lead.id for lead in lead_rows[:leads]],
                        [e.id for e in sent], just_sent.id, [e.id for e in pending])


@pytest.fixture()
def outreach(app_pg: RunningApp, pg_clean: str) -> Outreach:
    return make_outreach(pg_clean)


def events(db_url: str, email_id: int | None = None) -> list[EmailEvent]:
    with session_scope(db_url) as s:
        q = select(EmailEvent).order_by(EmailEvent.id)
        if email_id is not None:
            q = q.where(EmailEvent.email_id == email_id)
        return list(s.scalars(q))


def event_count(db_url: str) -> int:
    with session_scope(db_url) as s:
        return int(s.scalar(select(func.count()).select_from(EmailEvent)) or 0)


def path_of(url: str) -> str:
    """The path of a tracking URL (the tokens module builds them on the public base URL)."""
    return httpx.URL(url).raw_path.decode()
