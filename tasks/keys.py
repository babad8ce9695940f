"""Normalised match keys for dedupe: email, registrable domain, E.164 phone, company name, city
and street address, as pure functions plus `add_keys`, which adds them to a whole batch at once."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import pandas as pd
import phonenumbers
import tldextract

# Columns `add_keys` adds; the load step stores all of them on `leads` (same names).
KEY_COLUMNS: tuple[str, ...] = (
    "email_norm",
    "domain",
    "phone_e164",
    "name_key",
    "city_key",
    "name_block",
    "address_key",
)

# Free and ISP mailboxes: an address there names a person, not a business. Small businesses
# without a domain of their own write from their ISP's mail (btinternet.com, web.de, bigpond.com).
WEBMAIL_DOMAINS: frozenset[str] = frozenset(
    {
        "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "ymail.com", "rocketmail.com",
        "outlook.com", "hotmail.com", "hotmail.co.uk", "live.com", "msn.com", "aol.com",
        "icloud.com", "me.com", "mac.com", "protonmail.com", "proton.me", "gmx.com", "gmx.net",
        "mail.com", "zoho.com", "yandex.com", "comcast.net", "att.net", "sbcglobal.net",
        "verizon.net", "bellsouth.net", "cox.net", "charter.net", "earthlink.net",
        "pm.me", "fastmail.com", "hey.com", "tutanota.com", "aim.com", "juno.com",
        "optonline.net", "frontier.com", "windstream.net", "centurylink.net", "roadrunner.com",
        "outlook.co.uk", "live.co.uk", "aol.co.uk", "btinternet.com", "btopenworld.com",
        "sky.com", "virginmedia.com", "ntlworld.com", "blueyonder.co.uk", "talktalk.net",
        "tiscali.co.uk", "eircom.net",
        "web.de", "gmx.de", "gmx.at", "gmx.ch", "t-online.de", "freenet.de", "arcor.de",
        "posteo.de", "mail.de", "yahoo.de", "hotmail.de", "outlook.de", "live.de",
        "orange.fr", "wanadoo.fr", "free.fr", "sfr.fr", "laposte.net", "yahoo.fr", "hotmail.fr",
        "live.fr", "yahoo.es", "hotmail.es", "telefonica.net", "yahoo.it", "hotmail.it",
        "libero.it", "yahoo.ca", "hotmail.ca", "shaw.ca", "rogers.com", "sympatico.ca",
        "videotron.ca", "telus.net", "bell.net", "yahoo.com.au", "bigpond.com",
        "bigpond.net.au", "optusnet.com.au", "iinet.net.au", "tpg.com.au", "xtra.co.nz",
        "yahoo.com.mx", "prodigy.net.mx",
    }
)

# Hosts that say nothing about which business a URL or email belongs to: webmail, social
# networks, maps, link-in-bio pages and booking platforms that host many businesses under one
# registrable domain. Kept as data so it can grow without touching the logic.
SHARED_HOSTS: frozenset[str] = WEBMAIL_DOMAINS | frozenset(
    {
        # social, maps, directories, link-in-bio
        "facebook.com", "fb.com", "fb.me", "instagram.com", "twitter.com", "x.com",
        "tiktok.com", "linkedin.com", "youtube.com", "pinterest.com", "yelp.com",
        "google.com", "goo.gl", "g.page", "business.site", "linktr.ee", "linkin.bio",
        "beacons.ai", "carrd.co", "about.me", "nextdoor.com", "tripadvisor.com",
        "bit.ly", "wa.me", "whatsapp.com", "threads.net", "yell.com", "foursquare.com",
        "lnk.bio", "taplink.cc", "bio.link", "solo.to",
        # booking platforms and site builders that host many businesses on their own domain
        "vagaro.com", "square.site", "squareup.com", "booksy.com", "setmore.com",
        "schedulicity.com", "styleseat.com", "glossgenius.com", "fresha.com", "mindbodyonline.com",
        "mindbody.io", "calendly.com", "acuityscheduling.com", "as.me", "simplybook.me",
        "zocdoc.com", "opentable.com", "resy.com", "exploretock.com", "sevenrooms.com",
        "janeapp.com", "cliniko.com", "timely.com", "gettimely.com", "phorest.com",
        "joinblvd.com", "boulevard.io", "zenoti.com", "mangomint.com", "genbook.com",
        "wix.com", "wixsite.com", "squarespace.com", "weebly.com", "godaddysites.com",
        "wordpress.com", "blogspot.com", "myshopify.com", "sites.google.com",
        # ... and the other hosts of tasks/website/signatures.json's booking tools
        "hubspot.com", "hs-sites.com", "office.com", "office365.com", "app.google",
        "youcanbook.me", "phorest.me", "appointy.com", "tidycal.com", "savvycal.com",
        "booker.com", "shedul.com", "squarespacescheduling.com", "blvd.app", "joinboulevard.com",
        "tumblr.com", "jimdo.com", "jimdofree.com", "jimdosite.com", "strikingly.com",
        "mystrikingly.com", "site123.me", "webnode.com", "webnode.page",
    }
)
# Platforms with a site per country (yelp.co.uk, treatwell.de, google.com.au, ...): any
# registrable domain whose name, under its public suffix, is one of these is shared.
SHARED_BRANDS: frozenset[str] = frozenset(
    {
        "google", "facebook", "instagram", "yelp", "tripadvisor", "opentable", "treatwell",
        "doctolib", "simplybook", "janeapp", "booksy", "fresha", "planity",
    }
)


# Trailing words that only say what legal form a company has.
LEGAL_SUFFIXES: frozenset[str] = frozenset(
    {
        "llc", "inc", "ltd", "co", "corp", "corporation", "incorporated", "company", "limited",
        "pllc", "plc", "llp", "lp", "pc", "pa", "gmbh", "sarl", "sa", "bv", "pty", "and",
    }
)
NAME_STOPWORDS: frozenset[str] = frozenset({"the"})

# Words too common among local businesses to block on; the name block is the first other word.
GENERIC_NAME_WORDS: frozenset[str] = frozenset(
    {
        "and", "of", "a", "at", "by", "on", "in", "for", "salon", "salons", "studio", "studios",
        "spa", "clinic", "clinics", "center", "centre", "hair", "nails", "nail", "beauty",
        "barber", "barbers", "barbershop", "shop", "lounge", "bar", "day", "med", "medical",
        "dental", "dentistry", "family", "health", "wellness", "fitness", "yoga", "pilates",
        "massage", "therapy", "physical", "chiropractic", "skin", "care", "aesthetics", "lash",
        "lashes", "brow", "brows", "boutique", "house", "room", "co", "group", "new", "best",
    }
)

# Street-type and directional abbreviations (USPS style) expanded to one spelling.
STREET_WORDS: dict[str, str] = {
    "st": "street", "str": "street", "ave": "avenue", "av": "avenue", "avn": "avenue",
    "blvd": "boulevard", "boul": "boulevard", "rd": "road", "dr": "drive", "drv": "drive",
    "ln": "lane", "ct": "court", "crt": "court", "pl": "place", "plz": "plaza", "sq": "square",
    "pkwy": "parkway", "pky": "parkway", "hwy": "highway", "fwy": "freeway", "expy": "expressway",
    "cir": "circle", "ter": "terrace", "terr": "terrace", "trl": "trail", "tr": "trail",
    "way": "way", "wy": "way", "aly": "alley", "xing": "crossing", "ctr": "center",
    "n": "north", "s": "south", "e": "east", "w": "west", "ne": "northeast", "nw": "northwest",
    "se": "southeast", "sw": "southwest", "mt": "mount", "ft": "fort",
}
# Unit designators: the designator and the token after it are dropped ("Suite 4", "Apt B").
UNIT_WORDS: frozenset[str] = frozenset(
    {"suite", "ste", "unit", "apt", "apartment", "fl", "floor", "rm", "room", "bldg", "building",
     "no", "lot", "spc", "space", "dept"}
)
# Spelled-out ordinals as sources abbreviate them ("First St" = "1st St").
ORDINALS: dict[str, str] = {
    "first": "1st", "second": "2nd", "third": "3rd", "fourth": "4th", "fifth": "5th",
    "sixth": "6th", "seventh": "7th", "eighth": "8th", "ninth": "9th", "tenth": "10th",
}
CITY_WORDS: dict[str, str] = {"st": "saint", "ste": "sainte", "ft": "fort", "mt": "mount"}
US_STATE_CODES: dict[str, str] = {
    "alabama": "AL", "alaska": "AK", "arizona": "AZ", "arkansas": "AR", "california": "CA",
    "colorado": "CO", "connecticut": "CT", "delaware": "DE", "district of columbia": "DC",
    "florida": "FL", "georgia": "GA", "hawaii": "HI", "idaho": "ID", "illinois": "IL",
    "indiana": "IN", "iowa": "IA", "kansas": "KS", "kentucky": "KY", "louisiana": "LA",
    "maine": "ME", "maryland": "MD", "massachusetts": "MA", "michigan": "MI",
    "minnesota": "MN", "mississippi": "MS", "missouri": "MO", "montana": "MT",
    "nebraska": "NE", "nevada": "NV", "new hampshire": "NH", "new jersey": "NJ",
    "new mexico": "NM", "new york": "NY", "north carolina": "NC", "north dakota": "ND",
    "ohio": "OH", "oklahoma": "OK", "oregon": "OR", "pennsylvania": "PA",
    "rhode island": "RI", "south carolina": "SC", "south dakota": "SD", "tennessee": "TN",
    "texas": "TX", "utah": "UT", "vermont": "VT", "virginia": "VA", "washington": "WA",
    "west virginia": "WV", "wisconsin": "WI", "wyoming": "WY",
}
# "Austin TX": a trailing state code is not part of the city's name.
US_STATES: frozenset[str] = frozenset(code.lower() for code in US_STATE_CODES.values())

COUNTRY_REGIONS: dict[str, str] = {
    "us": "US", "usa": "US", "u.s.": "US", "u.s.a.": "US", "united states": "US",
    "united states of america": "US",
    "ca": "CA", "canada": "CA", "uk": "GB", "gb": "GB", "united kingdom": "GB",
    "great britain": "GB", "england": "GB", "au": "AU", "australia": "AU", "ie": "IE",
    "ireland": "IE", "nz": "NZ", "new zealand": "NZ", "de": "DE", "germany": "DE", "fr": "FR",
    "france": "FR", "es": "ES", "spain": "ES", "mx": "MX", "mexico": "MX",
    # Names (case-folded, accents stripped) and ISO alpha-3 codes sources write; any ISO
    # alpha-2 code is read by `country_code` itself.
    "scotland": "GB", "wales": "GB", "northern ireland": "GB", "britain": "GB", "gbr": "GB",
    "can": "CA", "aus": "AU", "irl": "IE", "nzl": "NZ", "deu": "DE", "fra": "FR", "esp": "ES",
    "mex": "MX", "ita": "IT", "nld": "NL", "bel": "BE", "che": "CH", "aut": "AT",
    "deutschland": "DE", "federal republic of germany": "DE", "netherlands": "NL",
    "the netherlands": "NL", "holland": "NL", "nederland": "NL", "belgium": "BE",
    "belgique": "BE", "belgie": "BE", "luxembourg": "LU", "switzerland": "CH", "schweiz": "CH",
    "suisse": "CH", "svizzera": "CH", "austria": "AT", "osterreich": "AT", "italy": "IT",
    "italia": "IT", "espana": "ES", "portugal": "PT", "sweden": "SE", "sverige": "SE",
    "norway": "NO", "norge": "NO", "denmark": "DK", "danmark": "DK", "finland": "FI",
    "suomi": "FI", "iceland": "IS", "poland": "PL", "polska": "PL", "czech republic": "CZ",
    "czechia": "CZ", "slovakia": "SK", "hungary": "HU", "romania": "RO", "bulgaria": "BG",
    "greece": "GR", "croatia": "HR", "slovenia": "SI", "estonia": "EE", "latvia": "LV",
    "lithuania": "LT", "malta": "MT", "cyprus": "CY", "turkey": "TR", "turkiye": "TR",
    "israel": "IL", "united arab emirates": "AE", "uae": "AE", "south africa": "ZA",
    "india": "IN", "singapore": "SG", "hong kong": "HK", "japan": "JP", "south korea": "KR",
    "philippines": "PH", "brazil": "BR", "brasil": "BR", "argentina": "AR", "chile": "CL",
    "colombia": "CO", "peru": "PE", "puerto rico": "PR",
}

_EMAIL_RE = re.compile(r"^[a-z0-9.!#$%&'*+/=?^_`{|}~-]+@(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+"
                       r"[a-z][a-z0-9-]*[a-z0-9]$")
_NON_ALNUM = re.compile(r"[^0-9a-z]+")
_APOSTROPHES = re.compile(r"[’'`´]")
_POSSESSIVE = re.compile(r"[’'`´]s\b")
_HOST_OK = re.compile(r"[a-z0-9.-]+")
_IP_HOST = re.compile(r"[0-9.]+")
_UNIT_HASH = re.compile(r"#\s*\w+")
_LEADING_NUMBER = re.compile(r"^\d+")
# "Friedrichstraße 43", "Keizersgracht 123A": a house number after the street (most of Europe).
# Up to three digits: a trailing four- or five-digit number is a postcode ("Sydney NSW 2000").
_TRAILING_HOUSE_NUMBER = re.compile(r"\s\d{1,3}[a-z]?$", re.IGNORECASE)
_HOUSE_NUMBER = re.compile(r"\d{1,3}[a-z]?")
# First words of an address part that is a unit, not a street ("Suite 2", "Level 3, ...").
_UNIT_PART_WORDS: frozenset[str] = UNIT_WORDS | {"level", "flat", "shop", "office", "lvl"}
_DOTS_IN_WORD = re.compile(r"(?<=\w)\.(?=\w)")
_WORD_MARKS = re.compile(r"[’'`´.]")
_DIGITS = re.compile(r"\D+")
_EXTENSION = re.compile(r"(?:ext\.?|extension|x|#)\s*\d+\s*$", re.IGNORECASE)

# Built once per process from the bundled public-suffix snapshot: never touches the network.
# Private suffixes (square.site, wixsite.com, ...) make "bella.square.site" a domain of its own.
_TLD = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, include_psl_private_domains=True)


def _text(value: Any) -> str | None:
    """A stripped string, or None for missing values (None, NaN, NA, empty)."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float) and value != value:  # NaN
        return None
    s = str(value).strip()
    return s or None


