"""External API plans and metered usage (the seed's `apiConfig` and usage tracking).

Keys are never stored here: `key_ref` names where the key lives (a setting or a Prefect Secret
block)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class ApiConfig(Base):
    __tablename__ = "api_configs"
    __table_args__ = {"comment": "Per-source plan: monthly limit, unit cost, where the key lives."}

    source: Mapped[str] = mapped_column(
        String(40), primary_key=True, comment="apollo | google_places | pdl | hunter | openai"
    )
    plan_name: Mapped[str] = mapped_column(
        String(100), default="default", comment="Plan name, for people"
    )
    monthly_limit: Mapped[int] = mapped_column(Integer, comment="Billable units per month")
    cost_per_unit: Mapped[float] = mapped_column(Float, default=0.0, comment="USD per unit")
    unit: Mapped[str] = mapped_column(String(20), default="record", comment="record | request")
    key_ref: Mapped[str | None] = mapped_column(
        String(200), comment="Setting or Secret block holding the key (never the key itself)"
    )
    is_active: Mapped[bool] = mapped_column(
        Boolean, default=True, comment="Whether the source may be called"
    )


class ApiUsage(Base):
    __tablename__ = "api_usage"
    __table_args__ = (
        Index("ix_api_usage_source_called_at", "source", "called_at"),
        {"comment": "One row per external API call: units billed and cost."},
    )

    id: Mapped[int] = mapped_column(primary_key=True, comment="Call id")
    source: Mapped[str] = mapped_column(
        String(40), comment="API called: apollo | google_places | pdl | hunter | openai"
    )
    endpoint: Mapped[str] = mapped_column(
        String(100), comment="Endpoint called, e.g. search, domain-search"
    )
    status_code: Mapped[int | None] = mapped_column(
        Integer, comment="HTTP status of the response; NULL = no response"
    )
    units: Mapped[int] = mapped_column(Integer, default=0, comment="Records (or requests) billed")
    cost: Mapped[float] = mapped_column(Float, default=0.0, comment="USD")
    batch_id: Mapped[int | None] = mapped_column(
        ForeignKey("lead_batches.id"), comment="Batch that made the call, if any"
    )
    called_at: Mapped[datetime] = mapped_column(
        default=utcnow, comment="When the call was made (UTC)"
    )


class ApiReservation(Base):
    __tablename__ = "api_reservations"
    __table_args__ = (
        Index("ix_api_reservations_source_expires_at", "source", "expires_at"),
        {"comment": "Units of a source's monthly quota set aside for calls in flight, so that "
                    "runs working at the same time cannot together exceed the limit. Removed "
                    "when the calls are recorded in api_usage; ignored once expired (a run that "
                    "died)."},
    )

    id: Mapped[int] = mapped_column(primary_key=True, comment="Reservation id")
    source: Mapped[str] = mapped_column(String(40), comment="API the units are set aside for")
    units: Mapped[int] = mapped_column(Integer, comment="Units set aside")
    reserved_at: Mapped[datetime] = mapped_column(default=utcnow, comment="When (UTC)")
    expires_at: Mapped[datetime] = mapped_column(
        comment="When the units stop counting if never released (UTC)"
    )
