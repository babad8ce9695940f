"""Handing a batch of built messages to the SMTP providers (or to the outbox when no provider is
configured at all): capacity reserved before each send and counted in the hour it is used, a
provider that cannot be reached (or refuses message after message for policy reasons) skipped
for the rest of the batch, and one result per message.

What the results mean for the queue (sent, retry, bounce, review...) is recorded elsewhere
(tasks/outreach/outcomes.py); nothing here writes an email's row. An unexpected error mid-batch
(the database, the outbox folder, the SMTP library) raises DeliveryInterrupted, which still
carries one result per message, so the messages already handed over are recorded sent.

Each message goes through the caller's last check just before it is handed over (`LastCheck`:
the claim still held, the address not suppressed, the sequence not stopped), since a batch takes
as long as its slowest SMTP replies. The send queue's (queue.SendTimeCheck) reads the database
again at most once per LEADFLOW_SEND_RECHECK_AFTER_S: what it can miss is what was committed
within that time plus one SMTP transaction (MAIL, RCPT, DATA) on a connection already open."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from leadflow.settings import Settings
from models.db import session_scope
from tasks.outreach.outbox import write_eml
from tasks.outreach.providers import (
    ProviderConfig,
    active_providers,
    has_providers,
    release,
    resolve_password,
    select_provider,
    window_starts,
)
from tasks.outreach.smtp import Delivery, ProviderUnavailable, SenderPool, SmtpEndpoint, SmtpSender

log = logging.getLogger(__name__)

# This many 5.7.x refusals in a row from one provider (relaying denied, sender rejected...) say
# the provider will not send for us: it is skipped like an unreachable one and the refused
# messages go elsewhere or wait, rather than each failing for good.
POLICY_REFUSALS_IN_A_ROW = 3


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
    # sent | temporary | bounced | failed | unknown (smtp.Delivery), or
    # wait: no provider has capacity left; unavailable: none active or none reachable
    outcome: str
    provider_id: int | None
    response: str
    at: datetime
    stop_reason: str | None = None  # cancelled: why the lead's sequence stops


# A parcel's last check before it is handed over: None to send it, else the result to record
# instead (cancelled: suppressed or stopped since the batch was loaded; wait: the claim is no
# longer this worker's).
LastCheck = Callable[[Parcel], Result | None]


class DeliveryInterrupted(Exception):
    """An unexpected error stopped the batch. `results` still has one result per message: what
    happened to those handled before the error; `unknown` (review) for an SMTP message in flight,
    which the server may have taken; `temporary` (retried later) for those never handed over."""

    def __init__(self, cause: Exception, results: list[Result]) -> None:
        super().__init__(f"delivery stopped: {_why(cause)}")
        self.cause = cause
        self.results = results


@dataclass
class _Progress:
    """What the batch has done so far, kept for DeliveryInterrupted."""

    results: dict[int, Result] = field(default_factory=dict)  # by email id
    # The message being handed over: what it means if that raises, and to which provider.
    in_flight: tuple[Parcel, str, int | None] | None = None
    checked: set[int] = field(default_factory=set)  # results the last check decided

    def done(self, result: Result) -> None:
        self.results[result.email_id] = result
        self.in_flight = None

    def settled(self, parcel: Parcel, last_check: LastCheck) -> bool:
        """Whether the last check decided this parcel's result instead of a send."""
        instead = last_check(parcel)
        if instead is None:
            return False
        self.done(instead)
        self.checked.add(parcel.email_id)
        return True


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
    last_check: LastCheck | None = None,
) -> list[Result]:
    """One result per parcel. Raises DeliveryInterrupted (with one result per parcel all the
    same) when an unexpected error stops the batch."""
    progress = _Progress()
    try:
        return _deliver(db_url, parcels, settings, pool, now_fn, progress,
                        last_check or _send_all)
    except Exception as exc:
        raise DeliveryInterrupted(exc, _interrupted(parcels, progress, exc, now_fn())) from exc


def _deliver(
    db_url: str,
    parcels: list[Parcel],
    settings: Settings,
    pool: SenderPool,
    now_fn: Callable[[], datetime],
    progress: _Progress,
    last_check: LastCheck,
) -> list[Result]:
    with session_scope(db_url) as session:
        providers = active_providers(session)
        configured = providers or has_providers(session)
    if not configured:
        for parcel in parcels:
            if progress.settled(parcel, last_check):
                continue
            # Written whole or not at all, and never twice: a retry is safe.
            progress.in_flight = (parcel, "temporary", None)
            progress.done(_to_outbox(parcel, settings, now_fn))
        return list(progress.results.values())
    if not providers:
        at = now_fn()
        return [Result(p.email_id, "unavailable", None, "no active SMTP provider", at)
                for p in parcels]
    down: dict[int, str] = {}  # providers unusable during this batch, and why
    for avoid, group in _by_avoided_provider(parcels).items():
        _deliver_group(db_url, group, avoid, settings, pool, now_fn, down, progress,
                       last_check)
    results = list(progress.results.values())
    if not down:
        return results  # left over only for want of capacity: `wait` for the next hour
    # A provider that may come back soon holds messages too: wait with backoff, not an hour.
    why = "no SMTP provider reachable: " + "; ".join(down.values())
    # (A claim the last check found lost keeps its own `wait`.)
    return [Result(r.email_id, "unavailable", None, why[:500], r.at)
            if r.outcome == "wait" and r.email_id not in progress.checked else r
            for r in results]


