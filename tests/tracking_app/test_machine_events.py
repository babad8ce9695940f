"""Mail-privacy proxies, security scanners and repeats through real HTTP: recorded, flagged
with the rule that matched, and left out of the human figures. Client addresses are stored
truncated, and X-Forwarded-For is believed only from a trusted proxy."""

from __future__ import annotations

import httpx
import pytest

from leadflow import tokens
from models import Email
from models.db import session_scope
from tests.tracking_app.conftest import Outreach, RunningApp, events, path_of

BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari"


def hit(app: RunningApp, url: str, ua: str | None, client: str | None = None,
        source: str = "127.0.0.1") -> httpx.Response:
    headers = {"x-forwarded-for": client} if client else {}
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=10) as c:
        request = c.build_request("GET", app.base_url + path_of(url), headers=headers)
        if ua is None:
            del request.headers["user-agent"]
        else:
            request.headers["user-agent"] = ua
        return c.send(request)


@pytest.mark.parametrize(
    ("kind", "ua", "client", "reason"),
    [
        ("open", "Mozilla/5.0", "203.0.113.9", "apple_mpp"),
        ("open", BROWSER, "17.58.63.201", "apple_mpp"),
        ("open", "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 "
                 "(via ggpht.com GoogleImageProxy)", "66.249.84.10", "google_image_proxy"),
        ("open", BROWSER, "66.102.8.3", "google_image_proxy"),
        ("click", "Mozilla/5.0 (compatible; Barracuda Sentinel)", "198.51.100.4",
         "scanner_barracuda"),
        ("click", "Proofpoint URL Defense", "198.51.100.4", "scanner_proofpoint"),
        ("click", "Mimecast-URL-Protect/1.0", "198.51.100.4", "scanner_mimecast"),
        ("click", "Mozilla/5.0 Microsoft Defender SafeLinks", "198.51.100.4",
         "scanner_microsoft"),
        ("click", "curl/8.5.0", "198.51.100.4", "scanner_http_library"),
        ("click", "python-requests/2.32.3", "198.51.100.4", "scanner_http_library"),
        ("click", "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/126.0.0.0 Safari/537.36",
         "198.51.100.4", "scanner_headless_browser"),
        ("click", BROWSER, "40.107.5.9", "scanner_network_microsoft"),
        ("click", BROWSER, "148.163.130.77", "scanner_network_proofpoint"),
        ("click", "Slackbot-LinkExpanding 1.0", "198.51.100.4", "link_preview"),
        ("click", None, "198.51.100.4", "no_user_agent"),
    ],
)
def test_proxy_and_scanner_hits_are_recorded_but_flagged(
    app_pg: RunningApp, outreach: Outreach, pg_clean: str,
    kind: str, ua: str | None, client: str, reason: str,
) -> None:
    email_id = outreach.email_ids[0]
    url = tokens.open_url(email_id) if kind == "open" else tokens.click_url(email_id, 0)
    assert hit(app_pg, url, ua, client).status_code == (200 if kind == "open" else 302)
    [event] = events(pg_clean)
    assert (event.kind, event.is_machine, event.machine_reason) == (kind, True, reason)
    app_pg.wait_idle()
    with session_scope(pg_clean) as s:
        email = s.get_one(Email, email_id)
        assert (email.open_count, email.click_count, email.machine_event_count) == (0, 0, 1)


def test_a_click_within_seconds_of_delivery_is_a_scanner_a_later_one_is_human(
    app_pg: RunningApp, outreach: Outreach, pg_clean: str
) -> None:
    assert hit(app_pg, tokens.click_url(outreach.just_sent_email_id, 0), BROWSER,
               "198.51.100.4").status_code == 302
    assert hit(app_pg, tokens.click_url(outreach.email_ids[0], 0), BROWSER,
               "198.51.100.4").status_code == 302  # sent an hour ago
    assert [(e.email_id, e.machine_reason) for e in events(pg_clean)] == [
        (outreach.just_sent_email_id, "click_soon_after_delivery"),
        (outreach.email_ids[0], None),
    ]


def test_humans_on_other_networks_are_not_repeats_of_each_other(
    app_pg: RunningApp, outreach: Outreach, pg_clean: str
) -> None:
    url = tokens.open_url(outreach.email_ids[0])
    for client in ("198.51.100.4", "198.51.101.4", "2001:db8:1:2::5", "198.51.100.200"):
        assert hit(app_pg, url, BROWSER, client).status_code == 200
    assert [(e.ip_network, e.machine_reason) for e in events(pg_clean)] == [
        ("198.51.100.0/24", None),
        ("198.51.101.0/24", None),
        ("2001:db8:1::/48", None),
        ("198.51.100.0/24", "repeat"),  # same /24 as the first, within the window
    ]


def test_a_repeat_is_the_same_email_kind_link_and_network_whatever_came_between(
    app_pg: RunningApp, outreach: Outreach, pg_clean: str
) -> None:
    email_id = outreach.email_ids[0]
    sequence = [
        (tokens.click_url(email_id, 0), "198.51.100.4", None),
        (tokens.click_url(email_id, 1), "198.51.100.4", None),  # another link
        (tokens.open_url(email_id), "198.51.100.4", None),  # another kind
        (tokens.click_url(email_id, 1), "198.51.102.4", None),  # another network
        (tokens.click_url(email_id, 0), "198.51.100.9", "repeat"),  # the first, 3 events back
        (tokens.open_url(outreach.email_ids[1]), "198.51.100.4", None),  # another email
    ]
    for url, client, _ in sequence:
        assert hit(app_pg, url, BROWSER, client).status_code in (200, 302)
    assert [e.machine_reason for e in events(pg_clean)] == [r for _, _, r in sequence]


def test_no_full_client_address_is_stored(
    app_pg: RunningApp, outreach: Outreach, pg_clean: str
) -> None:
    hit(app_pg, tokens.open_url(outreach.email_ids[0]), BROWSER, "198.51.100.77")
    hit(app_pg, tokens.open_url(outreach.email_ids[1]), BROWSER, "2001:db8:aaaa:bbbb::77")
    stored = [(e.ip_network, e.user_agent) for e in events(pg_clean)]
    assert stored == [("198.51.100.0/24", BROWSER), ("2001:db8:aaaa::/48", BROWSER)]
    assert not any("77" in (e.ip_network or "") for e in events(pg_clean))


def test_forwarded_for_from_an_untrusted_peer_is_ignored(
    app_pg: RunningApp, outreach: Outreach, pg_clean: str
) -> None:
    # 127.0.0.2 is not a trusted proxy: its claim to relay an Apple address is not believed.
    assert hit(app_pg, tokens.open_url(outreach.email_ids[0]), BROWSER, "17.1.2.3",
               source="127.0.0.2").status_code == 200
    [event] = events(pg_clean)
    assert (event.ip_network, event.is_machine) == ("127.0.0.0/24", False)


def test_a_malformed_forwarded_chain_falls_back_to_the_proxy_address(
    app_pg: RunningApp, outreach: Outreach, pg_clean: str
) -> None:
    assert hit(app_pg, tokens.open_url(outreach.email_ids[0]), BROWSER,
               "not-an-ip, <script>").status_code == 200
    [event] = events(pg_clean)
    assert event.ip_network == "127.0.0.0/24"
