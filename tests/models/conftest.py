"""A small warehouse dataset whose view figures are worked out by hand in test_views.py: one
campaign with a three-step sequence and a second with no email yet, leads from two sources and
tiers, emails in several statuses, human and machine-flagged events, and metered API calls
either side of a month boundary."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import models as m
from models.db import session_scope


def at(day: int, hour: int = 0, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def _lead(lead_id: int, source: str, tier: str | None, score: int | None, created: datetime,
          **extra: object) -> m.Lead:
    return m.Lead(id=lead_id, company_name=f"Business {lead_id}", source=source, sources=[source],
                  tier=tier, quality_score=score, created_at=created, **extra)


def _email(email_id: int, lead: int, step: m.SequenceStep, status: str,
           sent_at: datetime | None) -> m.Email:
    return m.Email(id=email_id, campaign_id=1, lead_id=lead, step_id=step.id,
                   step_number=step.step_number, status=status, scheduled_at=at(2, 9),
                   to_email=f"owner{lead}@business{lead}.example", sent_at=sent_at)


def _event(email_id: int, kind: str, when: datetime, machine: bool = False) -> m.EmailEvent:
    return m.EmailEvent(email_id=email_id, kind=kind, occurred_at=when, is_machine=machine,
                        machine_reason="proxy" if machine else None)


def insert_known_dataset(url: str) -> None:
    with session_scope(url) as s:
        seq = m.Sequence(id=1, name="three steps")
        s.add(seq)
        s.flush()
        steps = [m.SequenceStep(id=n, sequence_id=1, step_number=n, name=f"Step {n}",
                                delay_days=0 if n == 1 else 3, lead_status="contacted")
                 for n in (1, 2, 3)]
        s.add_all(steps)
        for cid, name in ((1, "Austin salons"), (2, "Dallas clinics")):
            s.add(m.Campaign(id=cid, name=name, sequence_id=1, sender_name="Sam",
                             sender_email="sam@leadflow.example",
                             sender_postal_address="1 Main St, Austin, TX"))
        s.add_all([
            # 23:30 UTC is 03-02 in Auckland: the views must keep it on 03-01.
            _lead(1, "apollo", "hot", 80, at(1, 10), email="a1@b1.example",
                  email_status="valid", website="https://b1.example", booking_tools=["calendly"]),
            _lead(2, "apollo", "hot", 90, at(1, 23, 30), email="a2@b2.example",
                  email_status="valid", website="https://b2.example", booking_tools=[]),
            _lead(3, "apollo", "warm", 50, at(2, 8)),
            _lead(4, "google_places", "warm", 60, at(2, 8), email="a4@b4.example",
                  email_status="accept_all", website="https://b4.example",
                  booking_tools=["square"]),
            # booking_tools JSON null: must count as no booking tool, not break the view.
            _lead(5, "google_places", "cold", 20, at(2, 8), email="a5@b5.example",
                  email_status="invalid", booking_tools=None),
            _lead(6, "google_places", None, None, at(2, 8)),
        ])
        s.flush()
        s1, s2 = steps[0], steps[1]
        s.add_all([
            _email(1, 1, s1, "sent", at(2, 9)),
            _email(2, 2, s1, "sent", at(2, 9, 5)),
            _email(3, 4, s1, "sent", at(2, 9, 10)),
            _email(4, 5, s1, "bounced", at(2, 9, 15)),
            _email(5, 1, s2, "sent", at(5, 9)),
            _email(6, 2, s2, "queued", None),
            _email(7, 4, s2, "sent", at(5, 9, 2)),
        ])
        s.flush()
        s.add_all([
            _event(1, "open", at(2, 9, 1), machine=True),  # the mail provider's image proxy
            _event(1, "open", at(2, 10)),
            _event(1, "click", at(2, 10, 1)),
            _event(1, "reply", at(3, 8)),
            _event(2, "open", at(2, 9, 6), machine=True),  # only machines: no human open
            _event(2, "click", at(2, 9, 6), machine=True),
            _event(3, "open", at(2, 11)),
            _event(3, "unsubscribe", at(2, 12)),
            _event(5, "bounce", at(5, 9, 30)),  # accepted, then bounced
            _event(7, "open", at(5, 10)),
            _event(7, "open", at(6, 10)),
        ])
        s.add_all([
            m.ApiConfig(source="apollo", monthly_limit=1000, cost_per_unit=0.01),
            m.ApiConfig(source="google_places", monthly_limit=500, cost_per_unit=0.03),
            m.ApiConfig(source="hunter", monthly_limit=100, cost_per_unit=0.0375),
            m.ApiUsage(source="apollo", endpoint="search", units=300, cost=3.0,
                       called_at=at(1, 10)),
            m.ApiUsage(source="apollo", endpoint="search", units=200, cost=2.0,
                       called_at=at(31, 23, 59)),
            m.ApiUsage(source="apollo", endpoint="search", units=100, cost=1.0,
                       called_at=at(1, 0, 0, month=4)),
            m.ApiUsage(source="google_places", endpoint="text-search", units=50, cost=1.5,
                       called_at=at(10, 12)),
            m.ApiUsage(source="hunter", endpoint="domain-search", units=20, cost=0.75,
                       called_at=at(2, 8)),
            m.ApiUsage(source="pdl", endpoint="company-search", units=10, cost=0.5,
                       called_at=at(3, 8)),
        ])


@pytest.fixture(params=["pg_clean", "sqlite_url"])
def warehouse_url(request: pytest.FixtureRequest) -> str:
    """A migrated database (PostgreSQL, then SQLite) holding the known dataset."""
    url: str = request.getfixturevalue(request.param)
    insert_known_dataset(url)
    return url