def _fold(s: str) -> str:
    """Case-fold and strip accents (é -> e), so spellings from different sources compare."""
    if s.isascii():
        return s.lower()
    s = unicodedata.normalize("NFKD", s.casefold())
    return "".join(c for c in s if not unicodedata.combining(c))


@lru_cache(maxsize=200_000)
def _normalise_email(s: str) -> str | None:
    s = s.strip().strip("<>").strip().lower()
    if s.startswith("mailto:"):
        s = s[7:].split("?", 1)[0]
    if len(s) > 320 or s.count("@") != 1 or ".." in s or not _EMAIL_RE.match(s):
        return None
    return s


def normalise_email(value: Any) -> str | None:
    """Lower-cased, stripped email address, or None when it is obviously not one."""
    s = _text(value)
    return _normalise_email(s) if s else None


def email_domain(email_norm: str | None) -> str | None:
    return email_norm.rsplit("@", 1)[1] if email_norm else None


def is_webmail(email_norm: str | None) -> bool:
    """True for addresses at a webmail provider (gmail.com, ...): they say nothing about which
    business owns them, so they only match on the full address and with agreeing names."""
    return bool(email_norm) and email_domain(email_norm) in WEBMAIL_DOMAINS


# "http://www.bella.com/x" or "bella.com": the host without urlsplit.
_SIMPLE_URL = re.compile(r"(?:https?://)?([a-z0-9-]+(?:\.[a-z0-9-]+)+)(?:[/?#].*)?", re.DOTALL)
_suffixes: frozenset[str] | None = None


