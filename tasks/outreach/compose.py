"""Composing emails: template + lead facts (+ AI opening) -> subject, text and HTML bodies with
tracked links, the open pixel and the sender/unsubscribe footer, then written to the queue.

`compose` is pure. `compose_emails` / `compose_due_emails` take `scheduled` rows, compose them
in batches and move them to `queued` with one guarded UPDATE per batch
(`WHERE status = 'scheduled'`), so two composers running at once never both win an email."""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, text, update
from sqlalchemy.orm import Session

from clients.http import ApiCall, QuotaExceededError
from leadflow.settings import Settings, get_settings
from leadflow.tokens import click_url, open_url, unsubscribe_url
from models import Campaign, Email, EmailLink, Template
from models.db import insert_ignore, session_scope
from tasks.outreach.message import make_message_id
from tasks.outreach.personalise import Opening, fallback, personal_openings
from tasks.outreach.routing import load_lead_facts, route_lead
from tasks.outreach.suppression import cancel_later_steps, stop_links
from tasks.outreach.templates import (
    CompiledTemplate,
    TemplateError,
    compile_template,
    first_name,
    render_template,
)
from tasks.usage import (
    Plan,
    Reservation,
    ensure_api_configs,
    reserve_quota,
    settle_quota,
)

EMAILS = cast(Table, Email.__table__)
# Emails composed per read-compose-write round: bounds memory and the length of each
# write transaction.
COMPOSE_BATCH = 1000
# OpenAI tokens set aside per AI opening before the calls (prompt ~300 + at most 120 in the
# reply, rounded up); what the calls really used is what api_usage records.
AI_TOKENS_PER_OPENING = 500
AI_LIMIT_NOTE = "openai monthly token limit reached (api_configs)"


@dataclass(frozen=True)
class TemplateText:
    subject: str
    body_text: str
    body_html: str | None = None


@dataclass(frozen=True)
class ComposeInputs:
    email_id: int
    campaign_id: int
    lead_id: int
    step_number: int
    template: TemplateText | CompiledTemplate
    facts: Mapping[str, Any]  # routing.lead_facts of the lead
    sender_name: str
    sender_email: str
    sender_postal_address: str
    opening: str | None = None  # the AI opening; None = the template's fallback


@dataclass(frozen=True)
class ComposedEmail:
    subject: str
    body_text: str
    body_html: str
    message_id: str
    links: list[str]  # original destinations; index = link position in the click URLs


@dataclass
class ComposeReport:
    composed: int = 0
    ai_used: int = 0
    ai_fallback: int = 0
    ai_tokens: int = 0
    # Not `scheduled` when their turn came: composed already (by us or a concurrent run),
    # cancelled, or unknown ids.
    not_pending: int = 0
    # Email id -> why it could not be composed (the row is set `failed` with this last_error).
    skipped: dict[int, str] = field(default_factory=dict)

    def add(self, other: ComposeReport) -> None:
        self.composed += other.composed
        self.ai_used += other.ai_used
        self.ai_fallback += other.ai_fallback
        self.ai_tokens += other.ai_tokens
        self.not_pending += other.not_pending
        self.skipped.update(other.skipped)


def template_values(facts: Mapping[str, Any], sender_name: str, sender_email: str
                    ) -> dict[str, str | None]:
    """The template variables of one email (None where the lead has no value: the template's
    fallback applies)."""
    industry = facts.get("industry")
    if industry and industry == industry.title():
        # "Hair Salon" reads as a name mid-sentence; "hair salon owners" does not.
        industry = industry.lower()
    return {
        "companyName": facts.get("company_name"),
        "contactName": facts.get("contact_name"),
        "firstName": first_name(facts.get("contact_name")),
        "industry": industry,
        "city": facts.get("city"),
        "bookingTool": facts.get("competitor_tool") or facts.get("booking_tool"),
        "website": facts.get("website"),
        "domain": facts.get("domain"),
        "senderName": sender_name,
        "senderEmail": sender_email,
    }


def _footer_text(sender_name: str, postal_address: str, unsubscribe: str) -> str:
    return (f"\n\n--\n{sender_name}\n{postal_address}\n"
            f"Not interested? Unsubscribe: {unsubscribe}\n")


