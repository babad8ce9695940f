"""The sandbox's bundled synthetic dataset: fictional local businesses, generated
deterministically from a seed, each with contacts, emails and a website profile.

Every external API of the sandbox (Apollo, Google Places, PDL, Hunter) and every sandbox website
is a view of this one dataset, so the same business can be found by several sources."""

from __future__ import annotations

import base64
import random
import re
from dataclasses import dataclass, field

from sandbox import names


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
    # Hunter's verifier answers 202 "in progress" for this address before giving the result.
    verify_pending: bool = False


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
    catch_all: bool = False  # the mail server accepts any address at the domain
    latitude: float = 0.0
    longitude: float = 0.0


_SUFFIX_WORDS = ("", "", "", "", "", "co", "studio", "hq", "place")


def _weighted(items: list[str] | tuple[object, ...], weights: list[int]) -> list[float]:
    total = float(sum(weights))
    acc, out = 0.0, []
    for w in weights:
        acc += w / total
        out.append(acc)
    return out


def _pick(rng: random.Random, items: tuple[object, ...], cum: list[float]) -> object:
    # Linear scan over <30 cumulative weights: cheaper than random.choices per call.
    r = rng.random()
    for item, c in zip(items, cum, strict=True):
        if r < c:
            return item
    return items[-1]


def _business_name(rng: random.Random, industry: names.Industry, city: names.City) -> str:
    word = rng.choice(industry.words)
    style = rng.random()
    if style < 0.30:
        return f"{rng.choice(names.GIVEN_NAMES)} {word}"
    if style < 0.55:
        return f"{rng.choice(names.ADJECTIVES)} {rng.choice(names.NOUNS)} {word}"
    if style < 0.72:
        return f"{rng.choice(names.LAST_NAMES)} {word}"
    if style < 0.88:
        a, b = rng.sample(names.NOUNS, 2)
        return f"{a} & {b} {word}"
    return f"{city.name} {word}"


_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def _slug(text: str) -> str:
    return _NON_ALNUM.sub("", text.lower())


def _domain(rng: random.Random, name: str, industry: names.Industry, city: names.City,
            taken: set[str]) -> str:
    base = _slug(name.replace("&", "and"))
    suffix = rng.choice(industry.suffixes)
    candidates = [
        f"{base}.{suffix}",
        f"{base}{_slug(city.name)}.{suffix}",
        f"{base}{rng.choice(_SUFFIX_WORDS) or 'local'}.{suffix}",
    ]
    if rng.random() < 0.2:  # some owners hyphenate
        words = [_slug(w) for w in name.replace("&", "and").split()]
        candidates.insert(0, "-".join(w for w in words if w) + f".{suffix}")
    for cand in candidates:
        if cand not in taken:
            return cand
    n = 2
    while f"{base}{n}.{suffix}" in taken:
        n += 1
    return f"{base}{n}.{suffix}"


def _status(rng: random.Random, catch_all: bool) -> tuple[str, int]:
    if catch_all:
        return "accept_all", rng.randint(55, 85)
    r = rng.random()
    if r < 0.74:
        return "valid", rng.randint(80, 99)
    if r < 0.85:
        return "unknown", rng.randint(30, 70)
    return "invalid", rng.randint(3, 30)


def _emails(rng: random.Random, domain: str | None, first: str, last: str, name: str,
            catch_all: bool) -> tuple[Email, ...]:
    out: list[Email] = []
    if domain is not None:
        for local in rng.sample(names.GENERIC_LOCAL_PARTS, rng.choice((1, 1, 2))):
            status, conf = _status(rng, catch_all)
            out.append(Email(f"{local}@{domain}", None, None, None, "generic", conf, status,
                             rng.random() < 0.08))
        if rng.random() < 0.85:
            f, la = first.lower(), last.lower()
            local = rng.choice((f, f"{f}.{la}", f"{f}.{la}", f"{f[0]}{la}"))
            status, conf = _status(rng, catch_all)
            out.append(Email(f"{local}@{domain}", first, last, "Owner", "personal", conf, status,
                             rng.random() < 0.08))
        if rng.random() < 0.35:
            sf, sl = rng.choice(names.FIRST_NAMES), rng.choice(names.LAST_NAMES)
            status, conf = _status(rng, catch_all)
            out.append(Email(f"{sf.lower()}.{sl.lower()}@{domain}", sf, sl,
                             rng.choice(names.STAFF_POSITIONS), "personal", conf, status,
                             rng.random() < 0.08))
    # Webmail is common for businesses without a website, rare otherwise.
    if rng.random() < (0.6 if domain is None else 0.06):
        local = f"{_slug(name)}{rng.randint(1, 99) if rng.random() < 0.4 else ''}"
        out.append(Email(f"{local}@{rng.choice(names.WEBMAIL_DOMAINS)}", None, None, None,
                         "generic", 50, "webmail", False))
    if rng.random() < 0.02:
        out.append(Email(f"{_slug(first)}{rng.randint(100, 999)}@"
                         f"{rng.choice(names.DISPOSABLE_DOMAINS)}", first, last, None,
                         "personal", 50, "disposable", False))
    return tuple(out)


