"""The one staging shape every source is normalised into before enrichment, scoring and dedupe
(like dbt's `stg_*` models): a typed candidate lead."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(slots=True)
class CandidateLead:
    source: str  # apollo | google_places | pdl | csv_linkedin | csv
    source_record_id: str  # the source's own id (or a stable hash for CSV rows)
    company_name: str | None = None
    contact_first_name: str | None = None
    contact_last_name: str | None = None
    contact_title: str | None = None
    email: str | None = None
    email_status: str | None = None  # valid | invalid | accept_all | webmail | disposable | unknown
    email_confidence: int | None = None
    phone: str | None = None
    website: str | None = None
    address: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None
    industry: str | None = None
    linkedin_url: str | None = None
    employee_count: int | None = None
    rating: float | None = None
    review_count: int | None = None
    # Filled by website analysis.
    booking_tools: list[str] = field(default_factory=list)
    has_contact_form: bool | None = None
    booking_keyword_count: int | None = None
    has_analytics: bool | None = None
    digital_maturity: int | None = None
    website_reachable: bool | None = None
    # The source payload as received, kept for provenance.
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def contact_name(self) -> str | None:
        parts = [p for p in (self.contact_first_name, self.contact_last_name) if p]
        return " ".join(parts) or None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CandidateLead:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


CANDIDATE_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(CandidateLead))