def _public_suffixes() -> frozenset[str]:
    global _suffixes
    if _suffixes is None:
        _suffixes = frozenset(_TLD.tlds)
    return _suffixes


def _fast_domain(host: str) -> str | None:
    """What the public-suffix lookup below returns for the common hosts, or None to ask it:
    a two-label host is its own registrable domain (a listed suffix itself falls back to its
    last two labels below, the same), and "www.x.tld" is "x.tld" when no rule makes "x.tld"
    or "www.x.tld" a suffix (nor an exception or wildcard touches them)."""
    labels = host.split(".")
    if len(labels) == 2 and labels[0] != "www" and all(labels):
        return host
    if len(labels) == 3 and labels[0] == "www" and labels[1] != "www" and all(labels):
        rest = f"{labels[1]}.{labels[2]}"
        suffixes = _public_suffixes()
        if not any(r in suffixes for r in (rest, host, f"*.{labels[2]}", f"*.{rest}",
                                           f"!{rest}", f"!{host}")):
            return rest
    return None


@lru_cache(maxsize=200_000)
def _registrable_domain(s: str) -> str | None:
    s = s.strip().lower()
    m = _SIMPLE_URL.fullmatch(s)
    if m is not None:
        host = m.group(1)
        if not _IP_HOST.fullmatch(host):
            domain = _fast_domain(host)
            if domain is not None:
                return None if _shared(domain) else domain
    if "@" in s and "://" not in s and "/" not in s.split("@", 1)[0]:
        host = s.rsplit("@", 1)[1]
    else:
        try:
            parts = urlsplit(s if "://" in s else "//" + s)
            host = parts.hostname or ""
        except ValueError:
            return None
        # google.com/maps, facebook.com/page ... are caught below as shared hosts.
    host = host.strip(".").rstrip(".")
    if not host or not _HOST_OK.fullmatch(host):
        return None
    if _IP_HOST.fullmatch(host):  # an IP address names no business
        return None
    ext = _TLD(host)
    domain = ext.top_domain_under_public_suffix
    if not domain:
        # Unknown TLDs (e.g. the sandbox's *.example): the last two labels.
        labels = [p for p in host.split(".") if p]
        if len(labels) < 2:
            return None
        domain = ".".join(labels[-2:])
        if domain.startswith("www."):
            return None
    if _shared(domain):
        return None
    return domain


