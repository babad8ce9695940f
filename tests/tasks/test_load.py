"""The load step on PostgreSQL: inserts, merges into existing leads, and is idempotent."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import func, select

from models import Lead, LeadSourceRecord
from models.db import session_scope
from tasks.batches import start_batch
from tasks.load import load_leads


def frame(rows: list[dict]) -> pd.DataFrame:
    base = {
        "company_name": None, "email": None, "email_norm": None, "phone": None,
        "phone_e164": None, "website": None, "domain": None, "city": None,
        "quality_score": 50, "tier": "warm", "score_breakdown": {}, "booking_tools": [],
        "raw": {}, "existing_lead_id": pd.NA,
    }
    return pd.DataFrame([{**base, **r} for r in rows])


def count(session, model) -> int:  # type: ignore[no-untyped-def]
    return session.scalar(select(func.count()).select_from(model))


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("pg_clean" if request.param == "postgresql" else "sqlite_url")


def test_loading_the_same_batch_twice_creates_no_duplicate(db_url: str) -> None:
    pg_clean = db_url
    rows = frame([
        {"source": "apollo", "source_record_id": "a1", "company_name": "Bella Salon",
         "cluster_id": 0, "email": "x@bella.com"},
        {"source": "apollo", "source_record_id": "a2", "company_name": "Nova Spa", "cluster_id": 1},
    ])
    with session_scope(pg_clean) as s:
        batch = start_batch(s, "run-1", "generate", "apollo", "salon", "Austin, TX", 10)
        first = load_leads(s, rows, batch)
    with session_scope(pg_clean) as s:
        second = load_leads(s, rows, batch)  # what a retried task does
    assert (first.inserted, first.merged) == (2, 0)
    assert (second.inserted, second.merged) == (0, 2)
    assert first.lead_ids == second.lead_ids
    with session_scope(pg_clean) as s:
        assert count(s, Lead) == 2
        assert count(s, LeadSourceRecord) == 2


def test_rows_of_one_cluster_become_one_lead_with_every_source(pg_clean: str) -> None:
    rows = frame([
        {"source": "apollo", "source_record_id": "a1", "company_name": "Bella Salon LLC",
         "cluster_id": 7, "quality_score": 80, "tier": "hot"},
        {"source": "google_places", "source_record_id": "g1", "company_name": "Bella Salon",
         "cluster_id": 7, "phone": "(512) 555-0142", "phone_e164": "+15125550142"},
    ])
    with session_scope(pg_clean) as s:
        result = load_leads(s, rows, None)
    assert (result.inserted, result.merged) == (1, 1)
    with session_scope(pg_clean) as s:
        lead = s.scalars(select(Lead)).one()
        assert lead.company_name == "Bella Salon LLC"  # from the best-scored row
        assert lead.phone_e164 == "+15125550142"  # gap filled from the other row
        assert lead.sources == ["apollo", "google_places"]
        assert count(s, LeadSourceRecord) == 2


def test_a_match_merges_into_the_existing_lead_filling_only_empty_fields(pg_clean: str) -> None:
    with session_scope(pg_clean) as s:
        load_leads(s, frame([{"source": "apollo", "source_record_id": "a1",
                              "company_name": "Bella Salon", "cluster_id": 0,
                              "city": "Austin", "quality_score": 40, "tier": "warm"}]), None)
        lead_id = s.scalar(select(Lead.id))
    incoming = frame([{"source": "pdl", "source_record_id": "p9", "company_name": "bella salon",
                       "city": "Dallas", "email": "owner@bella.com", "cluster_id": 0,
                       "existing_lead_id": lead_id, "quality_score": 75, "tier": "hot"}])
    with session_scope(pg_clean) as s:
        result = load_leads(s, incoming, None)
    assert (result.inserted, result.merged) == (0, 1)
    with session_scope(pg_clean) as s:
        lead = s.get_one(Lead, lead_id)
        assert lead.company_name == "Bella Salon"  # kept, not overwritten
        assert lead.city == "Austin"
        assert lead.email == "owner@bella.com"  # filled
        assert (lead.quality_score, lead.tier) == (75, "hot")  # the better score wins
        assert lead.sources == ["apollo", "pdl"]
        assert count(s, Lead) == 1
