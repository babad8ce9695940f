"""Routing: the rules table picks the documented scenario for each kind of lead."""

from __future__ import annotations

import json
from typing import Any

import pytest

from models import Lead, WebsiteAnalysis
from models.db import session_scope
from tasks.outreach.routing import (
    RULES_PATH,
    booking_tool_names,
    lead_facts,
    load_lead_facts,
    parse_rules,
    route_lead,
    route_leads,
    routing_table,
)
from tests.tasks.outreach.conftest import NOW, add_leads


def lead(**fields: Any) -> Lead:
    values: dict[str, Any] = {"company_name": "Bella Salon", "website": "https://bella.example",
                              "domain": "bella.example", "phone": "+1 512 555 0100",
                              "booking_tools": [], "digital_maturity": 40,
                              "booking_keyword_count": 0, "source": "apollo"}
    values.update(fields)
    return Lead(**values)


@pytest.mark.parametrize(
    ("fields", "scenario", "rule"),
    [
        ({"website": None, "domain": None, "digital_maturity": None}, "no_website",
         "no-website"),
        ({"website": "  ", "booking_tools": ["fresha"]}, "no_website", "no-website"),
        ({"booking_tools": ["fresha"], "digital_maturity": 90}, "competitor_booking",
         "competitor-tool"),
        ({"booking_tools": ["google_calendar", "vagaro"]}, "competitor_booking",
         "competitor-tool"),
        ({"booking_tools": ["google_calendar"], "digital_maturity": 75}, "books_online_well",
         "booking-tool-and-mature-site"),
        ({"booking_tools": ["opentable"], "digital_maturity": 60}, "books_online_well",
         "booking-tool-and-mature-site"),
        ({"booking_tools": ["google_calendar"], "digital_maturity": 30}, "general",
         "fallback"),
        ({"booking_keyword_count": 3}, "phone_only_booking",
         "booking-talk-and-phone-no-tool"),
        ({"booking_keyword_count": 3, "phone": None}, "no_online_booking",
         "website-without-booking-tool"),
        ({"booking_keyword_count": 1}, "no_online_booking", "website-without-booking-tool"),
        ({}, "no_online_booking", "website-without-booking-tool"),
        # A listed website that was never analysed: whether it books online is unknown.
        ({"digital_maturity": None, "booking_keyword_count": None}, "general", "fallback"),
    ],
)
def test_route_lead_picks_the_documented_scenario(
    fields: dict[str, Any], scenario: str, rule: str
) -> None:
    decision = route_lead(lead_facts(lead(**fields)))
    assert (decision.scenario, decision.rule) == (scenario, rule)


def test_phone_booking_wording_on_the_site_routes_to_phone_only_booking() -> None:
    analysis = WebsiteAnalysis(domain="bella.example", url="https://bella.example",
                               signals={"phone_booking": True}, expires_at=NOW)
    facts = lead_facts(lead(phone=None), analysis)
    decision = route_lead(facts)
    assert (decision.scenario, decision.rule) == ("phone_only_booking", "site-says-call-to-book")
    assert decision.facts["phone_booking"] is True


def test_competitor_tool_is_exposed_by_its_spoken_name() -> None:
    facts = lead_facts(lead(booking_tools=["google_calendar", "acuity"]))
    assert facts["competitor_tool"] == "Acuity Scheduling"
    assert facts["booking_tool"] == "Google Calendar appointment schedules"
    assert route_lead(facts).facts["competitor_tool"] == "Acuity Scheduling"


def test_decision_keeps_the_facts_the_rules_read() -> None:
    decision = route_lead(lead_facts(lead()))
    assert decision.facts == {"has_website": True, "competitor_tool": None,
                              "has_booking_tool": False, "site_analysed": True,
                              "phone_booking": None, "has_phone": True,
                              "booking_keyword_count": 0}
    json.dumps(decision.facts)  # stored in campaign_leads.routing as JSON


def test_rules_file_names_known_scenarios_and_known_tools() -> None:
    raw = json.loads(RULES_PATH.read_text())
    table = routing_table()
    assert set(table.scenarios) == {"no_website", "competitor_booking", "books_online_well",
                                    "phone_only_booking", "no_online_booking", "general"}
    assert table.non_competitor_tools <= set(booking_tool_names())
    assert {r.scenario for r in table.rules} == set(table.scenarios)
    assert table.rules[-1].when == () and raw["rules"][-1]["scenario"] == "general"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r["rules"][0].update(scenario="nope"), "unknown scenario"),
        (lambda r: r["rules"][0]["when"][0].update(op="regex"), "unknown operator"),
        (lambda r: r["rules"].pop(), "last routing rule"),
    ],
)
def test_broken_rules_are_refused(change: Any, message: str) -> None:
    raw = json.loads(RULES_PATH.read_text())
    change(raw)
    with pytest.raises(ValueError, match=message):
        parse_rules(raw)


def test_load_lead_facts_reads_the_sites_analysis_on_postgres(pg_clean: str) -> None:
    with session_scope(pg_clean) as session:
        talking, silent = add_leads(session, 2, phone=None)
        session.add(WebsiteAnalysis(domain="bella0.example", url="https://bella0.example/",
                                    signals={"phone_booking": True}, expires_at=NOW))
    with session_scope(pg_clean) as session:
        facts = load_lead_facts(session, [talking, silent])
        decisions = route_leads(session, [talking, silent])
    assert facts[talking]["phone_booking"] is True and facts[talking]["site_reachable"] is True
    assert facts[silent]["phone_booking"] is None and facts[silent]["site_reachable"] is None
    assert decisions[talking].scenario == "phone_only_booking"
    assert decisions[silent].scenario == "no_online_booking"
