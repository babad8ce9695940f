"""Records a batch of hits in one transaction: looks up the emails and links they name, flags
machine-made hits, appends the events (COPY on PostgreSQL, executemany on SQLite) and applies
unsubscribes; and `prejudge`, what the one-statement PostgreSQL writer (stores.py) decides in
Python before sending a batch. Nothing here updates a counter: figures are derived later
(figures.py)."""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from models import Email, EmailEvent, EmailLink
from tasks.outreach.suppression import stop_sequence, suppress, suppressed_addresses
from tracking_app.bots import BotRules, as_utc
from tracking_app.hits import NOT_FOUND, Hit, Outcome

EVENT_COLUMNS = (
    "email_id", "kind", "link_position", "occurred_at", "method", "user_agent", "ip_network",
    "is_machine", "machine_reason",
)
COPY_SQL = f"COPY email_events ({', '.join(EVENT_COLUMNS)}) FROM STDIN"
TRACKED_KINDS = ("open", "click")
# (email_id, kind, link_position, ip_network, user_agent): what makes a later hit a repeat of an
# earlier one, the same client again. The user agent is part of it: Office checking a link
# (flagged) and then the reader's browser opening it, from one network, are two clients.
RepeatKey = tuple[int, str, int | None, str | None, str | None]
# What a stored link must be for the app to redirect to it: http(s), a host of plain ASCII
# characters, no character that could end a header. Python (SQLite) and PostgreSQL (its `~`
# operator, in the statement that records a batch) both decide with this pattern, whole-string:
# it uses only explicit ASCII ranges, which mean the same in both engines. Everything it accepts
# `urllib.parse.urlsplit` reads as scheme http(s) with a non-empty host
# (tests/tracking_app/test_redirectable.py).
REDIRECTABLE_PATTERN = (
    r"[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9._~%!$&'()*+,;=:@-]+([/?#][^\r\n\t]*)?"
)
_REDIRECTABLE = re.compile(REDIRECTABLE_PATTERN)
_ZERO = timedelta(0)


@dataclass(slots=True)
class BatchResult:
    outcomes: list[Outcome]
    # Emails that got an open or click: their derived figures are due for a refresh.
    touched: set[int]


@dataclass(slots=True)
class EmailFacts:
    id: int
    lead_id: int
    to_email: str
    sent_at: datetime | None


@dataclass(slots=True)
class BatchContext:
    """What the database says about a batch's emails, read in the batch's transaction."""

    emails: dict[int, EmailFacts]
    links: dict[tuple[int, int], str]  # redirectable destinations by (email, position)
    # Stored hits per key from the start of the window to the batch's latest hit, in order.
    stored: dict[RepeatKey, list[datetime]]
    unsubscribed: set[int]  # emails that already have an unsubscribe event


@dataclass(slots=True)
class BatchPlan:
    rows: list[tuple[Any, ...]]  # email_events rows, EVENT_COLUMNS order
    outcomes: list[Outcome]
    touched: set[int]
    unsubscribes: list[EmailFacts]  # addresses to suppress, sequences to stop


def repeat_key(hit: Hit) -> RepeatKey:
    return (hit.email_id, hit.kind, hit.link_position, hit.ip_network, hit.user_agent)


def plan_batch(
    hits: Sequence[Hit],
    ctx: BatchContext,
    rules: BotRules,
    earlier: Sequence[datetime | None] | None = None,
) -> BatchPlan:
    """Decide each hit's fate (404, or an event flagged by the rules) without touching the
    database; hits are taken in arrival order, so a later one can repeat an earlier one.
    `earlier[i]`: the latest hit with hit i's repeat key in batches still being committed
    (not visible to this transaction), known to the writer. Only hits at or before a hit's
    time make it a repeat (as in `prejudge` and the PostgreSQL statement)."""
    latest: dict[RepeatKey, datetime] = {}  # hits of this batch so far
    plan = BatchPlan([], [], set(), [])
    for i, hit in enumerate(hits):
        email = ctx.emails.get(hit.email_id)
        if email is None:
            plan.outcomes.append(NOT_FOUND)
            continue
        if hit.kind == "unsubscribe":
            # Suppressing and stopping are idempotent; the event is recorded once per email.
            plan.unsubscribes.append(email)
            if email.id not in ctx.unsubscribed:
                ctx.unsubscribed.add(email.id)
                plan.rows.append(_row(hit, None))
            plan.outcomes.append(Outcome(recorded=True))
            continue
        url = None
        if hit.kind == "click":
            if hit.link_position is not None:
                url = ctx.links.get((hit.email_id, hit.link_position))
            if url is None:
                plan.outcomes.append(NOT_FOUND)
                continue
        key = repeat_key(hit)
        previous = latest.get(key)
        in_flight = earlier[i] if earlier is not None else None
        if in_flight is not None and (previous is None or in_flight > previous):
            previous = in_flight
        if previous is None or hit.occurred_at > previous:
            latest[key] = hit.occurred_at
        if previous is not None and previous > hit.occurred_at:
            previous = None
        before = _at_or_before(ctx.stored.get(key), hit.occurred_at)
        if before is not None and (previous is None or before > previous):
            previous = before
        reason = rules.machine_reason(
            kind=hit.kind, method=hit.method, user_agent=hit.user_agent,
            client_ip=hit.client_ip, occurred_at=hit.occurred_at, sent_at=email.sent_at,
            last_seen_at=previous,
        )
        plan.rows.append(_row(hit, reason))
        plan.touched.add(hit.email_id)
        plan.outcomes.append(Outcome(recorded=True, redirect_url=url, machine_reason=reason))
    return plan


