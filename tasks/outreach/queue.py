"""The send queue: one `emails` row per lead and sequence step, claimed by workers, sent and
recorded exactly once.

    enqueue_sequences       scheduled rows for every step of each lead's sequence (idempotent)
    claim_due_emails        queued -> sending, for due rows of open campaigns inside their
                            sending window whose previous step is sent (FOR UPDATE SKIP
                            LOCKED; SQLite: under its write lock)
    send_claimed_emails     suppression re-checked, messages handed to providers (or the outbox),
                            each checked again before it goes (`SendTimeCheck`), outcomes recorded
                            (tasks/outreach/outcomes.py)
    release_expired_claims  sending rows whose claim expired -> review (never resent blindly)
    requeue_review          review -> queued, when a person found the message was not delivered
    mark_review_sent        review -> sent, when a person found it was
    drain_queue             claim, send, record, until nothing is due
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import ColumnElement, Table, bindparam, exists, or_, select
from sqlalchemy.orm import Session

from leadflow.settings import Settings, get_settings
from models import Campaign, CampaignLead, Email, Lead, SequenceStep
from models.db import is_sqlite, session_scope, take_write_lock
from tasks.outreach.bulk_rows import insert_rows
from tasks.outreach.delivery import DeliveryInterrupted, Parcel, Result, deliver
from tasks.outreach.message import OutgoingEmail, render_message
from tasks.outreach.outcomes import (
    FINAL_LEAD_STATUSES,
    Outcome,
    mark_reviewed_sent,
    record_outcomes,
    requeue_reviewed,
)
from tasks.outreach.providers import as_utc
from tasks.outreach.smtp import SenderPool
from tasks.outreach.suppression import cancel_later_steps, suppressed_addresses

log = logging.getLogger(__name__)

ENQUEUE_CHUNK = 2000
_emails = cast(Table, Email.__table__)
_links = cast(Table, CampaignLead.__table__)


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- enqueueing --------------------------------------------------------------------------


@dataclass
class EnqueueReport:
    campaign_id: int
    leads: int = 0  # distinct lead ids asked for
    linked: int = 0  # campaign_leads rows created now
    queued_leads: int = 0  # leads whose sequence is in the queue
    emails_created: int = 0  # emails rows inserted now (0 on a re-run)
    stopped: dict[str, int] = field(default_factory=dict)  # not queued, by stop reason
    skipped: int = 0  # unknown lead ids, or links already stopped or completed


def enqueue_sequences(
    db_url: str, campaign_id: int, lead_ids: list[int], now: datetime
) -> EnqueueReport:
    """Link each lead to the campaign, route it, and schedule every step of the campaign's
    sequence (step 1 due `now`, later steps provisionally after their delays; a send dates the
    next step again), to the lead's cleaned address (`email_norm`, else the address as found).
    Leads without an email, suppressed, or whose outreach ended (replied, unsubscribed,
    bounced) are stopped instead. Re-running it adds nothing."""
    now = as_utc(now)
    with session_scope(db_url) as session:
        sequence_id = session.get_one(Campaign, campaign_id).sequence_id
        steps = [(s.id, s.step_number, s.delay_days) for s in session.scalars(
            select(SequenceStep).where(SequenceStep.sequence_id == sequence_id)
            .order_by(SequenceStep.step_number))]
    if not steps:
        raise ValueError(f"campaign {campaign_id}: its sequence {sequence_id} has no steps")
    ids = list(dict.fromkeys(lead_ids))
    report = EnqueueReport(campaign_id, leads=len(ids))
    for start in range(0, len(ids), ENQUEUE_CHUNK):
        with session_scope(db_url) as session:
            _enqueue_chunk(session, campaign_id, steps, ids[start : start + ENQUEUE_CHUNK],
                           now, report)
    return report


def _route(session: Session, lead_ids: list[int]) -> dict[int, Any]:
    try:
        from tasks.outreach.routing import route_leads
    except ImportError:  # routing not installed: leads go without a scenario
        return {}
    return route_leads(session, lead_ids)


def _enqueue_chunk(session: Session, campaign_id: int, steps: list[tuple[int, int, int]],
                   lead_ids: list[int], now: datetime, report: EnqueueReport) -> None:
    # What is read (links, their status) decides what is written: on SQLite nobody may write
    # in between.
    take_write_lock(session)
    leads = session.execute(
        select(Lead.id, Lead.email, Lead.email_norm, Lead.contact_name, Lead.status)
        .where(Lead.id.in_(lead_ids))
        .order_by(Lead.id)
    ).all()
    report.skipped += len(lead_ids) - len(leads)
    decisions = _route(session, [lead.id for lead in leads])
    links = [{"campaign_id": campaign_id, "lead_id": lead.id, "status": "pending",
              "scenario": (d := decisions.get(lead.id)) and d.scenario,
              "routing": {"rule": d.rule, "facts": d.facts} if d else {}} for lead in leads]
    report.linked += len(insert_rows(session, _links, links, ("campaign_id", "lead_id"), "id"))
    if decisions:  # links made earlier without a decision get this one
        session.execute(
            _links.update().where(_links.c.campaign_id == campaign_id,
                                  _links.c.lead_id == bindparam("l"),
                                  _links.c.scenario.is_(None))
            .values(scenario=bindparam("sc"), routing=bindparam("ro")),
            [{"l": r["lead_id"], "sc": r["scenario"], "ro": r["routing"]}
             for r in links if r["scenario"] is not None],
        )
    link_status = dict(session.execute(
        select(CampaignLead.lead_id, CampaignLead.status).where(
            CampaignLead.campaign_id == campaign_id, CampaignLead.lead_id.in_(lead_ids))
    ).all())
    # The cleaned address ("mailto:", brackets and case gone); the one as found only when the
    # pipeline could not clean it (e.g. an internationalised address).
    addresses = {lead.id: address for lead in leads
                 if (address := (lead.email_norm or lead.email or "").strip())}
    suppressed = suppressed_addresses(session, addresses.values())
    stop: dict[int, str] = {}
    queue = []
    for lead in leads:
        if link_status.get(lead.id) in ("stopped", "completed"):
            report.skipped += 1
        elif lead.status in FINAL_LEAD_STATUSES:
            # A reply suppresses nothing: only this keeps a new campaign from writing again.
            stop[lead.id] = lead.status
        elif lead.id not in addresses:
            stop[lead.id] = "no_email"
        elif addresses[lead.id] in suppressed:
            stop[lead.id] = "suppressed"
        else:
            queue.append(lead)
    if stop:
        session.execute(
            _links.update().where(_links.c.campaign_id == campaign_id,
                                  _links.c.lead_id == bindparam("l"),
                                  _links.c.status == "pending")
            .values(status="stopped", stop_reason=bindparam("r")),
            [{"l": lead_id, "r": reason} for lead_id, reason in stop.items()],
        )
        for reason, n in Counter(stop.values()).items():
            report.stopped[reason] = report.stopped.get(reason, 0) + n
    rows = []
    for lead in queue:
        due = now
        scenario = (d := decisions.get(lead.id)) and d.scenario
        for step_id, number, delay_days in steps:
            if number > steps[0][1]:
                due += timedelta(days=delay_days)
            rows.append({"campaign_id": campaign_id, "lead_id": lead.id, "step_id": step_id,
                         "step_number": number, "scenario": scenario, "status": "scheduled",
                         "scheduled_at": due, "to_email": addresses[lead.id],
                         "to_name": lead.contact_name})
    report.emails_created += len(insert_rows(
        session, _emails, rows, ("campaign_id", "lead_id", "step_number"), "id"))
    report.queued_leads += len(queue)


# --- claiming ------------------------------------------------------------------------------


def in_send_window(now: datetime, timezone: str, start_hour: int, end_hour: int,
                   weekdays: Sequence[int]) -> bool:
    """Whether `now` falls in the window in that time zone: an allowed weekday (0 = Monday)
    and start_hour <= local hour < end_hour (a window past midnight when start > end; the
    whole day when they are equal)."""
    local = as_utc(now).astimezone(ZoneInfo(timezone))
    if local.weekday() not in set(weekdays or ()):
        return False
    hour = local.hour
    if start_hour == end_hour:
        return True
    if start_hour < end_hour:
        return start_hour <= hour < end_hour
    return hour >= start_hour or hour < end_hour


def open_campaign_ids(session: Session, now: datetime,
                      campaign_ids: Sequence[int] | None = None) -> list[int]:
    """Campaigns that may send now: active ones inside their sending window. `campaign_ids`
    restricts the choice to those campaigns and also admits drafts among them (a manual
    execution of a campaign not yet activated); paused and completed campaigns never send."""
    query = select(Campaign.id, Campaign.status, Campaign.timezone,
                   Campaign.send_window_start_hour, Campaign.send_window_end_hour,
                   Campaign.send_weekdays)
    if campaign_ids is not None:
        query = query.where(Campaign.id.in_(campaign_ids),
                            Campaign.status.in_(("active", "draft")))
    else:
        query = query.where(Campaign.status == "active")
    open_ids = []
    for cid, _status, tz, start, end, weekdays in session.execute(query.order_by(Campaign.id)):
        try:
            if in_send_window(now, tz, start, end, weekdays):
                open_ids.append(cid)
        except (ZoneInfoNotFoundError, ValueError):
            log.warning("campaign %s: unknown time zone %r, not sending", cid, tz)
    return open_ids


def previous_step_sent(emails: Table) -> ColumnElement[bool]:
    """Condition on an `emails` row: it is step 1, or the same lead's previous step of the same
    campaign is sent. A follow-up never goes before (or without) the step it follows."""
    previous = emails.alias("previous_step")
    return or_(emails.c.step_number == 1, exists().where(
        previous.c.campaign_id == emails.c.campaign_id,
        previous.c.lead_id == emails.c.lead_id,
        previous.c.step_number == emails.c.step_number - 1,
        previous.c.status == "sent",
    ))


def claim_due_emails(
    db_url: str, worker_id: str, limit: int, now: datetime,
    *, campaign_ids: Sequence[int] | None = None,
) -> list[int]:
    """Claim up to `limit` due emails (status queued, scheduled_at <= now, the previous step
    sent) of campaigns open now: they become `sending`, owned by `worker_id` until the claim
    expires. Rows outside their campaign's sending window stay queued. Concurrent workers never
    claim the same row."""
    now = as_utc(now)
    if limit <= 0:
        return []
    expires = now + timedelta(seconds=get_settings().send_claim_timeout_s)
    with session_scope(db_url) as session:
        take_write_lock(session)
        open_ids = open_campaign_ids(session, now, campaign_ids)
        if not open_ids:
            return []
        due = (
            select(_emails.c.id)
            .where(_emails.c.status == "queued", _emails.c.scheduled_at <= now,
                   _emails.c.campaign_id.in_(open_ids), previous_step_sent(_emails))
            .order_by(_emails.c.scheduled_at, _emails.c.id)
            .limit(limit)
        )
        claim = _emails.update().values(
            status="sending", claimed_by=worker_id, claimed_at=now, claim_expires_at=expires,
            attempts=_emails.c.attempts + 1,
        )
        if is_sqlite(session):  # the write lock is held: nobody else can claim meanwhile
            stmt = claim.where(_emails.c.id.in_(due.scalar_subquery()),
                               _emails.c.status == "queued")
        else:
            # A locking CTE runs once, and rows another worker holds are skipped, not waited for.
            picked = due.with_for_update(skip_locked=True).cte("picked")
            stmt = claim.where(_emails.c.id == picked.c.id, _emails.c.status == "queued")
        return sorted(session.scalars(stmt.returning(_emails.c.id)))


def release_expired_claims(db_url: str, now: datetime) -> int:
    """Claims past `claim_expires_at` go to `review`: their worker died or stalled, maybe after
    the SMTP server took the message, so they are never resent without a look, and the lead's
    later steps are cancelled (restored if a person requeues or confirms the email, or if the
    stalled worker records what happened after all). Returns how many."""
    now = as_utc(now)
    with session_scope(db_url) as session:
        take_write_lock(session)
        result = session.execute(
            _emails.update()
            .where(_emails.c.status == "sending", _emails.c.claim_expires_at < now)
            .values(status="review", last_error="claim expired before the send was recorded; "
                    "the SMTP server may have the message: check before resending")
            .returning(_emails.c.campaign_id, _emails.c.lead_id, _emails.c.step_number)
        )
        expired = [(int(r[0]), int(r[1]), int(r[2])) for r in result]
        cancel_later_steps(session, expired, "review")
        return len(expired)


def requeue_review(db_url: str, email_ids: Sequence[int], *,
                   now: datetime | None = None) -> int:
    """Put emails in review back in the queue, due `now` (the SMTP server does not have the
    message: checked by a person); their cancelled later steps are pending again unless the
    lead stopped meanwhile. Emails not in review are left alone. Returns how many moved."""
    with session_scope(db_url) as session:
        return requeue_reviewed(session, list(email_ids), as_utc(now or utcnow()))


def mark_review_sent(db_url: str, email_ids: Sequence[int], *,
                     now: datetime | None = None) -> int:
    """Record emails in review as sent (the SMTP server did take the message), as of their
    claim time: the lead moves on, the next step is dated from then, the campaign is
    recounted. Emails not in review are left alone. Returns how many were recorded."""
    with session_scope(db_url) as session:
        return mark_reviewed_sent(session, list(email_ids), as_utc(now or utcnow()))


# --- sending -------------------------------------------------------------------------------


@dataclass
class SendReport:
    claimed: int = 0
    sent: int = 0
    outbox: int = 0  # of `sent`, written to the outbox folder
    retried: int = 0  # temporary failure: queued again with backoff
    # queued again without using an attempt: no provider capacity left (due the next hour), or
    # no provider active or reachable (due after a backoff of its own, at most an hour)
    waiting: int = 0
    failed: int = 0
    bounced: int = 0
    cancelled: int = 0  # suppressed or sequence stopped since queueing
    review: int = 0  # the server may have the message: left for a person
    lost: int = 0  # claims taken away (expired to review) before they were recorded
    by_provider: dict[str, int] = field(default_factory=dict)  # sent per provider name
    errors: list[str] = field(default_factory=list)  # distinct, short

    def add(self, other: SendReport) -> None:
        for name in ("claimed", "sent", "outbox", "retried", "waiting", "failed", "bounced",
                     "cancelled", "review", "lost"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for key, n in other.by_provider.items():
            self.by_provider[key] = self.by_provider.get(key, 0) + n
        for error in other.errors:
            if error not in self.errors and len(self.errors) < 20:
                self.errors.append(error)


def _load_claimed(session: Session, email_ids: list[int], worker_id: str) -> list[Any]:
    return list(session.execute(
        select(Email.id, Email.lead_id, Email.message_id, Email.subject, Email.body_text,
               Email.body_html, Email.to_email, Email.to_name, Email.provider_id,
               Email.attempts, Campaign.sender_name, Campaign.sender_email,
               CampaignLead.status.label("link_status"), CampaignLead.stop_reason)
        .join(Campaign, Campaign.id == Email.campaign_id)
        .outerjoin(CampaignLead, (CampaignLead.campaign_id == Email.campaign_id)
                   & (CampaignLead.lead_id == Email.lead_id))
        .where(Email.id.in_(email_ids), Email.claimed_by == worker_id,
               Email.status == "sending")
        .order_by(Email.id)
    ))


def _prepare(rows: list[Any], suppressed: set[str], now: datetime
             ) -> tuple[list[Parcel], list[Outcome]]:
    """Messages to send, and outcomes decided before sending (cancelled, not composable)."""
    parcels: list[Parcel] = []
    decided: list[Outcome] = []
    for r in rows:
        if r.to_email in suppressed:
            decided.append(Outcome(r.id, "cancelled", now, response="address suppressed",
                                   stop_reason="suppressed"))
            continue
        if r.link_status == "stopped":
            decided.append(Outcome(r.id, "cancelled", now,
                                   response=f"sequence stopped: {r.stop_reason}"))
            continue
        if not (r.message_id and r.subject and r.body_text):
            decided.append(Outcome(r.id, "failed", now, response="not composed"))
            continue
        try:
            message = render_message(OutgoingEmail(
                r.id, r.message_id, r.subject, r.body_text, r.body_html, r.sender_name,
                r.sender_email, r.to_email, r.to_name, now,
            ))
        except (ValueError, TypeError) as exc:
            decided.append(Outcome(r.id, "failed", now, response=f"bad message: {exc}"[:300]))
            continue
        avoid = r.provider_id if r.attempts > 1 else None
        parcels.append(Parcel(r.id, r.message_id, r.sender_email, r.to_email, message, avoid))
    return parcels, decided


class SendTimeCheck:
    """The check of each message just before it is handed over (a `LastCheck`). A batch is
    loaded and checked once, then sent one message after another for as long as the servers
    take; meanwhile an unsubscribe, a bounce or a reply may stop a lead, and the claims may
    expire (another run then puts them up for review, and a person may requeue them).

    Once `every_s` has passed on the worker's clock since a message's last check (or the clock
    went back), the messages not handed over yet (a provider that did not take them, being
    unavailable, did not hand them over) are checked again, all in one read: still claimed by
    this worker and not expired, address not suppressed, sequence not stopped. A message that
    fails is `cancelled` as `_prepare` would have, or, when the claim is no longer this
    worker's, queued again without using an attempt (recorded only if the row is still this
    worker's).
    A batch whose servers answer quickly is not read again; a slow one at most once per
    `every_s` (checking every message cost ~4 ms of a worker's CPU per email, more than the
    send itself: benchmarks/send_throughput.py)."""

    def __init__(self, db_url: str, worker_id: str, now_fn: Callable[[], datetime],
                 parcels: list[Parcel], checked_at: datetime, every_s: float) -> None:
        self._db_url = db_url
        self._worker_id = worker_id
        self._now_fn = now_fn
        self._every = timedelta(seconds=every_s)
        self._waiting = {p.email_id: p for p in parcels}  # not handed over yet
        # When each message was last checked: one a provider did not take (ProviderUnavailable)
        # comes back for the next provider, and later checks did not cover it.
        self._checked_at = {p.email_id: checked_at for p in parcels}
        self._verdicts: dict[int, Result] = {}  # email id -> what to record instead of sending

    def __call__(self, parcel: Parcel) -> Result | None:
        now = as_utc(self._now_fn())
        self._waiting[parcel.email_id] = parcel
        since = now - self._checked_at.get(parcel.email_id, now - self._every)
        # A clock stepped back (negative `since`) must not stop the checks until it catches up.
        if not timedelta(0) <= since < self._every:
            self._check(now)
        del self._waiting[parcel.email_id]
        return self._verdicts.pop(parcel.email_id, None)

    def _check(self, now: datetime) -> None:
        ids = list(self._waiting)
        with session_scope(self._db_url) as session:
            rows = {r.id: r for r in session.execute(
                select(Email.id, Email.status, Email.claimed_by, Email.claim_expires_at,
                       CampaignLead.status.label("link_status"), CampaignLead.stop_reason)
                .outerjoin(CampaignLead, (CampaignLead.campaign_id == Email.campaign_id)
                           & (CampaignLead.lead_id == Email.lead_id))
                .where(Email.id.in_(ids))
            )}
            suppressed = suppressed_addresses(
                session, {p.recipient for p in self._waiting.values()})
        self._checked_at.update(dict.fromkeys(self._waiting, now))
        for email_id, parcel in self._waiting.items():
            row = rows.get(email_id)
            if (row is None or row.status != "sending" or row.claimed_by != self._worker_id
                    or row.claim_expires_at is None or as_utc(row.claim_expires_at) <= now):
                self._verdicts[email_id] = Result(
                    email_id, "wait", None,
                    "claim expired before the message was handed over: not sent", now)
            elif parcel.recipient in suppressed:
                self._verdicts[email_id] = Result(email_id, "cancelled", None,
                                                  "address suppressed", now,
                                                  stop_reason="suppressed")
            elif row.link_status == "stopped":
                self._verdicts[email_id] = Result(email_id, "cancelled", None,
                                                  f"sequence stopped: {row.stop_reason}", now)


def send_claimed_emails(
    db_url: str,
    email_ids: list[int],
    worker_id: str,
    *,
    now_fn: Callable[[], datetime] = utcnow,
    senders: SenderPool | None = None,
    settings: Settings | None = None,
) -> SendReport:
    """Send the emails this worker claimed and record each outcome. `senders` keeps SMTP
    connections open across calls (drain_queue passes one); without it they close at the
    end. An unexpected error during delivery is raised again once the outcomes known by then
    are recorded (see DeliveryInterrupted)."""
    settings = settings or get_settings()
    report = SendReport(claimed=len(email_ids))
    if not email_ids:
        return report
    now = as_utc(now_fn())
    with session_scope(db_url) as session:
        rows = _load_claimed(session, email_ids, worker_id)
        suppressed = suppressed_addresses(session, {r.to_email for r in rows})
    parcels, outcomes = _prepare(rows, suppressed, now)
    pool = senders or SenderPool()
    interrupted: DeliveryInterrupted | None = None
    try:
        check = SendTimeCheck(db_url, worker_id, now_fn, parcels, now,
                              settings.send_recheck_after_s)
        results = deliver(db_url, parcels, settings, pool, now_fn, check) if parcels else []
    except DeliveryInterrupted as exc:
        results, interrupted = exc.results, exc
    finally:
        if senders is None:
            pool.close()
    outcomes += [Outcome(r.email_id, r.outcome, r.at, r.provider_id, r.response, r.stop_reason)
                 for r in results]
    counts = record_outcomes(db_url, worker_id, outcomes, settings)
    if interrupted is not None:
        log.error("%s: %s; the outcomes known were recorded", worker_id, interrupted)
        raise interrupted.cause
    names = _provider_names(db_url, {r.provider_id for r in results if r.outcome == "sent"})
    for name in ("sent", "retried", "waiting", "failed", "bounced", "cancelled", "review",
                 "lost"):
        setattr(report, name, counts.get(name, 0))
    report.lost += len(email_ids) - len(rows)
    for r in results:
        if r.outcome == "sent":
            key = names.get(r.provider_id, "outbox")
            report.by_provider[key] = report.by_provider.get(key, 0) + 1
            report.outbox += r.provider_id is None
        elif r.outcome != "wait" and r.response not in report.errors and len(report.errors) < 20:
            report.errors.append(r.response[:200])
    if report.lost:
        log.warning("%s: %d claims expired before their sends were recorded (left in review)",
                    worker_id, report.lost)
    return report


def _provider_names(db_url: str, ids: set[int | None]) -> dict[int | None, str]:
    from models import SmtpProvider

    wanted = [i for i in ids if i is not None]
    if not wanted:
        return {}
    with session_scope(db_url) as session:
        return dict(session.execute(select(SmtpProvider.id, SmtpProvider.name)
                                    .where(SmtpProvider.id.in_(wanted))).all())


def drain_queue(
    db_url: str,
    worker_id: str,
    *,
    now_fn: Callable[[], datetime] = utcnow,
    max_emails: int | None = None,
    batch_size: int | None = None,
    campaign_ids: Sequence[int] | None = None,
) -> SendReport:
    """Claim, send and record batches until nothing is due (or `max_emails` were claimed),
    keeping one SMTP connection per provider open throughout. Emails put back for a retry or
    for capacity are due later, so they end the drain rather than spin it."""
    settings = get_settings()
    size = batch_size or settings.send_batch_size
    report = SendReport()
    seen: set[int] = set()
    with SenderPool() as pool:
        while max_emails is None or report.claimed < max_emails:
            limit = size if max_emails is None else min(size, max_emails - report.claimed)
            ids = claim_due_emails(db_url, worker_id, limit, now_fn(),
                                   campaign_ids=campaign_ids)
            if not ids:
                break
            report.add(send_claimed_emails(db_url, ids, worker_id, now_fn=now_fn,
                                           senders=pool, settings=settings))
            if seen.issuperset(ids):
                break  # only emails this drain already tried: leave them to the next one
            seen.update(ids)
    return report
