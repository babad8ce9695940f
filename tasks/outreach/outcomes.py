"""Recording what happened to a batch of claimed emails, in one transaction.

Only rows this worker claimed change: those still `sending`, and those whose claim expired
meanwhile (put up for review by `release_expired_claims`): the worker knows what happened to
them, so its outcome replaces the review. A sent email moves its lead on (status of the step,
`last_contacted_at`), dates the lead's next step from the actual send, and the campaign's
counters are recomputed from the emails table, never incremented. A step that ends `failed` or
`review` cancels the lead's later steps in that campaign (a failed step also stops the lead's
link). A provider that is unavailable (none active, none reachable) uses no attempt: the email
waits with a backoff of its own, doubling up to an hour."""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, distinct, func, or_, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from leadflow.settings import Settings
from models import Campaign, CampaignLead, Email, Lead, SequenceStep
from models.db import session_scope, take_write_lock
from tasks.outreach.bulk_rows import update_rows
from tasks.outreach.providers import as_utc, next_hour
from tasks.outreach.suppression import (
    cancel_later_steps,
    restore_later_steps,
    stop_links,
    stop_sequence,
    suppress,
)

# Lead statuses a send must not overwrite (the sequence ended for a reason).
FINAL_LEAD_STATUSES = ("replied", "unsubscribed", "bounced")
REVIEW_NOTE = ("no SMTP reply after the message was sent; it may have been delivered: "
               "check before resending")
_DEADLOCK_CODES = ("40P01", "40001")  # deadlock detected, serialization failure
# Waiting for a provider to be active or reachable again: base `send_retry_base_s`, doubling
# with each consecutive wait (counted in `last_error`), at most this long.
UNAVAILABLE_MAX_WAIT_S = 3600.0
_UNAVAILABLE_NOTE = re.compile(r"^provider unavailable \(wait (\d+)\)")
_emails = cast(Table, Email.__table__)
_leads = cast(Table, Lead.__table__)
_links = cast(Table, CampaignLead.__table__)
_campaigns = cast(Table, Campaign.__table__)


@dataclass(frozen=True)
class Outcome:
    email_id: int
    # sent | temporary | wait | unavailable | failed | bounced | unknown | cancelled
    kind: str
    at: datetime
    provider_id: int | None = None
    response: str = ""
    stop_reason: str | None = None  # cancelled: why the lead's sequence stops


@dataclass(frozen=True)
class _Row:
    id: int
    lead_id: int
    campaign_id: int
    step_number: int
    sequence_id: int
    attempts: int
    to_email: str
    last_error: str | None
    status: str


def unavailable_waits(last_error: str | None) -> int:
    """How many times in a row the email has waited for an unavailable provider."""
    m = _UNAVAILABLE_NOTE.match(last_error or "")
    return int(m.group(1)) if m else 0


def retry_delay_s(attempts: int, base_s: float, rng: Callable[[], float] = random.random) -> float:
    """Exponential backoff with jitter: base * 2^(attempts-1), plus up to half again at random
    (so workers that failed together do not retry together), at least one second."""
    delay = base_s * 2 ** max(0, attempts - 1)
    return max(1.0, delay * (1.0 + 0.5 * rng()))


