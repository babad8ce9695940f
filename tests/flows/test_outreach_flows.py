"""The outreach flows end to end on PostgreSQL, sending over SMTP (STARTTLS + AUTH) to a real
aiosmtpd server: execute-campaign, the follow-up checker after a reply, two runs of the same
flow at once, the hourly outreach in each campaign's time zone, and the daily lead generation
feeding an automated campaign from the sandbox."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default as default_policy
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from models import Campaign, CampaignLead, Email, Lead
from models.db import session_scope
from tasks.outreach.campaign_leads import link_leads
from tasks.outreach.defaults import create_campaign
from tasks.outreach.replies import record_reply
from tests.tasks.outreach.mailserver import Outreach, SmtpServer

pytest_plugins = ["tests.tasks.outreach.sending_fixtures"]

ALL_DAY = {"send_window_start_hour": 0, "send_window_end_hour": 0,
           "send_weekdays": list(range(7))}


@pytest.fixture()
def env(prefect_server: str, pg_settings: str, send_env: Any) -> Iterator[str]:
    yield pg_settings


@pytest.fixture()
def relay(env: str, smtp_servers: Any) -> SmtpServer:
    server: SmtpServer = smtp_servers("starttls", auth=True)
    Outreach(env).provider("relay", server.port)
    return server


def campaign(db: str, **fields: Any) -> int:
    with session_scope(db) as session:
        return create_campaign(session, **{"name": "flow test", "status": "active",
                                           **ALL_DAY, **fields})


def leads(db: str, n: int, prefix: str = "lead") -> list[int]:
    with session_scope(db) as session:
        rows = [Lead(company_name=f"{prefix.title()} Salon {i}", contact_name=f"Ana Diaz{i}",
                     email=f"{prefix}{i}@salon{i}.example", email_norm=f"{prefix}{i}@salon{i}"
                     ".example", website=f"https://salon{i}.example", industry="salon",
                     city="Austin", source="apollo", booking_tools=["vagaro"] if i % 2 else [])
                for i in range(n)]
        session.add_all(rows)
        session.flush()
        return [r.id for r in rows]


def emails(db: str, campaign_id: int) -> list[Email]:
    with session_scope(db) as session:
        return list(session.scalars(select(Email).where(Email.campaign_id == campaign_id)
                                    .order_by(Email.lead_id, Email.step_number)))


def test_execute_campaign_sends_step_one_schedules_the_rest_and_updates_leads(
    env: str, relay: SmtpServer,
) -> None:
    from prefect.artifacts import Artifact

    from flows.execute_campaign import execute_campaign

    cid = campaign(env)
    lead_ids = leads(env, 6)
    link_leads(env, cid, lead_ids)

    result = execute_campaign(campaign_id=cid)

    received = relay.received
    assert len(received) == 6 and len(set(relay.message_ids())) == 6
    message = message_from_bytes(received[0].data, policy=default_policy)
    assert message.get_content_type() == "multipart/alternative"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert received[0].auth_user and received[0].tls
    rows = emails(env, cid)
    by_step = Counter((e.step_number, e.status) for e in rows)
    assert by_step == {(1, "sent"): 6, (2, "scheduled"): 6, (3, "scheduled"): 6}
    for first, second in zip(rows[0::3], rows[1::3], strict=True):
        assert second.scheduled_at - first.sent_at == timedelta(days=3)
    with session_scope(env) as session:
        contacted = session.scalars(select(Lead).where(Lead.id.in_(lead_ids))).all()
        assert {lead.status for lead in contacted} == {"contacted"}
        assert all(lead.last_contacted_at is not None for lead in contacted)
        c = session.get_one(Campaign, cid)
        assert (c.emails_sent, c.leads_contacted, c.leads_generated) == (6, 6, 6)
    assert result["sent"]["sent"] == 6
    funnel = {row["step_number"]: row for row in result["funnel"]}
    assert funnel[1]["sent"] == 6 and funnel[2]["scheduled"] == 6
    assert "sent" in str(Artifact.get("campaign-funnel").data)


def test_follow_ups_go_out_when_due_except_to_a_lead_that_replied(
    env: str, relay: SmtpServer,
) -> None:
    from flows.execute_campaign import execute_campaign
    from flows.follow_up_checker import follow_up_checker

    cid = campaign(env)
    lead_ids = leads(env, 4)
    link_leads(env, cid, lead_ids)
    execute_campaign(campaign_id=cid)
    replied = record_reply(env, address="lead0@salon0.example")
    assert replied is not None and replied.steps_cancelled == 2
    # Three days pass: step 2 falls due.
    with session_scope(env) as session:
        session.execute(update(Email).where(Email.step_number == 2)
                        .values(scheduled_at=datetime.now(UTC) - timedelta(minutes=1)))

    follow_up_checker()

    steps = {e.message_id: e.step_number for e in emails(env, cid)}
    step2 = [r for r in relay.received if steps[r.message_id] == 2]
    assert len(step2) == 3
    assert all(r.rcpt_tos != ["lead0@salon0.example"] for r in step2)
    with session_scope(env) as session:
        status = dict(session.execute(select(Lead.id, Lead.status)
                                      .where(Lead.id.in_(lead_ids))).all())
        link = session.scalars(select(CampaignLead).where(
            CampaignLead.lead_id == lead_ids[0])).one()
        replies = session.get_one(Campaign, cid).emails_replied
    assert status[lead_ids[0]] == "replied" and replies == 1
    assert [status[i] for i in lead_ids[1:]] == ["follow_up_1"] * 3
    assert (link.status, link.stop_reason) == ("stopped", "replied")
    assert {e.status for e in emails(env, cid) if e.lead_id == lead_ids[0]} == {
        "sent", "cancelled"}


def test_the_same_flow_run_twice_at_once_sends_each_email_once(
    env: str, relay: SmtpServer,
) -> None:
    from flows.execute_campaign import execute_campaign

    cid = campaign(env)
    link_leads(env, cid, leads(env, 30))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            execute_campaign(campaign_id=cid)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not any(t.is_alive() for t in threads) and errors == []
    ids = relay.message_ids()
    assert len(ids) == 30 and len(set(ids)) == 30
    assert Counter(e.status for e in emails(env, cid) if e.step_number == 1) == {"sent": 30}


def test_hourly_outreach_contacts_only_campaigns_whose_local_hour_has_come(
    env: str, relay: SmtpServer,
) -> None:
    from flows.daily_outreach import daily_outreach

    tz = "Asia/Tokyo"
    wait_past_the_hour_boundary()
    now_hour = datetime.now(ZoneInfo(tz)).hour
    due = campaign(env, name="due", timezone=tz, schedule_hour=now_hour)
    later = campaign(env, name="later", timezone=tz, schedule_hour=(now_hour + 1) % 24)
    link_leads(env, due, leads(env, 3, "due"))
    link_leads(env, later, leads(env, 3, "later"))

    result = daily_outreach()

    assert result["campaigns"] == [due]
    assert sorted(r.rcpt_tos[0].split("@")[0] for r in relay.received) == [
        "due0", "due1", "due2"]
    assert emails(env, later) == []


def test_one_campaign_failing_to_enqueue_does_not_stop_the_others_outreach(
    env: str, relay: SmtpServer,
) -> None:
    from flows.daily_outreach import daily_outreach
    from models import Sequence

    wait_past_the_hour_boundary()
    hour = datetime.now(UTC).hour
    with session_scope(env) as session:  # a sequence whose steps were never added
        empty = Sequence(name="no steps yet")
        session.add(empty)
        session.flush()
        empty_id = empty.id
    broken = campaign(env, name="broken", schedule_hour=hour, sequence_id=empty_id)
    fine = campaign(env, name="fine", schedule_hour=hour)
    link_leads(env, broken, leads(env, 2, "broken"))
    link_leads(env, fine, leads(env, 3, "fine"))

    with pytest.raises(RuntimeError, match=f"campaigns \\[{broken}\\]"):
        daily_outreach()  # the run is marked failed, but only after the others went out

    assert sorted(r.rcpt_tos[0].split("@")[0] for r in relay.received) == [
        "fine0", "fine1", "fine2"]
    assert emails(env, broken) == []


def wait_past_the_hour_boundary() -> None:
    """The test reads the hour and the flow reads it again: not across a boundary."""
    import time

    now = datetime.now(UTC)
    if now.minute == 59 and now.second >= 30:
        time.sleep(61 - now.second)


def test_daily_lead_generation_feeds_each_automated_campaign_its_leads_per_day(
    env: str, sandbox_env: Any,
) -> None:
    from flows.daily_lead_generation import daily_lead_generation

    auto = campaign(env, name="auto", campaign_type="automated", leads_per_day=12,
                    target_industry="salon", target_location="Austin, TX", sources=["apollo"])
    manual = campaign(env, name="manual", campaign_type="manual", target_industry="salon",
                      target_location="Austin, TX")
    untargeted = campaign(env, name="untargeted", campaign_type="automated",
                          target_industry=None, target_location=None)

    results = daily_lead_generation()
    again = daily_lead_generation()  # a retried or repeated run on the same day

    assert [r["campaign_id"] for r in results] == [auto, untargeted]
    assert "skipped" in results[1] and results[1]["leads_linked"] == 0
    # The second run only tops up to leads-per-day, never past it.
    assert results[0]["leads_linked"] + again[0]["leads_linked"] <= 12
    if results[0]["leads_linked"] == 12:
        assert again[0]["batches"] == []
    with session_scope(env) as session:
        linked = session.scalars(select(CampaignLead.lead_id)
                                 .where(CampaignLead.campaign_id == auto)).all()
        c = session.get_one(Campaign, auto)
        assert session.scalars(select(CampaignLead).where(
            CampaignLead.campaign_id == manual)).all() == []
        matched = session.scalars(select(Lead).where(Lead.id.in_(linked))).all()
    assert 0 < len(linked) <= 12 and c.leads_generated == len(linked)
    assert results[0]["leads_linked"] + again[0]["leads_linked"] == len(linked)
    assert all(lead.email_norm and lead.city.lower() == "austin" for lead in matched)


def test_the_hour_the_clocks_repeat_in_the_schedule_time_zone_is_not_skipped(
    env: str, relay: SmtpServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Prefect's hourly cron fires on each new wall-clock hour of the schedule's time zone: the
    day New York's clocks go back, its runs are at 05:00 and 07:00 UTC. A campaign whose hour
    is 06:00 UTC must still be contacted that day, by the 07:00 run."""
    from flows.daily_outreach import daily_outreach
    from leadflow.settings import reset_settings_cache

    monkeypatch.setenv("LEADFLOW_SCHEDULE_TIMEZONE", "America/New_York")
    reset_settings_cache()
    # The run the schedule made after 01:00 EDT (05:00 UTC): 02:00 EST. (Prefect's runtime
    # cannot take a datetime from its PREFECT__RUNTIME__ environment variables.)
    import prefect.runtime.flow_run

    monkeypatch.setattr(prefect.runtime.flow_run, "scheduled_start_time",
                        datetime(2026, 11, 1, 7, tzinfo=UTC), raising=False)
    six = campaign(env, name="six utc", timezone="UTC", schedule_hour=6)
    seven = campaign(env, name="seven utc", timezone="UTC", schedule_hour=7)
    five = campaign(env, name="five utc", timezone="UTC", schedule_hour=5)
    one_edt = campaign(env, name="1:00 in New York", timezone="America/New_York",
                       schedule_hour=1)

    result = daily_outreach()

    assert sorted(result["campaigns"]) == sorted([six, seven])
    assert five not in result["campaigns"] and one_edt not in result["campaigns"]


