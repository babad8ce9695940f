"""Fixtures of the outreach tests: a known tracking key, and helpers that put a campaign,
leads and scheduled emails into a database the way the flows do."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Email, Lead, SequenceStep

NOW = datetime(2025, 3, 3, 10, 0, tzinfo=UTC)
TRACKING_SECRET = "outreach-tests-tracking-secret-0123456789"


@pytest.fixture()
def tracking_secret(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fixed tracking key from settings, so no key file is written and tokens can be
    verified by the test."""
    from leadflow.settings import reset_settings_cache

    monkeypatch.setenv("LEADFLOW_TRACKING_SECRET", TRACKING_SECRET)
    monkeypatch.setenv("LEADFLOW_TRACKING_BASE_URL", "https://t.example.test")
    reset_settings_cache()
    yield TRACKING_SECRET
    reset_settings_cache()


def add_leads(session: Session, count: int, **fields: Any) -> list[int]:
    """`count` leads (a website without online booking unless `fields` say otherwise)."""
    rows = []
    for i in range(count):
        values: dict[str, Any] = {
            "company_name": f"Bella Salon {i}", "contact_name": f"Jane Doe{i}",
            "email": f"owner{i}@bella{i}.example", "website": f"https://bella{i}.example/",
            "domain": f"bella{i}.example", "city": "Austin", "industry": "salon",
            "phone": "+1 512 555 0100", "booking_tools": [], "digital_maturity": 40,
            "booking_keyword_count": 0, "source": "apollo",
        }
        values.update(fields)
        rows.append(Lead(**values))
    session.add_all(rows)
    session.flush()
    return [lead.id for lead in rows]


def schedule_emails(session: Session, campaign_id: int, lead_ids: Sequence[int],
                    step_number: int = 1, scenario: str | None = None,
                    scheduled_at: datetime = NOW) -> list[int]:
    """One `scheduled` email per lead for a step of the campaign's sequence."""
    from models import Campaign

    campaign = session.get(Campaign, campaign_id)
    assert campaign is not None
    step = session.scalar(select(SequenceStep).where(
        SequenceStep.sequence_id == campaign.sequence_id,
        SequenceStep.step_number == step_number))
    assert step is not None
    emails = [Email(campaign_id=campaign_id, lead_id=lead_id, step_id=step.id,
                    step_number=step_number, scenario=scenario, status="scheduled",
                    scheduled_at=scheduled_at, to_email=f"lead{lead_id}@example.test")
              for lead_id in lead_ids]
    session.add_all(emails)
    session.flush()
    return [e.id for e in emails]
