"""The send queue and what delivery needs: one `emails` row per lead and step (the seed's
`emails`), the links each email carries, SMTP providers with their limits (`smtpConfigs`), the
per-window send counters that enforce those limits across workers, and the suppression list."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, JSONType, utcnow

# Status of an email in the queue:
#   scheduled  a later step, not composed yet (composed when due)
#   queued     composed and due at `scheduled_at`
#   sending    claimed by a worker (`claimed_by`, `claim_expires_at`)
#   sent       accepted by an SMTP server (or written to the outbox)
#   failed     permanent failure (5xx other than a bounce, bad address)
#   bounced    the server refused the recipient (address suppressed)
#   cancelled  the lead's sequence stopped (reply, unsubscribe, bounce, suppression)
#   review     a claim expired after the SMTP hand-off may have happened: never resent blindly
# Percent of each heap page that inserts fill (PostgreSQL), leaving room for updates.
EMAILS_FILLFACTOR = 70

EMAIL_STATUSES = (
    "scheduled", "queued", "sending", "sent", "failed", "bounced", "cancelled", "review",
)


class Email(Base):
    __tablename__ = "emails"
    __table_args__ = (
        # The exactly-once guarantee: no lead ever gets the same step of a campaign twice.
        UniqueConstraint("campaign_id", "lead_id", "step_number"),
        Index("ix_emails_status_scheduled_at", "status", "scheduled_at"),
        Index("ix_emails_lead_id", "lead_id"),
        {
            "comment": "One row per lead and sequence step: the send queue and the sent mail.",
            # Room on each page for the row's later versions: an email is updated when it is
            # sent and again whenever its figures are refreshed, and an update that fits on
            # its own page (HOT) writes no index entries.
            "postgresql_with": {"fillfactor": EMAILS_FILLFACTOR},
        },
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True,
                                    comment="Email id (carried by its tracking tokens)")
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), comment="Campaign the email belongs to"
    )
    lead_id: Mapped[int] = mapped_column(
        ForeignKey("leads.id", ondelete="CASCADE"), comment="Lead the email is for"
    )
    step_id: Mapped[int] = mapped_column(
        ForeignKey("sequence_steps.id"), comment="Sequence step the email is"
    )
    step_number: Mapped[int] = mapped_column(
        Integer, comment="Step number in the sequence (1 = initial email)"
    )
    scenario: Mapped[str | None] = mapped_column(
        String(40), comment="Routing scenario whose template was used"
    )
    status: Mapped[str] = mapped_column(String(20), default="scheduled",
                                        comment="|".join(EMAIL_STATUSES))
    scheduled_at: Mapped[datetime] = mapped_column(comment="When the email is due (UTC)")
    to_email: Mapped[str] = mapped_column(String(320), comment="Recipient address")
    to_name: Mapped[str | None] = mapped_column(String(200), comment="Recipient name")
    message_id: Mapped[str | None] = mapped_column(
        String(300), unique=True, comment="RFC 5322 Message-ID, deterministic per email"
    )
    subject: Mapped[str | None] = mapped_column(String(500), comment="Subject as composed")
    body_text: Mapped[str | None] = mapped_column(Text, comment="Plain-text body as composed")
    body_html: Mapped[str | None] = mapped_column(
        Text, comment="HTML body as composed (tracked links and pixel included)"
    )
    ai_status: Mapped[str | None] = mapped_column(
        String(20), comment="off | used | fallback (AI personalisation)"
    )
    ai_note: Mapped[str | None] = mapped_column(String(300), comment="Why the fallback was used")
    composed_at: Mapped[datetime | None] = mapped_column(
        comment="When the email was composed (UTC)"
    )
    # Claiming: a worker owns a `sending` row until `claim_expires_at`.
    claimed_by: Mapped[str | None] = mapped_column(
        String(100), comment="Worker that claimed the email for sending"
    )
    claimed_at: Mapped[datetime | None] = mapped_column(comment="When the email was claimed (UTC)")
    claim_expires_at: Mapped[datetime | None] = mapped_column(comment="When the claim lapses (UTC)")
    attempts: Mapped[int] = mapped_column(Integer, default=0, comment="Send attempts so far")
    provider_id: Mapped[int | None] = mapped_column(
        ForeignKey("smtp_providers.id"),
        comment="SMTP provider used; NULL = outbox folder or not sent",
    )
    sent_at: Mapped[datetime | None] = mapped_column(
        comment="When the SMTP server (or the outbox) accepted the email (UTC)"
    )
    failed_at: Mapped[datetime | None] = mapped_column(
        comment="When the email failed for good (UTC), set once: the SMTP server refused it "
        "(status bounced) or it failed permanently (status failed); NULL otherwise"
    )
    smtp_response: Mapped[str | None] = mapped_column(String(500), comment="Last SMTP reply")
    last_error: Mapped[str | None] = mapped_column(
        String(500), comment="Last error, secrets redacted"
    )
    # Engagement, recomputed from email_events by the tracking app (humans only unless noted).
    open_count: Mapped[int] = mapped_column(Integer, default=0, comment="Human opens")
    first_opened_at: Mapped[datetime | None] = mapped_column(comment="First human open (UTC)")
    click_count: Mapped[int] = mapped_column(Integer, default=0, comment="Human clicks")
    first_clicked_at: Mapped[datetime | None] = mapped_column(comment="First human click (UTC)")
    machine_event_count: Mapped[int] = mapped_column(
        Integer, default=0, comment="Opens and clicks flagged as machine-made"
    )
    created_at: Mapped[datetime] = mapped_column(
        default=utcnow, comment="When the row was created (UTC)"
    )
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, comment="When the row last changed (UTC)"
    )

    links: Mapped[list[EmailLink]] = relationship(order_by="EmailLink.position")


class EmailLink(Base):
    """A destination recorded when the email was composed: the only place a click redirects."""

    __tablename__ = "email_links"
    __table_args__ = (
        UniqueConstraint("email_id", "position"),
        {"comment": "Each link of a composed email, by position; click redirects go only here."},
    )

    id: Mapped[int] = mapped_column(primary_key=True, comment="Link id")
    email_id: Mapped[int] = mapped_column(
        ForeignKey("emails.id", ondelete="CASCADE"), comment="Email the link is in"
    )
    position: Mapped[int] = mapped_column(Integer, comment="0-based index of the link")
    url: Mapped[str] = mapped_column(Text, comment="Destination URL")


class SmtpProvider(Base):
    """An SMTP account (the seed's `smtpConfigs`). The password is named by reference."""

    __tablename__ = "smtp_providers"
    __table_args__ = {"comment": "SMTP accounts with their hourly/daily limits and warm-up."}

    id: Mapped[int] = mapped_column(primary_key=True, comment="Provider id")
    name: Mapped[str] = mapped_column(
        String(100), unique=True, comment="Unique name of the account"
    )
    host: Mapped[str] = mapped_column(String(255), comment="SMTP server host")
    port: Mapped[int] = mapped_column(
        Integer, default=587, comment="SMTP server port (587 starttls, 465 tls)"
    )
    security: Mapped[str] = mapped_column(String(10), default="starttls",
                                          comment="starttls | tls | none")
    username: Mapped[str | None] = mapped_column(String(320), comment="Login user; NULL = no login")
    password_ref: Mapped[str | None] = mapped_column(
        String(200), comment="Setting or Prefect Secret block holding the password"
    )
    from_email: Mapped[str | None] = mapped_column(
        String(320), comment="Envelope sender; NULL = the campaign's sender"
    )
    hourly_limit: Mapped[int] = mapped_column(
        Integer, default=50, comment="Most messages per clock hour (UTC)"
    )
    daily_limit: Mapped[int] = mapped_column(
        Integer, default=500, comment="Most messages per UTC day"
    )
    warmup_started_on: Mapped[date | None] = mapped_column(
        Date, comment="First day of warm-up; NULL = no warm-up"
    )
    warmup_initial_daily: Mapped[int] = mapped_column(
        Integer, default=20, comment="Daily limit on the first day of warm-up"
    )
    warmup_daily_increase: Mapped[int] = mapped_column(
        Integer, default=10, comment="Messages added to the daily limit per day of warm-up"
    )
    priority: Mapped[int] = mapped_column(Integer, default=100, comment="Lower is tried first")
    is_active: Mapped[bool] = mapped_column(
        Boolean, default=True, comment="Whether the provider may send"
    )
    created_at: Mapped[datetime] = mapped_column(
        default=utcnow, comment="When the provider was added (UTC)"
    )


class SmtpSendCount(Base):
    """Messages a provider has sent (or reserved) in one hour or one day: the limit's ledger."""

    __tablename__ = "smtp_send_counts"
    __table_args__ = (
        UniqueConstraint("provider_id", "window", "window_start"),
        {"comment": "Sends per provider and hour/day window, reserved before sending."},
    )

    id: Mapped[int] = mapped_column(primary_key=True, comment="Counter id")
    provider_id: Mapped[int] = mapped_column(
        ForeignKey("smtp_providers.id", ondelete="CASCADE"), comment="SMTP provider"
    )
    window: Mapped[str] = mapped_column(String(5), comment="hour | day")
    window_start: Mapped[datetime] = mapped_column(comment="Start of the hour or day window (UTC)")
    count: Mapped[int] = mapped_column(
        Integer, default=0, comment="Messages sent or reserved in the window"
    )


class Suppression(Base):
    """Addresses and domains that must never be emailed; checked at send time."""

    __tablename__ = "suppressions"
    __table_args__ = (
        UniqueConstraint("kind", "value"),
        {"comment": "Suppressed addresses and domains (unsubscribed, bounced, ...)."},
    )

    id: Mapped[int] = mapped_column(primary_key=True, comment="Suppression id")
    kind: Mapped[str] = mapped_column(String(10), comment="address | domain")
    value: Mapped[str] = mapped_column(String(320), comment="Lower-cased address or domain")
    reason: Mapped[str] = mapped_column(
        String(20), comment="unsubscribed | bounced | complained | manual"
    )
    email_id: Mapped[int | None] = mapped_column(
        ForeignKey("emails.id", ondelete="SET NULL"), comment="Email that caused it, if any"
    )
    details: Mapped[dict[str, Any]] = mapped_column(
        JSONType, default=dict, comment="JSON: context, e.g. the bounce's SMTP reply"
    )
    created_at: Mapped[datetime] = mapped_column(
        default=utcnow, comment="When the suppression was added (UTC)"
    )
