"""The seed's hourly "Daily Outreach" job: every active daily campaign whose scheduled hour has
come in its own time zone contacts its new leads (route, schedule the sequence, send step 1).

One campaign that cannot be enqueued (a sequence without steps, ...) is recorded and does not
stop the others, nor the sending of what is due; the run then ends failed, naming it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from leadflow.settings import get_settings
from tasks.outreach.steps import compose_due, enqueue_campaign, publish_funnel, send_due


def hours_served(now: datetime, schedule_timezone: str) -> list[datetime]:
    """The hours (UTC) whose campaigns the run scheduled at `now` contacts: its own, after any
    its schedule left without a run. Prefect's hourly cron fires on each new wall-clock hour
    of the schedule's time zone, not each elapsed hour: the day that zone's clocks go back,
    an hour passes without a run (America/New_York: 05:00 then 07:00 UTC), and the campaigns
    whose outreach hour it was would wait a whole day. The previous run is the one an hour
    earlier on the schedule's wall clock (at most an hour earlier in UTC)."""
    now = datetime.fromtimestamp(now.timestamp(), UTC)  # whatever type Prefect's runtime gave
    zone = ZoneInfo(schedule_timezone)
    wall_before = now.astimezone(zone).replace(tzinfo=None) - timedelta(hours=1)
    previous = min(wall_before.replace(tzinfo=zone).astimezone(UTC), now - timedelta(hours=1))
    hours = []
    hour = previous + timedelta(hours=1)
    while hour < now:
        hours.append(hour)
        hour += timedelta(hours=1)
    return [*hours, now]


@flow(name="daily-outreach", log_prints=False)
def daily_outreach() -> dict[str, Any]:
    from tasks.outreach.campaign_leads import campaigns_due

    log = get_run_logger()
    settings = get_settings()
    # The hour this run was scheduled for: a run that starts late still serves its own hour.
    scheduled = flow_run.scheduled_start_time
    now = scheduled.astimezone(UTC) if scheduled else datetime.now(UTC)
    due = list(dict.fromkeys(
        campaign_id for hour in hours_served(now, settings.schedule_timezone)
        for campaign_id in campaigns_due(settings.database_url, hour)))
    if not due:
        log.info("no campaign has its outreach hour now")
    enqueued = []
    failed: dict[int, str] = {}
    for campaign_id in due:
        try:
            enqueued.append(enqueue_campaign(campaign_id))
        except Exception as exc:  # one campaign's failure must not starve the others
            failed[campaign_id] = f"{type(exc).__name__}: {exc}"[:300]
            log.error("campaign %s: enqueueing failed: %s", campaign_id, failed[campaign_id])
    composed = compose_due()
    sent = send_due()  # everything due, these campaigns' first emails included
    log.info("campaigns %s: composed %s, sent %s", due, composed, sent)
    funnel = publish_funnel(due, key="daily-outreach-funnel") if due else []
    if failed:
        raise RuntimeError(f"enqueueing failed for campaigns {sorted(failed)} (the others ran): "
                           + "; ".join(failed.values()))
    return {"campaigns": due, "enqueued": enqueued, "composed": composed, "sent": sent,
            "funnel": funnel}