def _b64(bits: int, nbytes: int) -> str:
    return base64.urlsafe_b64encode(bits.to_bytes(nbytes, "big")).decode()


def generate_businesses(n: int, seed: int) -> list[Business]:
    """The dataset for (n, seed): the same list every time, and business i is the same for any
    n > i (one random stream drawn in index order)."""
    from sandbox.site_profiles import random_site_profile

    rng = random.Random(f"leadflow-sandbox:{seed}")
    # Site profiles use their own stream so the website work can change its distribution
    # without reshuffling every other field of the dataset.
    site_rng = random.Random(f"leadflow-sandbox-sites:{seed}")
    city_cum = _weighted(names.CITIES, [c.weight for c in names.CITIES])
    ind_cum = _weighted(names.INDUSTRIES, [i.weight for i in names.INDUSTRIES])
    taken_domains: set[str] = set()
    taken_phones: set[str] = set()
    out: list[Business] = []
    for index in range(n):
        city: names.City = _pick(rng, names.CITIES, city_cum)  # type: ignore[assignment]
        industry: names.Industry = _pick(rng, names.INDUSTRIES, ind_cum)  # type: ignore[assignment]
        name = _business_name(rng, industry, city)
        first, last = rng.choice(names.FIRST_NAMES), rng.choice(names.LAST_NAMES)
        street_name = rng.choice(names.STREET_NAMES)
        street_type = rng.choice(names.STREET_TYPES)[0]
        street = f"{rng.randint(100, 9899)} {street_name} {street_type}"
        if rng.random() < 0.25:
            street += f" Suite {rng.randint(1, 9)}{rng.randint(0, 9)}0"
        postal = f"{city.zip_prefix}{rng.randint(1, 99):02d}"
        while True:
            phone = f"+1{rng.choice(city.area_codes)}555{rng.randint(0, 9999):04d}"
            if phone not in taken_phones:
                taken_phones.add(phone)
                break
        domain: str | None = None
        if rng.random() >= 0.12:
            domain = _domain(rng, name, industry, city, taken_domains)
            taken_domains.add(domain)
        catch_all = domain is not None and rng.random() < 0.12
        emails = _emails(rng, domain, first, last, name, catch_all)
        lo, hi = industry.employees
        employees = min(hi, lo + int(rng.expovariate(1.0) * (hi - lo) / 3))
        ids = {
            "apollo": f"{rng.getrandbits(96):024x}",
            "google_places": "ChIJ" + _b64(rng.getrandbits(144), 18)[:23],
            "pdl": _b64(rng.getrandbits(168), 21).replace("-", "x").replace("_", "Q")[:27],
        }
        out.append(Business(
            index=index,
            name=name,
            industry=industry.name,
            street=street,
            city=city.name,
            state=city.state,
            postal_code=postal,
            country="US",
            phone=phone,
            domain=domain,
            owner_first_name=first,
            owner_last_name=last,
            employees=max(1, employees),
            founded_year=rng.randint(1985, 2023),
            rating=round(min(5.0, 3.0 + rng.random() * 2.2), 1),
            review_count=int(rng.expovariate(1 / 120)),
            emails=emails,
            site=random_site_profile(site_rng) if domain is not None else None,
            ids=ids,
            catch_all=catch_all,
            latitude=round(city.lat + rng.uniform(-0.12, 0.12), 6),
            longitude=round(city.lng + rng.uniform(-0.12, 0.12), 6),
        ))
    return out