def test_daily_lead_generation_leaves_a_table_of_what_each_campaign_got(env: str) -> None:
    """The run's page shows, per campaign, what it got and why not (skipped, failed), also
    when the run fails; the batches' own artifacts are on the generate-leads subflow runs."""
    from prefect.artifacts import Artifact

    from flows.daily_lead_generation import daily_lead_generation

    untargeted = campaign(env, name="untargeted", campaign_type="automated",
                          target_industry=None, target_location=None)
    broken = campaign(env, name="broken zone", campaign_type="automated", sources=["apollo"],
                      target_industry="salon", target_location="Austin, TX",
                      timezone="Mars/Olympus_Mons")

    with pytest.raises(RuntimeError, match=f"campaigns \\[{broken}\\]"):
        daily_lead_generation()

    artifact = Artifact.get("daily-lead-generation")
    assert artifact is not None and artifact.type == "table"
    rows = {row["campaign_id"]: row for row in _table(artifact.data)}
    assert set(rows) == {untargeted, broken}
    assert rows[untargeted]["leads_linked"] == 0
    assert "needs sources" in rows[untargeted]["outcome"]
    assert "Mars/Olympus_Mons" in rows[broken]["outcome"]


def _table(data: Any) -> list[dict[str, Any]]:
    import json

    return json.loads(data) if isinstance(data, str) else data