def _footer_html(sender_name: str, postal_address: str, unsubscribe: str, pixel: str) -> str:
    e = html.escape
    return (
        '\n<p style="margin-top:24px;font-size:12px;color:#666666">'
        f"{e(sender_name)} &middot; {e(postal_address)}<br>\n"
        f'Not interested? <a href="{e(unsubscribe)}">Unsubscribe</a></p>\n'
        f'<img src="{e(pixel)}" width="1" height="1" alt="" style="display:block;border:0">'
    )


def _append_html(body: str, tail: str) -> str:
    # A full HTML document keeps its footer inside <body>.
    at = body.lower().rfind("</body>")
    return body + tail if at < 0 else body[:at] + tail + "\n" + body[at:]


def compose(inputs: ComposeInputs) -> ComposedEmail:
    """The finished content of one email. Raises TemplateError for a broken template."""
    template = inputs.template
    if isinstance(template, TemplateText):
        template = compile_template(template.subject, template.body_text, template.body_html)
    values = template_values(inputs.facts, inputs.sender_name, inputs.sender_email)
    clicks = [click_url(inputs.email_id, i) for i in range(len(template.links))]
    rendered = render_template(template, values, clicks, inputs.opening)
    unsubscribe = unsubscribe_url(inputs.email_id)
    sender = " ".join(inputs.sender_name.split())
    address = " ".join(inputs.sender_postal_address.split())
    return ComposedEmail(
        subject=rendered.subject,
        body_text=rendered.body_text + _footer_text(sender, address, unsubscribe),
        body_html=_append_html(rendered.body_html, _footer_html(
            sender, address, unsubscribe, open_url(inputs.email_id))),
        message_id=make_message_id(inputs.campaign_id, inputs.lead_id, inputs.step_number,
                                   inputs.sender_email),
        links=list(template.links),
    )


# --- the queue: scheduled -> queued ---------------------------------------------------------


@dataclass(frozen=True)
class _Pending:
    id: int
    campaign_id: int
    lead_id: int
    step_id: int
    step_number: int
    scenario: str | None


def _pick_template(templates: Mapping[tuple[int, str | None], Template], step_id: int,
                   scenario: str | None) -> Template | None:
    return templates.get((step_id, scenario)) or templates.get((step_id, None))


def _reserve_openings(db_url: str, settings: Settings, wanted: int) -> Reservation:
    """Set aside the OpenAI tokens of `wanted` openings (one short transaction, so that
    composers working at once cannot together pass the monthly limit); a reservation of
    nothing when there are none or the limit is reached."""
    if not wanted:
        return Reservation("openai", 0)
    with session_scope(db_url) as session:
        ensure_api_configs(session, {"openai": Plan(
            monthly_limit=settings.openai_monthly_token_limit,
            cost_per_unit=settings.openai_price_per_1k_tokens / 1000, unit="token",
        )})
        try:
            return reserve_quota(session, "openai", wanted * AI_TOKENS_PER_OPENING)
        except QuotaExceededError:
            return Reservation("openai", 0)


def _ai_calls(openings: Mapping[int, Opening]) -> list[ApiCall]:
    return [c for o in openings.values() if (c := o.api_call()) is not None]


_PG_WRITE = text("""UPDATE emails AS e
    SET subject = v.subject, body_text = v.body_text, body_html = v.body_html,
        message_id = v.message_id, ai_status = v.ai_status, ai_note = v.ai_note,
        status = 'queued', composed_at = :now, updated_at = :now, last_error = NULL
    FROM unnest(CAST(:id AS bigint[]), CAST(:subject AS text[]), CAST(:body_text AS text[]),
                CAST(:body_html AS text[]), CAST(:message_id AS text[]),
                CAST(:ai_status AS text[]), CAST(:ai_note AS text[]))
         AS v(id, subject, body_text, body_html, message_id, ai_status, ai_note)
    WHERE e.id = v.id AND e.status = 'scheduled'
    RETURNING e.id
""")


