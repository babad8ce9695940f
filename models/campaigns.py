"""Campaigns and their sequences (the seed's `campaigns`, `workflows`, `workflowSteps`,
`emailTemplates`, `campaignLeads`). Steps, delays and templates are rows, editable without code."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, JSONType, utcnow


class Sequence(Base):
    """An ordered list of steps (the seed's `workflows`): initial email, follow-up 1, ..."""

    __tablename__ = "sequences"
    __table_args__ = {"comment": "A named sequence of outreach steps (the seed's workflows)."}

    id: Mapped[int] = mapped_column(primary_key=True, comment="Sequence id")
    name: Mapped[str] = mapped_column(
        String(100), unique=True, comment="Unique name of the sequence"
    )
    description: Mapped[str | None] = mapped_column(Text, comment="What the sequence is for")
    created_at: Mapped[datetime] = mapped_column(
        default=utcnow, comment="When the sequence was created (UTC)"
    )

    steps: Mapped[list[SequenceStep]] = relationship(
        back_populates="sequence", order_by="SequenceStep.step_number"
    )


class SequenceStep(Base):
    __tablename__ = "sequence_steps"
    __table_args__ = (
        UniqueConstraint("sequence_id", "step_number"),
        {"comment": "One step of a sequence: when it is due and the lead status it leads to."},
    )

    id: Mapped[int] = mapped_column(primary_key=True, comment="Step id")
    sequence_id: Mapped[int] = mapped_column(
        ForeignKey("sequences.id", ondelete="CASCADE"), comment="Sequence the step belongs to"
    )
    step_number: Mapped[int] = mapped_column(Integer, comment="1 = initial email")
    name: Mapped[str] = mapped_column(
        String(100), comment="Step name, e.g. Initial email, Follow-up 1"
    )
    delay_days: Mapped[int] = mapped_column(
        Integer, default=0, comment="Days after the previous step was sent (0 for step 1)"
    )
    lead_status: Mapped[str] = mapped_column(
        String(20), comment="Lead status once this step is sent: contacted, follow_up_1, ..."
    )

    sequence: Mapped[Sequence] = relationship(back_populates="steps")


class Template(Base):
    """Subject and body of one step, optionally for one routing scenario (a variant)."""

    __tablename__ = "templates"
    __table_args__ = (
        UniqueConstraint("step_id", "scenario"),
        {"comment": "Email template of a step; scenario NULL is the default variant."},
    )

    id: Mapped[int] = mapped_column(primary_key=True, comment="Template id")
    step_id: Mapped[int] = mapped_column(
        ForeignKey("sequence_steps.id", ondelete="CASCADE"),
        comment="Sequence step the template is for",
    )
    scenario: Mapped[str | None] = mapped_column(
        String(40), comment="Routing scenario this variant is for; NULL = any scenario"
    )
    subject: Mapped[str] = mapped_column(String(300), comment="Template text, {{variables}}")
    body_text: Mapped[str] = mapped_column(Text, comment="Plain-text body, {{variables}}")
    body_html: Mapped[str | None] = mapped_column(
        Text, comment="HTML body; NULL = rendered from the text body"
    )
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, comment="When the template last changed (UTC)"
    )


