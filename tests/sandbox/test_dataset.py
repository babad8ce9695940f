"""The synthetic dataset and each source's view of it: determinism, shares, overlap, and the
format variation that gives dedupe real work."""

from __future__ import annotations

import re
from collections import Counter

import tldextract

from sandbox.catalog import match_cities, match_industries
from sandbox.dataset import generate_businesses
from sandbox.listings import build_listings

N, SEED = 2000, 7
_E164 = re.compile(r"^\+1\d{3}555\d{4}$")
_TLD = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


def test_generation_is_deterministic_for_n_and_seed_and_stable_by_index() -> None:
    a, b = generate_businesses(N, SEED), generate_businesses(N, SEED)
    assert a == b
    assert generate_businesses(500, SEED) == a[:500]
    assert generate_businesses(N, SEED + 1) != a


def test_businesses_have_unique_e164_phones_and_unique_registrable_domains() -> None:
    businesses = generate_businesses(N, SEED)
    assert all(_E164.match(b.phone) for b in businesses)
    assert len({b.phone for b in businesses}) == N
    domains = [b.domain for b in businesses if b.domain]
    assert len(set(domains)) == len(domains)
    for d in domains:
        parts = _TLD(d)
        assert parts.suffix and parts.domain and f"{parts.domain}.{parts.suffix}" == d


def test_dataset_shares_are_plausible() -> None:
    businesses = generate_businesses(N, SEED)
    no_site = sum(b.domain is None for b in businesses) / N
    assert 0.08 < no_site < 0.16
    industries = Counter(b.industry for b in businesses)
    assert industries.most_common(1)[0][0] == "salon"
    assert len(industries) >= 12 and len({b.city for b in businesses}) >= 20
    statuses = Counter(e.status for b in businesses for e in b.emails)
    assert set(statuses) == {"valid", "invalid", "accept_all", "webmail", "disposable", "unknown"}
    assert statuses["valid"] == max(statuses.values())
    assert all(b.site is not None for b in businesses if b.domain)
    assert all(set(b.ids) == {"apollo", "google_places", "pdl"} for b in businesses)
    assert re.match(r"^[0-9a-f]{24}$", businesses[0].ids["apollo"])
    assert businesses[0].ids["google_places"].startswith("ChIJ")


def test_sources_see_overlapping_subsets_with_duplicates() -> None:
    businesses = generate_businesses(N, SEED)
    seen = {}
    for source, share in (("apollo", 0.8), ("google_places", 0.7), ("pdl", 0.6)):
        listings = build_listings(businesses, source, SEED)
        indexes = {x.business.index for x in listings}
        assert abs(len(indexes) / N - share) < 0.05, source
        dups = [x for x in listings if x.duplicate]
        assert 0 < len(dups) < 0.05 * len(listings)
        assert all(d.id != d.business.ids[source] for d in dups)
        seen[source] = indexes
    both = seen["apollo"] & seen["google_places"] & seen["pdl"]
    assert 0.25 * N < len(both) < 0.5 * N
    assert build_listings(businesses, "pdl", SEED) == build_listings(businesses, "pdl", SEED)


def test_sources_format_the_same_business_differently() -> None:
    businesses = generate_businesses(N, SEED)
    apollo = build_listings(businesses, "apollo", SEED)
    google = build_listings(businesses, "google_places", SEED)
    pdl = build_listings(businesses, "pdl", SEED)
    assert any(x.name.endswith(" LLC") for x in apollo)
    assert all(x.name == x.name.lower() for x in pdl)
    apollo_phones = {x.phone for x in apollo}
    assert any(re.match(r"^\d{10}$", p or "") for p in apollo_phones)
    assert any(re.match(r"^\+1 \d{3}-555-\d{4}$", p or "") for p in apollo_phones)
    assert all(re.match(r"^\(\d{3}\) 555-\d{4}$", x.phone) for x in google if x.phone)
    assert any((x.website or "").startswith("http://www.") for x in apollo)
    assert any((x.website or "").startswith("https://") and "www." not in (x.website or "")
               for x in google)
    assert any(x.website and not x.website.startswith("http") for x in pdl)


def test_location_and_industry_keywords_match_case_insensitively() -> None:
    austin = match_cities("austin")
    assert len(austin) == 1
    assert match_cities("Austin, TX") == austin == match_cities("AUSTIN, tx 78701")
    texas = match_cities("Texas")
    assert texas == match_cities("TX") and len(texas) == 4 and set(austin) <= set(texas)
    assert match_cities("United States") == match_cities("US") == match_cities("")
    assert match_cities("Paris, France") == ()
    assert match_industries("Salon") == match_industries("salon")
    assert match_industries("any") == match_industries(None) == match_industries("")
    assert match_industries("plumber") == ()
