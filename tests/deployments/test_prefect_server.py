"""Through a real Prefect server and two process workers: deployments registered with
`prefect deploy --all`, runs triggered through the REST API, run by the workers, and every lead
and email processed exactly once."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select

from deployments.catalog import JOBS
from deployments.local_cluster import LocalCluster
from models import Lead, LeadBatch, LeadSourceRecord
from models.db import session_scope


def test_every_job_is_deployed_on_the_server(cluster: LocalCluster) -> None:
    assert cluster.deployment_names() == sorted(job.name for job in JOBS)
    outreach = cluster.deployment("daily-outreach", "daily-outreach")
    assert outreach["schedules"][0]["schedule"]["cron"] == "0 * * * *"
    assert outreach["schedules"][0]["schedule"]["timezone"] == "UTC"
    assert outreach["work_pool_name"] == "leadflow-process"


def test_a_triggered_deployment_is_run_by_a_worker(cluster: LocalCluster,
                                                   cluster_db: str) -> None:
    run_id = cluster.trigger("generate-leads/generate-leads", {
        "source": "apollo", "industry": "salon", "location": "Denver, CO", "max_results": 30,
    })
    states = cluster.wait([run_id], timeout=300)
    assert states == {run_id: "COMPLETED"}, cluster.logs()
    with session_scope(cluster_db) as session:
        batch = session.scalars(select(LeadBatch).where(LeadBatch.location == "Denver, CO")).one()
        assert batch.status == "done"
        leads = session.scalar(select(func.count()).select_from(Lead)
                               .where(Lead.batch_id == batch.id))
        records = session.scalar(select(func.count()).select_from(LeadSourceRecord)
                                 .where(LeadSourceRecord.batch_id == batch.id))
    assert leads and leads == batch.leads_generated
    assert records == 30


def test_two_workers_process_every_lead_and_email_exactly_once(
    cluster: LocalCluster, pg_clean: str,
) -> None:
    """A day's schedule on two workers: overlapping lead-generation runs, then overlapping
    outreach runs of different deployments (not serialised by their concurrency limits). Every
    business becomes one lead, and every linked lead gets step 1 exactly once."""
    from models import Campaign, CampaignLead, Email, SmtpProvider
    from tasks.outreach.defaults import create_campaign
    from tests.tasks.outreach.mailserver import plain_relay

    with plain_relay() as relay:
        port = relay.port
        with session_scope(pg_clean) as session:
            session.add(SmtpProvider(name="relay", host="127.0.0.1", port=port,
                                     security="none", hourly_limit=10_000, daily_limit=10_000))
            campaign_id = create_campaign(
                session, name="cluster", status="active", campaign_type="automated",
                leads_per_day=25, target_industry="salon", target_location="Austin, TX",
                sources=["apollo"], schedule_hour=datetime.now(UTC).hour,
                send_window_start_hour=0, send_window_end_hour=0,
                send_weekdays=list(range(7)))
        search = {"source": "apollo", "industry": "salon", "location": "Austin, TX",
                  "max_results": 60}
        # The day's schedule, compressed into seconds: scheduled runs the workers pick up when
        # due (overlapping ones included).
        generation = [
            cluster.trigger("generate-leads/generate-leads", search),
            cluster.trigger("generate-leads/generate-leads", search, in_seconds=1),
            cluster.trigger("daily-lead-generation/daily-lead-generation", in_seconds=2),
            cluster.trigger("daily-lead-generation/daily-lead-generation", in_seconds=3),
        ]
        states = cluster.wait(generation, timeout=600)
        assert set(states.values()) == {"COMPLETED"}, cluster.logs()
        outreach = [
            cluster.trigger("execute-campaign/execute-campaign", {"campaign_id": campaign_id}),
            cluster.trigger("daily-outreach/daily-outreach", in_seconds=1),
            cluster.trigger("execute-campaign/execute-campaign", {"campaign_id": campaign_id},
                            in_seconds=1),
            cluster.trigger("follow-up-checker/follow-up-checker", in_seconds=2),
        ]
        states = cluster.wait(outreach, timeout=600)
        assert set(states.values()) == {"COMPLETED"}, cluster.logs()
        received = relay.message_ids()

    with session_scope(pg_clean) as session:
        for column in (Lead.email_norm, Lead.domain, Lead.phone_e164):
            dupes = session.execute(select(column, func.count()).where(column.is_not(None))
                                    .group_by(column).having(func.count() > 1)).all()
            assert dupes == [], f"duplicate {column.key}: {dupes[:3]}"
        # Each lead was created by exactly one batch, and both identical searches processed
        # all their 60 records (the second merging into what the first created, or racing it).
        batches = session.scalars(select(LeadBatch)).all()
        leads = session.scalar(select(func.count()).select_from(Lead))
        assert sum(b.leads_generated for b in batches) == leads
        searches = [b for b in batches if b.max_results == 60]
        assert len(searches) == 2
        assert all(b.leads_generated + b.leads_merged + b.rows_rejected == 60
                   for b in searches)
        linked = session.scalar(select(func.count()).select_from(CampaignLead)
                                .where(CampaignLead.campaign_id == campaign_id))
        sent = session.scalars(select(Email.message_id).where(
            Email.campaign_id == campaign_id, Email.status == "sent")).all()
        campaign = session.get_one(Campaign, campaign_id)
    assert 0 < linked <= 25 and campaign.leads_generated == linked
    assert len(received) == len(set(received)), "an email was delivered twice"
    assert sorted(received) == sorted(sent) and len(sent) == campaign.emails_sent
    assert len(sent) == linked - campaign_stopped(pg_clean, campaign_id)


def campaign_stopped(db: str, campaign_id: int) -> int:
    """Linked leads that were not queued (no email, suppressed)."""
    from models import CampaignLead

    with session_scope(db) as session:
        return int(session.scalar(select(func.count()).select_from(CampaignLead).where(
            CampaignLead.campaign_id == campaign_id, CampaignLead.status == "stopped")) or 0)
