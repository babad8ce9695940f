"""API plans, monthly quota and usage metering on PostgreSQL (and SQLite)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from clients.http import ApiCall, QuotaExceededError
from models.api_usage import ApiConfig, ApiReservation, ApiUsage
from models.db import session_scope
from tasks.usage import (
    DEFAULT_PLANS,
    RESERVATION_TTL,
    Plan,
    check_quota,
    ensure_api_configs,
    month_bounds,
    record_calls,
    remaining_quota,
    reserve_quota,
    settle_quota,
)

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


def call(source: str, units: int, when: datetime = NOW, status: int | None = 200) -> ApiCall:
    return ApiCall(source, "search", status, units, when)


def test_ensure_api_configs_seeds_missing_plans_once_and_keeps_edited_ones(pg_clean: str) -> None:
    with session_scope(pg_clean) as s:
        assert sorted(ensure_api_configs(s)) == sorted(DEFAULT_PLANS)
    with session_scope(pg_clean) as s:
        s.get(ApiConfig, "apollo").monthly_limit = 50  # type: ignore[union-attr]
    with session_scope(pg_clean) as s:
        assert ensure_api_configs(s) == []
        apollo = s.get(ApiConfig, "apollo")
        assert apollo is not None and apollo.monthly_limit == 50
        assert apollo.key_ref == "LEADFLOW_APOLLO_API_KEY"
        assert s.get(ApiConfig, "hunter").cost_per_unit == 0.0049  # type: ignore[union-attr]


def test_plans_seeded_by_another_run_meanwhile_are_kept_not_added_again(db_url: str) -> None:
    """Two runs opening their batches at once on a new database: the second read no plans
    before the first committed its own, then failed on the plans' primary key."""
    from tests.writers import writer_committing_soon

    with writer_committing_soon(db_url, ensure_api_configs), session_scope(db_url) as s:
        assert ensure_api_configs(s) == []
    with session_scope(db_url) as s:
        assert s.scalar(select(func.count()).select_from(ApiConfig)) == len(DEFAULT_PLANS)


def test_record_calls_writes_one_row_per_call_with_cost(pg_clean: str) -> None:
    with session_scope(pg_clean) as s:
        ensure_api_configs(s)
        n = record_calls(s, [call("apollo", 100), call("apollo", 0, status=429),
                             call("pdl", 3), call("unplanned", 7)])
        assert n == 4
    with session_scope(pg_clean) as s:
        rows = s.scalars(select(ApiUsage).order_by(ApiUsage.id)).all()
        assert [(r.source, r.units, r.status_code) for r in rows] == [
            ("apollo", 100, 200), ("apollo", 0, 429), ("pdl", 3, 200), ("unplanned", 7, 200)
        ]
        assert rows[0].cost == pytest.approx(2.0)
        assert rows[1].cost == 0
        assert rows[2].cost == pytest.approx(0.3)
        assert rows[3].cost == 0
        assert rows[0].called_at == NOW


def test_remaining_quota_counts_only_the_current_utc_month(pg_clean: str) -> None:
    with session_scope(pg_clean) as s:
        ensure_api_configs(s, {"pdl": Plan(monthly_limit=100, cost_per_unit=0.1, unit="record")})
        record_calls(s, [
            call("pdl", 30),
            call("pdl", 20, datetime(2026, 3, 1, 0, 0, tzinfo=UTC)),  # first instant: counts
            call("pdl", 500, datetime(2026, 2, 28, 23, 59, 59, tzinfo=UTC)),  # last month
            call("pdl", 500, datetime(2026, 4, 1, 0, 0, tzinfo=UTC)),  # next month
            call("apollo", 90),  # another source
        ])
    with session_scope(pg_clean) as s:
        assert remaining_quota(s, "pdl", NOW) == 50
        assert remaining_quota(s, "apollo", NOW) is None  # no plan for apollo here


