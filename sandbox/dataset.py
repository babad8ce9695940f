"""The sandbox's bundled synthetic dataset: fictional local businesses, generated
deterministically from a seed, each with contacts, emails and a website profile.

Every external API of the sandbox (Apollo, Google Places, PDL, Hunter) and every sandbox website
is a view of this one dataset, so the same business can be found by several sources."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True, frozen=True)
class SiteProfile:
    """How a business's website looks and behaves (see sandbox/site_profiles.py)."""

    booking_tool: str | None  # canonical tool name from tasks/website/signatures.json, or None
    embed: str | None  # script | iframe | link | popup | None
    has_contact_form: bool
    phone_booking: bool  # "call us to book" wording, no online booking
    layout: str  # modern | table | builder
    charset: str  # utf-8 | windows-1252 | iso-8859-1 | shift_jis ...
    https: bool
    analytics: bool
    viewport: bool
    social: bool
    structured_data: bool
    redirect: str | None  # None | www | https | chain | internal (to a private address)
    size_kb: int  # target HTML weight
    fault: str | None  # None | timeout | never_ends | server_error | not_html | huge | no_site


@dataclass(slots=True, frozen=True)
class Email:
    address: str
    first_name: str | None
    last_name: str | None
    position: str | None
    kind: str  # personal | generic
    confidence: int  # 0-100
    status: str  # valid | invalid | accept_all | webmail | disposable | unknown


@dataclass(slots=True, frozen=True)
class Business:
    index: int
    name: str
    industry: str
    street: str
    city: str
    state: str  # two-letter code
    postal_code: str
    country: str
    phone: str  # E.164
    domain: str | None  # None = no website
    owner_first_name: str
    owner_last_name: str
    employees: int
    founded_year: int
    rating: float
    review_count: int
    emails: tuple[Email, ...] = ()
    site: SiteProfile | None = None
    # Ids the business has in each vendor's world (stable across runs).
    ids: dict[str, str] = field(default_factory=dict)
