"""The real clients over real HTTP against the sandbox: pagination to a limit on every source,
fault storms injected at runtime, Hunter's 202 polling, and keys kept out of errors."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from clients.apollo import ApolloClient
from clients.google_places import GooglePlacesClient
from clients.http import (
    PermanentApiError,
    QuotaExceededError,
    RateLimitedError,
    SearchPage,
    TransientApiError,
    make_async_client,
)
from clients.hunter import HunterClient
from clients.pdl import PdlClient
from leadflow.settings import Settings, get_settings
from sandbox.dataset import generate_businesses
from tests.conftest import Sandbox


@pytest.fixture()
def sb(sandbox_env: Sandbox, sandbox_clean: Sandbox) -> Iterator[Sandbox]:
    yield sandbox_clean


def fast(**overrides: Any) -> Settings:
    values: dict[str, Any] = dict(http_max_attempts=3, http_backoff_base_s=0.01,
                                  http_backoff_max_s=5.0, http_timeout_s=0.5,
                                  http_connect_timeout_s=0.5)
    values.update(overrides)
    return get_settings().model_copy(update=values)


def requests_to(sb: Sandbox, target: str) -> int:
    return int(sb.stats().get("targets", {}).get(target, {}).get("requests", 0))


async def pages_of(make: Any, method: str, settings: Settings, **kw: Any) -> list[SearchPage]:
    async with make_async_client(settings) as http:
        client = make(http, settings)
        return [p async for p in getattr(client, method)(**kw)]


def apollo(settings: Settings, **kw: Any) -> list[SearchPage]:
    kw.setdefault("limit", 5)
    return asyncio.run(pages_of(ApolloClient.from_settings, "search_organizations", settings,
                                **kw))


def test_apollo_paginates_to_the_limit(sb: Sandbox) -> None:
    before = requests_to(sb, "apollo")
    pages = apollo(fast(), limit=250)
    # As few requests as pages of 100 allow, evened out: 3 pages of 84 return 252 records
    # (3 pages of 100 returned 300, 50 of them dropped but metered).
    assert [len(p.records) for p in pages] == [84, 84, 82]
    assert [p.units for p in pages] == [84, 84, 84]
    assert requests_to(sb, "apollo") - before == 3
    ids = [r["id"] for p in pages for r in p.records]
    assert len(set(ids)) == 250
    assert pages[0].total and pages[0].total >= 250
    small = apollo(fast(), limit=30)
    assert [(len(p.records), p.units) for p in small] == [(30, 30)]


def test_apollo_resumes_a_search_with_the_page_size_its_cursor_counts_in(sb: Sandbox) -> None:
    everything = [r["id"] for p in apollo(fast(), limit=300) for r in p.records]
    first = apollo(fast(), limit=150)
    assert [p.units for p in first] == [75, 75]
    cursor = first[-1].next_cursor
    assert cursor == "75:3"
    # A later chunk of another size goes on where the first stopped: page 3 of pages of 75
    # (asked with 100 a page, page 3 would start at record 201 and skip 50).
    rest = apollo(fast(), limit=60, cursor=cursor)
    assert [(len(p.records), p.units) for p in rest] == [(60, 75)]
    ids = [r["id"] for p in [*first, *rest] for r in p.records]
    assert ids == everything[:210]


def test_apollo_resumes_a_short_last_chunk_in_smaller_pages_that_divide_what_was_read(
        sb: Sandbox) -> None:
    """A last chunk of 50 after 100 records read in pages of 100: page 3 of pages of 50 (the
    same records 101 to 150) is billed 50; page 2 of pages of 100 was billed 100, 50 dropped."""
    everything = [r["id"] for p in apollo(fast(), limit=200) for r in p.records]
    first = apollo(fast(), limit=100)
    assert first[-1].next_cursor == "100:2"

    rest = apollo(fast(), limit=50, cursor="100:2")

    assert [(len(p.records), p.units) for p in rest] == [(50, 50)]
    assert rest[-1].next_cursor == "50:4"
    assert [r["id"] for p in rest for r in p.records] == everything[100:150]
    # No size but the cursor's divides 75 records read: pages of 75, billed 75 for 60.
    assert [(len(p.records), p.units) for p in apollo(fast(), limit=60, cursor="75:2")] == [
        (60, 75)]


def test_google_places_stops_at_60_per_query(sb: Sandbox) -> None:
    pages = asyncio.run(pages_of(GooglePlacesClient.from_settings, "search_text", fast(),
                                 text_query="hair salon in Austin, TX", limit=500))
    records = [r for p in pages for r in p.records]
    assert 0 < len(records) <= 60
    assert len({r["id"] for r in records}) == len(records)
    assert all(p.units == 1 for p in pages)


def test_pdl_scrolls_to_the_limit(sb: Sandbox) -> None:
    before = requests_to(sb, "pdl")
    pages = asyncio.run(pages_of(PdlClient.from_settings, "search_companies", fast(),
                                 query={"match_all": {}}, limit=30, size=10))
    records = [r for p in pages for r in p.records]
    assert len(records) == 30 and len({r["id"] for r in records}) == 30
    assert requests_to(sb, "pdl") - before == 3
    assert sum(p.units for p in pages) == 30


def test_pdl_page_size_fits_the_limit_so_few_unused_records_are_billed(sb: Sandbox) -> None:
    # PDL bills every record a page returns; a scroll keeps its first size. 250 records in 3
    # pages of 84 bill 252 credits (3 pages of 100 billed 300); 5 records bill 5, not 100.
    pages = asyncio.run(pages_of(PdlClient.from_settings, "search_companies", fast(),
                                 query={"match_all": {}}, limit=250))
    assert [len(p.records) for p in pages] == [84, 84, 82]
    assert [p.units for p in pages] == [84, 84, 84]
    small = asyncio.run(pages_of(PdlClient.from_settings, "search_companies", fast(),
                                 query={"match_all": {}}, limit=5))
    assert [(len(p.records), p.units) for p in small] == [(5, 5)]


def test_pdl_resumes_a_scroll_with_the_size_its_token_was_issued_for(sb: Sandbox) -> None:
    first = asyncio.run(pages_of(PdlClient.from_settings, "search_companies", fast(),
                                 query={"match_all": {}}, limit=150))
    assert [p.units for p in first] == [75, 75]
    cursor = first[-1].next_cursor
    assert cursor is not None
    # A later chunk of another size still resumes the same scroll (a token is only valid
    # with the size it was issued for: asking 100 would be refused with 400).
    rest = asyncio.run(pages_of(PdlClient.from_settings, "search_companies", fast(),
                                query={"match_all": {}}, limit=60, scroll_token=cursor))
    assert [(len(p.records), p.units) for p in rest] == [(60, 75)]
    ids = [r["id"] for p in [*first, *rest] for r in p.records]
    assert len(ids) == len(set(ids)) == 210


def test_429_storm_honours_retry_after(sb: Sandbox) -> None:
    sb.set_faults({"apollo": {"sequence": ["429", "429", "ok"], "retry_after": 1}})
    before = requests_to(sb, "apollo")
    started = time.monotonic()
    pages = apollo(fast())
    elapsed = time.monotonic() - started
    assert requests_to(sb, "apollo") - before == 3
    assert elapsed >= 1.8  # two waits of the server's 1 s, far above our 10 ms backoff
    assert [c.status_code for c in pages[0].calls] == [429, 429, 200]


def test_429_storm_beyond_the_attempts_is_rate_limited(sb: Sandbox) -> None:
    sb.set_faults({"pdl": {"rate": 1.0, "kinds": ["429"], "retry_after": 0}})
    before = requests_to(sb, "pdl")
    with pytest.raises(RateLimitedError):
        asyncio.run(pages_of(PdlClient.from_settings, "search_companies", fast(),
                             sql="SELECT * FROM company", limit=5))
    assert requests_to(sb, "pdl") - before == 3


def test_pdl_429_without_any_wait_hint_backs_off_bounded_with_jitter(
        sb: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    # A 429 naming neither Retry-After nor x-ratelimit-reset: our own exponential backoff,
    # full jitter (uniform in [0, ceiling]), each wait capped, then the search goes through.
    sb.set_faults({"pdl": {"sequence": ["429"] * 5 + ["ok"], "retry_after": None}})
    before = requests_to(sb, "pdl")
    settings = fast(http_max_attempts=6, http_backoff_base_s=0.04, http_backoff_max_s=0.1)
    caplog.set_level(logging.INFO, logger="clients.http")
    started = time.monotonic()
    pages = asyncio.run(pages_of(PdlClient.from_settings, "search_companies", settings,
                                 sql="SELECT * FROM company", limit=5, size=5))
    elapsed = time.monotonic() - started
    assert [c.status_code for c in pages[0].calls] == [429] * 5 + [200]
    assert requests_to(sb, "pdl") - before == 6
    waits = [float(m) for m in re.findall(r"retrying in ([0-9.]+)s", caplog.text)]
    ceilings = [0.04, 0.08, 0.1, 0.1, 0.1]  # base * 2^(n-1), capped at max
    assert len(waits) == 5
    assert all(0 <= w <= c + 0.005 for w, c in zip(waits, ceilings, strict=True))
    assert len(set(waits)) > 1  # jittered, not a fixed schedule
    assert elapsed < sum(ceilings) + 3


def test_5xx_storm_ends_in_transient_error(sb: Sandbox) -> None:
    sb.set_faults({"apollo": {"rate": 1.0, "kinds": ["500", "502", "503"], "retry_after": 0}})
    before = requests_to(sb, "apollo")
    with pytest.raises(TransientApiError):
        apollo(fast())
    assert requests_to(sb, "apollo") - before == 3


def test_timeout_is_retried_and_then_reported(sb: Sandbox) -> None:
    sb.set_faults({"google_places": {"sequence": ["timeout", "timeout"]}})
    with pytest.raises(TransientApiError, match="timed out"):
        asyncio.run(pages_of(GooglePlacesClient.from_settings, "search_text",
                             fast(http_max_attempts=2, http_timeout_s=0.3),
                             text_query="nail salon", limit=5))


def test_malformed_json_then_ok_succeeds(sb: Sandbox) -> None:
    sb.set_faults({"apollo": {"sequence": ["malformed", "ok"]}})
    before = requests_to(sb, "apollo")
    pages = apollo(fast())
    assert len(pages[0].records) == 5
    assert requests_to(sb, "apollo") - before == 2


@pytest.mark.parametrize("kind", ["401", "403"])
def test_auth_errors_are_not_retried(sb: Sandbox, kind: str) -> None:
    sb.set_faults({"apollo": {"sequence": [kind]}})
    before = requests_to(sb, "apollo")
    with pytest.raises(PermanentApiError) as info:
        apollo(fast())
    assert info.value.status_code == int(kind)
    assert requests_to(sb, "apollo") - before == 1


def test_invalid_key_never_appears_in_the_error(sb: Sandbox) -> None:
    key = "invalid-but-secret-KEY-4242"
    settings = fast(apollo_api_key=SecretStr(key), pdl_api_key=SecretStr(key))
    with pytest.raises(PermanentApiError) as apollo_info:
        apollo(settings)
    with pytest.raises(PermanentApiError) as pdl_info:
        asyncio.run(pages_of(PdlClient.from_settings, "search_companies", settings,
                             sql="SELECT * FROM company", limit=5))
    for info in (apollo_info, pdl_info):
        assert info.value.status_code == 401
        assert key not in str(info.value) and key not in repr(info.value)


def _hunter_search(settings: Settings) -> Any:
    async def search() -> Any:
        async with make_async_client(settings) as http:
            return await HunterClient.from_settings(http, settings).domain_search("x.example")

    return asyncio.run(search())


def test_hunter_429_is_its_spent_monthly_quota_and_is_not_retried(sb: Sandbox) -> None:
    sb.set_faults({"hunter": {"rate": 1.0, "kinds": ["429"], "retry_after": 1}})
    before = requests_to(sb, "hunter")
    with pytest.raises(QuotaExceededError, match="monthly usage limit"):
        _hunter_search(fast())
    assert requests_to(sb, "hunter") - before == 1


def test_hunter_403_is_its_rate_limit_and_is_retried_through(sb: Sandbox) -> None:
    sb.set_faults({"hunter": {"sequence": ["403", "403", "ok"]}})
    resp = _hunter_search(fast())
    assert [c.status_code for c in resp.calls] == [403, 403, 200]


def test_hunter_verifier_polls_a_pending_verification(sb: Sandbox) -> None:
    pending = next(e.address for b in generate_businesses(2000, 7) for e in b.emails
                   if e.verify_pending)
    settings = fast(hunter_verify_poll_s=0.05)

    async def verify() -> Any:
        async with make_async_client(settings) as http:
            return await HunterClient.from_settings(http, settings).email_verifier(pending)

    resp = asyncio.run(verify())
    assert [c.status_code for c in resp.calls] == [202, 200]
    assert [c.units for c in resp.calls] == [0, 1]
    assert resp.data.status in {"valid", "invalid", "accept_all", "webmail", "disposable",
                                "unknown"}
