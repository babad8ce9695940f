"""Records a batch of hits in one transaction: looks up the emails and links they name, flags
machine-made hits, appends the events (COPY on PostgreSQL, executemany on SQLite) and applies
unsubscribes. Nothing here updates a counter: figures are derived later (figures.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, func, insert, select
from sqlalchemy.orm import Session

from models import Email, EmailEvent, EmailLink
from tasks.outreach.suppression import stop_sequence, suppress
from tracking_app.bots import BotRules
from tracking_app.hits import NOT_FOUND, Hit, Outcome

EVENT_COLUMNS = (
    "email_id", "kind", "link_position", "occurred_at", "method", "user_agent", "ip_network",
    "is_machine", "machine_reason",
)
_COPY_SQL = f"COPY email_events ({', '.join(EVENT_COLUMNS)}) FROM STDIN"
TRACKED_KINDS = ("open", "click")
# (email_id, kind, link_position, ip_network): what makes a later hit a repeat of an earlier.
RepeatKey = tuple[int, str, int | None, str | None]


@dataclass(slots=True)
class BatchResult:
    outcomes: list[Outcome]
    # Emails that got an open or click: their derived figures are due for a refresh.
    touched: set[int]


def record_hits(conn: Connection, hits: Sequence[Hit], rules: BotRules) -> BatchResult:
    """Record `hits` inside the caller's transaction; one outcome per hit, in order."""
    email_ids = {h.email_id for h in hits}
    emails = {
        row.id: row
        for row in conn.execute(
            select(Email.id, Email.lead_id, Email.to_email, Email.sent_at)
            .where(Email.id.in_(email_ids))
        )
    }
    links = _links(conn, {h.email_id for h in hits if h.kind == "click" and h.email_id in emails})
    tracked = [h for h in hits if h.kind in TRACKED_KINDS and h.email_id in emails]
    last_seen = _recent_hits(conn, tracked, rules) if tracked and rules.repeat else {}
    unsubscribes = [h for h in hits if h.kind == "unsubscribe" and h.email_id in emails]
    unsubscribed = _unsubscribed_emails(conn, unsubscribes) if unsubscribes else set()

    rows: list[tuple[Any, ...]] = []
    outcomes: list[Outcome] = []
    touched: set[int] = set()
    session: Session | None = None
    for hit in hits:
        email = emails.get(hit.email_id)
        if email is None:
            outcomes.append(NOT_FOUND)
            continue
        if hit.kind == "unsubscribe":
            # Suppressing and stopping are idempotent; the event is recorded once per email.
            session = session or Session(bind=conn)
            suppress(session, email.to_email, "unsubscribed", email_id=email.id)
            stop_sequence(session, email.lead_id, "unsubscribed")
            if email.id not in unsubscribed:
                unsubscribed.add(email.id)
                rows.append(_row(hit, None))
            outcomes.append(Outcome(recorded=True))
            continue
        url = None
        if hit.kind == "click":
            if hit.link_position is not None:
                url = links.get((hit.email_id, hit.link_position))
            if url is None:
                outcomes.append(NOT_FOUND)
                continue
        key: RepeatKey = (hit.email_id, hit.kind, hit.link_position, hit.ip_network)
        reason = rules.machine_reason(
            kind=hit.kind, method=hit.method, user_agent=hit.user_agent,
            client_ip=hit.client_ip, occurred_at=hit.occurred_at, sent_at=email.sent_at,
            last_seen_at=last_seen.get(key),
        )
        previous = last_seen.get(key)
        if previous is None or hit.occurred_at > previous:
            last_seen[key] = hit.occurred_at
        rows.append(_row(hit, reason))
        touched.add(hit.email_id)
        outcomes.append(Outcome(recorded=True, redirect_url=url, machine_reason=reason))
    if session is not None:
        session.close()
    _append_events(conn, rows)
    return BatchResult(outcomes, touched)


def email_exists(conn: Connection, email_id: int) -> bool:
    return conn.execute(select(Email.id).where(Email.id == email_id)).first() is not None


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
    return {(r.email_id, r.position): r.url for r in rows if _redirectable(r.url)}


def _redirectable(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return (parts.scheme in ("http", "https") and bool(parts.netloc)
            and not any(c in url for c in "\r\n\t\x00"))


def _recent_hits(
    conn: Connection, hits: list[Hit], rules: BotRules
) -> dict[RepeatKey, datetime]:
    """The latest stored hit per repeat key within the repeat window before these hits."""
    since = min(h.occurred_at for h in hits) - rules.repeat_window
    latest = func.max(EmailEvent.occurred_at)
    rows = conn.execute(
        select(EmailEvent.email_id, EmailEvent.kind, EmailEvent.link_position,
               EmailEvent.ip_network, latest)
        .where(EmailEvent.email_id.in_({h.email_id for h in hits}),
               EmailEvent.kind.in_(TRACKED_KINDS), EmailEvent.occurred_at >= since)
        .group_by(EmailEvent.email_id, EmailEvent.kind, EmailEvent.link_position,
                  EmailEvent.ip_network)
    )
    return {(r[0], r[1], r[2], r[3]): r[4] for r in rows}


def _unsubscribed_emails(conn: Connection, hits: list[Hit]) -> set[int]:
    rows = conn.execute(
        select(EmailEvent.email_id).distinct()
        .where(EmailEvent.email_id.in_({h.email_id for h in hits}),
               EmailEvent.kind == "unsubscribe")
    )
    return {r[0] for r in rows}


def _append_events(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        # COPY: one round trip for the whole batch, the cheapest insert PostgreSQL has.
        driver = conn.connection.driver_connection
        assert driver is not None
        with driver.cursor() as cur, cur.copy(_COPY_SQL) as copy:
            for row in rows:
                copy.write_row(row)
        return
    conn.execute(insert(EmailEvent),
                 [dict(zip(EVENT_COLUMNS, row, strict=True)) for row in rows])
