"""Recording what happened to a batch of claimed emails, in one transaction.

Only rows still claimed by the worker (`claimed_by = worker AND status = 'sending'`) change:
a claim that expired meanwhile is already up for review and stays so. A sent email moves its
lead on (status of the step, `last_contacted_at`), dates the lead's next step from the actual
send, and the campaign's counters are recomputed from the emails table, never incremented."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, distinct, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from leadflow.settings import Settings
from models import Campaign, CampaignLead, Email, Lead, SequenceStep
from models.db import session_scope
from tasks.outreach.bulk_rows import update_rows
from tasks.outreach.locks import take_write_lock
from tasks.outreach.providers import as_utc, next_hour
from tasks.outreach.suppression import stop_sequence, suppress

# Lead statuses a send must not overwrite (the sequence ended for a reason).
FINAL_LEAD_STATUSES = ("replied", "unsubscribed", "bounced")
REVIEW_NOTE = ("no SMTP reply after the message was sent; it may have been delivered: "
               "check before resending")
_DEADLOCK_CODES = ("40P01", "40001")  # deadlock detected, serialization failure
_emails = cast(Table, Email.__table__)
_leads = cast(Table, Lead.__table__)
_links = cast(Table, CampaignLead.__table__)
_campaigns = cast(Table, Campaign.__table__)


@dataclass(frozen=True)
class Outcome:
    email_id: int
    # sent | temporary | wait | failed | bounced | unknown | cancelled
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
    campaign_ids = sorted(set(session.scalars(
        select(Email.campaign_id).where(Email.id.in_(ids)))))
    # Recording transactions of one campaign run one at a time, so each recount of the
    # counters sees every send committed before it (READ COMMITTED would miss concurrent ones).
    session.execute(select(Campaign.id).where(Campaign.id.in_(campaign_ids))
                    .order_by(Campaign.id).with_for_update())
    owned = {
        r.id: _Row(r.id, r.lead_id, r.campaign_id, r.step_number, r.sequence_id, r.attempts,
                   r.to_email)
        for r in session.execute(
            select(Email.id, Email.lead_id, Email.campaign_id, Email.step_number,
                   Campaign.sequence_id, Email.attempts, Email.to_email)
            .join(Campaign, Campaign.id == Email.campaign_id)
            .where(Email.id.in_(ids), Email.claimed_by == worker_id, Email.status == "sending")
            .order_by(Email.id)
            .with_for_update(of=Email)
        )
    }
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
    _record_retries(session, by_kind.get("temporary", []), owned, settings, counts)
    waiting = by_kind.get("wait", [])
    _update_emails(session, [
        {"b_id": o.email_id, "status": "queued", "scheduled_at": next_hour(o.at),
         "attempts": owned[o.email_id].attempts - 1, "last_error": o.response[:500],
         "provider_id": None, **_UNCLAIMED} for o in waiting
    ])
    counts["waiting"] += len(waiting)
    _finish(session, by_kind.get("failed", []), "failed", counts)
    _finish(session, by_kind.get("unknown", []), "review", counts, note=REVIEW_NOTE)
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


_UNCLAIMED = {"claimed_by": None, "claimed_at": None, "claim_expires_at": None}


def _update_emails(session: Session, rows: list[dict[str, Any]]) -> None:
    """Per-row values for emails matched by id (`b_id`); every row carries the same keys."""
    update_rows(session, _emails, [{"id": r.pop("b_id"), **r} for r in rows], ("id",))


def _finish(session: Session, outcomes: list[Outcome], status: str, counts: Counter[str],
            note: str | None = None) -> None:
    _update_emails(session, [
        {"b_id": o.email_id, "status": status, "provider_id": o.provider_id,
         "smtp_response": o.response[:500] or None,
         "last_error": (f"{note} ({o.response})" if note else o.response)[:500],
         "claim_expires_at": None}
        for o in outcomes
    ])
    counts[status] += len(outcomes)


def _record_retries(session: Session, outcomes: list[Outcome], owned: dict[int, _Row],
                    settings: Settings, counts: Counter[str]) -> None:
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
    _finish(session, [Outcome(o.email_id, o.kind, o.at, o.provider_id,
                              f"gave up after {owned[o.email_id].attempts} attempts: "
                              f"{o.response}") for o in give_up], "failed", counts)


def _record_sent(session: Session, sent: list[Outcome], owned: dict[int, _Row]) -> None:
    rows = [owned[o.email_id] for o in sent]
    steps = _steps(session, {r.sequence_id for r in rows})
    last_step = {seq: max(n for s, n in steps if s == seq) for seq, _ in steps}
    _update_emails(session, [
        {"b_id": o.email_id, "status": "sent", "sent_at": as_utc(o.at),
         "provider_id": o.provider_id, "smtp_response": o.response[:500], "last_error": None,
         "claim_expires_at": None}
        for o in sent
    ])
    # The next step is due its delay after this one actually went out.
    update_rows(session, _emails, [
        {"campaign_id": r.campaign_id, "lead_id": r.lead_id, "step_number": r.step_number + 1,
         "scheduled_at": as_utc(o.at)
         + timedelta(days=steps[(r.sequence_id, r.step_number + 1)][1])}
        for o, r in zip(sent, rows, strict=True) if (r.sequence_id, r.step_number + 1) in steps
    ], ("campaign_id", "lead_id", "step_number"), where="status IN ('scheduled', 'queued')")
    update_rows(session, _links, [
        {"campaign_id": r.campaign_id, "lead_id": r.lead_id,
         "status": "completed" if r.step_number >= last_step[r.sequence_id] else "active"}
        for r in rows
    ], ("campaign_id", "lead_id"), where="status IN ('pending', 'active')")
    update_rows(session, _leads, [
        {"id": r.lead_id, "status": steps[(r.sequence_id, r.step_number)][0],
         "last_contacted_at": as_utc(o.at)}
        for o, r in zip(sent, rows, strict=True)
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

