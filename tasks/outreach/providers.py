"""SMTP providers and their sending limits (the seed's `selectSMTPProvider()`).

A provider is chosen by priority among the active ones with capacity left. Capacity is
reserved in the database before anything is sent (`smtp_send_counts`, one row per provider and
hour or day), under a lock on the provider's row, so every worker and process shares one count
and a limit is never exceeded. Passwords are named by reference and resolved only to connect.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import cast

from pydantic import SecretStr
from sqlalchemy import Table, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from clients.keys import load_prefect_secret
from leadflow.settings import Settings
from models import SmtpProvider, SmtpSendCount
from models.db import session_scope, take_write_lock


@dataclass(frozen=True)
class ProviderConfig:
    """What sending needs to know about a provider, detached from any session."""

    id: int
    name: str
    host: str
    port: int
    security: str  # starttls | tls | none
    username: str | None
    password_ref: str | None
    from_email: str | None
    priority: int


@dataclass(frozen=True)
class Reservation:
    """`count` messages this worker may hand to `provider`, counted in the given windows."""

    provider: ProviderConfig
    count: int
    hour_start: datetime
    day_start: datetime


@dataclass(frozen=True)
class ProviderCapacity:
    provider_id: int
    name: str
    hourly_limit: int
    daily_limit: int  # after warm-up
    sent_this_hour: int
    sent_today: int
    available: int


def as_utc(moment: datetime) -> datetime:
    """An aware UTC instant; naive values (SQLite reads them back naive) are taken as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def window_starts(now: datetime) -> tuple[datetime, datetime]:
    """Start of the UTC hour and of the UTC day containing `now`."""
    now = as_utc(now)
    return (now.replace(minute=0, second=0, microsecond=0),
            now.replace(hour=0, minute=0, second=0, microsecond=0))


def next_hour(now: datetime) -> datetime:
    return window_starts(now)[0] + timedelta(hours=1)


def effective_daily_limit(provider: SmtpProvider, today: date) -> int:
    """The daily limit, lowered during warm-up: initial + days since the start * increase."""
    if provider.warmup_started_on is None:
        return provider.daily_limit
    days = max(0, (today - provider.warmup_started_on).days)
    return min(provider.daily_limit,
               provider.warmup_initial_daily + days * provider.warmup_daily_increase)


def provider_config(row: SmtpProvider) -> ProviderConfig:
    return ProviderConfig(row.id, row.name, row.host, row.port, row.security, row.username,
                          row.password_ref, row.from_email, row.priority)


def active_providers(session: Session) -> list[ProviderConfig]:
    rows = session.scalars(select(SmtpProvider).where(SmtpProvider.is_active)
                           .order_by(SmtpProvider.priority, SmtpProvider.id))
    return [provider_config(r) for r in rows]


def has_providers(session: Session) -> bool:
    """Whether any provider is configured, active or not (none: the outbox is used)."""
    return session.scalar(select(SmtpProvider.id).limit(1)) is not None


def _counts(session: Session, provider_id: int, hour: datetime, day: datetime) -> tuple[int, int]:
    rows = session.execute(
        select(SmtpSendCount.window, SmtpSendCount.count).where(
            SmtpSendCount.provider_id == provider_id,
            ((SmtpSendCount.window == "hour") & (SmtpSendCount.window_start == hour))
            | ((SmtpSendCount.window == "day") & (SmtpSendCount.window_start == day)),
        )
    ).all()
    found = dict(rows)
    return int(found.get("hour", 0)), int(found.get("day", 0))


def _add_counts(session: Session, provider_id: int, hour: datetime, day: datetime,
                n: int) -> None:
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    table = cast(Table, SmtpSendCount.__table__)
    stmt = insert(table).values([
        {"provider_id": provider_id, "window": "hour", "window_start": hour, "count": n},
        {"provider_id": provider_id, "window": "day", "window_start": day, "count": n},
    ])
    stmt = stmt.on_conflict_do_update(
        index_elements=["provider_id", "window", "window_start"],
        set_={"count": table.c.count + stmt.excluded.count},
    )
    session.execute(stmt)


def _locked_provider(session: Session, provider_id: int) -> SmtpProvider | None:
    """The provider's row, locked until the transaction ends (SQLite: the write lock)."""
    take_write_lock(session)
    return session.scalars(
        select(SmtpProvider).where(SmtpProvider.id == provider_id, SmtpProvider.is_active)
        .with_for_update()
    ).one_or_none()


