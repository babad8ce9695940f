"""The batch step against the real sandbox server, the 30-day cache on PostgreSQL and SQLite,
and the acceptance interface (analyse_files / analyse_url)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from models.db import session_scope
from tasks.website.analyse import (
    SiteAnalysis,
    analyse_files,
    analyse_sites,
    analyse_url,
    load_cached,
    site_key,
    store_analyses,
)
from tests.conftest import FIXTURES, Sandbox

ACCEPTANCE_KEYS = {"file", "booking_tools", "has_contact_form", "booking_keyword_count",
                   "has_analytics", "digital_maturity"}


def _businesses(sandbox: Sandbox, count: int) -> list[dict]:
    with httpx.Client(base_url=sandbox.base_url, timeout=5) as client:
        found = [client.get(f"/_sandbox/businesses/{i}").json() for i in range(count)]
    return [b for b in found if b.get("domain") and b.get("site")]


def test_site_keys_ignore_scheme_www_and_path() -> None:
    assert site_key("https://www.Bella-Salon.co.uk/about") == "bella-salon.co.uk"
    assert site_key("bellasalon.com") == "bellasalon.com"
    assert site_key("http://shop.bellasalon.com:80/") == "bellasalon.com"


def test_sites_on_shared_platforms_get_keys_of_their_own() -> None:
    assert site_key("https://bella.square.site/") != site_key("https://nova.square.site/")
    assert site_key("https://www.facebook.com/BellaSalon/") == "facebook.com/bellasalon"
    assert site_key("https://facebook.com/novaspa") == "facebook.com/novaspa"


def test_sandbox_sites_are_analysed_with_errors_recorded_per_site(
    sandbox_env: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leadflow.settings import get_settings, reset_settings_cache

    monkeypatch.setenv("LEADFLOW_SITE_TIMEOUT_S", "2")
    monkeypatch.setenv("LEADFLOW_PARSE_WORKERS", "2")
    reset_settings_cache()
    businesses = _businesses(sandbox_env, 400)
    sites = [(b, b["site"]) for b in businesses]
    plain = [b for b, s in sites if not s["fault"] and s["redirect"] != "internal"]
    internal = [b for b, s in sites if s["redirect"] == "internal" and not s["fault"]]
    failing = [b for b in businesses if b["site"]["fault"] in ("server_error", "not_html")]
    huge = [b for b in businesses if b["site"]["fault"] == "huge"]
    assert internal and failing and huge  # the seed-7 dataset has each within its first 400
    chosen = plain[:60] + internal[:2] + failing[:2] + huge[:1]
    urls = [f"http://{b['domain']}/" for b in chosen]

    results = asyncio.run(analyse_sites(urls, get_settings()))

    assert set(results) == {site_key(u) for u in urls}
    for b in plain[:60]:
        got = results[site_key(b["domain"])]
        assert got.error is None, (b["domain"], got.error)
        expected = [b["site"]["booking_tool"]] if b["site"]["booking_tool"] else []
        assert got.booking_tools == expected, b["domain"]
        assert got.has_contact_form == b["site"]["has_contact_form"], b["domain"]
        assert got.has_analytics == b["site"]["analytics"], b["domain"]
        assert 0 <= (got.digital_maturity or 0) <= 100
    for b in internal[:2]:
        got = results[site_key(b["domain"])]
        assert got.error and got.error.startswith("refused:") and "169.254.169.254" in got.error
    for b in failing[:2]:
        got = results[site_key(b["domain"])]
        assert got.error and got.error.split(":")[0] in ("http_error", "not_html")
    truncated = results[site_key(huge[0]["domain"])]
    assert truncated.error is None and truncated.signals["truncated"] is True
    assert truncated.bytes_read == get_settings().site_max_bytes


def test_analyse_sites_inline_parsing_and_unreachable_sites() -> None:
    from leadflow.settings import Settings

    settings = Settings(parse_workers=1, site_host_overrides={"*": "127.0.0.1:9"},
                        site_allow_networks=["127.0.0.1/32"], site_timeout_s=2)
    results = asyncio.run(analyse_sites(["nothing-listens.com", "", "http://10.1.2.3/"], settings))
    assert results["nothing-listens.com"].error.startswith("unreachable:")  # type: ignore[union-attr]
    assert results["10.1.2.3"].error.startswith("refused:")  # type: ignore[union-attr]


def _analysis(domain: str, now: datetime, days: float, maturity: int) -> SiteAnalysis:
    return SiteAnalysis(domain=domain, url=f"https://{domain}/", final_url=f"https://{domain}/",
                        http_status=200, booking_tools=["vagaro"], has_contact_form=True,
                        booking_keyword_count=3, has_analytics=True, digital_maturity=maturity,
                        signals={"analytics": ["google_tag"]}, bytes_read=1234, fetched_at=now,
                        expires_at=now + timedelta(days=days))


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request: pytest.FixtureRequest) -> str:
    name = "pg_clean" if request.param == "postgresql" else "sqlite_url"
    return str(request.getfixturevalue(name))


def test_cache_upsert_replaces_and_expired_rows_are_not_returned(db_url: str) -> None:
    now = datetime.now(UTC)
    with session_scope(db_url) as session:
        store_analyses(session, [_analysis("fresh.com", now, 30, 40),
                                 _analysis("stale.com", now - timedelta(days=31), 30, 50)])
    with session_scope(db_url) as session:
        store_analyses(session, [_analysis("fresh.com", now, 30, 75)])  # same key: update
    with session_scope(db_url) as session:
        cached = load_cached(session, ["fresh.com", "stale.com", "unknown.com"], now)
    assert set(cached) == {"fresh.com"}
    got = cached["fresh.com"]
    assert got.digital_maturity == 75 and got.booking_tools == ["vagaro"]
    assert got.signals == {"analytics": ["google_tag"]}
    with session_scope(db_url) as session:
        later = load_cached(session, ["fresh.com"], now + timedelta(days=31))
    assert later == {}


def test_analyse_files_returns_exactly_the_acceptance_objects() -> None:
    paths = [FIXTURES / "sites" / "maturity_full.html", FIXTURES / "sites" / "decoys.html"]
    results = analyse_files(paths)
    assert [set(r) for r in results] == [ACCEPTANCE_KEYS, ACCEPTANCE_KEYS]
    assert results[0]["booking_tools"] == ["mindbody"] and results[0]["digital_maturity"] == 100
    assert results[1]["booking_tools"] == [] and results[1]["has_contact_form"] is False
    json.dumps(results)  # plain JSON types only


def _sandbox_settings(sandbox: Sandbox, database_url: str) -> object:
    from leadflow.settings import Settings

    return Settings(database_url=database_url, parse_workers=1, site_timeout_s=5,
                    site_host_overrides={"*": f"127.0.0.1:{sandbox.port}"},
                    site_allow_networks=["127.0.0.1/32"])


def test_analyse_url_reads_a_fresh_cached_analysis_and_stores_what_it_fetched(
    sandbox: Sandbox, sqlite_url: str
) -> None:
    settings = _sandbox_settings(sandbox, sqlite_url)
    business = next(b for b in _businesses(sandbox, 100)
                    if not b["site"]["fault"] and not b["site"]["redirect"])
    url = f"http://{business['domain']}/"

    first = analyse_url(url, settings)
    assert first["cached"] is False and "error" not in first
    expected = [business["site"]["booking_tool"]] if business["site"]["booking_tool"] else []
    assert first["booking_tools"] == expected
    with session_scope(sqlite_url) as session:
        row = load_cached(session, [site_key(url)])[site_key(url)]
        assert row.digital_maturity == first["digital_maturity"]
        row.digital_maturity = 1  # mark the cached row: the next answer must be this one
        store_analyses(session, [row])

    second = analyse_url(url, settings)
    assert second["cached"] is True and second["digital_maturity"] == 1
    assert second["booking_tools"] == first["booking_tools"]

    refreshed = analyse_url(url, settings, refresh=True)
    assert refreshed == first
    with session_scope(sqlite_url) as session:
        stored = load_cached(session, [site_key(url)])[site_key(url)]
    assert stored.digital_maturity == first["digital_maturity"]


def test_analyse_url_flags_a_page_truncated_at_the_size_cap(
    sandbox: Sandbox, sqlite_url: str
) -> None:
    settings = _sandbox_settings(sandbox, sqlite_url)
    businesses = _businesses(sandbox, 400)
    huge = next(b for b in businesses if b["site"]["fault"] == "huge")
    plain = next(b for b in businesses if not b["site"]["fault"])

    cut = analyse_url(f"http://{huge['domain']}/", settings)
    whole = analyse_url(f"http://{plain['domain']}/", settings)

    assert cut["truncated"] is True and "error" not in cut
    assert whole["truncated"] is False
    assert set(cut) >= ACCEPTANCE_KEYS and set(whole) >= ACCEPTANCE_KEYS
    assert analyse_url(f"http://{huge['domain']}/", settings)["truncated"] is True  # cached too
