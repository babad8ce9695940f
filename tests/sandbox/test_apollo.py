"""Fake Apollo over real HTTP: organization search envelope, pagination, filters, auth."""

from __future__ import annotations

import httpx

from tests.conftest import Sandbox

KEY = {"X-Api-Key": "sandbox-apollo-key"}


def _search(sandbox: Sandbox, body: dict, headers: dict | None = None,  # type: ignore[type-arg]
            base: str | None = None) -> httpx.Response:
    return httpx.post(f"{base or sandbox.api('apollo')}/mixed_companies/search", json=body,
                      headers=KEY if headers is None else headers, timeout=10)


def test_organization_search_returns_the_documented_envelope_and_rate_headers(
        sandbox_clean: Sandbox) -> None:
    r = _search(sandbox_clean, {"page": 1, "per_page": 5, "organization_locations": ["Texas"],
                                "q_organization_keyword_tags": ["salon"], "unknown_field": 1})
    assert r.status_code == 200
    body = r.json()
    assert {"breadcrumbs", "pagination", "accounts", "organizations", "model_ids"} <= set(body)
    p = body["pagination"]
    assert p["page"] == 1 and p["per_page"] == 5 and p["total_entries"] > 5
    assert p["total_pages"] == -(-p["total_entries"] // 5)
    orgs = body["organizations"]
    assert len(orgs) == 5 and body["model_ids"] == [o["id"] for o in orgs]
    for o in orgs:
        assert o["state"] == "Texas" and o["country"] == "United States"
        assert "salon" in o["industry"]
        assert o["sanitized_phone"].startswith("+1") and o["primary_phone"]["sanitized_number"]
    for h in ("x-rate-limit-minute", "x-minute-usage", "x-minute-requests-left",
              "x-hourly-requests-left", "x-24-hour-requests-left"):
        assert h in r.headers


def test_pages_partition_the_results_and_both_mounts_agree(sandbox_clean: Sandbox) -> None:
    base = {"per_page": 100, "organization_locations": ["Austin, TX"]}
    first = _search(sandbox_clean, {**base, "page": 1}).json()
    total = first["pagination"]["total_entries"]
    ids = [o["id"] for page in range(1, first["pagination"]["total_pages"] + 1)
           for o in _search(sandbox_clean, {**base, "page": page}).json()["organizations"]]
    assert len(ids) == total == len(set(ids))
    alias = _search(sandbox_clean, {**base, "page": 1},
                    base=f"{sandbox_clean.base_url}/apollo/v1").json()
    assert alias["organizations"] == first["organizations"]
    assert all(o["city"] == "Austin" for o in first["organizations"])


def test_any_industry_and_country_locations_return_everything_apollo_lists(
        sandbox_clean: Sandbox) -> None:
    everything = _search(sandbox_clean, {"per_page": 1}).json()["pagination"]["total_entries"]
    us = _search(sandbox_clean, {"per_page": 1, "organization_locations": ["United States"],
                                 "q_organization_keyword_tags": ["any"]}).json()
    assert us["pagination"]["total_entries"] == everything
    assert 0.75 * 2000 < everything < 0.9 * 2000
    none = _search(sandbox_clean, {"organization_locations": ["Paris, France"]}).json()
    assert none["pagination"]["total_entries"] == 0 and none["organizations"] == []


def test_missing_or_invalid_key_gets_401_with_apollo_error_body(sandbox_clean: Sandbox) -> None:
    for headers in ({}, {"X-Api-Key": "invalid-key"}):
        r = _search(sandbox_clean, {"per_page": 1}, headers=headers)
        assert r.status_code == 401
        assert r.json() == {"error": "Invalid access credentials."}
    assert _search(sandbox_clean, {"per_page": 1},
                   headers={"Authorization": "Bearer tok"}).status_code == 200


def test_invalid_paging_or_body_gets_422(sandbox_clean: Sandbox) -> None:
    assert _search(sandbox_clean, {"page": "x"}).status_code == 422
    r = httpx.post(f"{sandbox_clean.api('apollo')}/mixed_companies/search", content=b"{nope",
                   headers=KEY, timeout=10)
    assert r.status_code == 422 and "error" in r.json()