def reserve(session: Session, provider_id: int, wanted: int, now: datetime) -> int:
    """Reserve up to `wanted` sends on the provider in the current hour and day, inside the
    caller's transaction (commit it promptly: the provider's row stays locked until then).
    Returns how many were reserved (0 when the provider is inactive or full)."""
    hour, day = window_starts(now)
    provider = _locked_provider(session, provider_id)
    if provider is None or wanted <= 0:
        return 0
    in_hour, in_day = _counts(session, provider_id, hour, day)
    daily = effective_daily_limit(provider, day.date())
    granted = max(0, min(wanted, provider.hourly_limit - in_hour, daily - in_day))
    if granted:
        _add_counts(session, provider_id, hour, day, granted)
    return granted


def select_provider(
    db_url: str,
    wanted: int,
    now: datetime,
    *,
    exclude: Collection[int] = (),
    avoid: Collection[int] = (),
) -> Reservation | None:
    """The seed's selectSMTPProvider(): the first active provider by priority with capacity,
    with up to `wanted` sends reserved on it (each try its own short transaction). Providers in
    `avoid` (e.g. the one that just failed) are tried last; those in `exclude` not at all."""
    with session_scope(db_url) as session:
        providers = [p for p in active_providers(session) if p.id not in exclude]
    providers.sort(key=lambda p: p.id in avoid)  # stable: priority order otherwise kept
    hour, day = window_starts(now)
    for provider in providers:
        with session_scope(db_url) as session:
            granted = reserve(session, provider.id, wanted, now)
        if granted:
            return Reservation(provider, granted, hour, day)
    return None


def release(db_url: str, reservation: Reservation, unused: int) -> None:
    """Give back reserved sends that were never attempted (in the windows they were taken)."""
    if unused <= 0:
        return
    with session_scope(db_url) as session:
        _locked_provider(session, reservation.provider.id)
        for window, start in (("hour", reservation.hour_start), ("day", reservation.day_start)):
            session.execute(
                update(SmtpSendCount).where(
                    SmtpSendCount.provider_id == reservation.provider.id,
                    SmtpSendCount.window == window,
                    SmtpSendCount.window_start == start,
                ).values(count=SmtpSendCount.count - min(unused, reservation.count))
            )


def provider_capacity(db_url: str, now: datetime) -> list[ProviderCapacity]:
    """Limits, counts and what is left this hour for every active provider (reporting)."""
    hour, day = window_starts(now)
    with session_scope(db_url) as session:
        result = []
        for row in session.scalars(select(SmtpProvider).where(SmtpProvider.is_active)
                                   .order_by(SmtpProvider.priority, SmtpProvider.id)):
            in_hour, in_day = _counts(session, row.id, hour, day)
            daily = effective_daily_limit(row, day.date())
            result.append(ProviderCapacity(
                row.id, row.name, row.hourly_limit, daily, in_hour, in_day,
                max(0, min(row.hourly_limit - in_hour, daily - in_day)),
            ))
        return result


def resolve_password(
    provider: ProviderConfig,
    settings: Settings,
    load_secret: Callable[[str], str] = load_prefect_secret,
) -> SecretStr | None:
    """The provider's password: `settings.smtp_passwords[password_ref]`, else the Prefect
    Secret block named `password_ref`. Errors name the reference, never a value."""
    ref = provider.password_ref
    if not ref:
        return None
    passwords = settings.smtp_passwords
    # Environment keys (LEADFLOW_SMTP_PASSWORDS__GMAIL_MAIN) arrive lower-cased.
    found = passwords.get(ref) or passwords.get(ref.lower())
    if found is not None:
        return found if isinstance(found, SecretStr) else SecretStr(str(found))
    try:
        value = load_secret(ref)
    except Exception as exc:  # noqa: BLE001 - whatever Prefect raises, report it without detail
        raise RuntimeError(
            f"SMTP provider {provider.name!r}: no password under {ref!r} in "
            f"LEADFLOW_SMTP_PASSWORDS and no Prefect Secret block of that name "
            f"({type(exc).__name__})"
        ) from None
    return SecretStr(value)