class Campaign(Base):
    __tablename__ = "campaigns"
    __table_args__ = (
        Index("ix_campaigns_status_schedule_type", "status", "schedule_type"),
        {"comment": "An outreach campaign: targeting, schedule, sequence and sender."},
    )

    id: Mapped[int] = mapped_column(primary_key=True, comment="Campaign id")
    name: Mapped[str] = mapped_column(String(200), comment="Campaign name")
    status: Mapped[str] = mapped_column(
        String(20), default="draft", comment="draft | active | paused | completed"
    )
    campaign_type: Mapped[str] = mapped_column(String(20), default="manual",
                                               comment="manual | automated")
    schedule_type: Mapped[str] = mapped_column(String(20), default="daily",
                                               comment="daily | manual")
    schedule_hour: Mapped[int] = mapped_column(
        Integer, default=9, comment="Local hour (0-23) at which daily outreach runs"
    )
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", comment="IANA time zone")
    send_window_start_hour: Mapped[int] = mapped_column(
        Integer, default=8, comment="Local hour from which emails may be sent"
    )
    send_window_end_hour: Mapped[int] = mapped_column(
        Integer, default=18, comment="Local hour before which emails must be sent"
    )
    send_weekdays: Mapped[list[int]] = mapped_column(
        JSONType, default=lambda: [0, 1, 2, 3, 4], comment="Allowed weekdays, 0 = Monday"
    )
    leads_per_day: Mapped[int] = mapped_column(
        Integer, default=50, comment="Leads to generate per day (automated daily campaigns)"
    )
    target_industry: Mapped[str | None] = mapped_column(
        String(100), comment="Industry keyword leads are generated for"
    )
    target_location: Mapped[str | None] = mapped_column(
        String(200), comment="Location leads are generated for"
    )
    sources: Mapped[list[str]] = mapped_column(
        JSONType, default=lambda: ["apollo"],
        comment="JSON list of lead sources to generate from, in order",
    )
    sequence_id: Mapped[int] = mapped_column(
        ForeignKey("sequences.id"), comment="Sequence of steps the campaign sends"
    )
    ai_personalisation: Mapped[bool] = mapped_column(
        Boolean, default=False, comment="Whether openings are personalised by AI (OpenAI)"
    )
    sender_name: Mapped[str] = mapped_column(String(100), comment="From: display name")
    sender_email: Mapped[str] = mapped_column(String(320), comment="From: address")
    sender_postal_address: Mapped[str] = mapped_column(
        String(300), comment="Shown in every footer (CAN-SPAM)"
    )
    # Figures recomputed from the emails and events (never incremented per hit).
    leads_generated: Mapped[int] = mapped_column(
        Integer, default=0, comment="Leads generated for the campaign (recomputed)"
    )
    leads_contacted: Mapped[int] = mapped_column(
        Integer, default=0, comment="Leads sent at least one email (recomputed)"
    )
    emails_sent: Mapped[int] = mapped_column(Integer, default=0, comment="Emails sent (recomputed)")
    emails_opened: Mapped[int] = mapped_column(Integer, default=0,
                                               comment="Emails a human opened or clicked")
    emails_clicked: Mapped[int] = mapped_column(Integer, default=0,
                                                comment="Emails with a human click")
    emails_replied: Mapped[int] = mapped_column(
        Integer, default=0, comment="Emails with a reply (recomputed)"
    )
    created_at: Mapped[datetime] = mapped_column(
        default=utcnow, comment="When the campaign was created (UTC)"
    )
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, comment="When the campaign last changed (UTC)"
    )

    sequence: Mapped[Sequence] = relationship()


class CampaignLead(Base):
    """A lead linked to a campaign, with the routing decision made for it."""

    __tablename__ = "campaign_leads"
    __table_args__ = (
        UniqueConstraint("campaign_id", "lead_id"),
        Index("ix_campaign_leads_lead_id", "lead_id"),
        {"comment": "Leads linked to a campaign and where each stands in its sequence."},
    )

    id: Mapped[int] = mapped_column(primary_key=True, comment="Link id")
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), comment="Campaign"
    )
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), comment="Lead")
    scenario: Mapped[str | None] = mapped_column(String(40), comment="Routing scenario chosen")
    routing: Mapped[dict[str, Any]] = mapped_column(
        JSONType, default=dict, comment="Facts behind the routing decision"
    )
    status: Mapped[str] = mapped_column(
        String(20), default="pending",
        comment="pending | active | completed | stopped",
    )
    stop_reason: Mapped[str | None] = mapped_column(
        String(40), comment="replied | unsubscribed | bounced | suppressed"
    )
    added_at: Mapped[datetime] = mapped_column(
        default=utcnow, comment="When the lead was linked to the campaign (UTC)"
    )