def _shared(domain: str) -> bool:
    return domain in SHARED_HOSTS or domain.partition(".")[0] in SHARED_BRANDS


def registrable_domain(value: Any) -> str | None:
    """The registrable domain (bellasalon.com) of a URL, host name or email address, or None
    when there is none or it is a shared host (gmail.com, facebook.com, vagaro.com, ...)."""
    s = _text(value)
    return _registrable_domain(s) if s else None


_nanp_valid: dict[str, bool] = {}


@lru_cache(maxsize=200_000)
def _phone_e164(s: str, region: str) -> str | None:
    s = _EXTENSION.sub("", s)
    digits = _DIGITS.sub("", s)
    if not digits or len(digits) > 17:
        return None
    # Fast path for North American numbers (most of our data): libphonenumber's validity is
    # decided by area code and exchange, so it is asked once per NPA-NXX, not once per number.
    start = s.lstrip()
    if (region in ("US", "CA") and not start.startswith(("+", "00"))) or start[:2] == "+1":
        nanp = digits[1:] if len(digits) == 11 and digits[0] == "1" else digits
        if len(nanp) == 10:
            prefix = nanp[:6]
            valid = _nanp_valid.get(prefix)
            if valid is None:
                valid = _slow_phone("+1" + nanp, region) is not None
                _nanp_valid[prefix] = valid
            return "+1" + nanp if valid else None
    e164 = _slow_phone(s, region)
    if e164 is None and start.startswith("00"):
        # "0044 20 7946 0958": "00" is the international prefix almost everywhere but North
        # America (011), so a European file's numbers fail under the default region US.
        e164 = _slow_phone("+" + start[2:], region)
    return e164


