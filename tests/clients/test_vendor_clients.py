"""Each vendor client's request shape, pagination to a limit and vendor-specific statuses, over
real sockets against a scripted loopback server replaying the contracts' recorded payloads."""

from __future__ import annotations

import asyncio
import copy
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clients.apollo import ApolloClient
from clients.google_places import GooglePlacesClient
from clients.http import MissingApiKeyError, QuotaExceededError, RateLimitedError, SearchPage
from clients.hunter import HunterClient, VerificationPendingError
from clients.pdl import PdlClient
from leadflow.settings import Settings
from tests.clients.conftest import SECRET, Reply, ScriptedServer, fast_settings, payload

APOLLO = "/apollo/api/v1/mixed_companies/search"
PLACES = "/google_places/v1/places:searchText"
PDL = "/pdl/v5/company/search"
VERIFY = "/hunter/v2/email-verifier"
DOMAIN = "/hunter/v2/domain-search"


async def _collect(make: Any, settings: Settings, **kwargs: Any) -> list[SearchPage]:
    from clients.http import make_async_client

    async with make_async_client(settings) as http:
        client = make(http, settings)
        method = {
            ApolloClient: "search_organizations",
            GooglePlacesClient: "search_text",
            PdlClient: "search_companies",
        }[type(client)]
        return [page async for page in getattr(client, method)(**kwargs)]


def apollo_page(page: int, n: int, total_pages: int) -> dict[str, Any]:
    body = copy.deepcopy(payload("apollo_org_search.json"))
    org = body["organizations"][0]
    body["organizations"] = [dict(org, id=f"org-{page}-{i}") for i in range(n)]
    body["pagination"] = {"page": page, "per_page": 2, "total_entries": 99,
                          "total_pages": total_pages}
    return body


def test_apollo_paginates_by_page_number_up_to_the_limit(scripted: ScriptedServer) -> None:
    scripted.script(APOLLO, *[Reply(200, apollo_page(p, 2, 50)) for p in (1, 2, 3)])
    pages = asyncio.run(_collect(ApolloClient.from_settings, fast_settings(scripted.base_url),
                                 limit=5, per_page=2, locations=["Austin, TX"],
                                 keyword_tags=["salon"]))
    hits = scripted.hits(APOLLO)
    assert [h.body["page"] for h in hits] == [1, 2, 3]
    assert all(h.body["per_page"] == 2 for h in hits)
    assert hits[0].body["organization_locations"] == ["Austin, TX"]
    assert hits[0].body["q_organization_keyword_tags"] == ["salon"]
    assert hits[0].headers["x-api-key"] == SECRET
    assert [len(p.records) for p in pages] == [2, 2, 1]  # the last page trimmed to the limit
    assert [p.units for p in pages] == [2, 2, 2]  # ...but what was returned is billed
    assert pages[0].total == 99


def test_apollo_stops_at_the_last_page(scripted: ScriptedServer) -> None:
    scripted.script(APOLLO, Reply(200, apollo_page(1, 2, 2)), Reply(200, apollo_page(2, 1, 2)))
    pages = asyncio.run(_collect(ApolloClient.from_settings, fast_settings(scripted.base_url),
                                 limit=100, per_page=2))
    assert len(scripted.hits(APOLLO)) == 2
    assert sum(len(p.records) for p in pages) == 3