def _interrupted(parcels: list[Parcel], progress: _Progress, exc: Exception, at: datetime
                 ) -> list[Result]:
    why = f"delivery stopped by an unexpected error: {_why(exc)}"[:500]
    results = dict(progress.results)
    if progress.in_flight is not None:
        parcel, outcome, provider_id = progress.in_flight
        results[parcel.email_id] = Result(parcel.email_id, outcome, provider_id, why, at)
    for parcel in parcels:
        if parcel.email_id not in results:
            results[parcel.email_id] = Result(parcel.email_id, "temporary", None, why, at)
    return list(results.values())


def _send_all(_parcel: Parcel) -> Result | None:
    return None


def _why(exc: BaseException) -> str:
    """The error's type and the first line of its text (not a database error's SQL and
    parameters)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200] if lines else ''}"


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
    progress: _Progress,
    last_check: LastCheck,
) -> None:
    remaining = list(parcels)
    while remaining:
        reservation = select_provider(db_url, len(remaining), now_fn(), exclude=down.keys(),
                                      avoid=(avoid,) if avoid is not None else ())
        if reservation is None:
            break
        provider = reservation.provider
        window = (reservation.hour_start, reservation.day_start)
        batch, remaining = remaining[: reservation.count], remaining[reservation.count :]
        used = 0  # handed over: the reservation they used
        handled = 0  # of `batch`: handed over or settled by the last check
        # 5.7.x in a row: their results stand unless the provider turns out to refuse everything.
        refused: list[Parcel] = []
        try:
            sender = _sender(pool, provider, settings)
            for parcel in batch:
                if window_starts(now_fn()) != window:
                    # A new hour (or day): what is left is reserved again in the new window, so
                    # each send counts in the window it happens in.
                    break
                if progress.settled(parcel, last_check):
                    handled += 1
                    continue
                # The server may take the message even if sending it raises unexpectedly.
                progress.in_flight = (parcel, "unknown", provider.id)
                delivery = sender.send(provider.from_email or parcel.envelope_from,
                                       parcel.recipient, parcel.message)
                used += 1
                handled += 1
                progress.done(_result(parcel, delivery, provider, now_fn()))
                if delivery.policy_refusal:
                    refused.append(parcel)
                    if len(refused) >= POLICY_REFUSALS_IN_A_ROW:
                        raise ProviderUnavailable(
                            f"{len(refused)} messages in a row refused: {delivery.summary}")
                    continue
                refused = []
            remaining = batch[handled:] + remaining
        except ProviderUnavailable as exc:
            # Nothing of the current message was accepted (nor of the refused ones): they and
            # the rest of the batch go to the next provider with capacity.
            progress.in_flight = None
            for parcel in refused:
                del progress.results[parcel.email_id]
            down[provider.id] = f"{provider.name}: {exc}"[:300]
            log.warning("SMTP provider %s unavailable: %s", provider.name, exc)
            remaining = refused + batch[handled:] + remaining
        finally:
            release(db_url, reservation, reservation.count - used)
    at = now_fn()
    for parcel in remaining:
        progress.done(Result(parcel.email_id, "wait", None, "no SMTP provider has capacity left",
                             at))


def _result(parcel: Parcel, delivery: Delivery, provider: ProviderConfig, at: datetime
            ) -> Result:
    return Result(parcel.email_id, delivery.outcome, provider.id, delivery.summary, at)


def _sender(pool: SenderPool, provider: ProviderConfig, settings: Settings) -> SmtpSender:
    try:
        return pool.get(provider.id, lambda: smtp_endpoint(provider, settings))
    except RuntimeError as exc:  # the password reference could not be resolved
        raise ProviderUnavailable(str(exc)) from None


def _to_outbox(parcel: Parcel, settings: Settings, now_fn: Callable[[], datetime]) -> Result:
    # A file already there (a retried send) is that same message: recorded sent all the same.
    write_eml(settings.outbox_dir, parcel.message_id, parcel.message)
    return Result(parcel.email_id, "sent", None, "outbox", now_fn())