def test_check_quota_caps_near_the_limit_and_raises_when_exhausted(pg_clean: str) -> None:
    with session_scope(pg_clean) as s:
        ensure_api_configs(s, {"pdl": Plan(monthly_limit=100, cost_per_unit=0.1, unit="record")})
        record_calls(s, [call("pdl", 80)])
    with session_scope(pg_clean) as s:
        assert check_quota(s, "pdl", 10, NOW) == 10
        assert check_quota(s, "pdl", 50, NOW) == 20
        record_calls(s, [call("pdl", 20)])
    with session_scope(pg_clean) as s, pytest.raises(QuotaExceededError, match="monthly limit"):
        check_quota(s, "pdl", 1, NOW)
    with session_scope(pg_clean) as s:
        # A new month starts from zero.
        assert check_quota(s, "pdl", 50, datetime(2026, 4, 2, tzinfo=UTC)) == 50


def test_inactive_plan_has_no_quota(pg_clean: str) -> None:
    with session_scope(pg_clean) as s:
        ensure_api_configs(s)
        s.get(ApiConfig, "hunter").is_active = False  # type: ignore[union-attr]
    with session_scope(pg_clean) as s, pytest.raises(QuotaExceededError, match="inactive"):
        check_quota(s, "hunter", 1, NOW)


def test_source_without_plan_is_unlimited(pg_clean: str) -> None:
    with session_scope(pg_clean) as s:
        assert check_quota(s, "apollo", 500, NOW) == 500


def test_metering_and_quota_work_on_sqlite(sqlite_url: str) -> None:
    with session_scope(sqlite_url) as s:
        ensure_api_configs(s, {"pdl": Plan(monthly_limit=10, cost_per_unit=0.1, unit="record")})
        record_calls(s, [call("pdl", 4), call("pdl", 9, datetime(2026, 2, 10, tzinfo=UTC))])
    with session_scope(sqlite_url) as s:
        assert remaining_quota(s, "pdl", NOW) == 6
        assert s.scalar(select(func.count()).select_from(ApiUsage)) == 2


def test_month_bounds_wraps_december() -> None:
    start, end = month_bounds(datetime(2025, 12, 31, 23, 0, tzinfo=UTC))
    assert (start, end) == (datetime(2025, 12, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))


def test_reserved_units_count_as_spent_until_settled(db_url: str) -> None:
    with session_scope(db_url) as s:
        ensure_api_configs(s, {"pdl": Plan(monthly_limit=100, cost_per_unit=0.1, unit="record")})
        record_calls(s, [call("pdl", 10)])
    with session_scope(db_url) as s:
        reservation = reserve_quota(s, "pdl", 60, NOW)
    assert reservation.units == 60
    with session_scope(db_url) as s:
        assert remaining_quota(s, "pdl", NOW) == 30
        assert reserve_quota(s, "pdl", 60, NOW).units == 30  # only what is left
    with session_scope(db_url) as s, pytest.raises(QuotaExceededError, match="monthly limit"):
        reserve_quota(s, "pdl", 1, NOW)
    with session_scope(db_url) as s:
        # The first run used 25 of its 60: 25 count as used, 35 are free again.
        settle_quota(s, reservation, [call("pdl", 25)])
    with session_scope(db_url) as s:
        assert remaining_quota(s, "pdl", NOW) == 100 - 10 - 25 - 30
        assert s.scalar(select(func.count()).select_from(ApiReservation)) == 1


def test_a_reservation_never_settled_stops_counting_when_it_expires(db_url: str) -> None:
    with session_scope(db_url) as s:
        ensure_api_configs(s, {"pdl": Plan(monthly_limit=100, cost_per_unit=0.1, unit="record")})
        reserve_quota(s, "pdl", 100, NOW)  # a run that dies without settling
    later = NOW + RESERVATION_TTL + timedelta(seconds=1)
    with session_scope(db_url) as s:
        assert remaining_quota(s, "pdl", NOW) == 0
        assert remaining_quota(s, "pdl", later) == 100
        assert reserve_quota(s, "pdl", 40, later).units == 40
    with session_scope(db_url) as s:  # the dead run's row is gone, the new one stays
        assert s.scalars(select(ApiReservation.units)).all() == [40]