def test_apollo_new_search_sizes_pages_for_the_limit_and_a_cursor_keeps_it(
        scripted: ScriptedServer) -> None:
    scripted.script(APOLLO, *[Reply(200, apollo_page(p, 3, 50)) for p in (1, 2)])
    settings = fast_settings(scripted.base_url)
    pages = asyncio.run(_collect(ApolloClient.from_settings, settings, limit=5, per_page=4))
    # 5 records at most 4 a page: 2 pages either way, of 3 (6 returned) rather than 4 (8).
    assert [(h.body["page"], h.body["per_page"]) for h in scripted.hits(APOLLO)] == [
        (1, 3), (2, 3)]
    assert [len(p.records) for p in pages] == [3, 2]
    assert pages[-1].next_cursor == "3:3"
    scripted.reset()
    scripted.script(APOLLO, Reply(200, apollo_page(3, 3, 3)))
    # Resumed by a chunk of another size: page 3 still counts pages of 3 (records 7 to 9).
    asyncio.run(_collect(ApolloClient.from_settings, settings, limit=50, cursor="3:3"))
    assert [(h.body["page"], h.body["per_page"]) for h in scripted.hits(APOLLO)] == [(3, 3)]
    scripted.reset()
    scripted.script(APOLLO, Reply(200, apollo_page(7, 1, 7)))
    # A bare page number (no size of ours) resumes with the per_page given.
    asyncio.run(_collect(ApolloClient.from_settings, settings, limit=50, cursor="7",
                         per_page=20))
    assert [(h.body["page"], h.body["per_page"]) for h in scripted.hits(APOLLO)] == [(7, 20)]


def test_apollo_resumes_in_a_smaller_size_only_where_it_reads_the_same_records_for_less() -> None:
    from clients.apollo import resume_at

    assert resume_at(50, "100:2") == (50, 3)  # records 101-150: billed 50, not 100
    assert resume_at(10, "100:2") == (10, 11)
    assert resume_at(100, "100:2") == (100, 2)  # nothing to save
    assert resume_at(60, "75:3") == (75, 3)  # 150 read: no divisor of 150 in [60, 75)
    assert resume_at(50, "3:3") == (3, 3)  # pages of 2 would bill 50 but take 25 requests
    assert resume_at(40, "7", per_page=20) == (20, 7)  # a bare page number counts in per_page
    # Page 997 of pages of 50 is past Apollo's 500-page cap: the cursor's size it is.
    assert resume_at(50, "100:499") == (100, 499)


def test_pdl_run_page_size_bills_the_fewest_records_in_no_more_requests() -> None:
    from clients.pdl import run_page_size

    assert run_page_size(150) == 75  # 2 pages, billed 150 (100 + 100 kept 150)
    assert run_page_size(120) == 60
    assert run_page_size(60) == 60 and run_page_size(100) == 100 and run_page_size(1) == 1
    assert run_page_size(151) == 76  # prime: the evened size, billed 152 in 2 pages
    assert run_page_size(250) == 84  # no divisor in [84, 100]: 3 pages, billed 252
    assert run_page_size(10_000) == 100
    assert run_page_size(9_973) == 100  # a large prime: 100 pages of 100, 27 over
    assert run_page_size(150, size=40) == 38  # 4 pages at most 40: billed 152, not 160


def test_missing_api_key_is_a_clear_error_before_any_request(scripted: ScriptedServer) -> None:
    settings = fast_settings(scripted.base_url, apollo_api_key=None)
    with pytest.raises(MissingApiKeyError, match="LEADFLOW_APOLLO_API_KEY"):
        asyncio.run(_collect(ApolloClient.from_settings, settings, limit=5))
    assert scripted.requests == []


def places_page(ids: list[str], token: str | None) -> dict[str, Any]:
    place = payload("google_places_text_search.json")["places"][0]
    body: dict[str, Any] = {"places": [dict(place, id=i) for i in ids]}
    if token:
        body["nextPageToken"] = token
    return body


