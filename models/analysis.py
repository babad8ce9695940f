"""Website analyses, cached per registrable domain for `site_cache_days`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, JSONType, utcnow


class WebsiteAnalysis(Base):
    __tablename__ = "website_analyses"
    __table_args__ = {"comment": "Cached website analysis per domain (30 days)."}

    domain: Mapped[str] = mapped_column(String(255), primary_key=True)
    url: Mapped[str] = mapped_column(String(500), comment="URL requested")
    final_url: Mapped[str | None] = mapped_column(String(500), comment="URL after redirects")
    http_status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text, comment="Why the fetch failed, if it did")
    booking_tools: Mapped[list[str]] = mapped_column(JSONType, default=list)
    has_contact_form: Mapped[bool | None]
    booking_keyword_count: Mapped[int | None] = mapped_column(Integer)
    has_analytics: Mapped[bool | None]
    digital_maturity: Mapped[int | None] = mapped_column(Integer, comment="0-100")
    signals: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    bytes_read: Mapped[int | None] = mapped_column(Integer)
    fetched_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
