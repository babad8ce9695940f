"""Draws a realistic website profile for a sandbox business. (Placeholder: the website-analysis
work replaces this with the full distribution.)"""

from __future__ import annotations

import random

from sandbox.dataset import SiteProfile


def random_site_profile(rng: random.Random) -> SiteProfile:
    return SiteProfile(
        booking_tool=rng.choice([None, "calendly", "vagaro", "square"]),
        embed="link",
        has_contact_form=rng.random() < 0.5,
        phone_booking=False,
        layout="modern",
        charset="utf-8",
        https=rng.random() < 0.8,
        analytics=rng.random() < 0.5,
        viewport=True,
        social=rng.random() < 0.5,
        structured_data=False,
        redirect=None,
        size_kb=60,
        fault=None,
    )