def _at_or_before(times: list[datetime] | None, at: datetime) -> datetime | None:
    """The latest of `times` (in order) at or before `at`."""
    if not times:
        return None
    i = bisect_right(times, at)
    return times[i - 1] if i else None


def repeat_since(hits: Sequence[Hit], rules: BotRules) -> datetime:
    """Stored hits from this instant on can make one of `hits` a repeat."""
    return min(h.occurred_at for h in hits) - rules.repeat_window


@dataclass(slots=True)
class Prejudged:
    """Per hit of a batch, what Python decides before the database is asked."""

    # The first request-only rule that matched (user agent, network, method, no user agent).
    request_reasons: list[str | None]
    # A hit of the batch or of a batch still in flight makes it a repeat.
    repeated: list[bool]
    # Stored hits from this instant on make it a repeat (None: no need to look).
    repeat_since: list[datetime | None]


def prejudge(
    hits: Sequence[Hit],
    rules: BotRules,
    earlier: Sequence[datetime | None] | None = None,
) -> Prejudged:
    """The verdicts that need no database, for the statement that records the batch; it then
    applies, in the rules' order, the delivery-time rule and the repeat rule against stored
    hits. Hits with one repeat key all name the same email and link, so they are found or
    not found together: an earlier hit of the batch can make a later one a repeat."""
    repeat = rules.repeat
    latest: dict[RepeatKey, datetime] = {}
    out = Prejudged([], [], [])
    for i, hit in enumerate(hits):
        reason = rules.request_reason(hit.kind, hit.method, hit.user_agent, hit.client_ip)
        key = repeat_key(hit)
        previous = latest.get(key)
        in_flight = earlier[i] if earlier is not None else None
        if in_flight is not None and (previous is None or in_flight > previous):
            previous = in_flight
        if previous is None or hit.occurred_at > previous:
            latest[key] = hit.occurred_at
        applies = repeat is not None and hit.kind in repeat.kinds
        repeated = (applies and previous is not None
                    and _ZERO <= hit.occurred_at - previous <= rules.repeat_window)
        out.request_reasons.append(reason)
        out.repeated.append(repeated)
        out.repeat_since.append(
            hit.occurred_at - rules.repeat_window
            if applies and not repeated and reason is None else None
        )
    return out


def record_hits(
    conn: Connection,
    hits: Sequence[Hit],
    rules: BotRules,
    earlier: Sequence[datetime | None] | None = None,
) -> BatchResult:
    """Record `hits` inside the caller's transaction (SQLAlchemy: PostgreSQL or SQLite); one
    outcome per hit, in order."""
    email_ids = {h.email_id for h in hits}
    emails = {
        r.id: EmailFacts(r.id, r.lead_id, r.to_email, r.sent_at)
        for r in conn.execute(
            select(Email.id, Email.lead_id, Email.to_email, Email.sent_at)
            .where(Email.id.in_(email_ids))
        )
    }
    tracked = [h for h in hits if h.kind in TRACKED_KINDS and h.email_id in emails]
    unsubscribes = {h.email_id for h in hits if h.kind == "unsubscribe" and h.email_id in emails}
    ctx = BatchContext(
        emails=emails,
        links=_links(conn, {h.email_id for h in hits if h.kind == "click"} & emails.keys()),
        stored=_recent_hits(conn, tracked, rules) if tracked and rules.repeat else {},
        unsubscribed=_unsubscribed_emails(conn, unsubscribes) if unsubscribes else set(),
    )
    plan = plan_batch(hits, ctx, rules, earlier)
    if plan.unsubscribes:
        with Session(bind=conn) as session:
            for email in plan.unsubscribes:
                suppress(session, email.to_email, "unsubscribed", email_id=email.id)
                stop_sequence(session, email.lead_id, "unsubscribed")
    _append_events(conn, plan.rows)
    return BatchResult(plan.outcomes, plan.touched)