def test_a_source_without_plan_reserves_nothing_and_is_not_limited(db_url: str) -> None:
    with session_scope(db_url) as s:
        reservation = reserve_quota(s, "apollo", 500, NOW)
        assert (reservation.units, reservation.id) == (500, None)
        settle_quota(s, reservation, [call("apollo", 500)])
    with session_scope(db_url) as s:
        assert s.scalar(select(func.count()).select_from(ApiReservation)) == 0


def test_runs_reserving_at_once_never_exceed_the_monthly_limit(db_url: str) -> None:
    """Twelve runs ask for 30 units of a 100-unit plan at the same moment (chunks in flight,
    overlapping flows): what they are granted adds up to the limit, never more."""
    with session_scope(db_url) as s:
        ensure_api_configs(s, {"pdl": Plan(monthly_limit=100, cost_per_unit=0.1, unit="record")})
    start = threading.Barrier(12)

    def run() -> int:
        start.wait()
        try:
            with session_scope(db_url) as s:
                return reserve_quota(s, "pdl", 30, NOW).units
        except QuotaExceededError:
            return 0

    with ThreadPoolExecutor(12) as pool:
        granted = list(pool.map(lambda _: run(), range(12)))
    assert sum(granted) == 100
    assert sorted(g for g in granted if g) == [10, 30, 30, 30]
    with session_scope(db_url) as s:
        assert remaining_quota(s, "pdl", NOW) == 0


def test_a_run_settling_while_another_reserves_is_counted_once_not_missed(pg_clean: str) -> None:
    """Settling does not wait for the plan's row: on PostgreSQL it may commit between the
    reserver's reads. A settle that turns 60 reserved units into 60 used ones must be seen as
    one or the other, never neither (the reserver was granted the 60 again: 160 of 100)."""
    from sqlalchemy import event

    from models.db import get_engine

    with session_scope(pg_clean) as s:
        ensure_api_configs(s, {"pdl": Plan(monthly_limit=100, cost_per_unit=0.1, unit="record")})
    with session_scope(pg_clean) as s:
        first = reserve_quota(s, "pdl", 60, NOW)
    reserver = threading.get_ident()
    settled: list[bool] = []

    def settle_after_the_first_read(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        if threading.get_ident() == reserver and not settled and "api_usage" in statement:
            settled.append(True)  # the other run settles now, on a connection of its own
            with session_scope(pg_clean) as other:
                settle_quota(other, first, [call("pdl", 60)])

    engine = get_engine(pg_clean)
    event.listen(engine, "after_cursor_execute", settle_after_the_first_read)
    try:
        with session_scope(pg_clean) as s:
            granted = reserve_quota(s, "pdl", 100, NOW).units
    finally:
        event.remove(engine, "after_cursor_execute", settle_after_the_first_read)

    assert settled == [True]
    assert granted == 40


def test_a_batch_remembers_the_status_a_source_answered_it_with(db_url: str) -> None:
    """Hunter's 429 (its monthly quota is used up) is metered with the batch like any call, so
    the batch's later chunks can tell without asking Hunter again; other batches and other
    sources' 429s (a rate limit there) do not count."""
    from tasks.batches import start_batch
    from tasks.usage import batch_got_status

    now = datetime.now(UTC)
    with session_scope(db_url) as s:
        ensure_api_configs(s)
        batch = start_batch(s, "run-1", "generate", "apollo", None, None, 10)
        other = start_batch(s, "run-2", "generate", "apollo", None, None, 10)
        record_calls(s, [call("apollo", 0, now, status=429), call("hunter", 1, now)], other)
        record_calls(s, [call("hunter", 1, now)], batch)
    with session_scope(db_url) as s:
        assert not batch_got_status(s, "hunter", batch, 429)
        record_calls(s, [call("hunter", 0, now, status=429)], batch)
    with session_scope(db_url) as s:
        assert batch_got_status(s, "hunter", batch, 429)
        assert not batch_got_status(s, "hunter", other, 429)
        assert batch_got_status(s, "apollo", other, 429)  # (the caller says what 429 means)
        assert not batch_got_status(s, "hunter", 10_000, 429)  # no such batch
