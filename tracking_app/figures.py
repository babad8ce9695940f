"""Engagement figures derived from email_events, human opens and clicks only: each email's
open/click counts, first open/click and machine-event count; each lead's and campaign's emails
opened and clicked; each campaign's emails replied. Recomputed from the events, never
incremented, so a refresh is idempotent and can run any time (the tracking app refreshes the
emails it touched; `refresh_engagement()` with no ids repairs everything, for a scheduled flow).

An email counts as opened when a human opened or clicked it (a click implies the email was
read even when its images were blocked) and as clicked when a human clicked it. `emails.status`
keeps meaning delivery state; the seed's `opened`/`clicked` statuses are `seed_status()`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    bindparam,
    case,
    distinct,
    func,
    or_,
    select,
    text,
    union,
    update,
)

from models import Campaign, Email, EmailEvent, Lead
from models.db import get_engine

REFRESH_LOCK_KEY = 0x7AC4E5  # pg_advisory_xact_lock key: one refresh at a time
_CHUNK = 1000
# open_count, first_opened_at, click_count, first_clicked_at, machine_event_count
Figures = tuple[int, datetime | None, int, datetime | None, int]
_NO_EVENTS: Figures = (0, None, 0, None, 0)


@dataclass(frozen=True)
class RefreshResult:
    """How many rows of each table the refresh changed."""

    emails: int
    leads: int
    campaigns: int


def seed_status() -> ColumnElement[str]:
    """The seed's email status as an SQL expression: `clicked` or `opened` for a sent email a
    human clicked or opened, else the delivery status."""
    sent = Email.status == "sent"
    return case(
        (and_(sent, Email.click_count > 0), "clicked"),
        (and_(sent, Email.open_count > 0), "opened"),
        else_=Email.status,
    )


def refresh_engagement(
    db_url: str | None = None, email_ids: Iterable[int] | None = None
) -> RefreshResult:
    """Recompute the figures of these emails (all emails when None) and of their leads and
    campaigns, in one transaction."""
    with get_engine(db_url).begin() as conn:
        return refresh_figures(conn, email_ids)


def refresh_figures(conn: Connection, email_ids: Iterable[int] | None) -> RefreshResult:
    """`refresh_engagement` inside the caller's transaction."""
    if conn.dialect.name == "postgresql":
        # Two refreshes computed from different snapshots could otherwise write an older
        # figure after a newer one.
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": REFRESH_LOCK_KEY})
    else:
        # SQLite: take the write lock before reading, for the same reason.
        conn.execute(text("DELETE FROM email_events WHERE 0"))
    full = email_ids is None
    ids = sorted(_all_engaged_emails(conn) if email_ids is None else set(email_ids))
    emails_changed = 0
    leads: set[int] = set()
    campaigns: set[int] = set()
    for chunk in _chunks(ids):
        n, chunk_leads, chunk_campaigns = _refresh_emails(conn, chunk)
        emails_changed += n
        leads |= chunk_leads
        campaigns |= chunk_campaigns
    if full:
        leads |= _engaged_leads(conn)
        campaigns |= set(conn.scalars(select(Campaign.id)))
    return RefreshResult(
        emails=emails_changed,
        leads=sum(_refresh_leads(conn, chunk) for chunk in _chunks(sorted(leads))),
        campaigns=sum(_refresh_campaigns(conn, chunk) for chunk in _chunks(sorted(campaigns))),
    )


def _chunks(ids: list[int]) -> Iterator[list[int]]:
    for i in range(0, len(ids), _CHUNK):
        yield ids[i : i + _CHUNK]


def _aware(ts: datetime | None) -> datetime | None:
    # SQLite returns stored UTC instants without their zone.
    return ts.replace(tzinfo=UTC) if ts is not None and ts.tzinfo is None else ts


def _engaged(figures: Figures) -> tuple[bool, bool]:
    opened_or_clicked = figures[0] > 0 or figures[2] > 0
    return opened_or_clicked, figures[2] > 0


def _all_engaged_emails(conn: Connection) -> set[int]:
    with_events = select(EmailEvent.email_id).where(EmailEvent.kind.in_(("open", "click")))
    with_figures = select(Email.id).where(
        or_(Email.open_count > 0, Email.click_count > 0, Email.machine_event_count > 0)
    )
    return set(conn.scalars(union(with_events, with_figures)))


def _engaged_leads(conn: Connection) -> set[int]:
    of_emails = select(Email.lead_id).where(or_(Email.open_count > 0, Email.click_count > 0))
    with_figures = select(Lead.id).where(or_(Lead.emails_opened > 0, Lead.emails_clicked > 0))
    return set(conn.scalars(union(of_emails, with_figures)))