def unsubscribe_state(conn: Connection, email_id: int) -> str | None:
    """None when the email does not exist; "unsubscribed" when its address gets no more
    emails (suppressed, by address or domain, for whatever reason); else "subscribed"."""
    address = conn.scalar(select(Email.to_email).where(Email.id == email_id))
    if address is None:
        return None
    with Session(bind=conn) as session:
        return "unsubscribed" if suppressed_addresses(session, [address]) else "subscribed"


def _row(hit: Hit, machine_reason: str | None) -> tuple[Any, ...]:
    return (hit.email_id, hit.kind, hit.link_position, hit.occurred_at, hit.method,
            hit.user_agent, hit.ip_network, machine_reason is not None, machine_reason)


def _links(conn: Connection, email_ids: set[int]) -> dict[tuple[int, int], str]:
    """The redirectable destinations of these emails' links: http(s) only, whatever was
    stored, so a bad row can never turn the app into a redirector to another scheme."""
    if not email_ids:
        return {}
    rows = conn.execute(
        select(EmailLink.email_id, EmailLink.position, EmailLink.url)
        .where(EmailLink.email_id.in_(email_ids))
    )
    return {(r.email_id, r.position): r.url for r in rows if redirectable(r.url)}


def redirectable(url: str) -> bool:
    # NUL cannot be stored in PostgreSQL text; in Python it is refused here.
    return _REDIRECTABLE.fullmatch(url) is not None and "\x00" not in url


def _recent_hits(
    conn: Connection, hits: list[Hit], rules: BotRules
) -> dict[RepeatKey, list[datetime]]:
    """The stored hits per repeat key, in time order, from the start of the repeat window of
    the earliest of these hits to the latest of them."""
    rows = conn.execute(
        select(EmailEvent.email_id, EmailEvent.kind, EmailEvent.link_position,
               EmailEvent.ip_network, EmailEvent.user_agent, EmailEvent.occurred_at)
        .where(EmailEvent.email_id.in_({h.email_id for h in hits}),
               EmailEvent.kind.in_(TRACKED_KINDS),
               EmailEvent.occurred_at >= repeat_since(hits, rules),
               EmailEvent.occurred_at <= max(h.occurred_at for h in hits))
        .order_by(EmailEvent.occurred_at)
    )
    stored: dict[RepeatKey, list[datetime]] = {}
    for r in rows:
        stored.setdefault((r[0], r[1], r[2], r[3], r[4]), []).append(as_utc(r[5]))
    return stored


def _unsubscribed_emails(conn: Connection, email_ids: set[int]) -> set[int]:
    rows = conn.execute(
        select(EmailEvent.email_id).distinct()
        .where(EmailEvent.email_id.in_(email_ids),
               EmailEvent.kind == "unsubscribe")
    )
    return {r[0] for r in rows}


def _append_events(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    unsubscribes = [r for r in rows if r[1] == "unsubscribe"]
    if unsubscribes:
        # One per email (a unique partial index): another app process may have recorded the
        # same unsubscribe a moment ago.
        stmt = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(EmailEvent)
        conn.execute(stmt.on_conflict_do_nothing(
            index_elements=["email_id"], index_where=EmailEvent.kind == "unsubscribe"),
            [dict(zip(EVENT_COLUMNS, row, strict=True)) for row in unsubscribes])
        rows = [r for r in rows if r[1] != "unsubscribe"]
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        # COPY: one round trip for the whole batch, the cheapest insert PostgreSQL has.
        driver = conn.connection.driver_connection
        assert driver is not None
        with driver.cursor() as cur, cur.copy(COPY_SQL) as copy:
            for row in rows:
                copy.write_row(row)
        return
    conn.execute(insert(EmailEvent),
                 [dict(zip(EVENT_COLUMNS, row, strict=True)) for row in rows])
