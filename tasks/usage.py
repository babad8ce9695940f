"""API plans and metering (the seed's `apiConfig` and usage tracking): seed a plan per source,
check the monthly quota before a call, record every call's units and cost after it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from clients.http import ApiCall, QuotaExceededError
from models.api_usage import ApiConfig, ApiUsage


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
    returns the sources seeded. `key_ref` names the setting, never the key."""
    existing = set(session.scalars(select(ApiConfig.source)))
    seeded = []
    for source, plan in defaults.items():
        if source in existing:
            continue
        session.add(
            ApiConfig(
                source=source,
                plan_name=plan.plan_name,
                monthly_limit=plan.monthly_limit,
                cost_per_unit=plan.cost_per_unit,
                unit=plan.unit,
                key_ref=f"LEADFLOW_{source.upper()}_API_KEY",
                is_active=True,
            )
        )
        seeded.append(source)
    session.flush()
    return seeded


def month_bounds(now: datetime) -> tuple[datetime, datetime]:
    """Start (inclusive) and end (exclusive) of `now`'s UTC calendar month."""
    now = now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(
        month=start.month + 1
    )
    return start, end


def used_this_month(session: Session, source: str, now: datetime | None = None) -> int:
    start, end = month_bounds(now or datetime.now(UTC))
    total = session.scalar(
        select(func.coalesce(func.sum(ApiUsage.units), 0)).where(
            ApiUsage.source == source, ApiUsage.called_at >= start, ApiUsage.called_at < end
        )
    )
    return int(total or 0)


def remaining_quota(session: Session, source: str, now: datetime | None = None) -> int | None:
    """Units left this UTC month, or None when the source has no plan (no limit we know of).
    An inactive plan has nothing left."""
    config = session.get(ApiConfig, source)
    if config is None:
        return None
    if not config.is_active:
        return 0
    return max(0, config.monthly_limit - used_this_month(session, source, now))


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
