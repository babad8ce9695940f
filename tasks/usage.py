"""API plans and metering (the seed's `apiConfig` and usage tracking): seed a plan per source,
set the units of the monthly quota aside before calls (`reserve_quota`), record every call's
units and cost after them and release what was set aside (`settle_quota`).

Runs that call one source at the same time (chunks in flight, overlapping flows, several
workers) reserve one after another, serialised on the plan's row: what one sets aside counts
as spent for the others until it is settled, so together they stay within the limit. A
reservation never settled (its run died) stops counting after `RESERVATION_TTL`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Select, delete, func, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from clients.http import ApiCall, QuotaExceededError
from models.api_usage import ApiConfig, ApiReservation, ApiUsage
from models.db import take_write_lock
from models.leads import LeadBatch


@dataclass(frozen=True, slots=True)
class Plan:
    monthly_limit: int
    cost_per_unit: float
    unit: str  # record | request
    plan_name: str = "sandbox-default"


# Sandbox defaults, in the shape of the vendors' entry plans (numbers are ours, not quotes):
# Apollo bills records returned, Google Places Text Search bills requests, PDL bills records
# (credits), Hunter bills requests (searches and verifications).
DEFAULT_PLANS: dict[str, Plan] = {
    "apollo": Plan(monthly_limit=10_000, cost_per_unit=0.02, unit="record"),
    "google_places": Plan(monthly_limit=5_000, cost_per_unit=0.032, unit="request"),
    "pdl": Plan(monthly_limit=1_000, cost_per_unit=0.10, unit="record"),
    "hunter": Plan(monthly_limit=25_000, cost_per_unit=0.0049, unit="request"),
}


def ensure_api_configs(
    session: Session, defaults: Mapping[str, Plan] = DEFAULT_PLANS
) -> list[str]:
    """Insert a plan for every source that has none (existing plans are left as they are);
    returns the sources seeded. `key_ref` names the setting, never the key. Two runs seeding
    at once (their first batches) both succeed: a plan the other committed is left alone."""
    # SQLite: the read must see plans another run is committing now, or both add them.
    take_write_lock(session)
    existing = set(session.scalars(select(ApiConfig.source)))
    missing = [source for source in defaults if source not in existing]
    if not missing:
        return []
    rows = [
        {"source": source, "plan_name": defaults[source].plan_name,
         "monthly_limit": defaults[source].monthly_limit,
         "cost_per_unit": defaults[source].cost_per_unit, "unit": defaults[source].unit,
         "key_ref": f"LEADFLOW_{source.upper()}_API_KEY", "is_active": True}
        for source in missing
    ]
    upsert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    # PostgreSQL: a plan another run is inserting makes this one wait for its commit, then
    # skip the row.
    seeded = set(session.scalars(
        upsert(ApiConfig).values(rows).on_conflict_do_nothing(index_elements=["source"])
        .returning(ApiConfig.source)))
    return [source for source in missing if source in seeded]


def month_bounds(now: datetime) -> tuple[datetime, datetime]:
    """Start (inclusive) and end (exclusive) of `now`'s UTC calendar month."""
    now = now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(
        month=start.month + 1
    )
    return start, end


def _used_units(source: str, now: datetime | None) -> Select[int]:
    start, end = month_bounds(now or datetime.now(UTC))
    return select(func.coalesce(func.sum(ApiUsage.units), 0)).where(
        ApiUsage.source == source, ApiUsage.called_at >= start, ApiUsage.called_at < end
    )


def _reserved_units(source: str, now: datetime | None) -> Select[int]:
    return select(func.coalesce(func.sum(ApiReservation.units), 0)).where(
        ApiReservation.source == source,
        ApiReservation.expires_at > (now or datetime.now(UTC)),
    )


def used_this_month(session: Session, source: str, now: datetime | None = None) -> int:
    return int(session.scalar(_used_units(source, now)) or 0)


def reserved_now(session: Session, source: str, now: datetime | None = None) -> int:
    """Units set aside for calls in flight (reservations not yet settled nor expired)."""
    return int(session.scalar(_reserved_units(source, now)) or 0)


def remaining_quota(session: Session, source: str, now: datetime | None = None) -> int | None:
    """Units left this UTC month (used and reserved units deducted), or None when the source
    has no plan (no limit we know of). An inactive plan has nothing left."""
    config = session.get(ApiConfig, source)
    if config is None:
        return None
    if not config.is_active:
        return 0
    # Used and reserved in one statement (one snapshot on PostgreSQL): a settle, which moves
    # units from the reservations to api_usage without the plan's lock, committing between two
    # reads would be counted in neither, and those units granted again.
    spent = session.scalar(select(_used_units(source, now).scalar_subquery()
                                  + _reserved_units(source, now).scalar_subquery()))
    return max(0, config.monthly_limit - int(spent or 0))


