"""Leads, where each lead came from, and the batches that produced them (the seed's `leads`,
`leadBatches`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, JSONType, utcnow

# Percent of each heap page that inserts fill (PostgreSQL), leaving room for updates.
LEADS_FILLFACTOR = 90


class LeadBatch(Base):
    """One run of lead generation or one CSV import."""

    __tablename__ = "lead_batches"
    __table_args__ = {"comment": "One lead-generation run or CSV import and its summary."}

    id: Mapped[int] = mapped_column(primary_key=True, comment="Batch id")
    # Idempotency key: a retried or re-run flow run finds its own batch instead of a new one.
    run_key: Mapped[str] = mapped_column(
        String(100), unique=True,
        comment="Idempotency key of the flow run: a re-run finds its own batch",
    )
    kind: Mapped[str] = mapped_column(String(20), comment="generate | import_csv")
    source: Mapped[str] = mapped_column(String(40), comment="Requested source (apollo, ...)")
    sources_used: Mapped[list[str]] = mapped_column(
        JSONType, default=list, comment="JSON list of the sources actually queried, after fallbacks"
    )
    industry: Mapped[str | None] = mapped_column(String(100), comment="Industry keyword requested")
    location: Mapped[str | None] = mapped_column(
        String(200), comment="Location requested: city, 'City, ST', state or country"
    )
    max_results: Mapped[int | None] = mapped_column(
        Integer, comment="Leads requested; NULL for CSV imports"
    )
    status: Mapped[str] = mapped_column(
        String(20), default="running", comment="running|done|failed"
    )
    leads_generated: Mapped[int] = mapped_column(Integer, default=0, comment="New leads inserted")
    leads_merged: Mapped[int] = mapped_column(Integer, default=0, comment="Duplicates merged")
    rows_rejected: Mapped[int] = mapped_column(Integer, default=0, comment="Rows quarantined")
    avg_score: Mapped[float | None] = mapped_column(
        Float, comment="Average quality_score (0-100) of the batch's leads"
    )
    tier_distribution: Mapped[dict[str, Any]] = mapped_column(
        JSONType, default=dict, comment="JSON object: leads per tier (hot, warm, cold)"
    )
    validation: Mapped[dict[str, Any]] = mapped_column(
        JSONType, default=dict, comment="JSON summary of the Great Expectations validation"
    )
    notes: Mapped[list[str]] = mapped_column(JSONType, default=list, comment="Fallbacks, warnings")
    started_at: Mapped[datetime] = mapped_column(
        default=utcnow, comment="When the run started (UTC)"
    )
    finished_at: Mapped[datetime | None] = mapped_column(
        comment="When the run ended (UTC); NULL while running"
    )
    # A run killed outright (SIGKILL, out of memory, a reboot) never closes its batch: the
    # next run marks a running batch failed once this is older than LEADFLOW_BATCH_STALE_AFTER_S.
    heartbeat_at: Mapped[datetime | None] = mapped_column(
        comment="Last sign of life of the run (UTC): when it started, each chunk it loaded and "
                "every quarter of LEADFLOW_BATCH_STALE_AFTER_S while it runs; NULL for batches "
                "older than this column"
    )


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
        # Only re-keyed leads have a key version: new leads cost this index nothing.
        Index("ix_leads_key_version", "key_version",
              postgresql_where=text("key_version IS NOT NULL"),
              sqlite_where=text("key_version IS NOT NULL")),
        {
            "comment": "One business (lead), deduplicated across sources and batches.",
            # Room on each page for a later version of the row: a lead's engagement figures
            # and status change after it is loaded, and an update that fits on its own page
            # (HOT) writes no entries in the nine indexes.
            "postgresql_with": {"fillfactor": LEADS_FILLFACTOR},
        },
    )

    id: Mapped[int] = mapped_column(primary_key=True, comment="Lead id")
    company_name: Mapped[str] = mapped_column(String(300), comment="Business name as found")
    contact_name: Mapped[str | None] = mapped_column(String(200), comment="Contact person's name")
    contact_title: Mapped[str | None] = mapped_column(
        String(200), comment="Contact person's job title"
    )
    email: Mapped[str | None] = mapped_column(String(320), comment="Contact email address as found")
    email_norm: Mapped[str | None] = mapped_column(String(320), comment="Lower-cased email")
    email_status: Mapped[str | None] = mapped_column(
        String(20),
        comment="Hunter status: valid, invalid, accept_all, webmail, disposable, unknown",
    )
    email_confidence: Mapped[int | None] = mapped_column(
        Integer, comment="Hunter confidence in the email, 0-100"
    )
    phone: Mapped[str | None] = mapped_column(String(50), comment="Phone as given by the source")
    phone_e164: Mapped[str | None] = mapped_column(
        String(20), comment="Phone in E.164 form (+15125550100), used for matching"
    )
    website: Mapped[str | None] = mapped_column(String(500), comment="Website URL")
    domain: Mapped[str | None] = mapped_column(String(255), comment="Registrable domain")
    address: Mapped[str | None] = mapped_column(String(300), comment="Street address")
    city: Mapped[str | None] = mapped_column(String(100), comment="City")
    state: Mapped[str | None] = mapped_column(String(100), comment="State or region")
    postal_code: Mapped[str | None] = mapped_column(String(20), comment="Postal or ZIP code")
    country: Mapped[str | None] = mapped_column(String(100), comment="Country")
    industry: Mapped[str | None] = mapped_column(
        String(100), comment="Industry as given by the source"
    )
    linkedin_url: Mapped[str | None] = mapped_column(
        String(500), comment="LinkedIn page of the company or contact"
    )
    name_key: Mapped[str | None] = mapped_column(String(300), comment="Normalised company name")
    city_key: Mapped[str | None] = mapped_column(String(100), comment="Normalised city")
    name_block: Mapped[str | None] = mapped_column(
        String(100), comment="Dedupe blocking key: first distinctive word of name_key"
    )
    address_key: Mapped[str | None] = mapped_column(
        String(300), comment="Street number and normalised street, without unit"
    )
    key_version: Mapped[int | None] = mapped_column(
        BigInteger,
        comment="Load that last gave the lead a match key it lacked (a merge filled its email, "
                "domain, phone, name or address), numbered in commit order; NULL = never",
    )
    # What the website analysis found (copied from website_analyses at load time).
    booking_tools: Mapped[list[str]] = mapped_column(
        JSONType, default=list,
        comment="JSON list of online booking tools on the website (calendly, ...)",
    )
    has_contact_form: Mapped[bool | None] = mapped_column(
        comment="Website has a contact form; NULL = not analysed"
    )
    booking_keyword_count: Mapped[int | None] = mapped_column(
        Integer, comment="Booking words (book, appointment, ...) found on the website"
    )
    digital_maturity: Mapped[int | None] = mapped_column(
        Integer, comment="Digital maturity of the website, 0-100"
    )
    quality_score: Mapped[int | None] = mapped_column(Integer, comment="Lead score, 0-100")
    tier: Mapped[str | None] = mapped_column(String(10), comment="hot | warm | cold")
    score_breakdown: Mapped[dict[str, Any]] = mapped_column(
        JSONType, default=dict, comment="JSON object: points given by each scoring rule"
    )
    source: Mapped[str] = mapped_column(String(40), comment="First source that found the lead")
    sources: Mapped[list[str]] = mapped_column(
        JSONType, default=list, comment="JSON list of every source that found the lead"
    )
    # new | contacted | follow_up_1 | follow_up_2 | replied | unsubscribed | bounced
    status: Mapped[str] = mapped_column(
        String(20), default="new",
        comment="new | contacted | follow_up_1 | follow_up_2 | replied | unsubscribed | bounced",
    )
    batch_id: Mapped[int | None] = mapped_column(
        ForeignKey("lead_batches.id"), comment="Batch that first loaded the lead"
    )
    last_contacted_at: Mapped[datetime | None] = mapped_column(
        comment="When the lead was last emailed (UTC)"
    )
    # Engagement across all campaigns, recomputed from email_events (human events only).
    emails_opened: Mapped[int] = mapped_column(
        Integer, default=0, server_default="0",
        comment="Emails to the lead a human opened or clicked, all campaigns"
    )
    emails_clicked: Mapped[int] = mapped_column(
        Integer, default=0, server_default="0",
        comment="Emails to the lead with a human click, all campaigns"
    )
    created_at: Mapped[datetime] = mapped_column(
        default=utcnow, comment="When the lead was first loaded (UTC)"
    )
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, comment="When the lead last changed (UTC)"
    )

    source_records: Mapped[list[LeadSourceRecord]] = relationship(back_populates="lead")


class LeadSourceRecord(Base):
    """Provenance: each source record that was merged into a lead. (source, external_id) is
    unique, which is what makes a re-run or retried load idempotent."""

    __tablename__ = "lead_source_records"
    __table_args__ = (
        UniqueConstraint("source", "external_id"),
        {"comment": "Every source record that contributed to a lead (provenance)."},
    )

    id: Mapped[int] = mapped_column(primary_key=True, comment="Record id")
    lead_id: Mapped[int] = mapped_column(
        ForeignKey("leads.id", ondelete="CASCADE"), index=True,
        comment="Lead the record was merged into",
    )
    source: Mapped[str] = mapped_column(
        String(40), comment="apollo | google_places | pdl | csv | ..."
    )
    external_id: Mapped[str] = mapped_column(
        String(200), comment="The source's id of the record (CSV: hash of the row's identity)"
    )
    batch_id: Mapped[int | None] = mapped_column(
        ForeignKey("lead_batches.id"), comment="Batch that first saw the record"
    )
    # The raw vendor record as JSON text (json, not jsonb): written once per record, read
    # whole, never queried inside, and jsonb's parsing costs ~40% of the load's COPY.
    payload: Mapped[dict[str, Any]] = mapped_column(
        JSON(), default=dict, comment="Raw vendor record (JSON text)"
    )
    seen_at: Mapped[datetime] = mapped_column(
        default=utcnow, comment="When the record was first loaded (UTC)"
    )

    lead: Mapped[Lead] = relationship(back_populates="source_records")


class QuarantinedRow(Base):
    """A row that failed a rule; kept with its reason so nothing is lost."""

    __tablename__ = "quarantined_rows"
    __table_args__ = (
        UniqueConstraint("fingerprint"),
        {"comment": "Rejected input rows with the rule they failed."},
    )

    id: Mapped[int] = mapped_column(primary_key=True, comment="Row id")
    batch_id: Mapped[int | None] = mapped_column(
        ForeignKey("lead_batches.id"), index=True, comment="Batch the row came in"
    )
    source: Mapped[str] = mapped_column(
        String(40), comment="Source of the row: apollo | google_places | pdl | csv | ..."
    )
    stage: Mapped[str] = mapped_column(String(40), comment="normalise | enrich | validate | csv")
    rule: Mapped[str] = mapped_column(String(100), comment="Rule the row failed")
    reason: Mapped[str] = mapped_column(Text, comment="Why the row failed, in words")
    row_ref: Mapped[str | None] = mapped_column(String(200), comment="Line number or source id")
    payload: Mapped[dict[str, Any]] = mapped_column(
        JSONType, default=dict, comment="The row as received (JSON)"
    )
    fingerprint: Mapped[str] = mapped_column(
        String(64), comment="Hash of batch, stage, rule and row: a retried step adds no copy"
    )
    created_at: Mapped[datetime] = mapped_column(
        default=utcnow, comment="When the row was quarantined (UTC)"
    )
