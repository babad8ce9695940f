"""In-memory indexes over the dataset and each source's listings, so every search is an index
lookup (industry x city), never a scan of 100k rows per request."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from sandbox import names
from sandbox.dataset import Business, Email, generate_businesses
from sandbox.listings import SOURCES, Listing, build_listings

_COUNTRY_ALIASES = {"us", "usa", "u s", "u s a", "united states", "united states of america",
                    "america"}
_ANY = {"", "any", "all", "*"}
# Other words people use for an industry (matched like the industry name itself).
_INDUSTRY_ALIASES: dict[str, tuple[str, ...]] = {
    "salon": ("hair salon", "hairdresser", "beauty salon", "hair"),
    "barber": ("barbershop", "barber shop"),
    "spa": ("day spa",),
    "nail salon": ("nails", "manicure"),
    "dental clinic": ("dentist", "dental", "dentistry"),
    "medical clinic": ("doctor", "medical", "family medicine"),
    "chiropractor": ("chiropractic",),
    "physiotherapy": ("physical therapy", "physio", "physiotherapist"),
    "yoga studio": ("yoga",),
    "pilates studio": ("pilates",),
    "fitness studio": ("gym", "fitness"),
    "massage therapy": ("massage",),
    "tattoo studio": ("tattoo",),
    "restaurant": ("cafe", "bistro"),
    "veterinary clinic": ("vet", "veterinarian", "veterinary", "animal hospital"),
}
_CLEAN = re.compile(r"[^a-z0-9& ]+")


def _norm(text: str) -> str:
    return " ".join(_CLEAN.sub(" ", text.lower()).split())


def _singular(text: str) -> str:
    return " ".join(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w
                    for w in text.split())


@lru_cache(maxsize=4096)
def match_industries(keyword: str | None) -> tuple[int, ...]:
    """Indexes into names.INDUSTRIES matched by a case-insensitive keyword (all when empty/any)."""
    q = _norm(keyword or "")
    if q in _ANY:
        return tuple(range(len(names.INDUSTRIES)))
    for query in (q, _singular(q)):
        hits = tuple(
            i for i, ind in enumerate(names.INDUSTRIES)
            if any(query in term or term in query
                   for term in (ind.name, *_INDUSTRY_ALIASES.get(ind.name, ())))
        )
        if hits:
            return hits
    return ()


def _part_matches(part: str, city: names.City) -> bool:
    c, s, sn = city.name.lower(), city.state.lower(), city.state_name.lower()
    if part in (c, s, sn) or part in _COUNTRY_ALIASES:
        return True
    # "austin tx", "austin texas", "tx us" written without commas.
    return any(part == f"{a} {b}" for a in (c, s, sn) for b in (s, sn, "us", "usa"))


@lru_cache(maxsize=4096)
def match_cities(location: str | None) -> tuple[int, ...]:
    """Indexes into names.CITIES matched by a location such as "Austin", "Austin, TX", "Texas",
    "TX", "United States" or "US" (case-insensitive; all cities when empty)."""
    text = (location or "").lower().replace(".", "")
    parts = [" ".join(w for w in _norm(p).split() if not w.isdigit()) for p in text.split(",")]
    parts = [p for p in parts if p]
    if not parts or all(p in _ANY for p in parts):
        return tuple(range(len(names.CITIES)))
    return tuple(i for i, city in enumerate(names.CITIES)
                 if all(_part_matches(p, city) for p in parts))


@dataclass
class SourceIndex:
    """One source's listings with an (industry, city) -> positions index."""

    listings: list[Listing]
    by_cell: dict[tuple[int, int], list[int]] = field(default_factory=dict)
    by_id: dict[str, Listing] = field(default_factory=dict)

    def search(self, industries: tuple[int, ...], cities: tuple[int, ...]) -> list[Listing]:
        return [self.listings[i] for i in self._positions(industries, cities)]

    @lru_cache(maxsize=2048)  # noqa: B019 - one SourceIndex per process, lives as long as it
    def _positions(self, industries: tuple[int, ...], cities: tuple[int, ...]) -> tuple[int, ...]:
        found: list[int] = []
        for i in industries:
            for c in cities:
                found.extend(self.by_cell.get((i, c), ()))
        found.sort()  # the source's own (deterministic) order
        return tuple(found)

    def __hash__(self) -> int:
        return id(self)


class Catalog:
    """The whole dataset plus every index the fake APIs and websites need."""

    def __init__(self, businesses: int, seed: int) -> None:
        self.seed = seed
        self.businesses: list[Business] = generate_businesses(businesses, seed)
        ind_pos = {ind.name: i for i, ind in enumerate(names.INDUSTRIES)}
        city_pos = {(c.name, c.state): i for i, c in enumerate(names.CITIES)}
        self.by_domain: dict[str, Business] = {}
        self.by_email: dict[str, tuple[Business, Email]] = {}
        self.by_name: dict[str, list[Business]] = {}
        for b in self.businesses:
            if b.domain:
                self.by_domain[b.domain] = b
            for e in b.emails:
                self.by_email[e.address.lower()] = (b, e)
            self.by_name.setdefault(_norm(b.name), []).append(b)
        self.sources: dict[str, SourceIndex] = {}
        for source in SOURCES:
            idx = SourceIndex(build_listings(self.businesses, source, seed))
            for pos, listing in enumerate(idx.listings):
                b = listing.business
                key = (ind_pos[b.industry], city_pos[(b.city, b.state)])
                idx.by_cell.setdefault(key, []).append(pos)
                idx.by_id[listing.id] = listing
            self.sources[source] = idx

    def search(self, source: str, industry: str | None, location: str | None) -> list[Listing]:
        """Listings of `source` matching an industry keyword and a location, in source order."""
        return self.sources[source].search(match_industries(industry), match_cities(location))

    def search_many(self, source: str, industries: list[str], locations: list[str]
                    ) -> list[Listing]:
        """Like search, with any-of lists of keywords and locations (empty list = any)."""
        inds = sorted({i for k in industries for i in match_industries(k)}) if industries else \
            list(match_industries(None))
        cities = sorted({c for loc in locations for c in match_cities(loc)}) if locations else \
            list(match_cities(None))
        return self.sources[source].search(tuple(inds), tuple(cities))

    def business_for_host(self, host: str) -> Business | None:
        """The business whose website `host` (no port; may start with www.) is."""
        host = host.lower().rstrip(".")
        b = self.by_domain.get(host)
        if b is None and host.startswith("www."):
            b = self.by_domain.get(host[4:])
        return b

    def find_by_company(self, company: str) -> Business | None:
        hits = self.by_name.get(_norm(company))
        return hits[0] if hits else None