def _write(session: Session, rows: list[dict[str, Any]], now: datetime) -> set[int]:
    """Store composed content on rows still `scheduled`; returns the ids this call won."""
    if not rows:
        return set()
    table = EMAILS
    fields = ("subject", "body_text", "body_html", "message_id", "ai_status", "ai_note")
    done = {"status": "queued", "composed_at": now, "updated_at": now, "last_error": None}
    if session.get_bind().dialect.name == "postgresql":
        # One statement per batch, its rows as arrays: constant SQL (no per-row compiling)
        # and 8 parameters however many rows.
        params: dict[str, Any] = {f: [r[f] for r in rows] for f in ("id", *fields)}
        return set(session.scalars(_PG_WRITE, {**params, "now": now}))
    # SQLite (no arrays to unnest): one statement per row, each returning whether it won;
    # it runs in-process, so a statement per row is cheap.
    stmt = (
        update(table)
        .where(table.c.id == bindparam("b_id"), table.c.status == "scheduled")
        .values({**{f: bindparam(f"b_{f}") for f in fields}, **done})
        .returning(table.c.id)
    )
    won: set[int] = set()
    for r in rows:
        won.update(session.scalars(stmt, {f"b_{k}": v for k, v in r.items()}))
    return won


def _fail(session: Session, skipped: Mapping[int, str], now: datetime) -> None:
    table = EMAILS
    stmt = (update(table)
            .where(table.c.id == bindparam("b_id"), table.c.status == "scheduled")
            .values(status="failed", last_error=bindparam("b_error"), updated_at=now,
                    failed_at=now))
    session.execute(stmt, [{"b_id": i, "b_error": why[:500]} for i, why in skipped.items()])
    # A step that cannot be composed ends the lead's sequence like any failed step.
    failed = [(c, lead, n) for c, lead, n in session.execute(
        select(table.c.campaign_id, table.c.lead_id, table.c.step_number)
        .where(table.c.id.in_(skipped), table.c.status == "failed"))]
    cancel_later_steps(session, failed, "failed")
    stop_links(session, [(c, lead) for c, lead, _ in failed], "failed")


