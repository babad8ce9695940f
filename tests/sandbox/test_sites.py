"""The sandbox's websites: deterministic, realistic weight, real non-UTF-8 bytes, redirects and
faults as the profile says (rendered directly, no server needed)."""

from __future__ import annotations

import asyncio
import random
import statistics
from collections import Counter

from sandbox.dataset import Business
from sandbox.site_profiles import random_site_profile
from sandbox.sites import INTERNAL_TARGET, render_site, sample_business, site_response


def _with(business: Business, **changes: object) -> Business:
    from dataclasses import replace

    return replace(business, site=replace(business.site, **changes))  # type: ignore[arg-type]


def test_profiles_vary_like_real_sites() -> None:
    rng = random.Random(1)
    profiles = [random_site_profile(rng) for _ in range(4000)]
    tools = Counter(p.booking_tool for p in profiles)
    assert len(tools) >= 29 and 0.35 < tools[None] / 4000 < 0.55
    assert {p.embed for p in profiles} == {None, "script", "iframe", "link", "popup"}
    assert {p.layout for p in profiles} == {"modern", "table", "builder"}
    assert {"windows-1252", "iso-8859-1", "shift_jis"} <= {p.charset for p in profiles}
    assert {"www", "https", "chain", "internal"} <= {p.redirect for p in profiles}
    sizes = [p.size_kb for p in profiles]
    assert 50 <= statistics.median(sizes) <= 70 and max(sizes) <= 1024


def test_pages_are_deterministic_and_weigh_about_60_kb_at_the_median() -> None:
    pages = [render_site(sample_business(i))[0] for i in range(200)]
    assert pages[:5] == [render_site(sample_business(i))[0] for i in range(5)]
    assert 45_000 < statistics.median(len(p) for p in pages) < 85_000


def test_non_utf8_pages_are_really_encoded_in_their_charset() -> None:
    business = _with(sample_business(3), charset="windows-1252", fault=None)
    body, content_type = render_site(business)
    assert b"\x92" in body or b"\xe9" in body  # ' or é as single windows-1252 bytes
    body.decode("cp1252")
    sjis = _with(sample_business(4), charset="shift_jis", fault=None)
    body, _ = render_site(sjis)
    assert "予約".encode("shift_jis") in body


def _respond(business: Business, host: str, path: str = "/", scheme: str | None = None) -> object:
    return asyncio.run(site_response(business, host, path, "", scheme=scheme))


def test_redirects_follow_the_profile() -> None:
    b = _with(sample_business(5), redirect="www", fault=None)
    r = _respond(b, b.domain)  # type: ignore[arg-type]
    assert r.status_code == 301 and r.headers["location"] == f"{'https' if b.site.https else 'http'}://www.{b.domain}/"  # type: ignore[attr-defined,union-attr]
    internal = _with(sample_business(6), redirect="internal", fault=None)
    r = _respond(internal, internal.domain)  # type: ignore[arg-type]
    assert r.status_code == 302 and r.headers["location"] == INTERNAL_TARGET  # type: ignore[attr-defined]
    chain = _with(sample_business(7), redirect="chain", fault=None)
    path, hops = "/", 0
    while (r := _respond(chain, chain.domain, path)).status_code in (301, 302):  # type: ignore[arg-type,attr-defined]
        path, hops = r.headers["location"], hops + 1  # type: ignore[attr-defined]
    assert hops == 3 and r.status_code == 200  # type: ignore[attr-defined]
    https = _with(sample_business(8), redirect="https", https=True, fault=None)
    r = _respond(https, https.domain, scheme="http")  # type: ignore[arg-type]
    assert r.headers["location"] == f"https://{https.domain}/"  # type: ignore[attr-defined]
    assert _respond(https, https.domain, scheme="https").status_code == 200  # type: ignore[arg-type,attr-defined]


def test_faults_server_error_and_not_html() -> None:
    b = _with(sample_business(9), redirect=None, fault="server_error")
    assert _respond(b, b.domain).status_code == 500  # type: ignore[arg-type,attr-defined]
    b = _with(sample_business(9), redirect=None, fault="not_html")
    r = _respond(b, b.domain)  # type: ignore[arg-type]
    assert r.headers["content-type"] == "application/pdf"  # type: ignore[attr-defined]
