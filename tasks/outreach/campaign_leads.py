"""Which leads a campaign contacts: linking leads to a campaign (the seed's `campaignLeads`),
finding the leads that match its targeting, and the campaigns whose outreach hour has come."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from models import Campaign, CampaignLead, Email, Lead
from models.db import insert_ignore, session_scope, take_write_lock

log = logging.getLogger(__name__)


LINK_LOCK_KEY = 0x1EAD11C  # pg_advisory_xact_lock key: one linking of leads at a time


def link_leads(db_url: str, campaign_id: int, lead_ids: Sequence[int]) -> int:
    """Link these leads to a campaign (idempotent) and recompute its `leads_generated`.
    Returns how many links are new."""
    with session_scope(db_url) as session:
        _lock_links(session)
        return _link(session, campaign_id, lead_ids)


def link_matching_leads(db_url: str, campaign_id: int, limit: int) -> int:
    """Link up to `limit` of the best new leads that match the campaign (`link_matching`).
    Returns how many links are new."""
    with session_scope(db_url) as session:
        return link_matching(session, campaign_id, limit)


def link_matching(session: Session, campaign_id: int, limit: int) -> int:
    """In the caller's transaction: link up to `limit` new leads with an email that fit the
    campaign's industry and location and are not yet in any campaign, best score first. The
    choice and the links are one critical section (an advisory lock; SQLite's write lock), so
    two campaigns linking at once never both take a lead."""
    _lock_links(session)
    campaign = session.get_one(Campaign, campaign_id)
    in_a_campaign = select(CampaignLead.lead_id)
    query = select(Lead.id).where(
        Lead.status == "new", Lead.email_norm.is_not(None), Lead.id.not_in(in_a_campaign)
    )
    if campaign.target_industry:
        query = query.where(func.lower(Lead.industry) == campaign.target_industry.lower())
    if campaign.target_location:
        city = campaign.target_location.split(",")[0].strip().lower()
        query = query.where(func.lower(Lead.city) == city)
    query = query.order_by(Lead.quality_score.desc().nulls_last(), Lead.id).limit(limit)
    return _link(session, campaign_id, list(session.scalars(query)))


def _lock_links(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LINK_LOCK_KEY})
    else:
        take_write_lock(session)


def _link(session: Session, campaign_id: int, lead_ids: Sequence[int]) -> int:
    # The count before must be the one this insert adds to (the caller holds the lock).
    before = _linked_count(session, campaign_id)
    rows = [{"campaign_id": campaign_id, "lead_id": lead_id, "status": "pending",
             "routing": {}} for lead_id in dict.fromkeys(lead_ids)]
    for start in range(0, len(rows), 1000):
        insert_ignore(session, CampaignLead.__table__, rows[start : start + 1000],
                      ["campaign_id", "lead_id"])
    after = _linked_count(session, campaign_id)
    session.execute(update(Campaign).where(Campaign.id == campaign_id)
                    .values(leads_generated=after))
    return after - before


def _linked_count(session: Session, campaign_id: int) -> int:
    return int(session.scalar(select(func.count()).select_from(CampaignLead)
                              .where(CampaignLead.campaign_id == campaign_id)) or 0)


def pending_lead_ids(db_url: str, campaign_id: int) -> list[int]:
    """Leads linked to the campaign that have no email queued yet (new to the campaign)."""
    with session_scope(db_url) as session:
        queued = select(Email.lead_id).where(Email.campaign_id == campaign_id)
        return list(session.scalars(
            select(CampaignLead.lead_id).where(
                CampaignLead.campaign_id == campaign_id,
                CampaignLead.status == "pending",
                CampaignLead.lead_id.not_in(queued),
            ).order_by(CampaignLead.lead_id)
        ))


def campaigns_due(db_url: str, now: datetime) -> list[int]:
    """Active daily campaigns whose scheduled local hour is the hour of `now` in their own time
    zone (the seed's hourly check `currentHour == campaign.scheduleTime`; on a daylight saving
    change, an hour the clocks skip is served by the next run, one they repeat only once).
    Pass the run's scheduled time, not the clock: a run that starts late still serves its own
    hour. A campaign with an unknown time zone is skipped (and logged), never the others."""
    due = []
    with session_scope(db_url) as session:
        query = select(Campaign).where(Campaign.status == "active",
                                       Campaign.schedule_type == "daily")
        for c in session.scalars(query.order_by(Campaign.id)):
            try:
                zone = ZoneInfo(c.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                log.warning("campaign %s: unknown time zone %r, skipped", c.id, c.timezone)
                continue
            if _outreach_hour_has_come(now, zone, c.schedule_hour):
                due.append(c.id)
    return due


def _outreach_hour_has_come(now: datetime, zone: ZoneInfo, hour: int) -> bool:
    """Whether the hourly run at `now` serves a campaign scheduled at local `hour`, once per
    local day: the local hour is that hour (its first pass when clocks go back), or clocks went
    forward over it since the previous hourly run (02:00 does not exist that day)."""
    local = now.astimezone(zone)
    if local.hour == hour:
        return local.fold == 0
    before = (now - timedelta(hours=1)).astimezone(zone)
    return before.date() == local.date() and before.hour < hour < local.hour


def linked_since_local_midnight(db_url: str, campaign_id: int, now: datetime) -> int:
    """Leads linked to the campaign since midnight in its time zone: what today's
    leads-per-day has already used, whatever run linked them."""
    with session_scope(db_url) as session:
        return _linked_today(session, campaign_id, now)


def link_todays_leads(db_url: str, campaign_id: int, per_day: int, now: datetime) -> int:
    """Link the best matching new leads up to what is left of the campaign's `per_day` today
    (`link_matching`). What is left is counted inside the lock, so a retry after a commit
    whose answer was lost links nothing more. Returns how many links are new."""
    with session_scope(db_url) as session:
        _lock_links(session)
        left = per_day - _linked_today(session, campaign_id, now)
        return link_matching(session, campaign_id, left) if left > 0 else 0


def _linked_today(session: Session, campaign_id: int, now: datetime) -> int:
    campaign = session.get_one(Campaign, campaign_id)
    local = now.astimezone(ZoneInfo(campaign.timezone))
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return int(session.scalar(
        select(func.count()).select_from(CampaignLead).where(
            CampaignLead.campaign_id == campaign_id,
            CampaignLead.added_at >= midnight.astimezone(UTC))) or 0)


def active_campaign_ids(db_url: str, *, automated_daily_only: bool = False) -> list[int]:
    """Active campaigns; with `automated_daily_only`, those the daily lead generation feeds."""
    with session_scope(db_url) as session:
        query = select(Campaign.id).where(Campaign.status == "active")
        if automated_daily_only:
            query = query.where(Campaign.campaign_type == "automated",
                                Campaign.schedule_type == "daily")
        return list(session.scalars(query.order_by(Campaign.id)))