def _compose_batch(db_url: str, ids: list[int], now: datetime, settings: Settings
                   ) -> ComposeReport:
    report = ComposeReport()
    # Read (short transaction; nothing locked while the AI is called).
    with session_scope(db_url) as session:
        pending = [_Pending(*r) for r in session.execute(
            select(Email.id, Email.campaign_id, Email.lead_id, Email.step_id, Email.step_number,
                   Email.scenario)
            .where(Email.id.in_(ids), Email.status == "scheduled").order_by(Email.id)
        )]
        report.not_pending = len(ids) - len(pending)
        if not pending:
            return report
        campaigns = {c.id: c for c in session.scalars(
            select(Campaign).where(Campaign.id.in_({p.campaign_id for p in pending})))}
        templates: dict[tuple[int, str | None], Template] = {}
        for t in session.scalars(select(Template).where(
                Template.step_id.in_({p.step_id for p in pending})).order_by(Template.id)):
            templates.setdefault((t.step_id, t.scenario), t)
        facts = load_lead_facts(session, {p.lead_id for p in pending})

    skipped: dict[int, str] = {}
    work: list[tuple[_Pending, Campaign, CompiledTemplate, dict[str, Any]]] = []
    for p in pending:
        campaign, lead = campaigns.get(p.campaign_id), facts.get(p.lead_id)
        if campaign is None or lead is None:
            skipped[p.id] = "campaign or lead no longer exists"
            continue
        scenario = p.scenario or route_lead(lead).scenario
        template = _pick_template(templates, p.step_id, scenario)
        if template is None:
            skipped[p.id] = (f"no template for step {p.step_number} (scenario {scenario}, "
                             "and no default variant)")
            continue
        try:
            compiled = compile_template(template.subject, template.body_text, template.body_html)
        except TemplateError as exc:
            skipped[p.id] = f"template {template.id} is invalid: {exc}"
            continue
        work.append((p, campaign, compiled, {**lead, "scenario": scenario}))

    # AI openings, per campaign, only where the template has an opening to fill.
    openings: dict[int, Opening] = {}
    asks: dict[int, dict[int, dict[str, Any]]] = defaultdict(dict)
    for p, campaign, compiled, lead in work:
        if campaign.ai_personalisation and compiled.uses_opening:
            asks[campaign.id][p.id] = lead
    reservation = _reserve_openings(db_url, settings, sum(map(len, asks.values())))
    allowed = reservation.units // AI_TOKENS_PER_OPENING
    try:
        for campaign_id, facts_by_email in asks.items():
            granted = list(facts_by_email)[:allowed]
            allowed -= len(granted)
            openings.update({i: fallback(AI_LIMIT_NOTE)
                             for i in facts_by_email if i not in granted})
            if granted:
                openings.update(personal_openings({i: facts_by_email[i] for i in granted},
                                                  campaigns[campaign_id], settings))

        rows: list[dict[str, Any]] = []
        links: dict[int, list[str]] = {}
        for p, campaign, compiled, lead in work:
            opening = openings.get(p.id)
            composed = compose(ComposeInputs(
                p.id, p.campaign_id, p.lead_id, p.step_number, compiled, lead,
                campaign.sender_name, campaign.sender_email, campaign.sender_postal_address,
                opening.text if opening else None,
            ))
            rows.append({
                "id": p.id, "subject": composed.subject[:500], "body_text": composed.body_text,
                "body_html": composed.body_html, "message_id": composed.message_id,
                "ai_status": opening.status if opening else "off",
                "ai_note": opening.note if opening else None,
            })
            links[p.id] = composed.links

        # Write (one transaction): content and status where still scheduled, links of the
        # emails won, failures, and the AI calls made (spent even if another composer won).
        with session_scope(db_url) as session:
            won = _write(session, rows, now)
            link_rows = [{"email_id": i, "position": pos, "url": url}
                         for i in sorted(won) for pos, url in enumerate(links[i])]
            for start in range(0, len(link_rows), 5000):
                insert_ignore(session, EmailLink.__table__, link_rows[start:start + 5000],
                              ["email_id", "position"])
            if skipped:
                _fail(session, skipped, now)
            settle_quota(session, reservation, _ai_calls(openings))  # the rest is free again
    except BaseException:
        # Whatever failed, the AI calls made are metered and the tokens set aside are free
        # again at once (not after the reservation expires).
        with session_scope(db_url) as session:
            settle_quota(session, reservation, _ai_calls(openings))
        raise
    report.composed = len(won)
    report.not_pending += len(rows) - len(won)
    report.skipped = skipped
    report.ai_tokens = sum(o.tokens for o in openings.values())
    report.ai_used = sum(1 for i in won if i in openings and openings[i].status == "used")
    report.ai_fallback = sum(1 for i in won if i in openings and openings[i].status != "used")
    return report


def compose_emails(db_url: str, email_ids: Iterable[int], now: datetime,
                   settings: Settings | None = None) -> ComposeReport:
    """Compose the given emails that are still `scheduled` and queue them (idempotent: a
    second call composes nothing)."""
    settings = settings or get_settings()
    ids = sorted(set(email_ids))
    report = ComposeReport()
    for start in range(0, len(ids), COMPOSE_BATCH):
        report.add(_compose_batch(db_url, ids[start:start + COMPOSE_BATCH], now, settings))
    return report


def compose_due_emails(db_url: str, now: datetime, limit: int | None = None,
                       settings: Settings | None = None) -> ComposeReport:
    """Compose every `scheduled` email due by `now` whose previous step is sent (oldest
    first, at most `limit`), in campaigns that may send (active, or a draft being executed):
    a paused or completed campaign's emails wait, and cost no AI opening."""
    from tasks.outreach.queue import previous_step_sent

    with session_scope(db_url) as session:
        sending = select(Campaign.id).where(Campaign.status.in_(("active", "draft")))
        stmt = (select(Email.id)
                .where(Email.status == "scheduled", Email.scheduled_at <= now,
                       Email.campaign_id.in_(sending), previous_step_sent(EMAILS))
                .order_by(Email.scheduled_at, Email.id))
        ids = list(session.scalars(stmt if limit is None else stmt.limit(limit)))
    return compose_emails(db_url, ids, now, settings)
