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
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    and_,
    any_,
    bindparam,
    case,
    distinct,
    func,
    or_,
    select,
    text,
    true,
    union,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY

from leadflow.settings import get_settings
from models import Campaign, Email, EmailEvent, Lead
from models.db import get_engine
from tracking_app.bots import BotRules, load_rules
from tracking_app.repeats import flag_repeats

REFRESH_LOCK_KEY = 0x7AC4E5  # pg_advisory_xact_lock key: one refresh at a time
_CHUNK = 1000


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
    db_url: str | None = None, email_ids: Iterable[int] | None = None,
    repeats_since: datetime | None = None, rules: BotRules | None = None,
) -> RefreshResult:
    """Recompute the figures of these emails (all emails when None) and of their leads and
    campaigns, in one transaction. With `repeats_since`, first flag the repeats among the
    events from then on that were stored as human (tracking_app/repeats.py; `rules`, default
    the configured bot rules), and refresh their emails too."""
    with get_engine(db_url).begin() as conn:
        return refresh_figures(conn, email_ids, repeats_since, rules)


def refresh_figures(conn: Connection, email_ids: Iterable[int] | None,
                    repeats_since: datetime | None = None,
                    rules: BotRules | None = None) -> RefreshResult:
    """`refresh_engagement` inside the caller's transaction."""
    if conn.dialect.name == "postgresql":
        # Two refreshes computed from different snapshots could otherwise write an older
        # figure after a newer one.
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": REFRESH_LOCK_KEY})
    else:
        # SQLite: take the write lock before reading, for the same reason.
        conn.execute(text("DELETE FROM email_events WHERE 0"))
    full = email_ids is None
    if repeats_since is not None:
        if rules is None:
            rules = load_rules(get_settings().tracking_bot_rules_file)
        flagged = flag_repeats(conn, rules, repeats_since)
        if email_ids is not None:
            email_ids = set(email_ids) | flagged
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


def _among(conn: Connection, column: Any, ids: list[int]) -> ColumnElement[bool]:
    """`column IN ids`: on PostgreSQL one array parameter, not a statement of a thousand
    placeholders for SQLAlchemy to render and psycopg to parse (most of this module's CPU)."""
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam(None, ids, type_=ARRAY(BigInteger)))
    return column.in_(ids)


def _changed(pairs: Iterable[tuple[Any, Any]]) -> ColumnElement[bool]:
    return or_(*(column.is_distinct_from(value) for column, value in pairs))


def _refresh_emails(conn: Connection, ids: list[int]) -> tuple[int, set[int], set[int]]:
    """Rows changed; leads of the emails that became (or stopped being) opened or clicked,
    the only change a lead's figures follow; campaigns of all `ids`. One UPDATE computed by
    the database: the figures never travel through Python (this runs in the tracking app's
    process, every couple of seconds, for every email it recorded a hit of)."""
    tracked = EmailEvent.kind.in_(("open", "click"))
    human_open = and_(EmailEvent.is_machine.is_(False), EmailEvent.kind == "open")
    human_click = and_(EmailEvent.is_machine.is_(False), EmailEvent.kind == "click")
    events = (
        select(
            EmailEvent.email_id,
            func.count().filter(human_open).label("opens"),
            func.min(EmailEvent.occurred_at).filter(human_open).label("first_open"),
            func.count().filter(human_click).label("clicks"),
            func.min(EmailEvent.occurred_at).filter(human_click).label("first_click"),
            func.count().filter(EmailEvent.is_machine.is_(True)).label("machine"),
        )
        .where(_among(conn, EmailEvent.email_id, ids), tracked)
        .group_by(EmailEvent.email_id)
        .subquery()
    )
    # Every email asked about, with zeros where it has no events (a full refresh repairs).
    want = (
        select(
            Email.id,
            func.coalesce(events.c.opens, 0).label("opens"),
            events.c.first_open,
            func.coalesce(events.c.clicks, 0).label("clicks"),
            events.c.first_click,
            func.coalesce(events.c.machine, 0).label("machine"),
            # The figures before this UPDATE (the statement's snapshot), to tell flips.
            (or_(Email.open_count > 0, Email.click_count > 0)).label("was_opened"),
            (Email.click_count > 0).label("was_clicked"),
        )
        .select_from(Email)
        .outerjoin(events, events.c.email_id == Email.id)
        .where(_among(conn, Email.id, ids))
        .subquery()
    )
    columns = {
        Email.open_count: want.c.opens, Email.first_opened_at: want.c.first_open,
        Email.click_count: want.c.clicks, Email.first_clicked_at: want.c.first_click,
        Email.machine_event_count: want.c.machine,
    }
    opened = or_(want.c.opens > 0, want.c.clicks > 0)
    flipped: ColumnElement[bool] = or_(
        opened.is_distinct_from(want.c.was_opened),
        (want.c.clicks > 0).is_distinct_from(want.c.was_clicked),
    )
    if conn.dialect.name == "sqlite":
        # SQLite's RETURNING sees only the updated table: every changed email's lead.
        flipped = true()
    changed = conn.execute(
        update(Email)
        .where(Email.id == want.c.id, _changed(columns.items()))
        .values({column.key: value for column, value in columns.items()})
        .returning(Email.lead_id, flipped)
    ).all()
    of_emails = select(Email.campaign_id).where(_among(conn, Email.id, ids)).distinct()
    campaigns = set(conn.scalars(of_emails))
    return len(changed), {lead_id for lead_id, flip in changed if flip}, campaigns


