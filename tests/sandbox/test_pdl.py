"""Fake People Data Labs company search and enrich over real HTTP."""

from __future__ import annotations

import httpx

from tests.conftest import Sandbox

KEY = {"X-Api-Key": "sandbox-pdl-key"}
QUERY = {"bool": {"must": [{"term": {"location.region": "texas"}},
                           {"term": {"industry": "salon"}}]}}


def _search(sandbox: Sandbox, body: dict, headers: dict | None = None  # type: ignore[type-arg]
            ) -> httpx.Response:
    return httpx.post(f"{sandbox.api('pdl')}/company/search", json=body,
                      headers=KEY if headers is None else headers, timeout=10)


def test_query_search_scrolls_through_every_match_once(sandbox_clean: Sandbox) -> None:
    r = _search(sandbox_clean, {"query": QUERY, "size": 25})
    assert r.status_code == 200 and "x-ratelimit-remaining" in r.headers
    body = r.json()
    assert body["status"] == 200 and {"data", "total", "scroll_token"} <= set(body)
    total, ids = body["total"], [c["id"] for c in body["data"]]
    while body.get("scroll_token"):
        body = _search(sandbox_clean, {"query": QUERY, "size": 25,
                                       "scroll_token": body["scroll_token"]}).json()
        ids += [c["id"] for c in body["data"]]
    assert len(ids) == total == len(set(ids)) and total > 25
    company = r.json()["data"][0]
    assert company["location"]["region"] == "texas" and "salon" in company["industry"]
    assert company["name"] == company["name"].lower()


def test_sql_search_matches_the_equivalent_query(sandbox_clean: Sandbox) -> None:
    sql = "SELECT * FROM company WHERE location.region='texas' AND industry='salon'"
    by_sql = _search(sandbox_clean, {"sql": sql, "size": 10}).json()
    by_query = _search(sandbox_clean, {"query": QUERY, "size": 10}).json()
    assert by_sql["total"] == by_query["total"] and by_sql["data"] == by_query["data"]


def test_no_match_is_404_and_bad_requests_are_400_in_pdl_envelope(
        sandbox_clean: Sandbox) -> None:
    r = _search(sandbox_clean, {"query": {"term": {"location.locality": "paris"}}, "size": 5})
    assert r.status_code == 404 and r.json() == {"status": 404, "error": {
        "type": "not_found", "message": "No records were found matching your request"}}
    assert _search(sandbox_clean, {"query": QUERY, "size": 500}).status_code == 400
    assert _search(sandbox_clean, {"size": 5}).status_code == 400
    r = _search(sandbox_clean, {"query": QUERY}, headers={"X-Api-Key": "invalid"})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


def test_enrich_by_website_returns_a_flat_company(sandbox_clean: Sandbox) -> None:
    first = _search(sandbox_clean, {"query": QUERY, "size": 100}).json()["data"]
    website = next(c["website"] for c in first if c["website"])
    r = httpx.get(f"{sandbox_clean.api('pdl')}/company/enrich",
                  params={"website": f"https://{website}/", "api_key": "k"}, timeout=10)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == 200 and body["likelihood"] >= 1 and body["website"] == website


def test_a_scroll_token_is_only_valid_with_the_query_and_size_it_came_from(
        sandbox_clean: Sandbox) -> None:
    token = _search(sandbox_clean, {"query": QUERY, "size": 25}).json()["scroll_token"]
    assert _search(sandbox_clean, {"query": QUERY, "size": 25,
                                   "scroll_token": token}).status_code == 200
    other_size = _search(sandbox_clean, {"query": QUERY, "size": 10, "scroll_token": token})
    assert other_size.status_code == 400
    assert other_size.json()["error"]["type"] == "invalid_request_error"
    other_query = {"bool": {"must": [{"term": {"location.region": "texas"}}]}}
    assert _search(sandbox_clean, {"query": other_query, "size": 25,
                                   "scroll_token": token}).status_code == 400
