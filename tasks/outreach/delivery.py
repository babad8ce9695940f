"""Handing a batch of built messages to the SMTP providers, or to the outbox when none is
active: capacity reserved before each send, a provider that cannot be reached skipped for the
rest of the batch, and one result per message.

What the results mean for the queue (sent, retry, bounce, review...) is recorded elsewhere
(tasks/outreach/outcomes.py); nothing here writes an email's row."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from leadflow.settings import Settings
from models.db import session_scope
from tasks.outreach.outbox import write_eml
from tasks.outreach.providers import (
    ProviderConfig,
    active_providers,
    release,
    resolve_password,
    select_provider,
)
from tasks.outreach.smtp import ProviderUnavailable, SenderPool, SmtpEndpoint, SmtpSender

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Parcel:
    """One built message ready to go."""

    email_id: int
    message_id: str
    envelope_from: str
    recipient: str
    message: bytes
    # Provider of the last failed attempt: a retry goes elsewhere when another has capacity.
    avoid_provider: int | None = None


@dataclass(frozen=True)
class Result:
    email_id: int
    # sent | temporary | bounced | failed | unknown (smtp.Delivery), or wait: no capacity left
    outcome: str
    provider_id: int | None
    response: str
    at: datetime


def smtp_endpoint(provider: ProviderConfig, settings: Settings) -> SmtpEndpoint:
    return SmtpEndpoint(
        host=provider.host, port=provider.port, security=provider.security,
        username=provider.username, password=resolve_password(provider, settings),
        timeout_s=settings.smtp_timeout_s, ca_file=settings.smtp_ca_file,
    )


def deliver(
    db_url: str,
    parcels: list[Parcel],
    settings: Settings,
    pool: SenderPool,
    now_fn: Callable[[], datetime],
) -> list[Result]:
    with session_scope(db_url) as session:
        providers = active_providers(session)
    if not providers:
        return [_to_outbox(parcel, settings, now_fn) for parcel in parcels]
    results: list[Result] = []
    down: dict[int, str] = {}  # providers unreachable during this batch, and why
    for avoid, group in _by_avoided_provider(parcels).items():
        results += _deliver_group(db_url, group, avoid, settings, pool, now_fn, down)
    unreachable_all = len(down) == len(providers)
    return [
        # Nothing reachable is a provider failure (retry with backoff); full providers wait.
        Result(r.email_id, "temporary", None, "no SMTP provider reachable: "
               + "; ".join(down.values()), r.at) if r.outcome == "wait" and unreachable_all
        else r
        for r in results
    ]


def _by_avoided_provider(parcels: list[Parcel]) -> dict[int | None, list[Parcel]]:
    groups: dict[int | None, list[Parcel]] = {}
    for parcel in parcels:
        groups.setdefault(parcel.avoid_provider, []).append(parcel)
    return groups


def _deliver_group(
    db_url: str,
    parcels: list[Parcel],
    avoid: int | None,
    settings: Settings,
    pool: SenderPool,
    now_fn: Callable[[], datetime],
    down: dict[int, str],
) -> list[Result]:
    results: list[Result] = []
    remaining = list(parcels)
    while remaining:
        reservation = select_provider(db_url, len(remaining), now_fn(), exclude=down.keys(),
                                      avoid=(avoid,) if avoid is not None else ())
        if reservation is None:
            break
        provider = reservation.provider
        batch, remaining = remaining[: reservation.count], remaining[reservation.count :]
        used = 0
        try:
            sender = _sender(pool, provider, settings)
            for parcel in batch:
                delivery = sender.send(provider.from_email or parcel.envelope_from,
                                       parcel.recipient, parcel.message)
                used += 1
                results.append(Result(parcel.email_id, delivery.outcome, provider.id,
                                      delivery.summary, now_fn()))
        except ProviderUnavailable as exc:
            # Nothing of the current message was accepted: it and the rest of the batch go
            # to the next provider with capacity.
            down[provider.id] = str(exc)
            log.warning("SMTP provider %s unavailable: %s", provider.name, exc)
            remaining = batch[used:] + remaining
        finally:
            release(db_url, reservation, reservation.count - used)
    at = now_fn()
    results += [Result(p.email_id, "wait", None, "no SMTP provider has capacity left", at)
                for p in remaining]
    return results


def _sender(pool: SenderPool, provider: ProviderConfig, settings: Settings) -> SmtpSender:
    try:
        return pool.get(provider.id, lambda: smtp_endpoint(provider, settings))
    except RuntimeError as exc:  # the password reference could not be resolved
        raise ProviderUnavailable(str(exc)) from None


def _to_outbox(parcel: Parcel, settings: Settings, now_fn: Callable[[], datetime]) -> Result:
    # A file already there (a retried send) is that same message: recorded sent all the same.
    write_eml(settings.outbox_dir, parcel.message_id, parcel.message)
    return Result(parcel.email_id, "sent", None, "outbox", now_fn())