def record_outcomes(
    db_url: str, worker_id: str, outcomes: list[Outcome], settings: Settings
) -> Counter[str]:
    """Apply the outcomes; returns counts by what was written (sent, retried, waiting, failed,
    bounced, cancelled, review) and `lost` for claims this worker no longer held. Retried on a
    deadlock (the sends are done: only the bookkeeping runs again)."""
    if not outcomes:
        return Counter()
    for attempt in range(1, 6):
        try:
            with session_scope(db_url) as session:
                return _record(session, worker_id, outcomes, settings)
        except OperationalError as exc:
            code = getattr(exc.orig, "sqlstate", None)
            if code not in _DEADLOCK_CODES or attempt == 5:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _record(
    session: Session, worker_id: str, outcomes: list[Outcome], settings: Settings
) -> Counter[str]:
    take_write_lock(session)
    ids = [o.email_id for o in outcomes]
    campaign_ids = _lock_campaigns_of(session, ids)
    # Also rows whose claim expired into review while this worker was still at them: it knows
    # their outcome (a review from an `unknown` outcome has its claim_expires_at cleared).
    expired_claim = (Email.status == "review") & Email.claim_expires_at.is_not(None)
    owned = _locked_rows(session, Email.id.in_(ids), Email.claimed_by == worker_id,
                         or_(Email.status == "sending", expired_claim))
    reviewed = [r for r in owned.values() if r.status == "review"]
    # Whatever the worker reports, the review's cancellation of the later steps is undone
    # first; a failure or another review cancels them again below.
    restore_later_steps(session, [(r.campaign_id, r.lead_id, r.step_number) for r in reviewed],
                        "review")
    counts: Counter[str] = Counter()
    counts["lost"] = sum(1 for o in outcomes if o.email_id not in owned)
    mine = [o for o in outcomes if o.email_id in owned]
    by_kind: dict[str, list[Outcome]] = {}
    for o in mine:
        by_kind.setdefault(o.kind, []).append(o)

    sent = by_kind.get("sent", [])
    if sent:
        _record_sent(session, sent, owned)
        counts["sent"] += len(sent)
    waiting = by_kind.get("wait", [])
    _update_emails(session, [
        {"b_id": o.email_id, "status": "queued", "scheduled_at": next_hour(o.at),
         "attempts": owned[o.email_id].attempts - 1, "last_error": o.response[:500],
         "provider_id": None, **_UNCLAIMED} for o in waiting
    ])
    counts["waiting"] += len(waiting)
    _record_unavailable(session, by_kind.get("unavailable", []), owned, settings, counts)
    failed = by_kind.get("failed", []) + _record_retries(
        session, by_kind.get("temporary", []), owned, settings, counts)
    _finish(session, failed, "failed", counts)
    _end_sequences(session, failed, owned, "failed")
    unknown = by_kind.get("unknown", [])
    _finish(session, unknown, "review", counts, note=REVIEW_NOTE)
    _end_sequences(session, unknown, owned, "review")
    bounced = by_kind.get("bounced", [])
    _finish(session, bounced, "bounced", counts)
    for o in bounced:
        row = owned[o.email_id]
        suppress(session, row.to_email, "bounced", email_id=row.id,
                 details={"smtp_response": o.response[:300]})
        stop_sequence(session, row.lead_id, "bounced")
    cancelled = by_kind.get("cancelled", [])
    _finish(session, cancelled, "cancelled", counts)
    for o in cancelled:
        if o.stop_reason == "suppressed":
            stop_sequence(session, owned[o.email_id].lead_id, "suppressed")
    if sent:
        recount_campaigns(session, campaign_ids)
    return counts


def _locked_rows(session: Session, *conditions: Any) -> dict[int, _Row]:
    """The emails matching the conditions, locked (FOR UPDATE; SQLite: the caller's write
    lock), by id."""
    return {
        r.id: _Row(r.id, r.lead_id, r.campaign_id, r.step_number, r.sequence_id, r.attempts,
                   r.to_email, r.last_error, r.status)
        for r in session.execute(
            select(Email.id, Email.lead_id, Email.campaign_id, Email.step_number,
                   Campaign.sequence_id, Email.attempts, Email.to_email, Email.last_error,
                   Email.status)
            .join(Campaign, Campaign.id == Email.campaign_id)
            .where(*conditions)
            .order_by(Email.id)
            .with_for_update(of=Email)
        )
    }


def _lock_campaigns_of(session: Session, email_ids: list[int]) -> list[int]:
    """Lock the campaigns of these emails (in id order); returns their ids. Recording
    transactions of one campaign run one at a time, so each recount of the counters sees every
    send committed before it (READ COMMITTED would miss concurrent ones)."""
    campaign_ids = sorted(set(session.scalars(
        select(Email.campaign_id).where(Email.id.in_(email_ids)))))
    session.execute(select(Campaign.id).where(Campaign.id.in_(campaign_ids))
                    .order_by(Campaign.id).with_for_update())
    return campaign_ids


def requeue_reviewed(session: Session, email_ids: list[int], now: datetime) -> int:
    """Emails in review go back to the queue, due `now` (a person found the message was not
    delivered); their cancelled later steps are pending again. Returns how many."""
    take_write_lock(session)
    rows = _locked_rows(session, Email.id.in_(email_ids), Email.status == "review")
    restore_later_steps(session, [(r.campaign_id, r.lead_id, r.step_number)
                                  for r in rows.values()], "review")
    _update_emails(session, [
        {"b_id": r.id, "status": "queued", "scheduled_at": as_utc(now),
         "last_error": f"requeued after review ({r.last_error or ''})"[:500], **_UNCLAIMED}
        for r in rows.values()
    ])
    return len(rows)


