"""The seed's "Daily Lead Generation" job (every day at 9:00): for each active automated
campaign with a daily schedule, generate up to its leads-per-day from its sources, link the
best new matching leads to the campaign and recompute its `leads_generated`."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.generate_leads import generate_leads
from leadflow.settings import get_settings
from tasks.outreach.steps import link_campaign_leads

SOURCES = ("apollo", "google_places", "pdl")


@flow(name="daily-lead-generation", log_prints=False)
def daily_lead_generation() -> list[dict[str, Any]]:
    from models import Campaign
    from models.db import session_scope
    from tasks.outreach.campaign_leads import active_campaign_ids, matching_lead_ids

    log = get_run_logger()
    db = get_settings().database_url
    results = []
    for campaign_id in active_campaign_ids(db, automated_daily_only=True):
        with session_scope(db) as session:
            campaign = session.get_one(Campaign, campaign_id)
            sources = [s for s in campaign.sources if s in SOURCES] or ["apollo"]
            industry = campaign.target_industry or "salon"
            location = campaign.target_location or "Austin, TX"
            per_day = campaign.leads_per_day
        linked = 0
        batches = []
        for source in sources:
            if linked >= per_day:
                break
            # Each source falls back to the next by itself when spent; the loop covers
            # campaigns that name several sources on purpose.
            summary = generate_leads(source=source, industry=industry, location=location,
                                     max_results=per_day - linked)
            batches.append(summary["batch_id"])
            lead_ids = matching_lead_ids(db, campaign_id, per_day - linked)
            linked += link_campaign_leads(campaign_id, lead_ids)
        log.info("campaign %s: %s leads linked from batches %s", campaign_id, linked, batches)
        results.append({"campaign_id": campaign_id, "leads_linked": linked, "batches": batches})
    return results