def _opened_clicked(group_by: Any) -> Any:
    opened = or_(Email.open_count > 0, Email.click_count > 0)
    return select(
        group_by.label("id"),
        func.sum(case((opened, 1), else_=0)).label("opened"),
        func.sum(case((Email.click_count > 0, 1), else_=0)).label("clicked"),
    ).group_by(group_by)


def _refresh_leads(conn: Connection, ids: list[int]) -> int:
    counts = _opened_clicked(Email.lead_id).where(_among(conn, Email.lead_id, ids)).subquery()
    want = (
        select(Lead.id, func.coalesce(counts.c.opened, 0).label("opened"),
               func.coalesce(counts.c.clicked, 0).label("clicked"))
        .select_from(Lead)
        .outerjoin(counts, counts.c.id == Lead.id)
        .where(_among(conn, Lead.id, ids))
        .subquery()
    )
    columns = {Lead.emails_opened: want.c.opened, Lead.emails_clicked: want.c.clicked}
    return conn.execute(
        update(Lead)
        .where(Lead.id == want.c.id, _changed(columns.items()))
        .values({column.key: value for column, value in columns.items()})
    ).rowcount


def _refresh_campaigns(conn: Connection, ids: list[int]) -> int:
    of_campaigns = _among(conn, Email.campaign_id, ids)
    counts = _opened_clicked(Email.campaign_id).where(of_campaigns).subquery()
    replied = (
        select(Email.campaign_id.label("id"),
               func.count(distinct(EmailEvent.email_id)).label("replied"))
        .join(EmailEvent, EmailEvent.email_id == Email.id)
        .where(of_campaigns, EmailEvent.kind == "reply")
        .group_by(Email.campaign_id)
        .subquery()
    )
    want = (
        select(Campaign.id, func.coalesce(counts.c.opened, 0).label("opened"),
               func.coalesce(counts.c.clicked, 0).label("clicked"),
               func.coalesce(replied.c.replied, 0).label("replied"))
        .select_from(Campaign)
        .outerjoin(counts, counts.c.id == Campaign.id)
        .outerjoin(replied, replied.c.id == Campaign.id)
        .where(_among(conn, Campaign.id, ids))
        .subquery()
    )
    columns = {Campaign.emails_opened: want.c.opened, Campaign.emails_clicked: want.c.clicked,
               Campaign.emails_replied: want.c.replied}
    return conn.execute(
        update(Campaign)
        .where(Campaign.id == want.c.id, _changed(columns.items()))
        .values({column.key: value for column, value in columns.items()})
    ).rowcount
