"""Each vendor's view of the dataset: which businesses a source lists (overlapping subsets),
how it spells their names, phones and websites, and the duplicate listings real directories have."""

from __future__ import annotations

import base64
import hashlib
import random
from dataclasses import dataclass

from sandbox.dataset import Business

SOURCES = ("apollo", "google_places", "pdl")
# Share of businesses each source knows about.
COVERAGE = {"apollo": 0.80, "google_places": 0.70, "pdl": 0.60}
DUPLICATE_SHARE = 0.02


@dataclass(slots=True, frozen=True)
class Listing:
    """One record of one source: a business as that vendor shows it."""

    source: str
    id: str  # the vendor's id of this record
    business: Business
    name: str
    phone: str | None  # formatted the way this record shows it
    website: str | None  # as the vendor shows it (scheme, www, paths vary)
    duplicate: bool = False  # a second listing of a business the source already has


def _digits(e164: str) -> tuple[str, str, str]:
    d = e164[2:]  # drop "+1"
    return d[:3], d[3:6], d[6:]


def international(e164: str) -> str:
    a, b, c = _digits(e164)
    return f"+1 {a}-{b}-{c}"


def national(e164: str) -> str:
    a, b, c = _digits(e164)
    return f"({a}) {b}-{c}"


def _apollo_phone(rng: random.Random, e164: str) -> str:
    a, b, c = _digits(e164)
    return rng.choice((f"+1 {a}-{b}-{c}", f"+1 {a}-{b}-{c}", f"({a}) {b}-{c}", f"{a}.{b}.{c}",
                       f"{a}{b}{c}", e164))


def _website(rng: random.Random, source: str, domain: str | None) -> str | None:
    if domain is None:
        return None
    r = rng.random()
    if source == "apollo":
        return f"http://www.{domain}" if r < 0.7 else (
            f"http://{domain}" if r < 0.9 else f"https://www.{domain}")
    if source == "google_places":
        if r < 0.40:
            return f"https://{domain}/"
        if r < 0.65:
            return f"https://www.{domain}/"
        if r < 0.80:
            return f"http://{domain}/"
        if r < 0.90:
            return f"https://www.{domain}/?utm_source=gbp&utm_medium=organic"
        return f"https://{domain}/book"
    return domain if r < 0.75 else f"www.{domain}"


def _name(rng: random.Random, source: str, business: Business) -> str:
    r = rng.random()
    if source == "apollo":
        if r < 0.25:
            return f"{business.name} LLC"
        return f"{business.name}, Inc." if r < 0.30 else business.name
    if source == "google_places":
        if r < 0.08:
            return f"{business.name} - {business.city}"
        return f"{business.name} {business.city}" if r < 0.12 else business.name
    # PDL keeps names lowercased.
    return business.name.lower() + (" llc" if r < 0.2 else "")


def _duplicate_name(rng: random.Random, business: Business) -> str:
    return rng.choice((f"The {business.name}", f"{business.name} Downtown",
                       f"{business.name} {business.city}", f"{business.name} Studio"))


def _vendor_id(source: str, seed: int, index: int, salt: str) -> str:
    digest = hashlib.sha256(f"{source}:{seed}:{index}:{salt}".encode()).digest()
    if source == "apollo":
        return digest[:12].hex()
    text = base64.urlsafe_b64encode(digest).decode()
    if source == "google_places":
        return "ChIJ" + text[:23]
    return text.replace("-", "x").replace("_", "Q")[:27]


def build_listings(businesses: list[Business], source: str, seed: int) -> list[Listing]:
    """The records `source` holds, in its (deterministic) order."""
    rng = random.Random(f"leadflow-sandbox-listings:{seed}:{source}")
    share = COVERAGE[source]
    out: list[Listing] = []
    for b in businesses:
        seen = rng.random() < share
        dup = rng.random() < DUPLICATE_SHARE
        # Draw the variants even for unseen businesses so membership never shifts the others.
        name = _name(rng, source, b)
        website = _website(rng, source, b.domain)
        phone: str | None
        if source == "apollo":
            phone = _apollo_phone(rng, b.phone)
        elif source == "google_places":
            phone = None if rng.random() < 0.05 else national(b.phone)
        else:
            phone = None  # PDL's company records carry no phone
        dup_name = _duplicate_name(rng, b)
        if not seen:
            continue
        out.append(Listing(source, b.ids[source], b, name, phone, website))
        if dup:
            out.append(Listing(source, _vendor_id(source, seed, b.index, "dup"), b,
                               dup_name if source != "pdl" else dup_name.lower(), phone,
                               website, duplicate=True))
    return out
