"""Pure functions that map each vendor's record (Apollo organization, Google place, PDL company)
into the one staging shape, `CandidateLead`; a record that cannot become a lead raises
`InvalidRecord` so the caller quarantines it with its reason."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from types import SimpleNamespace
from typing import Any

from pydantic import ValidationError

from clients.apollo import ApolloOrganization
from clients.google_places import Place
from clients.pdl import PdlCompany
from tasks.batches import Rejected
from tasks.keys import COUNTRY_REGIONS, US_STATE_CODES, country_code
from tasks.staging import CandidateLead


class InvalidRecord(ValueError):
    """A vendor record that cannot become a candidate lead (the caller quarantines it)."""

    def __init__(self, reason: str, rule: str = "invalid_record") -> None:
        super().__init__(reason)
        self.reason = reason
        self.rule = rule


# "TX 78701" / "TX 78701-1234" at the end of a US formatted address.
_STATE_ZIP = re.compile(r"^([A-Z]{2})\s+(\d{5}(?:-\d{4})?)$")
# The last part of a formatted address elsewhere: "10117 Berlin", "1015 CJ Amsterdam" (postcode
# first, most of Europe), "London SW1A 2AA" (UK), "Sydney NSW 2000" (Australia); Canada puts
# "ON M5V 2T6" after the city's own part.
_POSTCODE_CITY = re.compile(r"^(\d{4,5}(?:\s?[A-Z]{2})?)\s+(\D.*)$")
_CITY_UK_POSTCODE = re.compile(r"^(.*\D)\s+([A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2})$")
_CITY_STATE_POSTCODE = re.compile(r"^(.*\D)\s+([A-Z]{2,3})\s+(\d{4})$")
_CA_PROVINCE_POSTCODE = re.compile(r"^([A-Z]{2})\s+([A-Z]\d[A-Z]\s?\d[A-Z]\d)$")
_MAX_TEXT = 500


def _country(value: str | None) -> str | None:
    if not value:
        return None
    return country_code(value) or value.strip()


def _state(value: str | None, country: str | None) -> str | None:
    if not value:
        return None
    if country in (None, "US"):
        return US_STATE_CODES.get(value.strip().lower(), value.strip().upper()
                              if len(value.strip()) == 2 else value.strip())
    return value.strip()


def _titled(value: str | None) -> str | None:
    # PDL lower-cases names and places; restore a readable form without touching mixed case.
    return value.title() if value and value.islower() else value


def _website(value: str | None) -> str | None:
    """A vendor's website as an http(s) URL with a lower-case scheme ("HTTPS://x.com",
    "//x.com" and "x.com" included); None for anything else (ftp://, mailto:, text), so a
    lead with an odd website keeps everything but its website."""
    if not value or " " in value.strip():
        return None
    value = value.strip()
    scheme, sep, rest = value.partition("://")
    if not sep:
        if value.startswith("//"):
            return f"http:{value}"
        return None if ":" in value.split("/", 1)[0] and not _HOST_PORT.match(value) else (
            f"http://{value}")
    scheme = scheme.lower()
    return f"{scheme}://{rest}" if scheme in ("http", "https") else None


_HOST_PORT = re.compile(r"^[^/:]+:\d+(?:/|$)")  # bella.com:8080/book


def _clip(value: str | None) -> str | None:
    # NUL bytes come through JSON as \u0000 and no PostgreSQL text column accepts them.
    return value.replace("\x00", "")[:_MAX_TEXT] if value else value


def _record_id(record: Mapping[str, Any], vendor_id: str | None) -> str:
    if vendor_id:
        return vendor_id[:200]
    # No vendor id: a stable hash of the payload, so a re-run maps to the same row.
    blob = json.dumps(record, sort_keys=True, default=str).encode()
    return "sha1:" + hashlib.sha1(blob).hexdigest()[:20]


def _as_mapping(record: Any) -> Mapping[str, Any]:
    if not isinstance(record, Mapping):
        raise InvalidRecord(f"record is a {type(record).__name__}, not an object", "not_an_object")
    return record


def _company_name(*candidates: str | None) -> str:
    for name in candidates:
        if name and name.strip() and any(ch.isalnum() for ch in name):
            return _clip(name.strip()) or ""
    raise InvalidRecord("no usable company name", "missing_company_name")


_APOLLO_TEXT = tuple(
    name for name in ApolloOrganization.model_fields
    if name not in ("primary_phone", "estimated_num_employees", "founded_year")
)
_APOLLO_INT = ("estimated_num_employees", "founded_year")
_NOT_SIMPLE = object()


def _simple_text(value: Any) -> Any:
    """What the OptStr validator (clients.fields._text) makes of a str, int, float or None;
    _NOT_SIMPLE for anything else (the model decides those)."""
    if value is None:
        return None
    t = type(value)
    if t is str:
        return value.strip() or None
    if t is int or t is float:
        return str(value).strip() or None
    return _NOT_SIMPLE


def _fast_apollo_org(raw: Any) -> Any:
    """The validated organization without the pydantic round trip when every field the model
    reads is plain (str/int/float/None text, int/None counts, a plain phone dict), the shape
    the API returns; None to let model_validate decide anything else."""
    if type(raw) is not dict:
        return None
    values: dict[str, Any] = {}
    get = raw.get
    for name in _APOLLO_TEXT:
        v = _simple_text(get(name))
        if v is _NOT_SIMPLE:
            return None
        values[name] = v
    for name in _APOLLO_INT:
        v = get(name)
        if v is not None and type(v) is not int:
            return None
        values[name] = v
    phone = get("primary_phone")
    if phone is not None:
        if type(phone) is not dict:
            return None
        number = _simple_text(phone.get("number"))
        sanitized = _simple_text(phone.get("sanitized_number"))
        if number is _NOT_SIMPLE or sanitized is _NOT_SIMPLE:
            return None
        phone = SimpleNamespace(number=number, sanitized_number=sanitized)
    values["primary_phone"] = phone
    return SimpleNamespace(**values)  # the attributes normalise_apollo_org reads


def normalise_apollo_org(record: Any) -> CandidateLead:
    """An Apollo organization search row as a CandidateLead."""
    raw = _as_mapping(record)
    org = _fast_apollo_org(raw)
    if org is None:
        try:
            org = ApolloOrganization.model_validate(raw)
        except ValidationError as exc:  # the model is lenient; this is a defensive net
            raise InvalidRecord(f"unreadable organization: {exc.error_count()} errors") from None
    name = _company_name(org.name)
    country = _country(org.country)
    primary = org.primary_phone
    phone = (
        org.sanitized_phone
        or (primary.sanitized_number if primary else None)
        or org.phone
        or (primary.number if primary else None)
    )
    return CandidateLead(
        source="apollo",
        source_record_id=_record_id(raw, org.id),
        company_name=name,
        phone=_clip(phone),
        website=_clip(_website(org.website_url or org.primary_domain)),
        address=_clip(org.street_address or org.raw_address),
        city=_clip(org.city),
        state=_state(org.state, country),
        postal_code=org.postal_code,
        country=country,
        industry=_clip(org.industry),
        linkedin_url=_clip(org.linkedin_url),
        employee_count=org.estimated_num_employees,
        raw=dict(raw),
    )


def _place_address(place: Place) -> dict[str, str | None]:
    """Street, city, state, postal code and country of a place, from its address components
    when masked in, else from the formatted address (US, Canadian, Australian, UK and
    postcode-first European layouts), else the address as is."""
    out: dict[str, str | None] = {"address": place.formattedAddress}
    if place.addressComponents:
        by_type: dict[str, Any] = {}
        for comp in place.addressComponents:
            for t in comp.types:
                by_type.setdefault(t, comp)
        street = " ".join(
            c.longText for c in (by_type.get("street_number"), by_type.get("route"))
            if c is not None and c.longText
        )
        city = by_type.get("locality") or by_type.get("postal_town")
        state = by_type.get("administrative_area_level_1")
        postal = by_type.get("postal_code")
        country = by_type.get("country")
        return {
            "address": street or place.formattedAddress,
            "city": city.longText if city else None,
            "state": state.shortText if state else None,
            "postal_code": postal.longText if postal else None,
            "country": _country(country.shortText) if country else None,
        }
    if not place.formattedAddress:
        return out
    parts = [p.strip() for p in place.formattedAddress.split(",") if p.strip()]
    country = None
    if parts and parts[-1].lower() in COUNTRY_REGIONS:
        country = COUNTRY_REGIONS[parts.pop().lower()]
    if len(parts) >= 3 and (m := _STATE_ZIP.match(parts[-1])):
        return {
            "address": ", ".join(parts[:-2]),
            "city": parts[-2],
            "state": m.group(1),
            "postal_code": m.group(2),
            "country": country or "US",
        }
    out["country"] = country
    if len(parts) >= 3 and (m := _CA_PROVINCE_POSTCODE.match(parts[-1])):
        out.update(address=", ".join(parts[:-2]), city=parts[-2], state=m.group(1),
                   postal_code=m.group(2))
    elif len(parts) >= 2:
        last = parts[-1]
        if m := _POSTCODE_CITY.match(last):
            out.update(city=m.group(2), postal_code=m.group(1))
        elif m := _CITY_UK_POSTCODE.match(last):
            out.update(city=m.group(1), postal_code=m.group(2))
        elif m := _CITY_STATE_POSTCODE.match(last):
            out.update(city=m.group(1), state=m.group(2), postal_code=m.group(3))
        if out.get("city"):
            out["address"] = ", ".join(parts[:-1])
    return out


def normalise_google_place(record: Any) -> CandidateLead:
    """A Google Places (New) place as a CandidateLead; permanently closed places are refused."""
    raw = _as_mapping(record)
    try:
        place = Place.model_validate(raw)
    except ValidationError as exc:
        raise InvalidRecord(f"unreadable place: {exc.error_count()} errors") from None
    name = _company_name(place.displayName.text if place.displayName else None)
    if place.businessStatus == "CLOSED_PERMANENTLY":
        raise InvalidRecord("business is permanently closed", "closed_business")
    vendor_id = place.id or (place.name.removeprefix("places/") if place.name else None)
    addr = _place_address(place)
    industry = (
        place.primaryTypeDisplayName.text if place.primaryTypeDisplayName else None
    ) or place.primaryType
    return CandidateLead(
        source="google_places",
        source_record_id=_record_id(raw, vendor_id),
        company_name=name,
        phone=_clip(place.internationalPhoneNumber or place.nationalPhoneNumber),
        website=_clip(_website(place.websiteUri)),
        address=_clip(addr.get("address")),
        city=_clip(addr.get("city")),
        state=addr.get("state"),
        postal_code=addr.get("postal_code"),
        country=addr.get("country"),
        industry=_clip(industry),
        rating=place.rating,
        review_count=place.userRatingCount,
        raw=dict(raw),
    )


def normalise_pdl_company(record: Any) -> CandidateLead:
    """A People Data Labs company as a CandidateLead (PDL's lower-cased text re-cased)."""
    raw = _as_mapping(record)
    try:
        company = PdlCompany.model_validate(raw)
    except ValidationError as exc:
        raise InvalidRecord(f"unreadable company: {exc.error_count()} errors") from None
    name = _company_name(company.display_name, _titled(company.name))
    loc = company.location
    country = _country(loc.country) if loc else None
    street = None
    if loc and loc.street_address:
        street = " ".join(p for p in (loc.street_address, loc.address_line_2) if p)
    linkedin = company.linkedin_url
    if linkedin and "://" not in linkedin:
        linkedin = f"https://{linkedin}"
    return CandidateLead(
        source="pdl",
        source_record_id=_record_id(raw, company.id),
        company_name=name,
        phone=_clip(company.phone),
        website=_clip(_website(company.website)),
        address=_clip(_titled(street)),
        city=_clip(_titled(loc.locality)) if loc else None,
        state=_state(loc.region, country) if loc else None,
        postal_code=loc.postal_code if loc else None,
        country=country,
        industry=_clip(company.industry),
        linkedin_url=_clip(linkedin),
        employee_count=company.employee_count,
        raw=dict(raw),
    )


NORMALISERS: dict[str, Callable[[Any], CandidateLead]] = {
    "apollo": normalise_apollo_org,
    "google_places": normalise_google_place,
    "pdl": normalise_pdl_company,
}


def normalise_records(
    source: str, records: Iterable[Any]
) -> tuple[list[CandidateLead], list[Rejected]]:
    """Normalise a page (or batch) of one source's records: the leads, and the records that
    could not become leads as `Rejected` rows for the quarantine (nothing is dropped)."""
    try:
        normalise = NORMALISERS[source]
    except KeyError:
        raise ValueError(f"no normaliser for source {source!r}") from None
    leads: list[CandidateLead] = []
    rejected: list[Rejected] = []
    for record in records:
        try:
            leads.append(normalise(record))
        except InvalidRecord as exc:
            if isinstance(record, Mapping):
                payload = dict(record)
            else:
                payload = {"value": repr(record)[:1000]}
            ref = payload.get("id") if isinstance(payload.get("id"), str) else None
            rejected.append(
                Rejected(source=source, stage="normalise", rule=exc.rule, reason=exc.reason,
                         row_ref=ref, payload=payload)
            )
    return leads, rejected
