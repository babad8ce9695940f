"""Group commit under concurrency, through real HTTP on PostgreSQL: hundreds of simultaneous
opens of one email are all recorded, in fewer transactions than events, and the derived
counters come out exact; a batch the database refuses costs only its own requests (503) and
leaves nothing half-written."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from sqlalchemy import func, select

from leadflow import tokens
from models import Campaign, Email, EmailEvent, Lead
from models.db import session_scope
from tests.tracking_app.conftest import Outreach, RunningApp, event_count, path_of

BROWSER = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile"
SIMULTANEOUS = 300


async def _fire(base_url: str, requests: list[tuple[str, str]]) -> list[int]:
    """Send every (path, client address) at once, each on its own connection."""
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
        start = asyncio.Event()

        async def one(path: str, client_ip: str) -> int:
            await start.wait()
            r = await client.get(path, headers={"user-agent": BROWSER,
                                                "x-forwarded-for": client_ip})
            return r.status_code

        tasks = [asyncio.create_task(one(p, ip)) for p, ip in requests]
        await asyncio.sleep(0)
        start.set()
        return list(await asyncio.gather(*tasks))


def fire(app: RunningApp, requests: list[tuple[str, str]]) -> list[int]:
    return asyncio.run(_fire(app.base_url, requests))


def test_hundreds_of_simultaneous_opens_of_one_email_are_all_recorded_and_counted_exactly(
    app_pg: RunningApp, outreach: Outreach, pg_clean: str
) -> None:
    email_id = outreach.email_ids[0]
    pixel = path_of(tokens.open_url(email_id))
    batches_before = app_pg.health()["batches_committed"]
    # Every reader on a network of their own: all human, none a repeat of another.
    humans = [(pixel, f"10.{i // 250}.{i % 250}.7") for i in range(SIMULTANEOUS)]
    statuses = fire(app_pg, humans)
    assert statuses == [200] * SIMULTANEOUS
    assert event_count(pg_clean) == SIMULTANEOUS  # answered 200 = committed
    assert app_pg.health()["batches_committed"] - batches_before < SIMULTANEOUS

    # A second wave from one network: recorded too, all repeats of that network's first.
    statuses = fire(app_pg, [(pixel, "198.51.100.9")] * 100)
    assert statuses == [200] * 100
    app_pg.wait_idle()
    with session_scope(pg_clean) as s:
        machine = s.scalar(select(func.count()).select_from(EmailEvent)
                           .where(EmailEvent.is_machine))
        email = s.get_one(Email, email_id)
        lead = s.get_one(Lead, outreach.lead_ids[0])
        campaign = s.get_one(Campaign, outreach.campaign_id)
        first = s.scalar(select(func.min(EmailEvent.occurred_at)))
    assert machine == 99
    assert (email.open_count, email.machine_event_count, email.click_count) == (
        SIMULTANEOUS + 1, 99, 0)
    assert email.first_opened_at == first
    assert (lead.emails_opened, campaign.emails_opened) == (1, 1)


def test_simultaneous_hits_of_many_emails_update_every_figure_exactly(
    app_pg: RunningApp, outreach: Outreach, pg_clean: str
) -> None:
    requests = []
    for n, email_id in enumerate(outreach.email_ids):
        pixel = path_of(tokens.open_url(email_id))
        requests += [(pixel, f"10.1.{n * 50 + i}.1") for i in range(40)]
    requests += [(path_of(tokens.click_url(outreach.email_ids[1], p)), f"10.2.{p}.1")
                 for p in (0, 1)]
    assert fire(app_pg, requests) == [200] * 120 + [302, 302]
    app_pg.wait_idle()
    with session_scope(pg_clean) as s:
        counts = {e.id: (e.open_count, e.click_count) for e in s.scalars(select(Email))}
        leads = {lead.id: (lead.emails_opened, lead.emails_clicked)
                 for lead in s.scalars(select(Lead))}
        campaign = s.get_one(Campaign, outreach.campaign_id)
    e0, e1, e2 = outreach.email_ids
    assert (counts[e0], counts[e1], counts[e2]) == ((40, 0), (40, 2), (40, 0))
    assert [leads[i] for i in outreach.lead_ids] == [(1, 0), (1, 1), (1, 0)]
    assert (campaign.emails_opened, campaign.emails_clicked) == (3, 1)


@pytest.fixture()
def refusing_email(pg_clean: str, outreach: Outreach) -> Iterator[int]:
    """An email whose events the database refuses (a trigger raises), as a stand-in for any
    row-level failure at commit time."""
    email_id = outreach.email_ids[2]
    dsn = pg_clean.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"""
            CREATE FUNCTION refuse_event() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.email_id = {email_id} THEN RAISE EXCEPTION 'refused'; END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER refuse_event BEFORE INSERT ON email_events
                FOR EACH ROW EXECUTE FUNCTION refuse_event();
        """)
    try:
        yield email_id
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DROP TRIGGER refuse_event ON email_events;"
                         "DROP FUNCTION refuse_event();")


def test_a_refused_event_gets_503_and_its_batchmates_are_still_committed(
    app_pg: RunningApp, outreach: Outreach, pg_clean: str, refusing_email: int
) -> None:
    good_email = outreach.email_ids[0]
    requests = []
    for i in range(100):
        email_id = refusing_email if i % 10 == 0 else good_email
        requests.append((path_of(tokens.open_url(email_id)), f"10.3.{i}.1"))
    statuses = fire(app_pg, requests)
    assert [s for s, (p, _) in zip(statuses, requests, strict=True)
            if str(refusing_email) in p.split(".")[0]] == [503] * 10
    assert statuses.count(200) == 90
    app_pg.wait_idle()
    with session_scope(pg_clean) as s:
        stored = {r[0]: r[1] for r in s.execute(
            select(EmailEvent.email_id, func.count()).group_by(EmailEvent.email_id))}
        assert s.get_one(Email, good_email).open_count == 90
        assert s.get_one(Email, refusing_email).open_count == 0
    assert stored == {good_email: 90}  # every 200 committed, nothing of a 503
