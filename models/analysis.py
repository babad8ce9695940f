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

    domain: Mapped[str] = mapped_column(
        String(255), primary_key=True, comment="Registrable domain analysed"
    )
    url: Mapped[str] = mapped_column(String(500), comment="URL requested")
    final_url: Mapped[str | None] = mapped_column(String(500), comment="URL after redirects")
    http_status: Mapped[int | None] = mapped_column(
        Integer, comment="HTTP status of the final response; NULL = no response"
    )
    error: Mapped[str | None] = mapped_column(Text, comment="Why the fetch failed, if it did")
    booking_tools: Mapped[list[str]] = mapped_column(
        JSONType, default=list, comment="JSON list of booking tools detected (calendly, ...)"
    )
    has_contact_form: Mapped[bool | None] = mapped_column(comment="A contact form was found")
    booking_keyword_count: Mapped[int | None] = mapped_column(
        Integer, comment="Booking words (book, appointment, ...) found"
    )
    has_analytics: Mapped[bool | None] = mapped_column(
        comment="An analytics or tag-manager script was found"
    )
    digital_maturity: Mapped[int | None] = mapped_column(
        Integer, comment="Digital maturity of the website, 0-100"
    )
    signals: Mapped[dict[str, Any]] = mapped_column(
        JSONType, default=dict, comment="JSON object: what each detector matched"
    )
    bytes_read: Mapped[int | None] = mapped_column(Integer, comment="Bytes of HTML read")
    fetched_at: Mapped[datetime] = mapped_column(
        default=utcnow, comment="When the site was fetched (UTC)"
    )
    expires_at: Mapped[datetime] = mapped_column(comment="When the cached analysis expires (UTC)")
