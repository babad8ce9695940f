"""Unit behaviour of the dedupe key normalisers in tasks/keys.py."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks.keys import (
    KEY_COLUMNS,
    add_keys,
    address_key,
    city_key,
    is_webmail,
    name_block,
    name_key,
    normalise_email,
    phone_e164,
    phone_region,
    registrable_domain,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Info@BellaSalon.COM ", "info@bellasalon.com"),
        ("mailto:Hello@Glow.co", "hello@glow.co"),
        ("<owner@studio.example>", "owner@studio.example"),
        ("not-an-email", None),
        ("two@@signs.com", None),
        ("a@b", None),
        ("spaces in@name.com", None),
        ("dots..twice@x.com", None),
        ("", None),
        (None, None),
        (float("nan"), None),
    ],
)
def test_normalise_email_lowercases_and_rejects_obviously_invalid(raw, expected):
    assert normalise_email(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://www.BellaSalon.com/book?x=1", "bellasalon.com"),
        ("http://bellasalon.com", "bellasalon.com"),
        ("bellasalon.com/contact", "bellasalon.com"),
        ("shop.bellasalon.co.uk", "bellasalon.co.uk"),
        ("info@bellasalon.com", "bellasalon.com"),
        ("https://bella.square.site/", "bella.square.site"),  # private suffix: its own site
        ("bella-spa.example", "bella-spa.example"),  # unknown TLD: the last two labels
        ("https://www.facebook.com/bellasalon", None),
        ("https://www.google.com/maps/place/Bella+Salon", None),
        ("https://linktr.ee/bellasalon", None),
        ("https://www.vagaro.com/bellasalon", None),
        ("https://booksy.com/en-us/123_bella", None),
        ("someone@gmail.com", None),
        ("http://127.0.0.1:8799/", None),
        ("localhost", None),
        ("not a url", None),
        ("", None),
        (None, None),
    ],
)
def test_registrable_domain_ignores_shared_hosts(raw, expected):
    assert registrable_domain(raw) == expected


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("(512) 555-0142", "US", "+15125550142"),
        ("512.555.0142", "US", "+15125550142"),
        ("+1 512-555-0142", "GB", "+15125550142"),
        ("1-512-555-0142 ext. 12", "US", "+15125550142"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("+44 20 7946 0958", "US", "+442079460958"),
        # "00" is the international prefix outside North America (European CSVs write it
        # where "+" would be): it says so whatever the default region.
        ("0044 20 7946 0958", "US", "+442079460958"),
        ("00 49 30 1234567", "US", "+49301234567"),
        ("001 512 555 0142", "US", "+15125550142"),
        ("0044 20 7946 0958", "GB", "+442079460958"),
        ("0011 44 20 7946 0958", "AU", "+442079460958"),  # Australia's prefix is 0011
        ("555-0142", "US", None),  # too short
        ("(012) 555-0142", "US", None),  # NANP area codes never start with 0
        ("call us", "US", None),
        ("", "US", None),
        (None, "US", None),
    ],
)
def test_phone_e164_formats_valid_numbers_and_rejects_invalid(raw, region, expected):
    assert phone_e164(raw, region) == expected


def test_phone_region_maps_country_names_and_codes():
    assert phone_region("United Kingdom") == "GB"
    assert phone_region("usa") == "US"
    assert phone_region(None, "CA") == "CA"
    assert phone_region("Atlantis", "US") == "US"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Bella Salon LLC", "bella salon"),
        ("The Bella Salon, L.L.C.", "bella salon"),
        ("bella salon", "bella salon"),
        ("Bella's Salon & Spa", "bella salon and spa"),
        ("Glow Med Spa PLLC", "glow med spa"),
        ("Acme Corp.", "acme"),
        ("Smith & Co.", "smith"),
        ("Café Olé Inc", "cafe ole"),
        ("  STUDIO   9  ", "studio 9"),
        ("LLC", "llc"),  # a name that is only a legal form keeps it rather than vanish
        (None, ""),
    ],
)
def test_name_key_drops_case_accents_punctuation_and_legal_suffixes(raw, expected):
    assert name_key(raw) == expected


def test_name_block_skips_generic_words():
    assert name_block("salon bella") == name_block("bella salon") == "bella"
    assert name_block("nail bar") == "nail"  # every word generic: the first
    assert name_block("") is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("St. Louis", "saint louis"),
        ("Saint Louis", "saint louis"),
        ("Austin, TX", "austin"),
        ("Austin TX", "austin"),
        ("SAN JOSÉ", "san jose"),
        ("", None),
    ],
)
def test_city_key_normalises_city_names(raw, expected):
    assert city_key(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("123 Main St.", "123 main street"),
        ("123 Main Street Suite 4", "123 main street"),
        ("123 Main St, Ste 4, Austin TX 78701", "123 main street"),
        ("Suite 200, 45 N. Lamar Blvd", "45 north lamar boulevard"),
        ("45 N Lamar Blvd #200", "45 north lamar boulevard"),
        ("5 First St", "5 1st street"),
        ("7 Rue Ln.", "7 rue lane"),
        ("", None),
    ],
)
def test_address_key_keeps_number_and_normalised_street_without_unit(raw, expected):
    assert address_key(raw) == expected


def test_is_webmail_only_for_webmail_providers():
    assert is_webmail("x@gmail.com")
    assert not is_webmail("x@bellasalon.com")
    assert not is_webmail(None)


def test_add_keys_adds_every_key_column_and_falls_back_to_email_domain():
    df = pd.DataFrame(
        {
            "company_name": ["Bella Salon LLC", "Glow", None],
            "email": ["Info@BellaSalon.com", "glow@gmail.com", "bad"],
            "website": [None, "https://www.facebook.com/glow", None],
            "phone": ["(512) 555-0142", "+44 20 7946 0958", "nope"],
            "address": ["123 Main St.", None, ""],
            "city": ["Austin, TX", "London", None],
            "country": ["US", "United Kingdom", None],
        },
        index=[10, 11, 12],
    )
    out = add_keys(df)
    assert list(out.index) == [10, 11, 12]
    assert set(KEY_COLUMNS) <= set(out.columns)
    first = out.loc[10]
    assert first["email_norm"] == "info@bellasalon.com"
    assert first["domain"] == "bellasalon.com"  # no website: the business email's domain
    assert first["phone_e164"] == "+15125550142"
    assert (first["name_key"], first["name_block"]) == ("bella salon", "bella")
    assert (first["city_key"], first["address_key"]) == ("austin", "123 main street")
    assert out.loc[11, "domain"] is None  # facebook page and gmail say nothing
    assert out.loc[11, "phone_e164"] == "+442079460958"
    assert out.loc[12, ["email_norm", "phone_e164", "name_key", "address_key"]].isna().all()


def test_add_keys_treats_missing_staging_columns_as_empty():
    out = add_keys(pd.DataFrame({"company_name": ["Bella Salon"]}))
    assert out.loc[0, "name_key"] == "bella salon"
    assert out.loc[0, "email_norm"] is None and out.loc[0, "domain"] is None


def test_registrable_domain_fast_path_agrees_with_public_suffix_lookup(monkeypatch):
    from tasks import keys

    hosts = ["http://www.bella.com/book", "bella.com", "www.co.uk", "http://www.blogspot.com",
             "www.foo.ck", "http://foo.example", "www.www.com", "http://www.bella.square.site",
             "HTTP://WWW.Foo.COM/a?b", "http://www.foo.example", "www.example", "foo.co.uk",
             "www.foo.co.uk", "http://www.gmail.com", "www.bar.kawasaki.jp", "http://1.2.3.4"]
    keys._registrable_domain.cache_clear()
    fast = [keys.registrable_domain(h) for h in hosts]
    keys._registrable_domain.cache_clear()
    monkeypatch.setattr(keys, "_fast_domain", lambda host: None)
    try:
        assert fast == [keys.registrable_domain(h) for h in hosts]
    finally:
        keys._registrable_domain.cache_clear()


@pytest.mark.parametrize(
    "url",
    [
        # booking pages of the tools website analysis detects (tasks/website/signatures.json):
        # sources list them as the business's website, one host for thousands of businesses
        "https://meetings.hubspot.com/bella-salon",
        "https://outlook.office365.com/owa/calendar/Bella@bella.onmicrosoft.com/bookings/",
        "https://bookings.office.com/book/bella",
        "https://calendar.app.google/AbCdEf123",
        "https://www.treatwell.co.uk/place/bella-salon/",
        "https://www.treatwell.de/ort/bella-salon/",
        "https://www.opentable.co.uk/r/bella-london",
        "https://www.doctolib.de/praxis/berlin/bella",
        "https://bella.youcanbook.me/",
        "https://bella.simplybook.it/v2/",
        "https://bella.janeapp.co.uk/",
        "https://bella.phorest.me/",
        "https://booking.appointy.com/bella",
        "https://tidycal.com/bella",
        "https://savvycal.com/bella/chat",
        "https://go.booker.com/location/bella",
        "https://www.shedul.com/widget/bella",
        "https://bella.squarespacescheduling.com/",
        "https://blvd.app/@bella",
        # country sites of maps, directories and social networks
        "https://maps.google.co.uk/?cid=123",
        "https://www.google.de/maps/place/Bella",
        "https://www.yelp.co.uk/biz/bella-salon-london",
        "https://www.tripadvisor.co.uk/Restaurant_Review-bella",
        "https://www.yell.com/biz/bella-salon-london-123/",
        "https://wa.me/442079460958",
        # site builders that give each business a subdomain of their own domain
        "https://bella.tumblr.com/",
        "https://bella.jimdosite.com/",
        "https://bella.mystrikingly.com/",
        "https://bella.site123.me/",
        "https://bella.hs-sites.com/",
    ],
)
def test_registrable_domain_has_no_key_for_pages_on_shared_platforms(url):
    # A shared host as a "domain" merges every business listed with it (dedupe), gives them
    # the platform's own email (enrichment's domain search) and one cached site analysis.
    assert registrable_domain(url) is None


@pytest.mark.parametrize(
    "email",
    ["bella@btinternet.com", "bella@sky.com", "bella@virginmedia.com", "bella@live.co.uk",
     "bella@web.de", "bella@t-online.de", "bella@gmx.de", "bella@yahoo.de", "bella@bigpond.com",
     "bella@optusnet.com.au", "bella@shaw.ca", "bella@orange.fr", "bella@hotmail.fr"],
)
def test_regional_webmail_providers_are_webmail_and_name_no_business(email):
    # Two UK salons writing from @btinternet.com are not one business: without a website,
    # an ISP's mail domain must not become their shared "domain" key.
    out = add_keys(pd.DataFrame({"company_name": ["Bella Salon"], "email": [email]}))
    assert is_webmail(email)
    assert out.loc[0, "domain"] is None
    assert registrable_domain(email) is None


@pytest.mark.parametrize(
    ("country", "region"),
    [("Deutschland", "DE"), ("Scotland", "GB"), ("Wales", "GB"), ("Northern Ireland", "GB"),
     ("Netherlands", "NL"), ("The Netherlands", "NL"), ("NL", "NL"), ("Italy", "IT"),
     ("it", "IT"), ("Österreich", "AT"), ("Switzerland", "CH"), ("CH", "CH"), ("GBR", "GB"),
     ("Belgium", "BE"), ("U.S.A.", "US"), ("Atlantis", "US")],
)
def test_phone_region_knows_every_iso_code_and_common_country_names(country, region):
    assert phone_region(country) == region


def test_national_phone_numbers_of_european_businesses_get_their_e164():
    # A source's country as a name or ISO code decides how a national number is read: a
    # region it did not know fell back to US, and the number was lost as invalid.
    df = pd.DataFrame({
        "company_name": ["Salon Rood", "Bella Capelli", "Haarwerk", "Glen Salon"],
        "phone": ["020 624 1234", "02 1234 5678", "030 1234567", "0131 496 0000"],
        "country": ["Netherlands", "IT", "Deutschland", "Scotland"],
    })
    assert add_keys(df)["phone_e164"].tolist() == [
        "+31206241234", "+390212345678", "+49301234567", "+441314960000"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # Most of Europe writes the house number after the street; Google's address
        # components (street_number + route) and US-style sources write it first.
        ("Friedrichstraße 43", "43 friedrichstrasse"),
        ("43 Friedrichstraße", "43 friedrichstrasse"),
        ("Friedrichstraße 43, 10117 Berlin, Germany", "43 friedrichstrasse"),
        ("Keizersgracht 123A, 1015 CJ Amsterdam", "123 keizersgracht"),
        ("Via Roma 5, 20121 Milano MI, Italy", "5 via roma"),
        ("Suite 2, Hauptstraße 12", "12 hauptstrasse"),
        # a US ZIP or a street without a number is no house number
        ("Main Street, Austin TX 78701", "main street"),
    ],
)
def test_address_key_reads_house_numbers_written_after_the_street(raw, expected):
    assert address_key(raw) == expected
