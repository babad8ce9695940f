"""The seed's "Follow-Up Checker" (every 6 hours): compose and send every follow-up whose delay
since the previous step has passed (contacted -> follow_up_1 -> follow_up_2).

A lead that replied, unsubscribed, bounced or was suppressed has no pending step left: those
events cancel its sequence, and suppression is checked again at send time."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from tasks.outreach.steps import compose_due, publish_funnel, send_due


@flow(name="follow-up-checker", log_prints=False)
def follow_up_checker() -> dict[str, Any]:
    from leadflow.settings import get_settings
    from tasks.outreach.campaign_leads import active_campaign_ids

    log = get_run_logger()
    composed = compose_due()
    sent = send_due()
    log.info("follow-ups composed %s, sent %s", composed, sent)
    campaigns = active_campaign_ids(get_settings().database_url)
    funnel = publish_funnel(campaigns, key="follow-up-funnel") if campaigns else []
    return {"composed": composed, "sent": sent, "funnel": funnel}
