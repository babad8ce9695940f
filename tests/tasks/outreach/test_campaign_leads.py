"""Which campaigns the hourly outreach serves: each active daily campaign once per local day,
at its scheduled hour in its own time zone, daylight saving changes included."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update

from models import Campaign
from models.db import session_scope
from tasks.outreach.campaign_leads import campaigns_due
from tests.tasks.outreach.mailserver import Outreach


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
