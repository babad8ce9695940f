"""Which stored links a click may redirect to: the same answer in Python (the SQLite path) and in
PostgreSQL (the statement that records a batch decides there), only http(s) URLs with a host,
and a stored link that is not one gets 404 and writes nothing."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from sqlalchemy import update

from leadflow import tokens
from models import EmailLink
from models.db import session_scope
from tests.tracking_app.conftest import LINKS, Outreach, RunningApp, event_count, path_of
from tracking_app.recording import REDIRECTABLE_PATTERN, redirectable

GOOD = [
    *LINKS,
    "http://booknex.example",
    "HTTPS://Booknex.Example:8443/a?b=c#d",
    "https://user@booknex.example/",
    "https://booknex.example/caf\u00e9 menu?q=a b",  # path and query: anything but CR LF TAB
    "https://10.0.0.1/x",
]
BAD = [
    "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "//evil.example/",
    "/relative",
    "ftp://booknex.example/file",
    "https://",
    "https:///path",
    "https:/booknex.example",
    " https://booknex.example/",  # leading space
    "https://booknex.example/\r\nSet-Cookie: a=b",
    "https://booknex.example/\n",
    "https://booknex.example/a\tb",
    "https://[::1/",  # urlsplit raises on this
    "https://[::1]/",  # IPv6 literals: refused rather than parsed differently
    "https://b\u00fccher.example/",  # non-ASCII host
    "https://evil.example\\@booknex.example/",  # backslash in the host part
    "https://a b.example/",
    "https:// booknex.example/",
    "",
]


@pytest.mark.parametrize("url", GOOD)
def test_http_urls_with_a_plain_host_are_redirectable(url: str) -> None:
    assert redirectable(url)


@pytest.mark.parametrize("url", BAD)
def test_other_urls_are_not_redirectable(url: str) -> None:
    assert not redirectable(url)


def test_nul_is_never_redirectable() -> None:
    assert not redirectable("https://booknex.example/\x00")


@pytest.mark.parametrize("url", GOOD + BAD)
def test_whatever_is_redirectable_urlsplit_reads_as_http_with_a_host(url: str) -> None:
    if redirectable(url):
        parts = urlsplit(url)
        assert parts.scheme in ("http", "https") and parts.netloc


def test_postgresql_decides_like_python_on_every_url(pg_url: str) -> None:
    dsn = pg_url.replace("postgresql+psycopg://", "postgresql://")
    urls = GOOD + BAD
    with psycopg.connect(dsn) as conn:
        got = [r[0] for r in conn.execute(
            "SELECT u ~ %s FROM unnest(%s::text[]) WITH ORDINALITY AS t(u, n) ORDER BY n",
            (f"^({REDIRECTABLE_PATTERN})$", urls))]
    assert got == [redirectable(u) for u in urls]


@pytest.mark.parametrize("stored", ["javascript:alert(1)", "https://[::1/", "//evil.example/"])
def test_a_click_on_a_stored_link_that_is_not_redirectable_is_404_and_writes_nothing(
    app_pg: RunningApp, outreach: Outreach, pg_clean: str, stored: str
) -> None:
    email_id = outreach.email_ids[0]
    with session_scope(pg_clean) as s:
        s.execute(update(EmailLink).where(EmailLink.email_id == email_id,
                                          EmailLink.position == 0).values(url=stored))
    r = httpx.get(app_pg.base_url + path_of(tokens.click_url(email_id, 0)), timeout=10,
                  headers={"user-agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"})
    assert r.status_code == 404
    assert "location" not in r.headers
    assert event_count(pg_clean) == 0
    # The email's other link still redirects.
    r = httpx.get(app_pg.base_url + path_of(tokens.click_url(email_id, 1)), timeout=10,
                  headers={"user-agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"})
    assert (r.status_code, r.headers["location"]) == (302, LINKS[1])
    assert event_count(pg_clean) == 1


def test_a_stored_link_with_a_non_ascii_path_redirects_percent_encoded(
    app_pg: RunningApp, outreach: Outreach, pg_clean: str
) -> None:
    email_id = outreach.email_ids[0]
    with session_scope(pg_clean) as s:
        s.execute(update(EmailLink).where(EmailLink.email_id == email_id,
                                          EmailLink.position == 0)
                  .values(url="https://booknex.example/café/✂?q=é"))
    r = httpx.get(app_pg.base_url + path_of(tokens.click_url(email_id, 0)), timeout=10,
                  headers={"user-agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"})
    assert r.status_code == 302
    assert r.headers["location"] == "https://booknex.example/caf%C3%A9/%E2%9C%82?q=%C3%A9"
    assert event_count(pg_clean) == 1
