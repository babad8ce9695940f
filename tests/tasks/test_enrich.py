"""Email enrichment: picking the best Hunter address, verifying, syntax checks, and per-candidate
failures that never drop a candidate (scripted loopback server and the sandbox)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from clients.apollo import ApolloClient
from clients.http import make_async_client
from clients.hunter import HunterClient, HunterEmail
from leadflow.settings import Settings, get_settings
from tasks.enrich import EnrichResult, candidate_id, enrich_candidates, pick_best_email
from tasks.normalise import normalise_records
from tasks.staging import CandidateLead
from tests.clients.conftest import Reply, ScriptedServer, fast_settings, payload

DOMAIN = "/hunter/v2/domain-search"
VERIFY = "/hunter/v2/email-verifier"
FINDER = "/hunter/v2/email-finder"


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedServer]:
    s = ScriptedServer()
    yield s
    s.close()


@pytest.fixture()
def scripted(server: ScriptedServer) -> ScriptedServer:
    server.reset()
    return server


def lead(i: int, **kw: Any) -> CandidateLead:
    return CandidateLead(source="apollo", source_record_id=f"id{i}", company_name=f"Co {i}", **kw)


async def _enrich(settings: Settings, candidates: list[CandidateLead], concurrency: int = 4
                  ) -> EnrichResult:
    async with make_async_client(settings) as http:
        return await enrich_candidates(candidates, HunterClient.from_settings(http, settings),
                                       concurrency)


def verified(status: str) -> Reply:
    body = payload("hunter_email_verifier.json")
    body["data"]["status"] = status
    return Reply(200, body)


def test_pick_prefers_confident_owner_then_generic_then_other_personal() -> None:
    owner = HunterEmail(value="ann@x.com", type="personal", confidence=90, position="Owner",
                        first_name="Ann", last_name="Lee")
    shy_owner = HunterEmail(value="bo@x.com", type="personal", confidence=40, position="Owner")
    generic = HunterEmail(value="info@x.com", type="generic", confidence=60)
    stylist = HunterEmail(value="cy@x.com", type="personal", confidence=99, position="Stylist")
    bad = HunterEmail(value="not an email", type="personal", confidence=99, position="Owner")
    assert pick_best_email([generic, stylist, owner, bad]) is owner
    assert pick_best_email([stylist, shy_owner, generic]) is generic
    assert pick_best_email([shy_owner, stylist]) is stylist
    assert pick_best_email([bad]) is None


def test_website_without_email_gets_best_address_contact_and_verification(
    scripted: ScriptedServer,
) -> None:
    scripted.script(DOMAIN, Reply(200, payload("hunter_domain_search.json")))
    scripted.script(VERIFY, verified("valid"))
    c = lead(1, website="https://www.northwind-robotics.example/contact")
    result = asyncio.run(_enrich(fast_settings(scripted.base_url), [c]))
    assert scripted.hits(DOMAIN)[0].query["domain"] == ["northwind-robotics.example"]
    assert c.email == "dana.whitfield@northwind-robotics.example"
    assert (c.contact_first_name, c.contact_last_name, c.contact_title) == (
        "Dana", "Whitfield", "VP Engineering")
    assert c.email_confidence == 94 and c.email_status == "valid"
    assert result.failures == []
    assert (result.emails_found, result.emails_verified) == (1, 1)
    assert [(x.endpoint, x.units) for x in result.calls] == [
        ("domain-search", 1), ("email-verifier", 1)]


def test_a_named_contact_is_looked_up_with_the_email_finder_first(
    scripted: ScriptedServer,
) -> None:
    found = {"data": {"email": "maren.okafor@lumen.example", "score": 88,
                      "first_name": "Maren", "last_name": "Okafor"}, "meta": {}}
    scripted.script(FINDER, Reply(200, found))
    scripted.script(VERIFY, verified("valid"))
    named = lead(1, website="https://lumen.example", contact_first_name="Maren",
                 contact_last_name="Okafor")
    result = asyncio.run(_enrich(fast_settings(scripted.base_url), [named]))
    assert scripted.hits(FINDER)[0].query == {
        "domain": ["lumen.example"], "first_name": ["Maren"], "last_name": ["Okafor"]}
    assert scripted.hits(DOMAIN) == []
    assert (named.email, named.email_confidence, named.email_status) == (
        "maren.okafor@lumen.example", 88, "valid")
    assert [(x.endpoint, x.units) for x in result.calls] == [
        ("email-finder", 1), ("email-verifier", 1)]


def test_when_the_finder_knows_no_address_the_domain_search_is_used(
    scripted: ScriptedServer,
) -> None:
    scripted.script(FINDER, Reply(200, {"data": {"email": None, "score": None}, "meta": {}}))
    scripted.script(DOMAIN, Reply(200, payload("hunter_domain_search.json")))
    scripted.script(VERIFY, verified("valid"))
    named = lead(1, website="https://www.northwind-robotics.example", contact_first_name="Zed",
                 contact_last_name="Nobody")
    asyncio.run(_enrich(fast_settings(scripted.base_url), [named]))
    assert len(scripted.hits(FINDER)) == 1 and len(scripted.hits(DOMAIN)) == 1
    assert named.email == "dana.whitfield@northwind-robotics.example"
    assert (named.contact_first_name, named.contact_last_name) == ("Zed", "Nobody")


def test_existing_email_is_only_verified_and_bad_syntax_costs_no_call(
    scripted: ScriptedServer,
) -> None:
    scripted.script(VERIFY, verified("accept_all"))
    has_email = lead(1, email="Owner@Bella.COM", website="https://bella.com")
    bad = lead(2, email="owner@@bella", website="https://bella.com")
    result = asyncio.run(_enrich(fast_settings(scripted.base_url), [has_email, bad]))
    assert scripted.hits(DOMAIN) == []
    assert [h.query["email"] for h in scripted.hits(VERIFY)] == [["Owner@bella.com"]]
    assert has_email.email_status == "accept_all"
    assert bad.email_status == "invalid" and bad.email == "owner@@bella"
    assert result.failures == []


def test_unknown_verifier_status_is_recorded_as_unknown(scripted: ScriptedServer) -> None:
    scripted.script(VERIFY, verified("deliverable-ish"))
    c = lead(1, email="a@b.com")
    asyncio.run(_enrich(fast_settings(scripted.base_url), [c]))
    assert c.email_status == "unknown"


def test_a_domain_and_an_address_are_asked_about_once_per_run(scripted: ScriptedServer) -> None:
    """Three branches of one business (one domain) and two listings with one address: one
    domain search, one verification per address, every candidate gets the answer, and the
    calls are metered once."""
    scripted.script(DOMAIN, Reply(200, payload("hunter_domain_search.json")))
    scripted.script(VERIFY, verified("valid"))
    branches = [lead(i, website=f"https://northwind-robotics.example/{i}") for i in range(3)]
    listed_twice = [lead(10 + i, email="Owner@Bella.example") for i in range(2)]
    candidates = [*branches, *listed_twice]
    result = asyncio.run(_enrich(fast_settings(scripted.base_url), candidates, concurrency=5))
    assert len(scripted.hits(DOMAIN)) == 1
    assert sorted(h.query["email"][0].lower() for h in scripted.hits(VERIFY)) == [
        "dana.whitfield@northwind-robotics.example", "owner@bella.example"]
    assert {c.email for c in branches} == {"dana.whitfield@northwind-robotics.example"}
    assert {c.email_status for c in candidates} == {"valid"}
    assert [(x.endpoint, x.units) for x in result.calls].count(("domain-search", 1)) == 1
    assert sum(1 for x in result.calls if x.endpoint == "email-verifier") == 2
    assert result.failures == []


def test_api_failures_are_recorded_per_candidate_and_nobody_is_dropped(
    scripted: ScriptedServer,
) -> None:
    scripted.script(DOMAIN, Reply(500, {"errors": [{"id": "server_error", "code": 500,
                                                    "details": "boom"}]}))
    scripted.script(VERIFY, Reply(202, None))
    no_site = lead(0)
    searched = lead(1, website="bella-salon.com")
    pending = lead(2, email="a@b.com")
    candidates = [no_site, searched, pending]
    result = asyncio.run(_enrich(fast_settings(scripted.base_url), candidates))
    assert result.candidates == candidates and len(result.candidates) == 3
    reasons = {f.candidate_id: f.reason for f in result.failures}
    assert set(reasons) == {"apollo:id1", "apollo:id2"}
    assert "domain-search" in reasons["apollo:id1"] and "500" in reasons["apollo:id1"]
    assert "still running" in reasons["apollo:id2"]
    assert pending.email_status == "unknown" and searched.email is None
    # Failed attempts are metered too (zero units), so usage shows them.
    assert sum(1 for c in result.calls if c.endpoint == "domain-search") == 3


def test_monthly_quota_stops_further_hunter_calls(scripted: ScriptedServer) -> None:
    scripted.script(VERIFY, Reply(429, {"errors": [{"id": "too_many_requests", "code": 429,
                                                    "details": "usage limit"}]}))
    candidates = [lead(i, email=f"p{i}@b.com") for i in range(6)]
    result = asyncio.run(_enrich(fast_settings(scripted.base_url), candidates, concurrency=1))
    assert len(scripted.hits(VERIFY)) == 1
    assert len(result.failures) == 6
    assert all("usage limit" in f.reason for f in result.failures)
    # ...and says so: the quota's error once, and every lead it left without a lookup.
    assert result.quota_error is not None and "usage limit" in result.quota_error
    assert result.quota_stopped == 6 and all(f.quota for f in result.failures)


def test_a_quota_known_to_be_spent_asks_hunter_nothing_and_says_why_per_lead(
    scripted: ScriptedServer,
) -> None:
    # A later chunk of a run whose Hunter quota is used up: no client, no request, the same
    # per-lead reasons as after the 429; syntax checks still run, nobody is dropped.
    candidates = [lead(0), lead(1, website="bella-salon.com"), lead(2, email="a@b.com"),
                  lead(3, email="not an address"), lead(4, website="https://x.example",
                                                        contact_first_name="Ann",
                                                        contact_last_name="Lee")]
    result = asyncio.run(enrich_candidates(candidates, None, 4, quota_error="spent earlier"))
    assert scripted.requests == [] and result.calls == []
    assert result.candidates == candidates
    assert {f.candidate_id: f.reason for f in result.failures} == {
        "apollo:id1": "domain-search skipped: spent earlier",
        "apollo:id2": "email-verifier skipped: spent earlier",
        "apollo:id4": "domain-search skipped: spent earlier"}
    assert result.quota_stopped == 3 and result.quota_error == "spent earlier"
    assert candidates[3].email_status == "invalid"
    with pytest.raises(ValueError, match="Hunter client"):
        asyncio.run(enrich_candidates(candidates, None, 4))


def test_enrichment_against_the_sandbox_finds_and_verifies(sandbox_env: Any) -> None:
    sandbox_env.set_faults({})
    settings = get_settings()

    async def run() -> tuple[list[CandidateLead], EnrichResult]:
        async with make_async_client(settings) as http:
            apollo = ApolloClient.from_settings(http, settings)
            records = [r async for page in apollo.search_organizations(limit=40)
                       for r in page.records]
            leads, _ = normalise_records("apollo", records)
            hunter = HunterClient.from_settings(http, settings)
            return leads, await enrich_candidates(leads, hunter, 8)

    candidates, result = asyncio.run(run())
    assert len(candidates) == 40
    assert result.failures == []
    with_email = [c for c in candidates if c.email]
    assert with_email and result.emails_found == len(with_email)
    statuses = {"valid", "invalid", "accept_all", "webmail", "disposable", "unknown"}
    assert all(c.email_status in statuses for c in with_email)
    assert sum(c.units for c in result.calls if c.endpoint == "email-verifier") == len(with_email)


def test_a_verification_that_never_completes_is_recorded_unknown_not_dropped(
        sandbox_env: Any) -> None:
    """The sandbox's verifier answers 202 for ever: every lead keeps its address with an
    `unknown` status and a recorded reason, after a bounded number of polls, in bounded time."""
    from sandbox.dataset import generate_businesses

    sandbox_env.set_faults({"hunter": {"rate": 1.0, "kinds": ["202"]}})
    sandbox_env.reset_stats()
    businesses = generate_businesses(2000, 7)
    known = [e.address for b in businesses for e in b.emails if not e.verify_pending][:3]
    site = next(b for b in businesses if b.domain and any(
        e.address.endswith("@" + b.domain) for e in b.emails)
        and not any(e.address in known for e in b.emails))
    candidates = [lead(i, email=a) for i, a in enumerate(known)]
    candidates.append(lead(9, website=f"https://{site.domain}/"))
    settings = get_settings().model_copy(update=dict(
        hunter_verify_max_polls=3, hunter_verify_poll_s=0.05, http_max_attempts=2))
    started = time.monotonic()
    result = asyncio.run(_enrich(settings, candidates))
    assert time.monotonic() - started < 10
    assert result.candidates == candidates
    assert all(c.email and c.email_status == "unknown" for c in candidates)
    reasons = {f.candidate_id: f.reason for f in result.failures}
    assert set(reasons) == {candidate_id(c) for c in candidates}
    assert all("still running after 3 polls" in r for r in reasons.values())
    hunter = sandbox_env.stats()["targets"]["hunter"]
    assert hunter["statuses"]["202"] == 3 * len(candidates)  # bounded: 3 polls per address
    # Polls are metered (zero units): the usage shows them, nothing is billed.
    verifier = [c for c in result.calls if c.endpoint == "email-verifier"]
    assert len(verifier) == 3 * len(candidates) and sum(c.units for c in verifier) == 0