def mark_reviewed_sent(session: Session, email_ids: list[int], now: datetime) -> int:
    """Emails in review recorded as sent (a person found the message was delivered): sent at
    their claim time (when the hand-off happened), their lead moved on and the next step dated
    from then, the campaign recounted. Returns how many."""
    take_write_lock(session)
    campaign_ids = _lock_campaigns_of(session, email_ids)
    rows = _locked_rows(session, Email.id.in_(email_ids), Email.status == "review")
    if not rows:
        return 0
    claims = {i: (claimed_at, provider_id) for i, claimed_at, provider_id in session.execute(
        select(Email.id, Email.claimed_at, Email.provider_id).where(Email.id.in_(rows)))}
    restore_later_steps(session, [(r.campaign_id, r.lead_id, r.step_number)
                                  for r in rows.values()], "review")
    record_sent_rows(session, [
        (r, as_utc(claims[r.id][0] or now), claims[r.id][1], "marked sent after review")
        for r in rows.values()
    ])
    recount_campaigns(session, campaign_ids)
    return len(rows)


_UNCLAIMED = {"claimed_by": None, "claimed_at": None, "claim_expires_at": None}


def _update_emails(session: Session, rows: list[dict[str, Any]]) -> None:
    """Per-row values for emails matched by id (`b_id`); every row carries the same keys."""
    update_rows(session, _emails, [{"id": r.pop("b_id"), **r} for r in rows], ("id",))


def _finish(session: Session, outcomes: list[Outcome], status: str, counts: Counter[str],
            note: str | None = None) -> None:
    # An email that ends failed or bounced never went out: `failed_at` keeps when (the views
    # date a refusal by it; `updated_at` moves with any later change of the row).
    failed = status in ("failed", "bounced")
    _update_emails(session, [
        {"b_id": o.email_id, "status": status, "provider_id": o.provider_id,
         "smtp_response": o.response[:500] or None,
         "last_error": (f"{note} ({o.response})" if note else o.response)[:500],
         "claim_expires_at": None, **({"failed_at": as_utc(o.at)} if failed else {})}
        for o in outcomes
    ])
    counts[status] += len(outcomes)


def _end_sequences(session: Session, outcomes: list[Outcome], owned: dict[int, _Row],
                   why: str) -> None:
    """A step that did not go out ends the lead's sequence in its campaign: the later steps are
    cancelled (and, for a failure, the link stopped), so no follow-up goes without it."""
    rows = [owned[o.email_id] for o in outcomes]
    cancel_later_steps(session, [(r.campaign_id, r.lead_id, r.step_number) for r in rows], why)
    if why == "failed":
        stop_links(session, [(r.campaign_id, r.lead_id) for r in rows], "failed")


def _record_unavailable(session: Session, outcomes: list[Outcome], owned: dict[int, _Row],
                        settings: Settings, counts: Counter[str]) -> None:
    """No provider could take the email (none active, none reachable): it waits, without
    using an attempt, a little longer each time in a row, at most UNAVAILABLE_MAX_WAIT_S."""
    rows = []
    for o in outcomes:
        row = owned[o.email_id]
        waits = unavailable_waits(row.last_error) + 1
        delay = min(UNAVAILABLE_MAX_WAIT_S, retry_delay_s(waits, settings.send_retry_base_s))
        rows.append({
            "b_id": o.email_id, "status": "queued",
            "scheduled_at": as_utc(o.at) + timedelta(seconds=delay),
            "attempts": max(0, row.attempts - 1), "provider_id": None,
            "last_error": f"provider unavailable (wait {waits}): {o.response}"[:500],
            **_UNCLAIMED,
        })
    _update_emails(session, rows)
    counts["waiting"] += len(rows)


def _record_retries(session: Session, outcomes: list[Outcome], owned: dict[int, _Row],
                    settings: Settings, counts: Counter[str]) -> list[Outcome]:
    """Temporary refusals of the message are queued again with backoff; returns those that
    used their last attempt, as failures to record."""
    retry: list[Outcome] = []
    give_up: list[Outcome] = []
    for o in outcomes:
        (give_up if owned[o.email_id].attempts >= settings.send_max_attempts else retry).append(o)
    _update_emails(session, [
        {"b_id": o.email_id, "status": "queued",
         "scheduled_at": as_utc(o.at) + timedelta(seconds=retry_delay_s(
             owned[o.email_id].attempts, settings.send_retry_base_s)),
         # The provider that failed, so the retry prefers another one.
         "provider_id": o.provider_id, "last_error": o.response[:500], **_UNCLAIMED}
        for o in retry
    ])
    counts["retried"] += len(retry)
    return [Outcome(o.email_id, "failed", o.at, o.provider_id,
                    f"gave up after {owned[o.email_id].attempts} attempts: {o.response}")
            for o in give_up]


