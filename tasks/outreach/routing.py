"""Routing: which outreach scenario a lead gets, from what the pipeline learned about it.

The rules are data (`routing_rules.json`, documented in docs/outreach.md): an ordered list,
first match wins, the last rule is the fallback. `lead_facts` turns a lead (and, when known,
its website analysis) into the flat facts the rules and the templates read."""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Lead, WebsiteAnalysis

RULES_PATH = Path(__file__).with_name("routing_rules.json")
SIGNATURES_PATH = Path(__file__).resolve().parent.parent / "website" / "signatures.json"


@dataclass(frozen=True)
class RoutingDecision:
    scenario: str
    rule: str
    # The facts the rules read to reach the decision (stored as campaign_leads.routing).
    facts: dict[str, Any]


@dataclass(frozen=True)
class Condition:
    fact: str
    op: str
    value: Any


@dataclass(frozen=True)
class Rule:
    name: str
    scenario: str
    when: tuple[Condition, ...]


@dataclass(frozen=True)
class RoutingTable:
    scenarios: tuple[str, ...]
    rules: tuple[Rule, ...]
    non_competitor_tools: frozenset[str]


def _present(value: Any, wanted: Any) -> bool:
    filled = value is not None and value != "" and value != [] and value is not False
    return filled is bool(wanted)


def _ordered(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    # A missing number never satisfies a comparison (unknown maturity is not "low").
    return lambda value, wanted: value is not None and op(value, wanted)


OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gte": _ordered(operator.ge),
    "lte": _ordered(operator.le),
    "gt": _ordered(operator.gt),
    "lt": _ordered(operator.lt),
    "in": lambda value, wanted: value in wanted,
    "present": _present,
}


def parse_rules(raw: Mapping[str, Any]) -> RoutingTable:
    """Check and build a routing table; raises ValueError naming the first problem."""
    scenarios = tuple(raw.get("scenarios") or ())
    rules = []
    for i, item in enumerate(raw.get("rules") or ()):
        name = item.get("name") or f"rule {i}"
        if item.get("scenario") not in scenarios:
            raise ValueError(f"routing rule {name!r}: unknown scenario {item.get('scenario')!r}")
        conditions = []
        for cond in item.get("when", []):
            if cond.get("op") not in OPERATORS:
                raise ValueError(f"routing rule {name!r}: unknown operator {cond.get('op')!r}")
            if not isinstance(cond.get("fact"), str):
                raise ValueError(f"routing rule {name!r}: a condition names no fact")
            conditions.append(Condition(cond["fact"], cond["op"], cond.get("value")))
        rules.append(Rule(name, item["scenario"], tuple(conditions)))
    if not rules or rules[-1].when:
        raise ValueError("the last routing rule must have no conditions (the fallback)")
    return RoutingTable(scenarios, tuple(rules), frozenset(raw.get("non_competitor_tools", ())))


@lru_cache(maxsize=1)
def routing_table() -> RoutingTable:
    return parse_rules(json.loads(RULES_PATH.read_text()))


@lru_cache(maxsize=1)
def booking_tool_names() -> dict[str, str]:
    """Booking tool id -> the name a person would use ("Acuity Scheduling", "Fresha")."""
    tools = json.loads(SIGNATURES_PATH.read_text())["booking_tools"]
    # "Acuity Scheduling / Squarespace Scheduling": the first name is the one people say.
    return {t["name"]: t["display"].split(" / ")[0] for t in tools}


def route_lead(facts: Mapping[str, Any], table: RoutingTable | None = None) -> RoutingDecision:
    """The first rule whose conditions all hold. The decision keeps the facts every rule tried
    so far read, so it shows why earlier rules did not match."""
    table = table or routing_table()
    read: dict[str, Any] = {}
    for rule in table.rules:
        matched = True
        for cond in rule.when:
            value = facts.get(cond.fact)
            read[cond.fact] = value
            if not OPERATORS[cond.op](value, cond.value):
                matched = False
                break
        if matched:
            return RoutingDecision(rule.scenario, rule.name, read)
    raise AssertionError("unreachable: the last rule has no conditions")  # pragma: no cover


def _text(value: str | None) -> str | None:
    value = " ".join(value.split()) if value else None
    return value or None


def lead_facts(
    lead: Lead, analysis: WebsiteAnalysis | None = None, table: RoutingTable | None = None
) -> dict[str, Any]:
    """What routing and templates need to know about a lead, as plain JSON-able values.

    `analysis` adds what only the website analysis holds (phone-booking wording, reachability);
    without it those facts are None (unknown), never guessed."""
    table = table or routing_table()
    names = booking_tool_names()
    tools = [t for t in (lead.booking_tools or []) if isinstance(t, str)]
    competitors = [t for t in tools if t not in table.non_competitor_tools]
    signals = analysis.signals if analysis is not None else {}
    website = _text(lead.website)
    return {
        "company_name": _text(lead.company_name),
        "contact_name": _text(lead.contact_name),
        "industry": _text(lead.industry),
        "city": _text(lead.city),
        "website": website,
        "domain": _text(lead.domain),
        "phone": _text(lead.phone),
        "has_website": website is not None,
        "site_analysed": lead.digital_maturity is not None,
        "site_reachable": (analysis.error is None) if analysis is not None else None,
        "booking_tools": tools,
        "has_booking_tool": bool(tools),
        "competitor_tool": names.get(competitors[0], competitors[0]) if competitors else None,
        "booking_tool": names.get(tools[0], tools[0]) if tools else None,
        "has_contact_form": lead.has_contact_form,
        "booking_keyword_count": lead.booking_keyword_count,
        "phone_booking": signals.get("phone_booking"),
        "digital_maturity": lead.digital_maturity,
        "has_phone": bool(_text(lead.phone)),
        "tier": lead.tier,
        "quality_score": lead.quality_score,
    }


def load_lead_facts(session: Session, lead_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """`lead_facts` of many leads in two queries (leads, then their domains' analyses)."""
    ids = sorted(set(lead_ids))
    leads: list[Lead] = []
    for start in range(0, len(ids), 5000):
        leads.extend(session.scalars(select(Lead).where(Lead.id.in_(ids[start:start + 5000]))))
    domains = sorted({lead.domain for lead in leads if lead.domain})
    analyses: dict[str, WebsiteAnalysis] = {}
    for start in range(0, len(domains), 5000):
        for analysis in session.scalars(
            select(WebsiteAnalysis).where(WebsiteAnalysis.domain.in_(domains[start:start + 5000]))
        ):
            analyses[analysis.domain] = analysis
    return {
        lead.id: lead_facts(lead, analyses.get(lead.domain) if lead.domain else None)
        for lead in leads
    }


def route_leads(session: Session, lead_ids: Iterable[int]) -> dict[int, RoutingDecision]:
    """The routing decision of each lead (the flows store it in campaign_leads)."""
    return {lead_id: route_lead(facts)
            for lead_id, facts in load_lead_facts(session, lead_ids).items()}
