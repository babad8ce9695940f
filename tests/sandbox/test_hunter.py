"""Fake Hunter over real HTTP: domain search, email finder, verifier (202 then result), auth."""

from __future__ import annotations

import httpx

from sandbox.dataset import generate_businesses
from tests.conftest import Sandbox

KEY = {"api_key": "sandbox-hunter-key"}
BUSINESSES = generate_businesses(2000, 7)  # the fixture's dataset (same n and seed)


def _get(sandbox: Sandbox, path: str, **params: str) -> httpx.Response:
    return httpx.get(f"{sandbox.api('hunter')}{path}", params={**KEY, **params}, timeout=10)


def _with(pred) -> object:  # type: ignore[no-untyped-def]
    return next(b for b in BUSINESSES if pred(b))


def test_domain_search_lists_the_domain_emails_with_meta(sandbox_clean: Sandbox) -> None:
    b = _with(lambda b: b.domain and len([e for e in b.emails if b.domain in e.address]) >= 2)
    r = _get(sandbox_clean, "/domain-search", domain=f"www.{b.domain}", limit="1")
    assert r.status_code == 200
    body = r.json()
    domain_emails = [e for e in b.emails if e.address.endswith("@" + b.domain)]
    assert body["data"]["domain"] == b.domain and body["data"]["organization"] == b.name
    assert body["meta"]["results"] == len(domain_emails)
    assert body["meta"]["limit"] == 1 and body["meta"]["offset"] == 0
    assert [e["value"] for e in body["data"]["emails"]] == [domain_emails[0].address]
    row = body["data"]["emails"][0]
    assert {"value", "type", "confidence", "sources", "verification"} <= set(row)
    second = _get(sandbox_clean, "/domain-search", domain=b.domain, limit="1", offset="1")
    assert second.json()["data"]["emails"][0]["value"] == domain_emails[1].address


def test_domain_search_errors_use_hunter_error_envelope(sandbox_clean: Sandbox) -> None:
    r = _get(sandbox_clean, "/domain-search")
    assert r.status_code == 400 and r.json()["errors"][0]["id"] == "wrong_params"
    r = _get(sandbox_clean, "/domain-search", domain="x.com", type="weird")
    assert r.json()["errors"][0] == {"id": "invalid_type", "code": 400,
                                     "details": "The type is invalid"}
    r = httpx.get(f"{sandbox_clean.api('hunter')}/domain-search", params={"domain": "x.com"})
    assert r.status_code == 401 and r.json()["errors"][0]["id"] == "authentication_failed"
    r = httpx.get(f"{sandbox_clean.api('hunter')}/account",
                  headers={"Authorization": "Bearer invalid-key"})
    assert r.status_code == 401
    ok = httpx.get(f"{sandbox_clean.api('hunter')}/account", headers={"X-API-KEY": "k"})
    assert ok.status_code == 200 and "calls" in ok.json()["data"]


def test_email_finder_finds_the_owner_and_misses_strangers(sandbox_clean: Sandbox) -> None:
    b = _with(lambda b: any(e.position == "Owner" for e in b.emails))
    owner = next(e for e in b.emails if e.position == "Owner")
    r = _get(sandbox_clean, "/email-finder", domain=b.domain,
             first_name=owner.first_name.upper(), last_name=owner.last_name)
    data = r.json()["data"]
    assert r.status_code == 200 and data["email"] == owner.address
    assert data["score"] == owner.confidence and data["company"] == b.name
    miss = _get(sandbox_clean, "/email-finder", domain=b.domain, full_name="Nobody Atall")
    assert miss.status_code == 200 and miss.json()["data"]["email"] is None
    assert _get(sandbox_clean, "/email-finder", domain=b.domain).status_code == 400


def test_verifier_reports_each_status_from_the_dataset(sandbox_clean: Sandbox) -> None:
    for status in ("valid", "invalid", "accept_all", "webmail", "disposable", "unknown"):
        email = next(e for b in BUSINESSES for e in b.emails
                     if e.status == status and not e.verify_pending)
        r = _get(sandbox_clean, "/email-verifier", email=email.address)
        assert r.status_code == 200, status
        data = r.json()["data"]
        assert data["status"] == status and data["email"] == email.address
        assert data["result"] in ("deliverable", "undeliverable", "risky")
    bad = _get(sandbox_clean, "/email-verifier", email="not-an-email")
    assert bad.status_code == 400 and bad.json()["errors"][0]["id"] == "invalid_email"


def test_verifier_answers_202_first_then_the_result(sandbox_clean: Sandbox) -> None:
    email = next(e for b in BUSINESSES for e in b.emails if e.verify_pending)
    first = _get(sandbox_clean, "/email-verifier", email=email.address)
    assert first.status_code == 202
    second = _get(sandbox_clean, "/email-verifier", email=email.address)
    assert second.status_code == 200 and second.json()["data"]["status"] == email.status
    assert sandbox_clean.stats()["targets"]["hunter"]["statuses"]["202"] >= 1


def test_a_202_fault_keeps_a_verification_pending_and_spares_other_endpoints(
        sandbox_clean: Sandbox) -> None:
    sandbox_clean.set_faults({"hunter": {"rate": 1.0, "kinds": ["202"]}})
    email = next(e for b in BUSINESSES for e in b.emails
                 if e.status == "valid" and not e.verify_pending)
    for _ in range(3):  # never completes, however often it is polled
        r = _get(sandbox_clean, "/email-verifier", email=email.address)
        assert r.status_code == 202 and r.json()["data"]["status"] is None
    b = _with(lambda b: b.domain and b.emails)
    assert _get(sandbox_clean, "/domain-search", domain=b.domain).status_code == 200
    assert _get(sandbox_clean, "/email-finder", domain=b.domain,
                full_name="Nobody Atall").status_code == 200
    bad = httpx.post(f"{sandbox_clean.base_url}/_sandbox/faults",
                     json={"apollo": {"sequence": ["202"]}}, timeout=5)
    assert bad.status_code == 400 and "hunter only" in bad.json()["error"]
