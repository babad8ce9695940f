"""The shared retry/backoff policy, Retry-After parsing, redaction and the transport's fault
handling over real sockets (scripted server on loopback)."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from pydantic import SecretStr

from clients.apollo import ApolloClient
from clients.http import (
    PermanentApiError,
    RateLimitedError,
    RetryPolicy,
    TransientApiError,
    make_async_client,
    parse_rate_limit_reset,
    parse_retry_after,
    redact,
)
from clients.keys import resolve_api_key
from leadflow.settings import Settings
from tests.clients.conftest import SECRET, Reply, ScriptedServer, fast_settings, payload

SEARCH = "/apollo/api/v1/mixed_companies/search"


def test_backoff_is_full_jitter_within_exponential_ceiling_and_cap() -> None:
    policy = RetryPolicy(max_attempts=6, base_s=0.5, max_s=3.0)
    rng = random.Random(1)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (5, 3.0)]:
        delays = [policy.backoff_s(attempt, rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # jitter spans the range, not a fixed value
        assert min(delays) < ceiling * 0.2


def test_retry_after_wins_over_backoff_but_is_capped() -> None:
    policy = RetryPolicy(max_attempts=3, base_s=10.0, max_s=5.0)
    assert policy.delay_s(1, 2.0) == 2.0
    assert policy.delay_s(1, 120.0) == 5.0


def test_parse_retry_after_accepts_seconds_and_http_dates() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(format_datetime(now + timedelta(seconds=7), usegmt=True), now) == 7.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=7), usegmt=True), now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_parse_rate_limit_reset_accepts_iso_times_epochs_and_deltas() -> None:
    now = datetime(2025, 10, 2, 17, 30, 30, tzinfo=UTC)
    assert parse_rate_limit_reset("2025-10-02T17:31:00Z", now) == 30.0
    assert parse_rate_limit_reset("2025-10-02T17:30:00Z", now) == 0.0
    assert parse_rate_limit_reset(str(now.timestamp() + 12), now) == 12.0
    assert parse_rate_limit_reset("4", now) == 4.0
    assert parse_rate_limit_reset("{'minute': 1}", now) is None
    assert parse_rate_limit_reset(None, now) is None


def test_redact_masks_key_parameters_and_known_secrets() -> None:
    text = f"GET /x?api_key={SECRET}&key=AIzaXYZ&q=1 header {SECRET}"
    out = redact(text, [SECRET])
    assert SECRET not in out and "AIzaXYZ" not in out
    assert "q=1" in out


def test_settings_key_wins_and_secret_block_is_used_otherwise() -> None:
    loaded: list[str] = []

    def loader(name: str) -> str:
        loaded.append(name)
        return "from-block"

    direct = Settings(apollo_api_key=SecretStr("direct"))
    assert resolve_api_key("apollo", direct, loader) == "direct"
    assert loaded == []
    s = Settings(apollo_api_key=None, apollo_secret_block="apollo-prod")
    assert resolve_api_key("apollo", s, loader) == "from-block"
    assert loaded == ["apollo-prod"]
    assert resolve_api_key("pdl", Settings(pdl_api_key=None, pdl_secret_block=None), loader) is None


def test_failing_secret_block_names_the_block_not_a_value() -> None:
    def loader(name: str) -> str:
        raise ValueError(f"boom {SECRET}")

    s = Settings(hunter_api_key=None, hunter_secret_block="hunter-prod")
    with pytest.raises(RuntimeError) as info:
        resolve_api_key("hunter", s, loader)
    assert "hunter-prod" in str(info.value) and SECRET not in str(info.value)


async def _search(settings: Settings, limit: int = 2, per_page: int = 2) -> list[Any]:
    async with make_async_client(settings) as http:
        client = ApolloClient.from_settings(http, settings)
        return [p async for p in client.search_organizations(limit=limit, per_page=per_page)]


def _ok_page() -> Reply:
    return Reply(200, payload("apollo_org_search.json"))


def test_429_is_retried_after_the_servers_retry_after(scripted: ScriptedServer) -> None:
    scripted.script(SEARCH, Reply(429, {"message": "slow down"}, {"Retry-After": "1"}), _ok_page())
    settings = fast_settings(scripted.base_url)
    started = time.monotonic()
    pages = asyncio.run(_search(settings, limit=1, per_page=1))
    assert time.monotonic() - started >= 0.9  # waited the server's second, not our 10 ms backoff
    assert len(scripted.hits(SEARCH)) == 2
    assert [c.status_code for c in pages[0].calls] == [429, 200]
    assert [c.units for c in pages[0].calls] == [0, 1]


def test_429_storm_ends_in_rate_limited_error(scripted: ScriptedServer) -> None:
    scripted.script(SEARCH, Reply(429, {"message": "slow down"}, {"Retry-After": "0"}))
    with pytest.raises(RateLimitedError) as info:
        asyncio.run(_search(fast_settings(scripted.base_url)))
    assert len(scripted.hits(SEARCH)) == 3
    assert info.value.status_code == 429
    assert len(info.value.calls) == 3 and all(c.units == 0 for c in info.value.calls)


def test_retry_after_longer_than_we_may_wait_gives_up_at_once(scripted: ScriptedServer) -> None:
    scripted.script(SEARCH, Reply(429, {"message": "daily cap"}, {"Retry-After": "3600"}))
    with pytest.raises(RateLimitedError) as info:
        asyncio.run(_search(fast_settings(scripted.base_url)))
    assert len(scripted.hits(SEARCH)) == 1
    assert info.value.retry_after == 3600


def test_a_503_asking_for_a_long_wait_gives_up_at_once_and_is_not_retried_as_a_task(
        scripted: ScriptedServer) -> None:
    from tasks.steps import _worth_retrying

    scripted.script(SEARCH, Reply(503, {"error": "maintenance"}, {"Retry-After": "600"}))
    with pytest.raises(TransientApiError) as info:
        asyncio.run(_search(fast_settings(scripted.base_url)))
    assert len(scripted.hits(SEARCH)) == 1
    assert info.value.retry_after == 600 and "server asks to wait 600s" in str(info.value)
    assert not _worth_retrying(info.value)  # Prefect must not come back seconds later
    assert _worth_retrying(TransientApiError("down", source="apollo", endpoint="search"))


def test_5xx_storm_ends_in_transient_error_after_max_attempts(scripted: ScriptedServer) -> None:
    scripted.script(SEARCH, Reply(503, {"error": "down"}), Reply(500, b"oops"))
    with pytest.raises(TransientApiError) as info:
        asyncio.run(_search(fast_settings(scripted.base_url)))
    assert not isinstance(info.value, RateLimitedError)
    assert len(scripted.hits(SEARCH)) == 3
    assert info.value.status_code == 500


def test_5xx_then_success_returns_the_page(scripted: ScriptedServer) -> None:
    scripted.script(SEARCH, Reply(502, b"bad gateway"), _ok_page())
    pages = asyncio.run(_search(fast_settings(scripted.base_url), limit=1, per_page=1))
    assert pages[0].records[0]["name"] == "Northwind Robotics"


def test_timeout_is_retried_then_reported(scripted: ScriptedServer) -> None:
    scripted.script(SEARCH, Reply(200, payload("apollo_org_search.json"), delay_s=1.5))
    settings = fast_settings(scripted.base_url, http_max_attempts=2, http_timeout_s=0.2)
    with pytest.raises(TransientApiError, match="timed out"):
        asyncio.run(_search(settings))
    assert len(scripted.hits(SEARCH)) == 2


def test_malformed_json_is_retried(scripted: ScriptedServer) -> None:
    scripted.script(SEARCH, Reply(200, b'{"organizations": [{"id": '), _ok_page())
    pages = asyncio.run(_search(fast_settings(scripted.base_url), limit=1, per_page=1))
    assert len(scripted.hits(SEARCH)) == 2
    assert len(pages[0].records) == 1


def test_wrong_envelope_shape_counts_as_malformed(scripted: ScriptedServer) -> None:
    scripted.script(SEARCH, Reply(200, {"organizations": "nope"}))
    with pytest.raises(TransientApiError, match="malformed"):
        asyncio.run(_search(fast_settings(scripted.base_url)))
    assert len(scripted.hits(SEARCH)) == 3


@pytest.mark.parametrize("status", [401, 403, 422])
def test_4xx_other_than_429_is_not_retried(scripted: ScriptedServer, status: int) -> None:
    scripted.script(SEARCH, Reply(status, {"error": "Invalid access credentials."}))
    with pytest.raises(PermanentApiError) as info:
        asyncio.run(_search(fast_settings(scripted.base_url)))
    assert len(scripted.hits(SEARCH)) == 1
    assert info.value.status_code == status
    assert "Invalid access credentials." in str(info.value)


def test_api_key_never_appears_in_errors_or_logs(
    scripted: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    # A hostile or careless server echoes the key back in its error messages.
    scripted.script(SEARCH, Reply(500, {"error": f"bad key {SECRET}"}),
                    Reply(401, {"error": f"key={SECRET} rejected"}))
    caplog.set_level(logging.DEBUG)
    with pytest.raises(PermanentApiError) as info:
        asyncio.run(_search(fast_settings(scripted.base_url)))
    assert scripted.hits(SEARCH)[0].headers["x-api-key"] == SECRET  # it was sent, as a header
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)
    assert SECRET not in caplog.text
    assert "rejected" in str(info.value)


def test_connection_refused_is_transient_and_keyless() -> None:
    settings = fast_settings("http://127.0.0.1:9", http_max_attempts=2)
    with pytest.raises(TransientApiError) as info:
        asyncio.run(_search(settings))
    assert SECRET not in str(info.value)
    assert info.value.__cause__ is None
    assert len(info.value.calls) == 2
