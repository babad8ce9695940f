"""The tracking app on the embedded default, a SQLite file: open, click, unsubscribe and
concurrent opens through real HTTP, with the figures derived."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import httpx
import pytest
from sqlalchemy import select

from leadflow import tokens
from leadflow.settings import reset_settings_cache
from models import Email, Lead, Suppression
from models.db import session_scope
from tests.tracking_app.conftest import (
    LINKS,
    event_count,
    make_outreach,
    path_of,
    start_app,
    stop_app,
)

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0"


async def _opens(base_url: str, path: str, n: int, spaced_s: float = 0.0) -> list[int]:
    limits = httpx.Limits(max_connections=n)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:

        async def one(i: int) -> int:
            await asyncio.sleep(i * spaced_s)  # spaced: one batch each
            r = await client.get(path, headers={"user-agent": BROWSER,
                                                "x-forwarded-for": f"10.9.{i}.1"})
            return r.status_code

        return list(await asyncio.gather(*(one(i) for i in range(n))))


def test_the_app_records_and_derives_on_sqlite(sqlite_url: str, tracking_env: None) -> None:
    o = make_outreach(sqlite_url)
    app, thread = start_app(sqlite_url)
    try:
        e0, e1, _ = o.email_ids
        h = {"user-agent": BROWSER}
        assert asyncio.run(_opens(app.base_url, path_of(tokens.open_url(e0)), 100)) == [200] * 100
        r = httpx.get(app.base_url + path_of(tokens.click_url(e1, 0)) + "?url=https://evil.example",
                      headers=h, timeout=10)
        assert (r.status_code, r.headers["location"]) == (302, LINKS[0])
        assert httpx.get(app.base_url + path_of(tokens.open_url(10_000)),
                         headers=h, timeout=10).status_code == 404
        unsub = app.base_url + path_of(tokens.unsubscribe_url(e0))
        assert httpx.get(unsub, timeout=10).status_code == 200
        assert event_count(sqlite_url) == 101
        r = httpx.post(unsub, content="List-Unsubscribe=One-Click", timeout=10,
                       headers={"content-type": "application/x-www-form-urlencoded"})
        assert r.status_code == 200
        app.wait_idle()
        assert event_count(sqlite_url) == 102
        with session_scope(sqlite_url) as s:
            assert s.get_one(Email, e0).open_count == 100
            assert s.get_one(Email, e1).click_count == 1
            assert [(x.value, x.reason) for x in s.scalars(select(Suppression))] == [
                ("owner0@salon0.example", "unsubscribed")]
            lead = s.get_one(Lead, o.lead_ids[0])
            assert (lead.status, lead.emails_opened) == ("unsubscribed", 1)
            assert {s.get_one(Email, i).status for i in o.unsent_email_ids} == {"cancelled"}
    finally:
        stop_app(app, thread)


def test_repeated_hits_are_recorded_and_flagged_on_sqlite(sqlite_url: str,
                                                          tracking_env: None) -> None:
    """A second hit of the same pixel or link from the same network within the repeat window
    is recorded as a machine repeat, in a later batch (the first is stored by then, read back
    from SQLite without a time zone) and in the same batch, and unrelated hits are unharmed."""
    o = make_outreach(sqlite_url)
    app, thread = start_app(sqlite_url)
    try:
        e0, e1, e2 = o.email_ids
        h = {"user-agent": BROWSER, "x-forwarded-for": "10.8.0.1"}
        click = app.base_url + path_of(tokens.click_url(e1, 0))
        pixel = app.base_url + path_of(tokens.open_url(e0))
        for _ in range(2):  # one after the other: the second batch sees the stored first
            assert httpx.get(click, headers=h, timeout=10).status_code == 302
            assert httpx.get(pixel, headers=h, timeout=10).status_code == 200
        # At once, with hits of another email from other networks in the same batches.
        together = asyncio.run(_opens(app.base_url, path_of(tokens.open_url(e2)), 20))
        again = asyncio.run(_opens(app.base_url, path_of(tokens.open_url(e2)), 20))
        assert together == again == [200] * 20
        app.wait_idle()
        assert event_count(sqlite_url) == 44
        with session_scope(sqlite_url) as s:
            opened, clicked, other = (s.get_one(Email, i) for i in (e0, e1, e2))
            assert (opened.open_count, opened.machine_event_count) == (1, 1)
            assert (clicked.click_count, clicked.machine_event_count) == (1, 1)
            assert (other.open_count, other.machine_event_count) == (20, 20)
    finally:
        stop_app(app, thread)


def test_healthz_is_503_while_events_cannot_be_committed_and_ok_once_they_can(
        sqlite_url: str, tracking_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process holds SQLite's write lock: the database still answers a read, but a
    hit times out (503) and the health endpoint says so, until a commit goes through."""
    monkeypatch.setenv("LEADFLOW_TRACKING_COMMIT_TIMEOUT_S", "1")
    reset_settings_cache()
    o = make_outreach(sqlite_url)
    app, thread = start_app(sqlite_url)
    h = {"user-agent": BROWSER}
    try:
        assert httpx.get(app.base_url + "/healthz", timeout=10).status_code == 200
        locker = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")
        try:
            started = time.monotonic()
            # More hits than the writer's batches in flight: some wait in its queue.
            statuses = asyncio.run(_opens(app.base_url, path_of(tokens.open_url(o.email_ids[0])),
                                          8, spaced_s=0.05))
            assert statuses == [503] * 8
            assert time.monotonic() - started < 4  # each answered within about a commit timeout
            health = httpx.get(app.base_url + "/healthz", timeout=10)
            assert (health.status_code, health.json()["status"]) == (
                503, "events not being committed")
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        r = httpx.get(app.base_url + path_of(tokens.open_url(o.email_ids[1])), headers=h,
                      timeout=10)
        assert r.status_code == 200
        health = httpx.get(app.base_url + "/healthz", timeout=10)
        assert (health.status_code, health.json()["status"]) == (200, "ok")
        app.wait_idle()
        # A 503 leaves nothing behind, even once the lock is gone: only the last hit is stored.
        assert event_count(sqlite_url) == 1
    finally:
        stop_app(app, thread)
