"""The Prefect tasks of the outreach flows: thin, retryable wrappers over tasks/outreach.

Each handles a whole campaign or the whole due queue (never one email per task). They are safe
to retry: enqueueing inserts each (campaign, lead, step) row at most once, composing only moves
rows out of `scheduled`, and sending claims rows, so a retried send cannot resend one."""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from typing import Any

from prefect import task

from leadflow.settings import get_settings
from tasks.steps import DB_TASK, NETWORK_TASK


def _db() -> str:
    return get_settings().database_url


def _plain(report: Any) -> dict[str, Any]:
    return asdict(report) if is_dataclass(report) and not isinstance(report, type) else report


def worker_name() -> str:
    """Who holds a claim: host and process, so an operator can tell workers apart."""
    return f"{socket.gethostname()}:{os.getpid()}"


@task(name="link-campaign-leads", **DB_TASK)
def link_campaign_leads(campaign_id: int, per_day: int) -> int:
    """Link the best new leads matching the campaign, up to what is left of its `per_day`
    today (safe to retry); how many are new."""
    from tasks.outreach.campaign_leads import link_todays_leads

    return link_todays_leads(_db(), campaign_id, per_day, datetime.now(UTC))


@task(name="enqueue-sequences", **DB_TASK)
def enqueue_campaign(campaign_id: int, max_leads: int | None = None) -> dict[str, Any]:
    """Route each lead linked to the campaign that has nothing queued yet, and schedule every
    step of its sequence (step 1 due now)."""
    from tasks.outreach.campaign_leads import pending_lead_ids
    from tasks.outreach.queue import enqueue_sequences

    lead_ids = pending_lead_ids(_db(), campaign_id)
    if max_leads is not None:
        lead_ids = lead_ids[:max_leads]
    report = _plain(enqueue_sequences(_db(), campaign_id, lead_ids, datetime.now(UTC)))
    return {"campaign_id": campaign_id, "leads": len(lead_ids), **report}


@task(name="compose-due-emails", **NETWORK_TASK)
def compose_due() -> dict[str, Any]:
    """Compose every email whose step is due (AI personalisation calls happen here)."""
    from tasks.outreach.compose import compose_due_emails

    return _plain(compose_due_emails(_db(), datetime.now(UTC)))


@task(name="send-due-emails", **NETWORK_TASK)
def send_due(max_emails: int | None = None,
             campaign_ids: list[int] | None = None) -> dict[str, Any]:
    """Put expired claims up for review, then claim, send and record due emails until none is
    left inside its sending window and provider limits. `campaign_ids` sends only those
    campaigns' emails (drafts among them included: a manual execution)."""
    from tasks.outreach.queue import drain_queue, release_expired_claims

    reviewed = release_expired_claims(_db(), datetime.now(UTC))
    report = _plain(drain_queue(_db(), worker_name(), max_emails=max_emails,
                                campaign_ids=campaign_ids))
    return {"claims_sent_to_review": reviewed, **report}


def publish_funnel(campaign_ids: list[int], key: str = "campaign-funnel") -> list[dict[str, Any]]:
    """The per-campaign, per-step funnel as a Prefect table artifact (shown on the run page)."""
    from prefect.artifacts import create_table_artifact

    from tasks.outreach.funnel import campaign_funnel

    rows = campaign_funnel(_db(), campaign_ids)
    create_table_artifact(
        key=key,
        table=rows or [{"note": "no emails for these campaigns yet"}],
        description="Emails per campaign and step: waiting, sent, bounced, failed, and human "
        "opens and clicks.",
    )
    return rows
