"""Which campaigns the hourly outreach serves (each active daily campaign once per local day,
at its scheduled hour in its own time zone, daylight saving changes included), and which leads
a campaign links (the best matching new ones, never a lead another campaign has)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update

from models import Campaign, CampaignLead, Lead
from models.db import session_scope
from tasks.outreach.campaign_leads import (
    campaigns_due,
    link_matching,
    link_matching_leads,
    link_todays_leads,
)
from tasks.outreach.defaults import create_campaign
from tests.tasks.outreach.conftest import add_leads
from tests.tasks.outreach.mailserver import Outreach
from tests.writers import writer_committing_soon


def _due_hours(db: str, timezone: str, day: date) -> list[datetime]:
    """The hourly runs (on the hour, UTC) of one local calendar day (23 or 25 hours long on
    a daylight saving change) that find the campaign due."""
    zone = ZoneInfo(timezone)
    start = datetime.combine(day, time(), zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(), zone).astimezone(UTC)
    runs = [start + timedelta(hours=h) for h in range(int((end - start).total_seconds()) // 3600)]
    return [run for run in runs if campaigns_due(db, run)]


@pytest.mark.parametrize(("timezone", "hour", "day", "expected_utc"), [
    # An ordinary day: 09:00 in New York is 14:00 UTC in March before the change.
    ("America/New_York", 9, date(2025, 3, 5), [datetime(2025, 3, 5, 14)]),
    # Spring forward: 02:00 never happens on 9 March; the run at 03:00 local (07:00 UTC)
    # serves it instead of skipping the day.
    ("America/New_York", 2, date(2025, 3, 9), [datetime(2025, 3, 9, 7)]),
    ("Europe/Berlin", 2, date(2025, 3, 30), [datetime(2025, 3, 30, 1)]),
    # Fall back: 01:00 happens twice on 2 November; served once, the first time.
    ("America/New_York", 1, date(2025, 11, 2), [datetime(2025, 11, 2, 5)]),
])
def test_a_daily_campaign_is_due_once_a_local_day_across_daylight_saving_changes(
    pg_clean: str, timezone: str, hour: int, day: date, expected_utc: list[datetime],
) -> None:
    cid = Outreach(pg_clean).campaign(timezone=timezone)
    with session_scope(pg_clean) as s:
        s.execute(update(Campaign).where(Campaign.id == cid)
                  .values(schedule_type="daily", schedule_hour=hour))

    assert _due_hours(pg_clean, timezone, day) == [t.replace(tzinfo=UTC) for t in expected_utc]


def test_linking_takes_the_best_matching_new_leads_not_in_any_campaign(db_url: str) -> None:
    with session_scope(db_url) as session:
        campaign = create_campaign(session, name="Austin salons", target_industry="Salon",
                                   target_location="Austin, TX")
        # The best has the higher id: the choice must go by score, not by insertion order.
        good, best, taken = add_leads(session, 3)
        for lead_id, score in ((best, 90), (good, 60), (taken, 95)):
            session.execute(update(Lead).where(Lead.id == lead_id)
                            .values(quality_score=score, email_norm=f"o{lead_id}@x.example"))
        add_leads(session, 1, city="Dallas", email_norm="dallas@x.example")
        add_leads(session, 1, industry="dentist", email_norm="dentist@x.example")
        add_leads(session, 1, email=None)
        other = create_campaign(session, name="other")
        session.add(CampaignLead(campaign_id=other, lead_id=taken, status="pending",
                                 routing={}))

    assert link_matching_leads(db_url, campaign, 1) == 1
    with session_scope(db_url) as session:
        assert session.scalars(select(CampaignLead.lead_id)
                               .where(CampaignLead.campaign_id == campaign)).all() == [best]
    assert link_matching_leads(db_url, campaign, 10) == 1
    with session_scope(db_url) as session:
        linked = session.scalars(select(CampaignLead.lead_id)
                                 .where(CampaignLead.campaign_id == campaign)).all()
        assert sorted(linked) == sorted([best, good])
        assert session.get_one(Campaign, campaign).leads_generated == 2


def test_two_campaigns_linking_at_once_never_both_take_a_lead(db_url: str) -> None:
    """The second linker chose while the first's links were not committed: without one
    critical section for the choice and the links, it took the same leads."""
    with session_scope(db_url) as session:
        first = create_campaign(session, name="first", target_industry="salon")
        second = create_campaign(session, name="second", target_industry="salon")
        for lead_id in add_leads(session, 4):
            session.execute(update(Lead).where(Lead.id == lead_id)
                            .values(email_norm=f"o{lead_id}@x.example"))

    with writer_committing_soon(db_url, lambda s: link_matching(s, first, 3)):
        assert link_matching_leads(db_url, second, 3) == 1
    with session_scope(db_url) as session:
        per_lead = session.execute(select(CampaignLead.lead_id, func.count())
                                   .group_by(CampaignLead.lead_id)).all()
        assert len(per_lead) == 4
        assert all(n == 1 for _, n in per_lead)


def test_todays_links_stop_at_the_leads_per_day_however_often_they_are_retried(
    db_url: str,
) -> None:
    """The daily run's link task is retried after a commit whose answer was lost: what is left
    of the day is counted inside the lock, so the retry links nothing more. Links made earlier
    today count; yesterday's do not."""
    now = datetime.now(UTC)  # links are stamped with the database's clock
    with session_scope(db_url) as session:
        campaign = create_campaign(session, name="Austin salons", target_industry="salon",
                                   timezone="UTC")
        leads = add_leads(session, 10)
        for lead_id in leads:
            session.execute(update(Lead).where(Lead.id == lead_id)
                            .values(email_norm=f"o{lead_id}@x.example"))
        for lead_id, added in ((leads[0], now - timedelta(days=1)), (leads[1], now)):
            session.add(CampaignLead(campaign_id=campaign, lead_id=lead_id, status="pending",
                                     routing={}, added_at=added))

    assert link_todays_leads(db_url, campaign, 4, now) == 3  # 1 already linked today
    assert link_todays_leads(db_url, campaign, 4, now) == 0  # the retry
    assert link_todays_leads(db_url, campaign, 4, now + timedelta(days=1)) == 4
    with session_scope(db_url) as session:
        assert session.scalar(select(func.count()).select_from(CampaignLead)) == 2 + 3 + 4