def check_quota(
    session: Session, source: str, needed: int, now: datetime | None = None
) -> int:
    """How many of the `needed` units may be spent now: `needed`, or fewer near the limit.
    Raises QuotaExceededError when nothing is left (or the plan is switched off)."""
    remaining = remaining_quota(session, source, now)
    if remaining is None:
        return needed
    if remaining <= 0:
        config = session.get(ApiConfig, source)
        why = "plan is inactive" if config is not None and not config.is_active else (
            f"monthly limit of {config.monthly_limit if config else '?'} units reached"
        )
        raise QuotaExceededError(why, source=source, endpoint="-")
    return min(needed, remaining)


RESERVATION_TTL = timedelta(hours=1)  # longer than any task's calls (timeouts, retries)


@dataclass(frozen=True, slots=True)
class Reservation:
    """Units set aside by `reserve_quota`; `id` None when the source has no plan (nothing was
    set aside: there is no limit to protect)."""

    source: str
    units: int
    id: int | None = None


def reserve_quota(
    session: Session, source: str, needed: int, now: datetime | None = None
) -> Reservation:
    """Set aside up to `needed` units of the source's monthly quota for calls about to be made:
    `needed`, or fewer near the limit. Raises QuotaExceededError when nothing is left (or the
    plan is switched off). The caller commits the session at once (the units count for other
    runs from then on) and passes the reservation to `settle_quota` with the calls made."""
    now = now or datetime.now(UTC)
    if session.get_bind().dialect.name != "sqlite":
        # Reservers of one source queue on its plan's row; each then reads what the others
        # committed (READ COMMITTED: every statement sees the latest commits).
        session.execute(select(ApiConfig).where(ApiConfig.source == source).with_for_update()
                        .execution_options(populate_existing=True))
    # Reservations of runs that died go. On SQLite this first write also takes the database's
    # write lock before the reads below, so two reservers cannot read the same units left.
    session.execute(delete(ApiReservation).where(
        ApiReservation.source == source, ApiReservation.expires_at <= now))
    units = check_quota(session, source, needed, now)
    if session.get(ApiConfig, source) is None:
        return Reservation(source, units)
    row = ApiReservation(source=source, units=units, reserved_at=now,
                         expires_at=now + RESERVATION_TTL)
    session.add(row)
    session.flush()
    return Reservation(source, units, row.id)


def settle_quota(
    session: Session,
    reservation: Reservation,
    calls: Iterable[ApiCall] = (),
    batch_id: int | None = None,
) -> int:
    """Record the calls made under `reservation` (record_calls) and release it, in the
    caller's transaction: the units they used now count as used, the rest is free again."""
    n = record_calls(session, calls, batch_id)
    if reservation.id is not None:
        session.execute(delete(ApiReservation).where(ApiReservation.id == reservation.id))
    return n


def record_calls(
    session: Session, calls: Iterable[ApiCall], batch_id: int | None = None
) -> int:
    """One api_usage row per call (cost = units x the plan's cost per unit), in one bulk
    insert; returns the number of rows."""
    calls = list(calls)
    if not calls:
        return 0
    sources = {c.source for c in calls}
    costs: dict[str, float] = {
        source: cost
        for source, cost in session.execute(
            select(ApiConfig.source, ApiConfig.cost_per_unit).where(ApiConfig.source.in_(sources))
        )
    }
    rows = [
        {
            "source": c.source,
            "endpoint": c.endpoint[:100],
            "status_code": c.status_code,
            "units": c.units,
            "cost": round(c.units * costs.get(c.source, 0.0), 6),
            "batch_id": batch_id,
            "called_at": c.called_at,
        }
        for c in calls
    ]
    session.execute(insert(ApiUsage), rows)
    return len(rows)


def batch_got_status(session: Session, source: str, batch_id: int, status_code: int) -> bool:
    """Whether a call of batch `batch_id` to `source` is recorded with `status_code`: e.g.
    Hunter's 429 (its monthly quota is used up), so the batch's later chunks stop asking."""
    batch = session.get(LeadBatch, batch_id)
    if batch is None:
        return False
    # (source, called_at) is indexed; an hour's margin for clocks of other workers.
    since = batch.started_at - RESERVATION_TTL
    found = session.scalar(
        select(ApiUsage.id).where(
            ApiUsage.source == source, ApiUsage.called_at >= since,
            ApiUsage.batch_id == batch_id, ApiUsage.status_code == status_code,
        ).limit(1)
    )
    return found is not None
