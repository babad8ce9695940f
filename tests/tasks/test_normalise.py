"""Normalising vendor records (recorded payloads from the API contracts) into CandidateLead."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tasks.normalise import (
    InvalidRecord,
    normalise_apollo_org,
    normalise_google_place,
    normalise_pdl_company,
    normalise_records,
)

PAYLOADS = Path(__file__).resolve().parent.parent / "fixtures" / "payloads"


def payload(name: str) -> Any:
    return json.loads((PAYLOADS / name).read_text())


def test_apollo_org_maps_identity_contact_and_location() -> None:
    org = payload("apollo_org_search.json")["organizations"][0]
    lead = normalise_apollo_org(org)
    assert lead.source == "apollo"
    assert lead.source_record_id == "64f1c2a9e3b7d10001a2b3c4"
    assert lead.company_name == "Northwind Robotics"
    assert lead.website == "http://www.northwind-robotics.example"
    assert lead.phone == "+15125550142"
    assert (lead.city, lead.state, lead.country) == ("Austin", "TX", "US")
    assert lead.employee_count == 140
    assert lead.industry == "machinery"
    assert lead.raw == org


def test_apollo_record_without_usable_name_raises_invalid_record() -> None:
    orgs = payload("apollo_org_search_edge_cases.json")["organizations"]
    for org in (orgs[0], orgs[1], orgs[4]):
        with pytest.raises(InvalidRecord) as info:
            normalise_apollo_org(org)
        assert info.value.rule == "missing_company_name"


def test_apollo_wrong_typed_optional_field_becomes_none_and_missing_id_gets_stable_hash() -> None:
    org = payload("apollo_org_search_edge_cases.json")["organizations"][2]
    lead = normalise_apollo_org(org)
    assert lead.company_name == "Bella Hair Studio"
    assert lead.employee_count is None
    assert lead.website == "http://bellahair.example"
    assert lead.state == "CA"
    assert lead.source_record_id.startswith("sha1:")
    assert normalise_apollo_org(dict(org)).source_record_id == lead.source_record_id


def test_normalise_records_quarantines_bad_records_and_keeps_good_ones() -> None:
    orgs = payload("apollo_org_search_edge_cases.json")["organizations"]
    leads, rejected = normalise_records("apollo", orgs)
    assert [lead.company_name for lead in leads] == ["Bella Hair Studio"]
    assert len(rejected) == 4
    assert {r.rule for r in rejected} == {"missing_company_name", "not_an_object"}
    assert all(r.stage == "normalise" and r.source == "apollo" for r in rejected)
    assert rejected[0].row_ref == "org-no-name"
    assert rejected[0].payload["website_url"] == "http://nameless.example"


def test_google_place_parses_formatted_us_address() -> None:
    place = payload("google_places_text_search.json")["places"][0]
    lead = normalise_google_place(place)
    assert lead.source_record_id == "ChIJexampleAAAAAAAAAAAAAAAA1"
    assert lead.company_name == "Cedar Plumbing Co."
    assert lead.address == "100 Example Ave"
    assert (lead.city, lead.state, lead.postal_code, lead.country) == (
        "Austin", "TX", "78701", "US"
    )
    assert lead.phone == "+1 512-555-0101"
    assert lead.website == "https://cedar-plumbing.example/"
    assert (lead.rating, lead.review_count) == (4.7, 128)
    assert lead.industry == "Plumber"


def test_google_place_without_website_or_phone_still_normalises() -> None:
    place = payload("google_places_text_search.json")["places"][1]
    lead = normalise_google_place(place)
    assert lead.company_name == "Lone Star Pipe Works"
    assert lead.website is None and lead.phone is None
    assert lead.industry == "plumber"


def test_google_place_uses_address_components_and_tolerates_bad_rating() -> None:
    place = payload("google_places_components.json")["places"][0]
    lead = normalise_google_place(place)
    assert lead.address == "12 Main Street"
    assert (lead.city, lead.state, lead.postal_code, lead.country) == (
        "Portland", "OR", "97201", "US"
    )
    assert lead.rating is None


def test_google_closed_or_nameless_places_are_refused_with_reasons() -> None:
    places = payload("google_places_components.json")["places"]
    leads, rejected = normalise_records("google_places", places)
    assert len(leads) == 1
    assert [r.rule for r in rejected] == ["closed_business", "missing_company_name"]


def test_pdl_company_recases_text_and_builds_urls() -> None:
    company = payload("pdl_company_search.json")["data"][0]
    lead = normalise_pdl_company(company)
    assert lead.source_record_id == "tnHcExampleCompanyId0000001"
    assert lead.company_name == "Northwind Robotics"
    assert lead.website == "http://northwind-robotics.example"
    assert lead.linkedin_url == "https://linkedin.com/company/northwind-robotics-example"
    assert lead.address == "100 Example Avenue Suite 200"
    assert (lead.city, lead.state, lead.postal_code, lead.country) == (
        "Austin", "TX", "78701", "US"
    )
    assert lead.raw["size"] == "51-200"


def test_pdl_company_with_only_lowercase_name_is_title_cased() -> None:
    lead = normalise_pdl_company({"id": "x1", "name": "bella hair studio", "location": "bad"})
    assert lead.company_name == "Bella Hair Studio"
    assert lead.city is None


def test_boolean_placeholders_are_not_counts_or_ratings() -> None:
    # PDL answers fields outside the plan's bundle with `true` ("data exists"); a boolean
    # is no number, whichever vendor sends it.
    company = dict(payload("pdl_company_search.json")["data"][0], employee_count=True)
    assert normalise_pdl_company(company).employee_count is None
    org = dict(payload("apollo_org_search.json")["organizations"][0],
               estimated_num_employees=True)
    assert normalise_apollo_org(org).employee_count is None
    place = dict(payload("google_places_text_search.json")["places"][0], rating=True,
                 userRatingCount=False)
    lead = normalise_google_place(place)
    assert (lead.rating, lead.review_count) == (None, None)


def test_unknown_source_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no normaliser"):
        normalise_records("yelp", [{}])


def test_country_names_of_any_source_become_iso_codes() -> None:
    pdl = normalise_pdl_company({"id": "p1", "name": "salon rood",
                                 "location": {"country": "netherlands", "locality": "amsterdam"}})
    assert pdl.country == "NL"
    org = normalise_apollo_org({"id": "a1", "name": "Haarwerk", "country": "Deutschland"})
    assert org.country == "DE"


@pytest.mark.parametrize(
    ("formatted", "expected"),
    [
        ("10 Downing St, London SW1A 2AA, UK",
         ("10 Downing St", "London", None, "SW1A 2AA", "GB")),
        ("Friedrichstraße 43, 10117 Berlin, Germany",
         ("Friedrichstraße 43", "Berlin", None, "10117", "DE")),
        ("Keizersgracht 123A, 1015 CJ Amsterdam, Netherlands",
         ("Keizersgracht 123A", "Amsterdam", None, "1015 CJ", "NL")),
        ("Level 3/100 George St, Sydney NSW 2000, Australia",
         ("Level 3/100 George St", "Sydney", "NSW", "2000", "AU")),
        ("100 King St W, Toronto, ON M5V 2T6, Canada",
         ("100 King St W", "Toronto", "ON", "M5V 2T6", "CA")),
    ],
)
def test_google_place_parses_formatted_addresses_outside_the_us(
    formatted: str, expected: tuple[str | None, ...]
) -> None:
    # Without address components (a field mask without them), the street, city and postcode
    # of a non-US address were left in one string and the city was lost to dedupe.
    lead = normalise_google_place({"id": "p1", "displayName": {"text": "Bella"},
                                   "formattedAddress": formatted})
    assert (lead.address, lead.city, lead.state, lead.postal_code, lead.country) == expected


@pytest.mark.parametrize(("given", "stored"), [
    ("HTTPS://Bella-Salon.com/Book", "https://Bella-Salon.com/Book"),
    ("Http://bella-salon.com", "http://bella-salon.com"),
    ("//bella-salon.com/", "http://bella-salon.com/"),
    ("bella-salon.com", "http://bella-salon.com"),
    ("bella-salon.com:8080/book", "http://bella-salon.com:8080/book"),
    ("ftp://files.bella-salon.com", None),
    ("mailto:hi@bella-salon.com", None),
    ("javascript:alert(1)", None),
])
def test_a_vendor_website_is_an_http_url_or_dropped_alone(given: str, stored: str | None) -> None:
    """An odd website costs the lead its website, never the lead: what is kept passes the
    validation's URL rule, what is dropped leaves the rest of the record."""
    from tasks.steps import to_frame
    from tasks.validation import validate_batch

    org = {**payload("apollo_org_search.json")["organizations"][0], "website_url": given,
           "primary_domain": None}
    lead = normalise_apollo_org(org)
    assert lead.website == stored
    assert lead.company_name == "Northwind Robotics"
    frame = to_frame([lead])
    frame["quality_score"], frame["tier"] = 50, "warm"
    assert validate_batch(frame).rejected == []
