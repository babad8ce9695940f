"""Draws a realistic website profile for a sandbox business: which booking tool (if any) and how
it is embedded, forms, layout era, charset, redirects, rare faults and the page's weight."""

from __future__ import annotations

import math
import random

from sandbox.dataset import SiteProfile

# Booking tools and their relative frequency on local-business sites (salons, clinics,
# studios, restaurants). Names are the canonical ones of tasks/website/signatures.json.
BOOKING_TOOL_WEIGHTS: dict[str, float] = {
    "vagaro": 8, "square": 8, "booksy": 6, "fresha": 6, "mindbody": 6, "calendly": 6,
    "acuity": 6, "glossgenius": 4, "styleseat": 3, "setmore": 3, "schedulicity": 2,
    "simplybook": 2, "zocdoc": 3, "jane": 2, "cliniko": 1.5, "opentable": 3, "resy": 1.5,
    "tock": 1, "sevenrooms": 1, "hubspot_meetings": 1, "microsoft_bookings": 1,
    "google_calendar": 1.5, "wix_bookings": 3, "timely": 1.5, "phorest": 1.5, "boulevard": 1.5,
    "zenoti": 1.5, "mangomint": 1, "youcanbookme": 0.5, "tidycal": 0.5, "genbook": 0.5,
    "appointy": 0.5, "savvycal": 0.3, "treatwell": 0.5, "doctolib": 0.3,
}
EMBEDS = ("script", "iframe", "link", "popup")
EMBED_WEIGHTS = (30, 20, 40, 10)

SHARE_WITH_ONLINE_BOOKING = 0.55
CHARSETS = ("utf-8", "windows-1252", "iso-8859-1", "shift_jis")
CHARSET_WEIGHTS = (86, 7, 5, 2)
REDIRECTS = (None, "www", "https", "chain", "internal")
REDIRECT_WEIGHTS = (60, 25, 10, 4.5, 0.5)
FAULTS = (None, "timeout", "never_ends", "server_error", "not_html", "huge", "no_site")
FAULT_WEIGHTS = (98.5, 0.2, 0.2, 0.5, 0.3, 0.2, 0.1)
# Page weight: log-normal around a 60 KB median, a long tail capped at 1 MB.
MEDIAN_KB = 60
SIZE_SIGMA = 0.7
MIN_KB, MAX_KB = 6, 1024

_TOOLS = tuple(BOOKING_TOOL_WEIGHTS)
_TOOL_WEIGHTS = tuple(BOOKING_TOOL_WEIGHTS.values())


def random_site_profile(rng: random.Random) -> SiteProfile:
    """One website profile; the distribution is documented in docs/website-analysis.md."""
    online = rng.random() < SHARE_WITH_ONLINE_BOOKING
    tool = rng.choices(_TOOLS, _TOOL_WEIGHTS)[0] if online else None
    embed = rng.choices(EMBEDS, EMBED_WEIGHTS)[0] if tool else None
    if tool == "wix_bookings":
        layout = "builder"
    else:
        layout = rng.choices(("modern", "builder", "table"), (65, 22, 13))[0]
    modern = layout != "table"
    redirect = rng.choices(REDIRECTS, REDIRECT_WEIGHTS)[0]
    https = redirect == "https" or rng.random() < (0.85 if modern else 0.35)
    size_kb = int(round(MEDIAN_KB * math.exp(rng.gauss(0.0, SIZE_SIGMA))))
    return SiteProfile(
        booking_tool=tool,
        embed=embed,
        has_contact_form=rng.random() < (0.6 if modern else 0.3),
        phone_booking=tool is None and rng.random() < 0.45,
        layout=layout,
        charset=rng.choices(CHARSETS, CHARSET_WEIGHTS)[0],
        https=https,
        analytics=rng.random() < (0.6 if modern else 0.2),
        viewport=rng.random() < (0.95 if modern else 0.25),
        social=rng.random() < (0.7 if modern else 0.35),
        structured_data=rng.random() < (0.4 if modern else 0.05),
        redirect=redirect,
        size_kb=max(MIN_KB, min(MAX_KB, size_kb)),
        fault=rng.choices(FAULTS, FAULT_WEIGHTS)[0],
    )