def _slow_phone(s: str, region: str) -> str | None:
    try:
        number = phonenumbers.parse(s, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def phone_e164(value: Any, default_region: str = "US") -> str | None:
    """The phone number in E.164 (+15125550142), or None when it is not a valid number."""
    s = _text(value)
    return _phone_e164(s, default_region.upper()) if s else None


def country_code(country: Any) -> str | None:
    """ISO 3166 alpha-2 code of a country name or code ("Deutschland", "uk", "NL"), or None
    when unknown."""
    s = _text(country)
    if not s:
        return None
    key = _fold(s)
    code = COUNTRY_REGIONS.get(key) or COUNTRY_REGIONS.get(key.strip(". "))
    if code is None and len(key) == 2 and key.upper() in phonenumbers.SUPPORTED_REGIONS:
        code = key.upper()
    return code


def phone_region(country: Any, default_region: str = "US") -> str:
    """ISO region for phone parsing from a country name or code; the default when unknown."""
    return country_code(country) or default_region


def _words(s: str) -> list[str]:
    s = _fold(s).replace("&", " and ").replace("+", " and ")
    if _WORD_MARKS.search(s):  # the three below only touch apostrophes and dots
        s = _POSSESSIVE.sub("", s)  # "Bella's" -> "bella", as most sources write it
        s = _APOSTROPHES.sub("", s)  # "O'Neil" -> "oneil", not "o neil"
        s = _DOTS_IN_WORD.sub("", s)  # "L.L.C." -> "llc", "St.Louis" stays two words below
    return _NON_ALNUM.sub(" ", s).split()


@lru_cache(maxsize=200_000)
def _name_key(s: str) -> str:
    words = [w for w in _words(s) if w not in NAME_STOPWORDS]
    while len(words) > 1 and words[-1] in LEGAL_SUFFIXES:
        words.pop()
    return " ".join(words)


def name_key(company: Any) -> str:
    """Company name reduced to what identifies it: case-folded, no accents or punctuation,
    "&" as "and", without "the" and trailing legal forms (LLC, Inc, Ltd, Co, Corp, PLLC ...)."""
    s = _text(company)
    return _name_key(s) if s else ""


def name_block(key: str | None) -> str | None:
    """Blocking key for fuzzy name matching: the first word of a name key that is not generic
    ("Salon Bella" and "Bella Salon" both block on "bella"); the first word if all are."""
    if not key:
        return None
    words = key.split()
    for w in words:
        if w not in GENERIC_NAME_WORDS:
            return w[:100]
    return words[0][:100]


@lru_cache(maxsize=50_000)
def _city_key(s: str) -> str:
    s = s.split(",", 1)[0]  # "Austin, TX" -> "Austin"
    words = _words(s)
    if len(words) > 1 and words[-1] in US_STATES:
        words.pop()
    if words and words[0] in CITY_WORDS:
        words[0] = CITY_WORDS[words[0]]
    return " ".join(words)


def city_key(city: Any) -> str | None:
    """City name normalised ("St. Louis" = "Saint Louis", "Austin, TX" = "Austin"), or None."""
    s = _text(city)
    return (_city_key(s) or None) if s else None


@lru_cache(maxsize=200_000)
def _address_key(s: str) -> str:
    # "123 Main St, Suite 4, Austin TX" -> the street line: the first part with a number, in
    # front or ("Friedrichstraße 43, 10117 Berlin") after the street.
    parts = s.split(",")
    s = next((p for p in parts if _LEADING_NUMBER.match(p.strip()) or (
        _TRAILING_HOUSE_NUMBER.search(p.rstrip())
        and p.split(None, 1)[0].lower().rstrip(".") not in _UNIT_PART_WORDS)), parts[0])
    s = _UNIT_HASH.sub(" ", s)  # "#4" is a unit
    words = _words(s)
    out: list[str] = []
    skip = False
    for i, w in enumerate(words):
        if skip:
            skip = False
            continue
        if w in UNIT_WORDS and i > 0:
            skip = True  # drop the designator and its value
            continue
        # Only expand abbreviations after the street number; "St" first would be a name.
        w = ORDINALS.get(w, w)
        out.append(STREET_WORDS.get(w, w) if i > 0 else w)
    if len(out) > 1 and not out[0][0].isdigit() and _HOUSE_NUMBER.fullmatch(out[-1]):
        out.insert(0, out.pop())  # "friedrichstrasse 43" -> "43 friedrichstrasse"
    # "123-125 Main" and "123A Main": the first number identifies the building.
    if out and (m := _LEADING_NUMBER.match(out[0])):
        out[0] = m.group(0)
    return " ".join(out)


def address_key(address: Any) -> str | None:
    """Street number and normalised street ("123 Main St., Suite 4" -> "123 main street"), or
    None. Units (suite, apt, #) are dropped: sources disagree about them for one business."""
    s = _text(address)
    return (_address_key(s) or None) if s else None


def _map_unique(values: Iterable[Any], fn: Callable[[Any], Any]) -> list[Any]:
    """fn over values, computed once per distinct value (batches repeat cities and hosts)."""
    cache: dict[Any, Any] = {}
    out = []
    for v in values:
        try:
            r = cache[v]
        except KeyError:
            r = cache[v] = fn(v)
        except TypeError:  # unhashable (a list in a text column): treat as missing
            r = None
        out.append(r)
    return out


def _column(df: pd.DataFrame, name: str) -> list[Any]:
    if name not in df.columns:
        return [None] * len(df)
    return df[name].astype(object).where(df[name].notna(), None).tolist()


def add_keys(df: pd.DataFrame, default_region: str = "US") -> pd.DataFrame:
    """A copy of a staging frame (company_name, email, website, phone, address, city, country)
    with the match keys added: email_norm, domain, phone_e164, name_key, city_key, name_block,
    address_key. Missing staging columns count as empty."""
    out = df.copy()
    emails = _map_unique(_column(df, "email"), normalise_email)
    websites = _map_unique(_column(df, "website"), registrable_domain)
    # The website names the business; a non-webmail email domain does too when there is none.
    domains = [
        w if w else (registrable_domain(email_domain(e)) if e and not is_webmail(e) else None)
        for w, e in zip(websites, emails, strict=True)
    ]
    regions = _map_unique(_column(df, "country"), lambda c: phone_region(c, default_region))
    phones = [
        _phone_e164(p, r) if (p := _text(v)) else None
        for v, r in zip(_column(df, "phone"), regions, strict=True)
    ]
    names = _map_unique(_column(df, "company_name"), name_key)
    out["email_norm"] = pd.Series(emails, index=df.index, dtype=object)
    out["domain"] = pd.Series(domains, index=df.index, dtype=object)
    out["phone_e164"] = pd.Series(phones, index=df.index, dtype=object)
    out["name_key"] = pd.Series([n or None for n in names], index=df.index, dtype=object)
    out["city_key"] = pd.Series(_map_unique(_column(df, "city"), city_key), index=df.index,
                                dtype=object)
    out["name_block"] = pd.Series(_map_unique(names, name_block), index=df.index, dtype=object)
    out["address_key"] = pd.Series(_map_unique(_column(df, "address"), address_key),
                                   index=df.index, dtype=object)
    return out
