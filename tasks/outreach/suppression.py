"""The suppression list and stopping a lead's sequence.

Addresses and whole domains can be suppressed (unsubscribed, bounced, complained, manual). The
list is checked when an email is sent, not only when it is queued, so an unsubscribe that
arrives after queueing still stops the next step."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import CursorResult, Table, bindparam, case, or_, select, update
from sqlalchemy.orm import Session

from models import CampaignLead, Email, Lead, Suppression
from models.db import insert_ignore

SUPPRESSION_REASONS = ("unsubscribed", "bounced", "complained", "manual")
# Why a sequence stops, and the lead status it leaves (None: the lead's status is kept).
STOP_REASONS: dict[str, str | None] = {
    "replied": "replied",
    "unsubscribed": "unsubscribed",
    "bounced": "bounced",
    "complained": "unsubscribed",
    "suppressed": None,
    "manual": None,
}
PENDING_STATUSES = ("scheduled", "queued")


def normalise_address(address: str) -> str:
    return address.strip().lower()


def normalise_domain(value: str) -> str:
    """A domain as the list stores it, written as people do: `@Acme.Example.` -> `acme.example`
    (stored as given, it would never equal an address's domain and so block nothing)."""
    return normalise_address(value).removeprefix("@").rstrip(".")


def address_domain(address: str) -> str:
    return normalise_address(address).rpartition("@")[2]


def suppressed_addresses(session: Session, addresses: Iterable[str]) -> set[str]:
    """Those of `addresses` (as given) that are suppressed, by address or by domain."""
    given = {a: normalise_address(a) for a in addresses}
    if not given:
        return set()
    norms = set(given.values())
    domains = {address_domain(a) for a in norms}
    rows = session.execute(
        select(Suppression.kind, Suppression.value).where(
            or_(
                (Suppression.kind == "address") & Suppression.value.in_(norms),
                (Suppression.kind == "domain") & Suppression.value.in_(domains),
            )
        )
    ).all()
    blocked_addresses = {v for k, v in rows if k == "address"}
    blocked_domains = {v for k, v in rows if k == "domain"}
    return {
        raw for raw, norm in given.items()
        if norm in blocked_addresses or address_domain(norm) in blocked_domains
    }


def suppress(
    session: Session,
    value: str,
    reason: str,
    *,
    kind: str = "address",
    email_id: int | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Add an address or domain to the list; suppressing it again changes nothing."""
    if reason not in SUPPRESSION_REASONS:
        raise ValueError(f"unknown suppression reason {reason!r}")
    if kind not in ("address", "domain"):
        raise ValueError(f"unknown suppression kind {kind!r}")
    normalised = normalise_address(value)
    if kind == "domain":
        normalised = normalise_domain(value)
        if not normalised or "@" in normalised:
            raise ValueError(f"not a domain to suppress: {value!r}")
    row = {"kind": kind, "value": normalised, "reason": reason,
           "email_id": email_id, "details": details or {}}
    insert_ignore(session, Suppression.__table__, [row], ["kind", "value"])


def stop_sequence(session: Session, lead_id: int, reason: str) -> int:
    """Cancel every pending step of the lead in every campaign, mark its campaign links
    stopped and, for replies, unsubscribes and bounces, set the lead's status. Returns the
    number of emails cancelled. Idempotent."""
    if reason not in STOP_REASONS:
        raise ValueError(f"unknown stop reason {reason!r}")
    cancelled = cast(CursorResult[Any], session.execute(
        update(Email)
        .where(Email.lead_id == lead_id, Email.status.in_(PENDING_STATUSES))
        .values(status="cancelled", last_error=f"sequence stopped: {reason}")
        .execution_options(synchronize_session=False)
    )).rowcount
    session.execute(
        update(CampaignLead)
        .where(CampaignLead.lead_id == lead_id, CampaignLead.status.in_(("pending", "active")))
        .values(status="stopped", stop_reason=reason)
        .execution_options(synchronize_session=False)
    )
    lead_status = STOP_REASONS[reason]
    if lead_status is not None:
        session.execute(
            update(Lead).where(Lead.id == lead_id).values(status=lead_status)
            .execution_options(synchronize_session=False)
        )
    return int(cancelled or 0)


def _later_steps_note(step_number: int, why: str) -> str:
    return f"sequence stopped: step {step_number} {why}"


def cancel_later_steps(session: Session, steps: Iterable[tuple[int, int, int]], why: str) -> int:
    """A step that did not go out (`why`: failed, review) ends the lead's sequence in that
    campaign: its pending later steps are cancelled. `steps` are (campaign, lead, step number);
    returns how many emails were cancelled."""
    rows = [{"c": c, "l": lead, "n": n, "note": _later_steps_note(n, why)}
            for c, lead, n in dict.fromkeys(steps)]
    if not rows:
        return 0
    emails = cast(Table, Email.__table__)
    result = session.execute(
        emails.update().where(
            emails.c.campaign_id == bindparam("c"), emails.c.lead_id == bindparam("l"),
            emails.c.step_number > bindparam("n"),
            # IN (...) expands per call, which an executemany cannot do.
            or_(*(emails.c.status == s for s in PENDING_STATUSES)),
        ).values(status="cancelled", last_error=bindparam("note")),
        rows,
    )
    return int(cast(CursorResult[Any], result).rowcount or 0)


def stop_links(session: Session, pairs: Iterable[tuple[int, int]], reason: str) -> None:
    """Mark these (campaign, lead) links stopped, unless they already ended."""
    rows = [{"c": c, "l": lead} for c, lead in dict.fromkeys(pairs)]
    if rows:
        links = cast(Table, CampaignLead.__table__)
        session.execute(
            links.update().where(links.c.campaign_id == bindparam("c"),
                                 links.c.lead_id == bindparam("l"),
                                 or_(links.c.status == "pending",
                                     links.c.status == "active"))
            .values(status="stopped", stop_reason=reason),
            rows,
        )


def restore_later_steps(session: Session, steps: Iterable[tuple[int, int, int]],
                        why: str) -> None:
    """Undo `cancel_later_steps` for these steps (a person requeued or confirmed them): the
    later steps it cancelled are pending again, unless the lead's link stopped meanwhile
    (a reply, an unsubscribe...)."""
    rows = [{"c": c, "l": lead, "n": n, "note": _later_steps_note(n, why)}
            for c, lead, n in dict.fromkeys(steps)]
    if not rows:
        return
    emails, links = cast(Table, Email.__table__), cast(Table, CampaignLead.__table__)
    still_open = select(links.c.id).where(
        links.c.campaign_id == emails.c.campaign_id, links.c.lead_id == emails.c.lead_id,
        or_(links.c.status == "pending", links.c.status == "active")).exists()
    session.execute(
        emails.update().where(
            emails.c.campaign_id == bindparam("c"), emails.c.lead_id == bindparam("l"),
            emails.c.step_number > bindparam("n"), emails.c.status == "cancelled",
            emails.c.last_error == bindparam("note"), still_open,
        ).values(status=case((emails.c.composed_at.is_(None), "scheduled"), else_="queued"),
                 last_error=None),
        rows,
    )
