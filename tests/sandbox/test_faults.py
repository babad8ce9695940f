"""Fault injection, sequences, stats and the admin endpoints, over real HTTP."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest

from tests.conftest import Sandbox

APOLLO_BODY = {"per_page": 5, "organization_locations": ["Austin, TX"]}


def _apollo(sandbox: Sandbox, timeout: float = 10) -> httpx.Response:
    return httpx.post(f"{sandbox.api('apollo')}/mixed_companies/search", json=APOLLO_BODY,
                      headers={"X-Api-Key": "k"}, timeout=timeout)


def _reset_stats(sandbox: Sandbox) -> None:
    httpx.post(f"{sandbox.base_url}/_sandbox/stats/reset", timeout=5).raise_for_status()


def test_sequence_is_consumed_one_item_per_request_and_counted_in_stats(
        sandbox_clean: Sandbox) -> None:
    _reset_stats(sandbox_clean)
    sandbox_clean.set_faults({"apollo": {"sequence": ["429", "500", "503", "ok"],
                                         "retry_after": 2}})
    statuses = [_apollo(sandbox_clean).status_code for _ in range(5)]
    assert statuses == [429, 500, 503, 200, 200]
    apollo = sandbox_clean.stats()["targets"]["apollo"]
    assert apollo["requests"] == 5
    assert apollo["statuses"] == {"429": 1, "500": 1, "503": 1, "200": 2}
    assert apollo["faults"] == {"429": 1, "500": 1, "503": 1}


def test_429_carries_retry_after_and_each_apis_documented_body(sandbox_clean: Sandbox) -> None:
    sandbox_clean.set_faults({t: {"sequence": ["429"], "retry_after": 3}
                              for t in ("apollo", "google_places", "pdl", "hunter", "openai")})
    r = _apollo(sandbox_clean)
    assert r.status_code == 429 and r.headers["retry-after"] == "3"
    assert "maximum number of api calls" in r.json()["message"]
    g = httpx.post(f"{sandbox_clean.api('google_places')}/places:searchText",
                   json={"textQuery": "salon"}, headers={"X-Goog-Api-Key": "k"})
    assert g.status_code == 429 and g.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    p = httpx.post(f"{sandbox_clean.api('pdl')}/company/search", json={"sql": "x"})
    assert p.json() == {"status": 429, "error": {"type": "rate_limit_error", "message":
                        "An error occurred due to requests hitting the API too quick"}}
    h = httpx.get(f"{sandbox_clean.api('hunter')}/email-verifier", params={"email": "a@b.co"})
    assert h.status_code == 429 and h.json()["errors"][0]["code"] == 429
    o = httpx.post(f"{sandbox_clean.api('openai')}/chat/completions", json={})
    assert o.status_code == 429 and o.json()["error"]["code"] == "rate_limit_exceeded"
    assert o.headers["retry-after"] == "3"


def test_402_fault_uses_the_vendor_payment_body(sandbox_clean: Sandbox) -> None:
    sandbox_clean.set_faults({"pdl": {"sequence": ["402"]}})
    r = httpx.post(f"{sandbox_clean.api('pdl')}/company/search", json={"sql": "x"},
                   headers={"X-Api-Key": "k"})
    assert r.status_code == 402 and r.json()["error"]["type"] == "payment_required"


def test_malformed_answers_200_with_invalid_json(sandbox_clean: Sandbox) -> None:
    sandbox_clean.set_faults({"apollo": {"sequence": ["malformed"]}})
    r = _apollo(sandbox_clean)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.content)


def test_slow_trickles_the_complete_body_in_many_chunks(sandbox_clean: Sandbox) -> None:
    sandbox_clean.set_faults({"apollo": {"sequence": ["slow"], "slow_s": 0.4}})
    chunks: list[bytes] = []
    with httpx.stream("POST", f"{sandbox_clean.api('apollo')}/mixed_companies/search",
                      json=APOLLO_BODY, headers={"X-Api-Key": "k"}, timeout=10) as r:
        assert r.status_code == 200
        chunks = list(r.iter_raw())
    assert len(chunks) > 5
    assert json.loads(b"".join(chunks)) == _apollo(sandbox_clean).json()


def test_timeout_holds_the_response_until_the_client_gives_up(sandbox_clean: Sandbox) -> None:
    _reset_stats(sandbox_clean)
    sandbox_clean.set_faults({"hunter": {"sequence": ["timeout"]}})
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{sandbox_clean.api('hunter')}/email-verifier",
                  params={"email": "a@b.co", "api_key": "k"}, timeout=0.5)
    # The next request is served normally once the held one is abandoned.
    r = httpx.get(f"{sandbox_clean.api('hunter')}/email-verifier",
                  params={"email": "a@b.co", "api_key": "k"}, timeout=10)
    assert r.status_code == 200


def test_rate_one_faults_every_request_with_the_listed_kinds(sandbox_clean: Sandbox) -> None:
    sandbox_clean.set_faults({"apollo": {"rate": 1.0, "kinds": ["500", "503"]}})
    assert {_apollo(sandbox_clean).status_code for _ in range(8)} <= {500, 503}
    sandbox_clean.set_faults({})
    assert _apollo(sandbox_clean).status_code == 200


def test_invalid_fault_configs_are_rejected_with_a_reason(sandbox_clean: Sandbox) -> None:
    for bad in ({"nope": {}}, {"apollo": {"rate": 2}}, {"apollo": {"kinds": ["boom"]}},
                {"apollo": {"sequence": "429"}}):
        r = httpx.post(f"{sandbox_clean.base_url}/_sandbox/faults", json=bad, timeout=5)
        assert r.status_code == 400 and r.json()["error"]
    current = httpx.get(f"{sandbox_clean.base_url}/_sandbox/faults", timeout=5).json()
    assert current["faults"] == {}


def test_sites_dispatch_by_host_and_by_path(sandbox_clean: Sandbox) -> None:
    b = httpx.get(f"{sandbox_clean.base_url}/_sandbox/businesses/0", timeout=5).json()
    domain = b["domain"] or "missing"
    # The same site answers either way (whatever the site does: page, redirect, error).
    by_host = httpx.get(f"{sandbox_clean.base_url}/", headers={"Host": f"{domain}:80"})
    by_path = httpx.get(f"{sandbox_clean.base_url}/_sandbox/site/{domain}/")
    assert by_host.status_code == by_path.status_code
    assert by_host.text == by_path.text
    stats = sandbox_clean.stats()["targets"]
    assert stats["sites"]["requests"] >= 2
    unknown = httpx.get(f"{sandbox_clean.base_url}/_sandbox/site/no-such-site.example/")
    assert unknown.status_code == 404
    assert httpx.get(f"{sandbox_clean.base_url}/_sandbox/health").json()["status"] == "ok"


def test_pdl_429_names_its_window_end_not_a_retry_after(sandbox_clean: Sandbox) -> None:
    # PDL documents x-ratelimit-* headers (reset: an ISO time), not Retry-After.
    sandbox_clean.set_faults({"pdl": {"sequence": ["429"], "retry_after": 5}})
    before = datetime.now(UTC)
    r = httpx.post(f"{sandbox_clean.api('pdl')}/company/search", json={"sql": "x"},
                   headers={"X-Api-Key": "k"}, timeout=5)
    assert r.status_code == 429 and "retry-after" not in r.headers
    assert r.headers["x-ratelimit-remaining"] == "{'minute': 0}"
    reset = datetime.fromisoformat(r.headers["x-ratelimit-reset"])
    assert 4 <= (reset - before).total_seconds() <= 7


def test_retry_after_null_sends_a_bare_429_with_no_wait_hint(sandbox_clean: Sandbox) -> None:
    sandbox_clean.set_faults({"pdl": {"sequence": ["429"], "retry_after": None},
                              "apollo": {"sequence": ["429", "503"], "retry_after": None}})
    p = httpx.post(f"{sandbox_clean.api('pdl')}/company/search", json={"sql": "x"},
                   headers={"X-Api-Key": "k"}, timeout=5)
    assert p.status_code == 429
    assert "retry-after" not in p.headers and "x-ratelimit-reset" not in p.headers
    assert p.json()["error"]["type"] == "rate_limit_error"
    for status in (429, 503):
        a = _apollo(sandbox_clean)
        assert a.status_code == status and "retry-after" not in a.headers
    assert httpx.get(f"{sandbox_clean.base_url}/_sandbox/faults",
                     timeout=5).json()["faults"]["pdl"]["retry_after"] is None


def test_hunter_tells_its_quota_429_from_its_rate_limit_403(sandbox_clean: Sandbox) -> None:
    # hunter.json: 403 = rate limit reached, 429 = the plan's monthly usage exhausted; Hunter
    # documents no wait header for either.
    sandbox_clean.set_faults({"hunter": {"sequence": ["429", "403"], "retry_after": 2}})
    url = f"{sandbox_clean.api('hunter')}/domain-search"
    quota = httpx.get(url, params={"domain": "x.co", "api_key": "k"}, timeout=5)
    limit = httpx.get(url, params={"domain": "x.co", "api_key": "k"}, timeout=5)
    assert quota.status_code == 429 and "retry-after" not in quota.headers
    assert "monthly usage limit" in quota.json()["errors"][0]["details"]
    assert limit.status_code == 403 and "retry-after" not in limit.headers
    assert "rate limit" in limit.json()["errors"][0]["details"]
