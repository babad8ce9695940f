"""Recording a reply: the lead answered, so its sequence stops and the campaign's figures count
it. Replies arrive outside leadflow (a mailbox, a CRM); this is the one way to tell it."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from models import Email, EmailEvent
from models.db import session_scope, take_write_lock
from tasks.outreach.suppression import normalise_address, stop_sequence


@dataclass(frozen=True)
class ReplyRecorded:
    email_id: int
    lead_id: int
    steps_cancelled: int


def _bracketed(message_id: str) -> str:
    """`<id@host>`, as Message-IDs are stored, whether given with its angle brackets (the
    In-Reply-To header) or without them (as many mail clients and CRMs show it)."""
    return f"<{message_id.strip().strip('<>').strip()}>"


def record_reply(db_url: str, *, address: str | None = None,
                 message_id: str | None = None) -> ReplyRecorded | None:
    """Find the email replied to (by its Message-ID, the `In-Reply-To` of the reply, with or
    without its angle brackets, or else the latest email sent to the address), add a `reply`
    event and stop the lead's sequence.
    Returns None when no sent email matches. Recording the same reply twice adds no event."""
    if not address and not message_id:
        raise ValueError("give the replying address or the Message-ID replied to")
    with session_scope(db_url) as session:
        # The "already recorded?" read must hold until the write (SQLite: the write lock now).
        take_write_lock(session)
        query = select(Email).where(Email.sent_at.is_not(None))
        if message_id:
            query = query.where(Email.message_id == _bracketed(message_id))
        else:
            query = query.where(func.lower(Email.to_email) == normalise_address(address or ""))
        email = session.scalars(query.order_by(Email.sent_at.desc()).limit(1)).first()
        if email is None:
            return None
        already = session.scalar(select(EmailEvent.id).where(
            EmailEvent.email_id == email.id, EmailEvent.kind == "reply"))
        if already is None:
            session.add(EmailEvent(email_id=email.id, kind="reply"))
        cancelled = stop_sequence(session, email.lead_id, "replied")
        recorded = ReplyRecorded(email.id, email.lead_id, cancelled)
    # The campaign's reply count is derived from the events, like opens and clicks.
    from tracking_app.figures import refresh_engagement

    refresh_engagement(db_url, [recorded.email_id])
    return recorded
