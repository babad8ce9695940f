"""Leads, where each lead came from, and the batches that produced them (the seed's `leads`,
`leadBatches`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, JSONType, utcnow


class LeadBatch(Base):
    """One run of lead generation or one CSV import."""

    __tablename__ = "lead_batches"
    __table_args__ = {"comment": "One lead-generation run or CSV import and its summary."}

    id: Mapped[int] = mapped_column(primary_key=True)
    # Idempotency key: a retried or re-run flow run finds its own batch instead of a new one.
    run_key: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(20), comment="generate | import_csv")
    source: Mapped[str] = mapped_column(String(40), comment="Requested source (apollo, ...)")
    sources_used: Mapped[list[str]] = mapped_column(JSONType, default=list)
    industry: Mapped[str | None] = mapped_column(String(100))
    location: Mapped[str | None] = mapped_column(String(200))
    max_results: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(
        String(20), default="running", comment="running|done|failed"
    )
    leads_generated: Mapped[int] = mapped_column(Integer, default=0, comment="New leads inserted")
    leads_merged: Mapped[int] = mapped_column(Integer, default=0, comment="Duplicates merged")
    rows_rejected: Mapped[int] = mapped_column(Integer, default=0, comment="Rows quarantined")
    avg_score: Mapped[float | None] = mapped_column(Float)
    tier_distribution: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    validation: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    notes: Mapped[list[str]] = mapped_column(JSONType, default=list, comment="Fallbacks, warnings")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class Lead(Base):
    """A business we may contact, merged across every source that saw it."""

    __tablename__ = "leads"
    __table_args__ = (
        Index("ix_leads_email_norm", "email_norm"),
        Index("ix_leads_domain", "domain"),
        Index("ix_leads_phone_e164", "phone_e164"),
        # Blocks for fuzzy name matching: same city and name block, or same city and address.
        Index("ix_leads_city_key_name_block", "city_key", "name_block"),
        Index("ix_leads_city_key_address_key", "city_key", "address_key"),
        Index("ix_leads_status", "status"),
        Index("ix_leads_tier_score", "tier", "quality_score"),
        {"comment": "One business (lead), deduplicated across sources and batches."},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    company_name: Mapped[str] = mapped_column(String(300))
    contact_name: Mapped[str | None] = mapped_column(String(200))
    contact_title: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    email_norm: Mapped[str | None] = mapped_column(String(320), comment="Lower-cased email")
    email_status: Mapped[str | None] = mapped_column(
        String(20),
        comment="Hunter status: valid, invalid, accept_all, webmail, disposable, unknown",
    )
    email_confidence: Mapped[int | None] = mapped_column(Integer)
    phone: Mapped[str | None] = mapped_column(String(50), comment="Phone as given by the source")
    phone_e164: Mapped[str | None] = mapped_column(String(20))
    website: Mapped[str | None] = mapped_column(String(500))
    domain: Mapped[str | None] = mapped_column(String(255), comment="Registrable domain")
    address: Mapped[str | None] = mapped_column(String(300))
    city: Mapped[str | None] = mapped_column(String(100))
    state: Mapped[str | None] = mapped_column(String(100))
    postal_code: Mapped[str | None] = mapped_column(String(20))
    country: Mapped[str | None] = mapped_column(String(100))
    industry: Mapped[str | None] = mapped_column(String(100))
    linkedin_url: Mapped[str | None] = mapped_column(String(500))
    name_key: Mapped[str | None] = mapped_column(String(300), comment="Normalised company name")
    city_key: Mapped[str | None] = mapped_column(String(100), comment="Normalised city")
    name_block: Mapped[str | None] = mapped_column(
        String(100), comment="Dedupe blocking key: first distinctive word of name_key"
    )
    address_key: Mapped[str | None] = mapped_column(
        String(300), comment="Street number and normalised street, without unit"
    )
    # What the website analysis found (copied from website_analyses at load time).
    booking_tools: Mapped[list[str]] = mapped_column(JSONType, default=list)
    has_contact_form: Mapped[bool | None]
    booking_keyword_count: Mapped[int | None] = mapped_column(Integer)
    digital_maturity: Mapped[int | None] = mapped_column(Integer, comment="0-100")
    quality_score: Mapped[int | None] = mapped_column(Integer, comment="0-100 lead score")
    tier: Mapped[str | None] = mapped_column(String(10), comment="hot | warm | cold")
    score_breakdown: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    source: Mapped[str] = mapped_column(String(40), comment="First source that found the lead")
    sources: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # new | contacted | follow_up_1 | follow_up_2 | replied | unsubscribed | bounced
    status: Mapped[str] = mapped_column(String(20), default="new")
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("lead_batches.id"))
    last_contacted_at: Mapped[datetime | None]
    # Engagement across all campaigns, recomputed from email_events (human events only).
    emails_opened: Mapped[int] = mapped_column(
        Integer, default=0, server_default="0", comment="Emails opened"
    )
    emails_clicked: Mapped[int] = mapped_column(
        Integer, default=0, server_default="0", comment="Emails clicked"
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    source_records: Mapped[list[LeadSourceRecord]] = relationship(back_populates="lead")


class LeadSourceRecord(Base):
    """Provenance: each source record that was merged into a lead. (source, external_id) is
    unique, which is what makes a re-run or retried load idempotent."""

    __tablename__ = "lead_source_records"
    __table_args__ = (
        UniqueConstraint("source", "external_id"),
        {"comment": "Every source record that contributed to a lead (provenance)."},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(40))
    external_id: Mapped[str] = mapped_column(String(200))
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("lead_batches.id"))
    # The raw vendor record as JSON text (json, not jsonb): written once per record, read
    # whole, never queried inside, and jsonb's parsing costs ~40% of the load's COPY.
    payload: Mapped[dict[str, Any]] = mapped_column(JSON(), default=dict)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)

    lead: Mapped[Lead] = relationship(back_populates="source_records")


class QuarantinedRow(Base):
    """A row that failed a rule; kept with its reason so nothing is lost."""

    __tablename__ = "quarantined_rows"
    __table_args__ = (
        UniqueConstraint("fingerprint"),
        {"comment": "Rejected input rows with the rule they failed."},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("lead_batches.id"), index=True)
    source: Mapped[str] = mapped_column(String(40))
    stage: Mapped[str] = mapped_column(String(40), comment="normalise | enrich | validate | csv")
    rule: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text)
    row_ref: Mapped[str | None] = mapped_column(String(200), comment="Line number or source id")
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    fingerprint: Mapped[str] = mapped_column(
        String(64), comment="Hash of batch, stage, rule and row: a retried step adds no copy"
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
