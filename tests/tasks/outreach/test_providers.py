"""Provider choice and limits: reservations counted in the database, warm-up, concurrent
reservations that never exceed a limit, and passwords by reference."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from pydantic import SecretStr

from leadflow.settings import Settings
from models.db import session_scope
from tasks.outreach.providers import (
    ProviderConfig,
    effective_daily_limit,
    provider_capacity,
    release,
    reserve,
    resolve_password,
    select_provider,
)
from tests.tasks.outreach.mailserver import T0, Outreach

pytest_plugins = ["tests.tasks.outreach.sending_fixtures"]


def test_select_provider_goes_by_priority_and_reserves_what_is_left(outreach_pg: Outreach):
    db = outreach_pg.db_url
    a = outreach_pg.provider("a", 2525, hourly=5, priority=1)
    b = outreach_pg.provider("b", 2526, hourly=50, priority=2)
    outreach_pg.provider("off", 2527, priority=0, is_active=False)

    first = select_provider(db, 3, T0)
    second = select_provider(db, 3, T0)
    third = select_provider(db, 3, T0)

    assert first is not None and second is not None and third is not None
    assert [(r.provider.name, r.count) for r in (first, second, third)] == [
        ("a", 3), ("a", 2), ("b", 3)]
    assert select_provider(db, 1, T0, exclude=[b]) is None  # a is full, b left out
    release(db, first, 1)
    avoided = select_provider(db, 1, T0, avoid=[a])  # a has room again, but b goes first
    assert avoided is not None and avoided.provider.id == b
    # A new hour, a new count.
    assert select_provider(db, 9, T0 + dt.timedelta(hours=1)).provider.id == a  # type: ignore


def test_release_gives_back_unused_sends(outreach_pg: Outreach):
    db = outreach_pg.db_url
    outreach_pg.provider("a", 2525, hourly=5)
    reservation = select_provider(db, 5, T0)
    assert reservation is not None and reservation.count == 5
    assert select_provider(db, 1, T0) is None
    release(db, reservation, 2)
    capacity = provider_capacity(db, T0)[0]
    assert (capacity.sent_this_hour, capacity.sent_today, capacity.available) == (3, 3, 2)


def test_warm_up_lowers_the_daily_limit_until_it_reaches_it(outreach_pg: Outreach):
    db = outreach_pg.db_url
    outreach_pg.provider("warming", 2525, hourly=100, daily=40,
                         warmup_started_on=T0.date() - dt.timedelta(days=2),
                         warmup_initial_daily=5, warmup_daily_increase=3)
    capacity = provider_capacity(db, T0)[0]
    assert (capacity.daily_limit, capacity.available) == (11, 11)  # 5 + 2 days * 3
    assert select_provider(db, 50, T0).count == 11  # type: ignore[union-attr]
    assert select_provider(db, 1, T0 + dt.timedelta(hours=5)) is None  # same day: spent
    tomorrow = select_provider(db, 50, T0 + dt.timedelta(days=1))
    assert tomorrow is not None and tomorrow.count == 14
    with session_scope(db) as s:
        from models import SmtpProvider

        row = s.get_one(SmtpProvider, 1)
        assert effective_daily_limit(row, T0.date() + dt.timedelta(days=30)) == 40


def test_concurrent_reservations_never_exceed_the_limit(outreach_pg: Outreach):
    db = outreach_pg.db_url
    outreach_pg.provider("a", 2525, hourly=37, daily=1000)
    granted: list[int] = []
    lock = threading.Lock()

    def grab() -> None:
        for _ in range(10):
            with session_scope(db) as s:
                n = reserve(s, 1, 2, T0)
            with lock:
                granted.append(n)

    threads = [threading.Thread(target=grab) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 37
    assert provider_capacity(db, T0)[0].sent_this_hour == 37


def test_reservations_on_sqlite_are_counted_too(sqlite_url, send_env):
    outreach = Outreach(sqlite_url)
    outreach.provider("a", 2525, hourly=4)
    assert [select_provider(sqlite_url, 3, T0).count,  # type: ignore[union-attr]
            select_provider(sqlite_url, 3, T0).count] == [3, 1]  # type: ignore[union-attr]
    assert select_provider(sqlite_url, 3, T0) is None


def _provider(ref: str | None) -> ProviderConfig:
    return ProviderConfig(1, "relay", "127.0.0.1", 587, "starttls", "u", ref, None, 1)


def test_password_comes_from_settings_then_a_secret_block():
    settings = Settings(smtp_passwords={"main": SecretStr("from-settings")})
    asked: list[str] = []

    def load_secret(name: str) -> str:
        asked.append(name)
        return "from-block"

    found = resolve_password(_provider("MAIN"), settings, load_secret)
    assert found is not None and found.get_secret_value() == "from-settings" and asked == []
    block = resolve_password(_provider("smtp-block"), settings, load_secret)
    assert block is not None and block.get_secret_value() == "from-block"
    assert asked == ["smtp-block"] and "from-block" not in repr(block)
    assert resolve_password(_provider(None), settings, load_secret) is None


def test_a_missing_password_names_the_reference_not_a_value():
    def failing(name: str) -> str:
        raise ValueError("secret value hunter2 leaked?")

    with pytest.raises(RuntimeError) as info:
        resolve_password(_provider("nowhere"), Settings(), failing)
    assert "'nowhere'" in str(info.value) and "hunter2" not in str(info.value)