def test_places_follows_page_tokens_with_field_mask_and_key_headers(
    scripted: ScriptedServer,
) -> None:
    scripted.script(PLACES, Reply(200, places_page(["a", "b"], "t1")),
                    Reply(200, places_page(["c", "d"], "t2")), Reply(200, places_page(["e"], None)))
    pages = asyncio.run(_collect(GooglePlacesClient.from_settings,
                                 fast_settings(scripted.base_url),
                                 text_query="salon in Austin, TX", limit=10, page_size=2))
    hits = scripted.hits(PLACES)
    assert [h.body.get("pageToken") for h in hits] == [None, "t1", "t2"]
    assert all(h.body["textQuery"] == "salon in Austin, TX" and h.body["pageSize"] == 2
               for h in hits)
    assert hits[0].headers["x-goog-api-key"] == SECRET
    assert "nextPageToken" in hits[0].headers["x-goog-fieldmask"].split(",")
    assert [r["id"] for p in pages for r in p.records] == ["a", "b", "c", "d", "e"]
    assert [p.units for p in pages] == [1, 1, 1]  # billed per request


def test_places_caps_a_query_at_60_results_and_says_so(
    scripted: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    pages_script = [Reply(200, places_page([f"p{n}-{i}" for i in range(20)], f"t{n}"))
                    for n in range(5)]
    scripted.script(PLACES, *pages_script)
    caplog.set_level(logging.WARNING)
    pages = asyncio.run(_collect(GooglePlacesClient.from_settings,
                                 fast_settings(scripted.base_url),
                                 text_query="salon", limit=200))
    assert sum(len(p.records) for p in pages) == 60
    assert len(scripted.hits(PLACES)) == 3
    assert "at most 60 results" in caplog.text


def test_places_empty_result_is_an_empty_page(scripted: ScriptedServer) -> None:
    scripted.script(PLACES, Reply(200, payload("google_places_empty.json")))
    pages = asyncio.run(_collect(GooglePlacesClient.from_settings,
                                 fast_settings(scripted.base_url), text_query="x", limit=20))
    assert len(pages) == 1 and pages[0].records == []


def pdl_page(ids: list[str], token: str | None) -> dict[str, Any]:
    company = payload("pdl_company_search.json")["data"][0]
    return {"status": 200, "data": [dict(company, id=i) for i in ids], "total": 5,
            "scroll_token": token}


def test_pdl_scrolls_with_the_token_until_the_limit(scripted: ScriptedServer) -> None:
    scripted.script(PDL, Reply(200, pdl_page(["a", "b"], "s1")),
                    Reply(200, pdl_page(["c", "d"], "s2")))
    sql = "SELECT * FROM company WHERE industry='salon'"
    pages = asyncio.run(_collect(PdlClient.from_settings, fast_settings(scripted.base_url),
                                 sql=sql, limit=3, size=2))
    hits = scripted.hits(PDL)
    assert [h.body.get("scroll_token") for h in hits] == [None, "s1"]
    assert all(h.body["sql"] == sql and h.body["size"] == 2 and "query" not in h.body
               for h in hits)
    assert hits[0].headers["x-api-key"] == SECRET
    assert [r["id"] for p in pages for r in p.records] == ["a", "b", "c"]
    assert [p.units for p in pages] == [2, 2]


def test_pdl_new_search_sizes_pages_for_the_limit_and_a_cursor_keeps_it(
        scripted: ScriptedServer) -> None:
    scripted.script(PDL, Reply(200, pdl_page(["a", "b", "c"], "s1")),
                    Reply(200, pdl_page(["d", "e", "f"], "s2")))
    settings = fast_settings(scripted.base_url)
    pages = asyncio.run(_collect(PdlClient.from_settings, settings, sql="SELECT 1", limit=5,
                                 size=4))
    # 5 records at most 4 a page: 2 pages either way, of 3 (6 billed) rather than 4 (8).
    assert [h.body["size"] for h in scripted.hits(PDL)] == [3, 3]
    assert pages[-1].next_cursor == "3:s2"
    scripted.reset()
    scripted.script(PDL, Reply(200, pdl_page(["g"], None)))
    asyncio.run(_collect(PdlClient.from_settings, settings, sql="SELECT 1", limit=50,
                         scroll_token="3:s2"))
    assert [(h.body["size"], h.body["scroll_token"]) for h in scripted.hits(PDL)] == [(3, "s2")]
    scripted.reset()
    scripted.script(PDL, Reply(200, pdl_page(["g"], None)))
    # A bare PDL token (no size of ours) resumes with the size the caller gives.
    asyncio.run(_collect(PdlClient.from_settings, settings, sql="SELECT 1", limit=50,
                         scroll_token="13.312621$543927", size=20))
    assert [(h.body["size"], h.body["scroll_token"]) for h in scripted.hits(PDL)] == [
        (20, "13.312621$543927")]


def test_pdl_429_waits_for_its_rate_limit_window_not_a_retry_after(
        scripted: ScriptedServer) -> None:
    # PDL's 429 names no Retry-After: the fixed window ends at x-ratelimit-reset. A window
    # that ends later than we may wait is given up at once (like a long Retry-After).
    reset = (datetime.now(UTC) + timedelta(seconds=50)).strftime("%Y-%m-%dT%H:%M:%SZ")
    scripted.script(PDL, Reply(429, {"status": 429, "error": {
        "type": "rate_limit_error",
        "message": "An error occurred due to requests hitting the API too quick"}},
        headers={"x-ratelimit-remaining": "{'minute': 0}", "x-ratelimit-reset": reset}))
    settings = fast_settings(scripted.base_url, http_backoff_max_s=30.0)
    with pytest.raises(RateLimitedError) as caught:
        asyncio.run(_collect(PdlClient.from_settings, settings, sql="SELECT 1", limit=5))
    assert len(scripted.hits(PDL)) == 1
    assert caught.value.retry_after is not None and caught.value.retry_after > 30


def test_pdl_404_means_no_matches_not_an_error(scripted: ScriptedServer) -> None:
    scripted.script(PDL, Reply(404, payload("pdl_not_found.json")))
    pages = asyncio.run(_collect(PdlClient.from_settings, fast_settings(scripted.base_url),
                                 query={"term": {"industry": "salon"}}, limit=10))
    assert len(scripted.hits(PDL)) == 1
    assert pages[0].records == [] and pages[0].units == 0


def test_pdl_402_is_quota_exceeded_and_not_retried(scripted: ScriptedServer) -> None:
    scripted.script(PDL, Reply(402, {"status": 402, "error": {
        "type": "payment_required", "message": "You have reached your account maximum"}}))
    with pytest.raises(QuotaExceededError, match="account maximum"):
        asyncio.run(_collect(PdlClient.from_settings, fast_settings(scripted.base_url),
                             sql="SELECT * FROM company", limit=10))
    assert len(scripted.hits(PDL)) == 1


def test_pdl_needs_exactly_one_of_query_or_sql(scripted: ScriptedServer) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        asyncio.run(_collect(PdlClient.from_settings, fast_settings(scripted.base_url),
                             sql="x", query={"a": 1}, limit=1))


async def _hunter(settings: Settings, method: str, *args: Any) -> Any:
    from clients.http import make_async_client

    async with make_async_client(settings) as http:
        return await getattr(HunterClient.from_settings(http, settings), method)(*args)


def test_hunter_verifier_polls_while_202_and_bills_once(scripted: ScriptedServer) -> None:
    scripted.script(VERIFY, Reply(202, {"data": {"status": None}}), Reply(202, None),
                    Reply(200, payload("hunter_email_verifier.json")))
    resp = asyncio.run(_hunter(fast_settings(scripted.base_url), "email_verifier", "d@x.com"))
    assert resp.data.status == "valid"
    assert [c.status_code for c in resp.calls] == [202, 202, 200]
    assert [c.units for c in resp.calls] == [0, 0, 1]
    hits = scripted.hits(VERIFY)
    assert hits[0].query["email"] == ["d@x.com"]
    assert hits[0].headers["x-api-key"] == SECRET and "api_key" not in hits[0].query


def test_hunter_verifier_waits_for_a_slow_202_instead_of_timing_out(
        scripted: ScriptedServer) -> None:
    # Hunter holds a verifier request while it checks the mail server (~20 s) before it
    # answers 202; a slow answer that outlasts the general read timeout is still polled.
    slow = fast_settings(scripted.base_url).http_timeout_s * 1.5
    scripted.script(VERIFY, Reply(202, {"data": {"status": None}}, delay_s=slow),
                    Reply(200, payload("hunter_email_verifier.json"), delay_s=slow))
    resp = asyncio.run(_hunter(fast_settings(scripted.base_url), "email_verifier", "d@x.com"))
    assert resp.data.status == "valid"
    assert [c.status_code for c in resp.calls] == [202, 200]


def test_hunter_verifier_202_body_is_never_needed(scripted: ScriptedServer) -> None:
    # No source shows a 202's body: an empty or non-JSON one is still "poll again", not a
    # malformed answer retried (and billed) as such.
    scripted.script(VERIFY, Reply(202, b"Accepted"), Reply(202, b"{not json"),
                    Reply(200, payload("hunter_email_verifier.json")))
    resp = asyncio.run(_hunter(fast_settings(scripted.base_url), "email_verifier", "d@x.com"))
    assert resp.data.status == "valid"
    assert [c.status_code for c in resp.calls] == [202, 202, 200]
    assert [c.units for c in resp.calls] == [0, 0, 1]
    scripted.reset()
    scripted.script(VERIFY, Reply(202, b"Accepted"))
    with pytest.raises(VerificationPendingError):
        asyncio.run(_hunter(fast_settings(scripted.base_url), "email_verifier", "d@x.com"))
    assert len(scripted.hits(VERIFY)) == 3  # one request per poll, no retries on top


def test_hunter_verifier_gives_up_after_bounded_polls(scripted: ScriptedServer) -> None:
    scripted.script(VERIFY, Reply(202, None))
    with pytest.raises(VerificationPendingError):
        asyncio.run(_hunter(fast_settings(scripted.base_url), "email_verifier", "d@x.com"))
    assert len(scripted.hits(VERIFY)) == 3


@pytest.mark.parametrize("headers", [{}, {"Retry-After": "1"}])
def test_hunter_429_is_the_monthly_quota_whatever_its_headers(
        scripted: ScriptedServer, headers: dict[str, str]) -> None:
    # hunter.json: 429 = "usage limit reached" (plan exhausted), 403 = rate limit. A 429 is
    # never retried, even if something in between adds a Retry-After.
    scripted.script(DOMAIN, Reply(429, {"errors": [{"id": "too_many_requests", "code": 429,
                                                    "details": "usage limit reached"}]},
                                  headers=headers))
    with pytest.raises(QuotaExceededError, match="usage limit"):
        asyncio.run(_hunter(fast_settings(scripted.base_url), "domain_search", "x.com"))
    assert len(scripted.hits(DOMAIN)) == 1


def test_hunter_403_is_its_rate_limit_and_is_retried(scripted: ScriptedServer) -> None:
    scripted.script(DOMAIN, Reply(403, {"errors": [{"id": "too_many_requests", "code": 403,
                                                    "details": "rate limit"}]}))
    with pytest.raises(RateLimitedError):
        asyncio.run(_hunter(fast_settings(scripted.base_url), "domain_search", "x.com"))
    assert len(scripted.hits(DOMAIN)) == 3


def test_hunter_domain_search_parses_emails(scripted: ScriptedServer) -> None:
    scripted.script(DOMAIN, Reply(200, payload("hunter_domain_search.json")))
    resp = asyncio.run(_hunter(fast_settings(scripted.base_url), "domain_search", "x.com"))
    emails = resp.data.parsed_emails()
    assert [e.value for e in emails] == ["dana.whitfield@northwind-robotics.example",
                                          "sales@northwind-robotics.example"]
    assert emails[0].position == "VP Engineering" and emails[0].confidence == 94
    assert resp.calls[0].units == 1