def _record_sent(session: Session, sent: list[Outcome], owned: dict[int, _Row]) -> None:
    rows = [owned[o.email_id] for o in sent]
    record_sent_rows(session, [(r, as_utc(o.at), o.provider_id, o.response)
                               for o, r in zip(sent, rows, strict=True)])


def record_sent_rows(session: Session,
                     sent: list[tuple[_Row, datetime, int | None, str]]) -> None:
    """Emails (row, sent at, provider, reply) recorded sent: the row, the next step dated from
    the send, the campaign link and the lead moved on. The caller holds the rows' locks."""
    if not sent:
        return
    rows = [r for r, _, _, _ in sent]
    steps = _steps(session, {r.sequence_id for r in rows})
    last_step = {seq: max(n for s, n in steps if s == seq) for seq, _ in steps}
    _update_emails(session, [
        {"b_id": r.id, "status": "sent", "sent_at": at, "provider_id": provider_id,
         "smtp_response": response[:500], "last_error": None, "claim_expires_at": None}
        for r, at, provider_id, response in sent
    ])
    # The next step is due its delay after this one actually went out.
    update_rows(session, _emails, [
        {"campaign_id": r.campaign_id, "lead_id": r.lead_id, "step_number": r.step_number + 1,
         "scheduled_at": at + timedelta(days=steps[(r.sequence_id, r.step_number + 1)][1])}
        for r, at, _, _ in sent if (r.sequence_id, r.step_number + 1) in steps
    ], ("campaign_id", "lead_id", "step_number"), where="status IN ('scheduled', 'queued')")
    # One UPDATE ... FROM unnest() applies one of several rows matching a target row, and which
    # one is arbitrary: so each link and each lead gets one row, its highest step's.
    latest_link: dict[tuple[int, int], _Row] = {}
    latest_lead: dict[int, tuple[_Row, datetime]] = {}
    for r, at, _, _ in sent:
        key = (r.campaign_id, r.lead_id)
        if key not in latest_link or r.step_number > latest_link[key].step_number:
            latest_link[key] = r
        best, when = latest_lead.get(r.lead_id, (r, at))
        latest_lead[r.lead_id] = (r if r.step_number >= best.step_number else best,
                                  max(at, when))
    update_rows(session, _links, [
        {"campaign_id": r.campaign_id, "lead_id": r.lead_id,
         "status": "completed" if r.step_number >= last_step[r.sequence_id] else "active"}
        for r in latest_link.values()
    ], ("campaign_id", "lead_id"), where="status IN ('pending', 'active')")
    update_rows(session, _leads, [
        {"id": r.lead_id, "status": steps[(r.sequence_id, r.step_number)][0],
         "last_contacted_at": at}
        for r, at in latest_lead.values()
    ], ("id",), where=f"status NOT IN ({', '.join(repr(s) for s in FINAL_LEAD_STATUSES)})")


def _steps(session: Session, sequence_ids: Iterable[int]) -> dict[tuple[int, int], tuple[str, int]]:
    """(sequence, step number) -> (lead status once sent, delay in days)."""
    return {
        (r.sequence_id, r.step_number): (r.lead_status, r.delay_days)
        for r in session.execute(
            select(SequenceStep.sequence_id, SequenceStep.step_number, SequenceStep.lead_status,
                   SequenceStep.delay_days).where(SequenceStep.sequence_id.in_(sequence_ids))
        )
    }


def recount_campaigns(session: Session, campaign_ids: list[int]) -> None:
    """emails_sent and leads_contacted of each campaign, counted from its sent emails."""
    sent = _emails.c.status == "sent"
    of_campaign = _emails.c.campaign_id == _campaigns.c.id
    session.execute(
        _campaigns.update().where(_campaigns.c.id.in_(campaign_ids)).values(
            emails_sent=select(func.count()).where(of_campaign, sent).scalar_subquery(),
            leads_contacted=select(func.count(distinct(_emails.c.lead_id)))
            .where(of_campaign, sent).scalar_subquery(),
        )
    )