def _event_figures(conn: Connection, ids: list[int]) -> dict[int, Figures]:
    rows = conn.execute(
        select(EmailEvent.email_id, EmailEvent.kind, EmailEvent.is_machine, func.count(),
               func.min(EmailEvent.occurred_at))
        .where(EmailEvent.email_id.in_(ids), EmailEvent.kind.in_(("open", "click")))
        .group_by(EmailEvent.email_id, EmailEvent.kind, EmailEvent.is_machine)
    )
    figures: dict[int, list[Any]] = {}
    for email_id, kind, is_machine, count, first in rows:
        f = figures.setdefault(email_id, list(_NO_EVENTS))
        if is_machine:
            f[4] += count
        elif kind == "open":
            f[0], f[1] = count, _aware(first)
        else:
            f[2], f[3] = count, _aware(first)
    return {k: (v[0], v[1], v[2], v[3], v[4]) for k, v in figures.items()}


def _refresh_emails(conn: Connection, ids: list[int]) -> tuple[int, set[int], set[int]]:
    """Rows changed, leads whose opened/clicked emails may have changed, campaigns touched."""
    wanted = _event_figures(conn, ids)
    current = conn.execute(
        select(Email.id, Email.lead_id, Email.campaign_id, Email.open_count,
               Email.first_opened_at, Email.click_count, Email.first_clicked_at,
               Email.machine_event_count)
        .where(Email.id.in_(ids))
    )
    updates: list[dict[str, Any]] = []
    leads: set[int] = set()
    campaigns: set[int] = set()
    for row in current:
        want = wanted.get(row.id, _NO_EVENTS)
        have: Figures = (row.open_count, _aware(row.first_opened_at), row.click_count,
                         _aware(row.first_clicked_at), row.machine_event_count)
        campaigns.add(row.campaign_id)
        if want == have:
            continue
        if _engaged(want) != _engaged(have):
            leads.add(row.lead_id)
        updates.append({"b_id": row.id, "b_open": want[0], "b_first_open": want[1],
                        "b_click": want[2], "b_first_click": want[3], "b_machine": want[4]})
    if updates:
        conn.execute(
            update(Email).where(Email.id == bindparam("b_id")).values(
                open_count=bindparam("b_open"), first_opened_at=bindparam("b_first_open"),
                click_count=bindparam("b_click"), first_clicked_at=bindparam("b_first_click"),
                machine_event_count=bindparam("b_machine"),
            ),
            updates,
        )
    return len(updates), leads, campaigns


def _opened_clicked(group_by: Any) -> Any:
    opened = or_(Email.open_count > 0, Email.click_count > 0)
    return select(
        group_by,
        func.sum(case((opened, 1), else_=0)),
        func.sum(case((Email.click_count > 0, 1), else_=0)),
    ).group_by(group_by)


def _refresh_leads(conn: Connection, ids: list[int]) -> int:
    counts = {
        r[0]: (int(r[1] or 0), int(r[2] or 0))
        for r in conn.execute(_opened_clicked(Email.lead_id).where(Email.lead_id.in_(ids)))
    }
    updates = [
        {"b_id": r.id, "b_opened": want[0], "b_clicked": want[1]}
        for r in conn.execute(
            select(Lead.id, Lead.emails_opened, Lead.emails_clicked).where(Lead.id.in_(ids))
        )
        if (want := counts.get(r.id, (0, 0))) != (r.emails_opened, r.emails_clicked)
    ]
    if updates:
        conn.execute(
            update(Lead).where(Lead.id == bindparam("b_id")).values(
                emails_opened=bindparam("b_opened"), emails_clicked=bindparam("b_clicked")
            ),
            updates,
        )
    return len(updates)


def _refresh_campaigns(conn: Connection, ids: list[int]) -> int:
    counts = {
        r[0]: (int(r[1] or 0), int(r[2] or 0))
        for r in conn.execute(
            _opened_clicked(Email.campaign_id).where(Email.campaign_id.in_(ids))
        )
    }
    replied = {
        r[0]: int(r[1])
        for r in conn.execute(
            select(Email.campaign_id, func.count(distinct(EmailEvent.email_id)))
            .join(EmailEvent, EmailEvent.email_id == Email.id)
            .where(Email.campaign_id.in_(ids), EmailEvent.kind == "reply")
            .group_by(Email.campaign_id)
        )
    }
    updates = []
    for r in conn.execute(
        select(Campaign.id, Campaign.emails_opened, Campaign.emails_clicked,
               Campaign.emails_replied).where(Campaign.id.in_(ids))
    ):
        want = (*counts.get(r.id, (0, 0)), replied.get(r.id, 0))
        if want != (r.emails_opened, r.emails_clicked, r.emails_replied):
            updates.append({"b_id": r.id, "b_opened": want[0], "b_clicked": want[1],
                            "b_replied": want[2]})
    if updates:
        conn.execute(
            update(Campaign).where(Campaign.id == bindparam("b_id")).values(
                emails_opened=bindparam("b_opened"), emails_clicked=bindparam("b_clicked"),
                emails_replied=bindparam("b_replied"),
            ),
            updates,
        )
    return len(updates)
