"""Flow 2 of the design, "Execute Campaign": for each lead linked to the campaign and not yet
contacted, choose a routing scenario, schedule every step of its sequence, compose the first
email and send it; leads move to `contacted` and the campaign's counts are recomputed.

Sending drains this campaign's due emails through claims (a draft campaign too: executing it
is the user's decision), so two runs at once (or a retry) never send an email twice; emails
outside the campaign's sending window wait for the next outreach or follow-up run."""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow, get_run_logger
from pydantic import Field

from tasks.outreach.steps import compose_due, enqueue_campaign, publish_funnel, send_due


@flow(name="execute-campaign", flow_run_name="execute-campaign-{campaign_id}", log_prints=False)
def execute_campaign(
    campaign_id: Annotated[int, Field(ge=1)],
    max_leads: Annotated[int | None, Field(ge=1, le=100_000)] = None,
) -> dict[str, Any]:
    """Contact the campaign's new leads (at most `max_leads`) and send what is due."""
    log = get_run_logger()
    queued = enqueue_campaign(campaign_id, max_leads)
    log.info("campaign %s: %s", campaign_id, queued)
    composed = compose_due()
    log.info("composed: %s", composed)
    sent = send_due(campaign_ids=[campaign_id])
    log.info("sent: %s", sent)
    funnel = publish_funnel([campaign_id])
    return {"enqueued": queued, "composed": composed, "sent": sent, "funnel": funnel}
