"""Tracking events: append-only rows written by the tracking app (the seed's open/click
tracking). Counters on emails, leads and campaigns are derived from these, never incremented."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class EmailEvent(Base):
    __tablename__ = "email_events"
    __table_args__ = (
        # The tracking app's repeat check, one index per database, as each reads it; email_id
        # and kind lead in both, for per-email reads.
        # PostgreSQL (0015): per hit of a batch, the stored events of the same email, kind and
        # client network within the repeat window, one index range whatever else the email
        # got. coalesce: a NULL network is then a value the probe can seek to (IS NOT DISTINCT
        # FROM cannot use an index).
        Index("ix_email_events_repeat_key", "email_id", "kind",
              text("coalesce(ip_network, '')"), "occurred_at").ddl_if(dialect="postgresql"),
        # SQLite (0004): the batch's emails' events within the window, by time, in one read
        # (recording._recent_hits); the network would split it into a seek per network.
        Index("ix_email_events_email_id_kind_occurred_at", "email_id", "kind",
              "occurred_at").ddl_if(dialect="sqlite"),
        Index("ix_email_events_occurred_at", "occurred_at"),
        # One unsubscribe event per email, whichever app process records it (0008).
        Index("uq_email_events_unsubscribe", "email_id", unique=True,
              postgresql_where=text("kind = 'unsubscribe'"),
              sqlite_where=text("kind = 'unsubscribe'")),
        {"comment": "Opens, clicks, unsubscribes, replies and bounces, one row per event."},
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, comment="Event id")
    email_id: Mapped[int] = mapped_column(
        ForeignKey("emails.id", ondelete="CASCADE"), comment="Email the event is about"
    )
    kind: Mapped[str] = mapped_column(
        String(12), comment="open | click | unsubscribe | reply | bounce"
    )
    link_position: Mapped[int | None] = mapped_column(Integer, comment="Clicked link's index")
    occurred_at: Mapped[datetime] = mapped_column(
        default=utcnow, comment="When the event happened (UTC)"
    )
    method: Mapped[str | None] = mapped_column(String(8), comment="HTTP method")
    user_agent: Mapped[str | None] = mapped_column(
        String(300), comment="Client User-Agent, truncated"
    )
    ip_network: Mapped[str | None] = mapped_column(
        String(50), comment="Client network, truncated (/24 or /48): no full IP is kept"
    )
    is_machine: Mapped[bool] = mapped_column(
        Boolean, default=False, comment="Made by a proxy, scanner or repeat (excluded from "
        "human figures)"
    )
    machine_reason: Mapped[str | None] = mapped_column(String(60), comment="Rule that matched")
