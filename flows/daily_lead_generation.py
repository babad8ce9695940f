"""The seed's "Daily Lead Generation" job (every day at 9:00): for each active automated
campaign with a daily schedule, generate up to its leads-per-day from its sources, link the
best new matching leads to the campaign and recompute its `leads_generated`.

"Per day" is counted from the links made since midnight in the campaign's time zone, so a
retried, repeated or manual run never links more than leads-per-day in one day. One campaign
failing (a spent quota, an API down) is recorded and does not stop the others."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from flows.generate_leads import SourceName, generate_leads
from leadflow.settings import get_settings
from tasks.outreach.steps import link_campaign_leads
from tasks.sources import SOURCES


@flow(name="daily-lead-generation", log_prints=False)
def daily_lead_generation() -> list[dict[str, Any]]:
    from models import Campaign
    from models.db import session_scope
    from tasks.outreach.campaign_leads import (
        active_campaign_ids,
        linked_since_local_midnight,
    )

    log = get_run_logger()
    db = get_settings().database_url
    results: list[dict[str, Any]] = []
    for campaign_id in active_campaign_ids(db, automated_daily_only=True):
        with session_scope(db) as session:
            campaign = session.get_one(Campaign, campaign_id)
            sources = [s for s in campaign.sources if s in SOURCES]
            industry, location = campaign.target_industry, campaign.target_location
            per_day = campaign.leads_per_day
        result: dict[str, Any] = {"campaign_id": campaign_id, "leads_linked": 0, "batches": []}
        results.append(result)
        if not (sources and industry and location):
            result["skipped"] = "needs sources, a target industry and a target location"
            log.warning("campaign %s skipped: %s", campaign_id, result["skipped"])
            continue
        try:
            for source in sources:
                wanted = per_day - linked_since_local_midnight(db, campaign_id,
                                                               datetime.now(UTC))
                if wanted <= 0:
                    break
                # Each source falls back to the next by itself when spent; the loop covers
                # campaigns that name several sources on purpose.
                summary = generate_leads(source=cast(SourceName, source), industry=industry,
                                         location=location, max_results=wanted)
                result["batches"].append(summary["batch_id"])
                result["leads_linked"] += link_campaign_leads(campaign_id, per_day)
        except Exception as exc:  # one campaign's failure must not starve the others
            result["error"] = f"{type(exc).__name__}: {exc}"[:300]
            log.error("campaign %s: lead generation failed: %s", campaign_id, result["error"])
            continue
        log.info("campaign %s: %s leads linked from batches %s", campaign_id,
                 result["leads_linked"], result["batches"])
    _publish(results)
    failed = [r["campaign_id"] for r in results if "error" in r]
    if failed:
        raise RuntimeError(f"lead generation failed for campaigns {failed} (the others ran)")
    return results


def _publish(results: list[dict[str, Any]]) -> None:
    """What each campaign got, or why not, as a table artifact on the run's page (published
    before a failed campaign fails the run); each batch's summary is on its subflow's run."""
    create_table_artifact(
        key="daily-lead-generation",
        table=[{"campaign_id": r["campaign_id"], "leads_linked": r["leads_linked"],
                "batches": ", ".join(map(str, r["batches"])) or "-",
                "outcome": (f"failed: {r['error']}" if "error" in r
                            else f"skipped: {r['skipped']}" if "skipped" in r else "ok")}
               for r in results] or [{"note": "no active automated daily campaign"}],
        description="Leads linked to each automated daily campaign by this run.",
    )
