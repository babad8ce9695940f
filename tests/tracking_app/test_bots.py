"""The machine-event rules: data in bot_rules.json, tried in order, extendable without code."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address

import pytest

from tracking_app.bots import RULES_PATH, load_rules, parse_rules

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
BROWSER = "Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"


def reason(rules=None, **kw):  # type: ignore[no-untyped-def]
    hit = {"kind": "open", "method": "GET", "user_agent": BROWSER,
           "client_ip": ip_address("198.51.100.7"), "occurred_at": NOW,
           "sent_at": NOW - timedelta(hours=1), "last_seen_at": None, **kw}
    return (rules or load_rules()).machine_reason(**hit)


def test_a_browser_on_an_ordinary_network_is_human() -> None:
    assert reason() is None
    assert reason(kind="click") is None


def test_proxy_rules_apply_to_opens_only() -> None:
    assert reason(user_agent="Mozilla/5.0") == "apple_mpp"
    assert reason(kind="click", user_agent="Mozilla/5.0") is None
    assert reason(client_ip=ip_address("17.5.5.5")) == "apple_mpp"
    assert reason(kind="click", client_ip=ip_address("17.5.5.5")) is None


def test_delivery_time_and_repeat_windows_have_inclusive_edges() -> None:
    assert reason(kind="click", sent_at=NOW - timedelta(seconds=10)) == (
        "click_soon_after_delivery")
    assert reason(kind="click", sent_at=NOW - timedelta(seconds=11)) is None
    assert reason(kind="open", sent_at=NOW - timedelta(seconds=1)) is None
    assert reason(last_seen_at=NOW - timedelta(seconds=60)) == "repeat"
    assert reason(last_seen_at=NOW - timedelta(seconds=61)) is None
    assert reason(sent_at=None, last_seen_at=(NOW - timedelta(seconds=5)).replace(
        tzinfo=None)) == "repeat"  # SQLite's zone-less timestamps are UTC


def test_the_first_matching_rule_names_the_reason() -> None:
    assert reason(user_agent="curl/8.0", client_ip=ip_address("40.107.1.1"),
                  method="HEAD") == "scanner_http_library"
    assert reason(client_ip=ip_address("40.107.1.1"), method="HEAD") == (
        "scanner_network_microsoft")
    assert reason(method="HEAD", last_seen_at=NOW) == "head_request"
    assert reason(user_agent=None) == "no_user_agent"


def test_rules_are_data_a_new_scanner_needs_no_code(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(RULES_PATH.read_text())
    data["user_agents"].append({"reason": "scanner_acme", "kinds": ["click"],
                                "pattern": "AcmeGuard/\\d"})
    data["networks"].append({"reason": "scanner_network_acme", "cidrs": ["192.0.2.0/24"]})
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(data))
    rules = load_rules(path)
    assert reason(rules, kind="click", user_agent="AcmeGuard/2 (link check)") == "scanner_acme"
    assert reason(rules, kind="click", user_agent="acmeguard/3") == "scanner_acme"
    assert reason(rules, client_ip=ip_address("192.0.2.200")) == "scanner_network_acme"
    assert reason(kind="click", user_agent="AcmeGuard/2") is None  # not in the shipped rules


def test_a_bad_rule_is_refused_when_loaded() -> None:
    with pytest.raises(ValueError, match="bad bot rule"):
        parse_rules({"user_agents": [{"reason": "x", "pattern": "("}]})
    with pytest.raises(ValueError, match="bad bot rule"):
        parse_rules({"networks": [{"reason": "x"}]})


OUTLOOK_DESKTOP = ("Microsoft Office/16.0 (Microsoft Outlook 16.0.17928; Pro), "
                   "Mozilla/4.0 (compatible; ms-office; MSOffice 16)")


def test_outlook_for_windows_showing_the_images_is_a_human_open() -> None:
    """Outlook for Windows fetches a message's images itself, with an `ms-office` user agent,
    from the reader's own network when the reader views the message: a human open. The same
    user agent on a link is Office checking the link before the browser opens it: a machine
    click (the browser's own request is the human one)."""
    for ua in (OUTLOOK_DESKTOP, "Mozilla/4.0 (compatible; ms-office; MSOffice 16)",
               "Mozilla/4.0 (compatible; ms-office; MSOffice rmj)"):
        assert reason(user_agent=ua) is None, ua
        assert reason(kind="click", user_agent=ua) == "scanner_microsoft", ua
    assert reason(user_agent="Microsoft Office Existence Discovery") == "scanner_microsoft"
    assert reason(user_agent="Mozilla/5.0 Microsoft Defender SafeLinks") == "scanner_microsoft"
