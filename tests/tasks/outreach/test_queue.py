"""The send queue's states on PostgreSQL (and SQLite once): enqueueing, claiming inside
sending windows, expired claims, and the embedded default's outbox."""

from __future__ import annotations

import datetime as dt
import threading
from email import message_from_bytes
from email.policy import default as default_policy

from sqlalchemy import select

from models import CampaignLead, Email, Lead
from models.db import session_scope
from tasks.outreach.queue import (
    claim_due_emails,
    drain_queue,
    enqueue_sequences,
    in_send_window,
    release_expired_claims,
    send_claimed_emails,
)
from tasks.outreach.suppression import suppress
from tests.tasks.outreach.mailserver import T0, Outreach

pytest_plugins = ["tests.tasks.outreach.sending_fixtures"]


def _links(db_url: str, campaign_id: int) -> dict[int, CampaignLead]:
    with session_scope(db_url) as s:
        return {c.lead_id: c for c in s.scalars(
            select(CampaignLead).where(CampaignLead.campaign_id == campaign_id))}


def test_enqueue_schedules_every_step_once_and_stops_leads_without_email_or_suppressed(
    outreach_pg: Outreach,
):
    db = outreach_pg.db_url
    cid = outreach_pg.campaign(steps=(0, 3, 5))
    good = outreach_pg.leads(3)
    no_email = outreach_pg.leads(1, prefix="none", email=False)
    blocked = outreach_pg.leads(1, prefix="blocked")
    with session_scope(db) as s:
        suppress(s, "blocked0@DEST0.example", "unsubscribed")

    report = enqueue_sequences(db, cid, good + no_email + blocked + good, T0)

    assert (report.leads, report.linked, report.queued_leads, report.emails_created) == (5, 5, 3, 9)
    assert report.stopped == {"no_email": 1, "suppressed": 1}
    emails = outreach_pg.emails()
    assert {e.lead_id for e in emails.values()} == set(good)
    by_step = {(e.lead_id, e.step_number): e for e in emails.values()}
    for lead in good:
        assert [by_step[(lead, n)].scheduled_at for n in (1, 2, 3)] == [
            T0, T0 + dt.timedelta(days=3), T0 + dt.timedelta(days=8)]
        assert all(by_step[(lead, n)].status == "scheduled" for n in (1, 2, 3))
    links = _links(db, cid)
    assert (links[no_email[0]].status, links[no_email[0]].stop_reason) == ("stopped", "no_email")
    assert (links[blocked[0]].status, links[blocked[0]].stop_reason) == ("stopped", "suppressed")
    assert links[good[0]].status == "pending" and links[good[0]].scenario

    again = enqueue_sequences(db, cid, good + no_email + blocked, T0 + dt.timedelta(hours=1))
    assert (again.linked, again.emails_created) == (0, 0)
    assert len(outreach_pg.emails()) == 9


def test_enqueue_stores_the_routing_decision(outreach_pg: Outreach):
    cid = outreach_pg.campaign()
    lead = outreach_pg.leads(1)
    enqueue_sequences(outreach_pg.db_url, cid, lead, T0)
    link = _links(outreach_pg.db_url, cid)[lead[0]]
    assert link.routing["rule"] and "has_website" in link.routing["facts"]
    assert {e.scenario for e in outreach_pg.emails().values()} == {link.scenario}


def test_claim_takes_due_rows_of_active_campaigns_only(outreach_pg: Outreach):
    db = outreach_pg.db_url
    active = outreach_pg.campaign(name="active")
    paused = outreach_pg.campaign(name="paused", status="paused")
    draft = outreach_pg.campaign(name="draft", status="draft")
    due = outreach_pg.queue(active, outreach_pg.leads(3, prefix="a"))
    later = outreach_pg.queue(active, outreach_pg.leads(1, prefix="l"),
                              at=T0 + dt.timedelta(minutes=5))
    outreach_pg.queue(paused, outreach_pg.leads(2, prefix="p"))
    drafted = outreach_pg.queue(draft, outreach_pg.leads(2, prefix="d"))

    claimed = claim_due_emails(db, "w1", 10, T0)

    assert claimed == due
    rows = outreach_pg.emails(claimed)
    assert all(r.status == "sending" and r.claimed_by == "w1" and r.attempts == 1
               and r.claim_expires_at == T0 + dt.timedelta(seconds=600) for r in rows.values())
    assert claim_due_emails(db, "w2", 10, T0) == []  # nothing claimed twice
    assert outreach_pg.emails(later)[later[0]].status == "queued"
    # A manual execution of a draft campaign names it.
    assert claim_due_emails(db, "w3", 10, T0, campaign_ids=[draft, paused]) == drafted


def test_claim_respects_the_sending_window_in_the_campaign_time_zone(outreach_pg: Outreach):
    db = outreach_pg.db_url
    # 9:00-17:00 in New York, weekdays: 10:00 UTC on Monday is 05:00 there.
    cid = outreach_pg.campaign(timezone="America/New_York", window=(9, 17),
                               weekdays=(0, 1, 2, 3, 4))
    ids = outreach_pg.queue(cid, outreach_pg.leads(2))

    assert claim_due_emails(db, "w", 10, T0) == []
    assert claim_due_emails(db, "w", 10, T0 + dt.timedelta(hours=3, minutes=59)) == []
    assert {e.status for e in outreach_pg.emails(ids).values()} == {"queued"}
    saturday_noon_ny = dt.datetime(2025, 3, 8, 17, 0, tzinfo=dt.UTC)
    assert claim_due_emails(db, "w", 10, saturday_noon_ny) == []
    assert claim_due_emails(db, "w", 10, T0 + dt.timedelta(hours=4)) == ids  # 09:00 in NY


def test_in_send_window_edges():
    monday_23 = dt.datetime(2025, 3, 3, 23, 30, tzinfo=dt.UTC)
    assert in_send_window(monday_23, "UTC", 22, 6, [0])  # a window across midnight
    assert not in_send_window(monday_23, "UTC", 8, 23, [0])  # the end hour is excluded
    assert in_send_window(monday_23, "UTC", 0, 0, [0])  # equal hours: all day
    assert not in_send_window(monday_23, "Europe/Berlin", 0, 0, [0])  # Tuesday in Berlin


def test_expired_claims_go_to_review_and_are_never_sent_again(outreach_pg: Outreach, send_clock):
    db = outreach_pg.db_url
    cid = outreach_pg.campaign()
    ids = outreach_pg.queue(cid, outreach_pg.leads(3))
    claimed = claim_due_emails(db, "dead-worker", 2, T0)

    assert release_expired_claims(db, T0 + dt.timedelta(seconds=599)) == 0
    assert release_expired_claims(db, T0 + dt.timedelta(seconds=601)) == 2
    rows = outreach_pg.emails(ids)
    assert [rows[i].status for i in claimed] == ["review", "review"]
    assert "may have the message" in rows[claimed[0]].last_error

    # The dead worker's late send finds its claims gone: nothing goes out, nothing changes.
    late = send_claimed_emails(db, claimed, "dead-worker", now_fn=send_clock())
    assert (late.sent, late.lost) == (0, 2)
    report = drain_queue(db, "other", now_fn=send_clock(T0 + dt.timedelta(minutes=11)))
    assert report.sent == 1
    assert {outreach_pg.emails(ids)[i].status for i in claimed} == {"review"}


def test_outbox_gets_one_eml_per_email_that_mail_parsers_open(outreach_pg: Outreach, send_env,
                                                               send_clock):
    db = outreach_pg.db_url
    cid = outreach_pg.campaign()
    ids = outreach_pg.queue(cid, outreach_pg.leads(3))

    report = drain_queue(db, "w", now_fn=send_clock())

    assert (report.sent, report.outbox, report.by_provider) == (3, 3, {"outbox": 3})
    files = sorted(send_env.glob("*.eml"))
    assert len(files) == 3
    rows = outreach_pg.emails(ids)
    by_id = {r.message_id: r for r in rows.values()}
    for path in files:
        msg = message_from_bytes(path.read_bytes(), policy=default_policy)
        row = by_id[msg["Message-ID"]]
        assert msg["To"].addresses[0].addr_spec == row.to_email
        assert msg["Subject"] == row.subject
        assert msg.get_body(("plain",)).get_content().startswith("Hi ")
        assert "&amp; co" in msg.get_body(("html",)).get_content()
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert all(r.status == "sent" and r.provider_id is None and r.smtp_response == "outbox"
               for r in rows.values())


def test_sqlite_claims_are_exclusive_and_sends_are_recorded(sqlite_url, send_env, send_clock):
    outreach = Outreach(sqlite_url)
    cid = outreach.campaign()
    leads = outreach.leads(30)
    ids = outreach.queue(cid, leads)
    claims: dict[str, list[int]] = {}

    def claim(worker: str) -> None:
        got: list[int] = []
        while batch := claim_due_emails(sqlite_url, worker, 4, T0):
            got += batch
        claims[worker] = got

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for got in claims.values() for i in got]
    assert sorted(every) == ids  # each row claimed by exactly one worker

    for worker, got in claims.items():
        send_claimed_emails(sqlite_url, got, worker, now_fn=send_clock())
    rows = outreach.emails()
    assert sum(r.status == "sent" for r in rows.values()) == 30
    assert len(list(send_env.glob("*.eml"))) == 30
    with session_scope(sqlite_url) as s:
        assert set(s.scalars(select(Lead.status))) == {"contacted"}
        second_steps = s.scalars(select(Email.scheduled_at).where(Email.step_number == 2))
        assert {t.replace(tzinfo=dt.UTC) for t in second_steps} == {T0 + dt.timedelta(days=3)}


def test_sqlite_link_and_enqueue_at_once_read_what_they_write(sqlite_url, send_env):
    """Each call reads before it writes (counts, existing links, a reply already recorded):
    under the write lock taken first, another flow's commit cannot slip in between."""
    from tasks.outreach.campaign_leads import link_leads

    outreach = Outreach(sqlite_url)
    first, second = outreach.campaign(name="a"), outreach.campaign(name="b")
    leads = outreach.leads(60)
    new_links: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def run(work, ids) -> None:  # type: ignore[no-untyped-def]
        start.wait()
        try:
            for lead in ids:
                work([lead])
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(
            lambda ids: new_links.append(link_leads(sqlite_url, first, ids)), leads[0::2])),
        threading.Thread(target=run, args=(
            lambda ids: new_links.append(link_leads(sqlite_url, first, ids)), leads[1::2])),
        threading.Thread(target=run, args=(
            lambda ids: enqueue_sequences(sqlite_url, second, ids, T0), leads)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert set(_links(sqlite_url, first)) == set(leads)
    assert sum(new_links) == 60  # each call counted only the links it made
    assert len(_links(sqlite_url, second)) == 60
    assert len(outreach.emails()) == 180


def test_sqlite_the_same_reply_recorded_twice_at_once_adds_one_event(sqlite_url, send_env):
    from models import EmailEvent
    from tasks.outreach.replies import record_reply

    outreach = Outreach(sqlite_url)
    cid = outreach.campaign()
    leads = outreach.leads(20)
    ids = outreach.queue(cid, leads)
    with session_scope(sqlite_url) as s:
        s.execute(Email.__table__.update().where(Email.id.in_(ids))
                  .values(status="sent", sent_at=T0))
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def reply() -> None:
        start.wait()
        try:
            for i in range(20):
                record_reply(sqlite_url, address=f"lead{i}@dest{i % 7}.example")
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=reply) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    with session_scope(sqlite_url) as s:
        kinds = list(s.scalars(select(EmailEvent.email_id).where(EmailEvent.kind == "reply")))
    assert sorted(kinds) == sorted(ids)


def test_send_due_sends_only_the_named_campaigns_drafts_included(outreach_pg: Outreach,
                                                                 send_env, monkeypatch):
    from leadflow.settings import reset_settings_cache
    from tasks.outreach.steps import send_due

    monkeypatch.setenv("LEADFLOW_DATABASE_URL", outreach_pg.db_url)
    reset_settings_cache()
    draft = outreach_pg.campaign(name="draft", status="draft")
    other = outreach_pg.campaign(name="other")
    mine = outreach_pg.queue(draft, outreach_pg.leads(2, prefix="d"))
    theirs = outreach_pg.queue(other, outreach_pg.leads(3, prefix="o"))
    # Emails due now (the task uses the real clock).
    with session_scope(outreach_pg.db_url) as s:
        s.execute(Email.__table__.update().where(Email.id.in_(mine + theirs))
                  .values(scheduled_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)))

    result = send_due.fn(campaign_ids=[draft])

    assert (result["claimed"], result["sent"]) == (2, 2)
    assert {e.status for e in outreach_pg.emails(mine).values()} == {"sent"}
    assert {e.status for e in outreach_pg.emails(theirs).values()} == {"queued"}


def test_enqueue_uses_the_cleaned_address_and_skips_leads_whose_outreach_ended(
    outreach_pg: Outreach,
):
    # The address as found ("mailto:", angle brackets, capitals) is not what is sent to: the
    # cleaned one is. A lead that replied (which suppresses nothing), unsubscribed or bounced
    # elsewhere is not contacted again by a new campaign.
    from sqlalchemy import update

    db = outreach_pg.db_url
    cid = outreach_pg.campaign(steps=(0, 3))
    messy, replied, unsubscribed, bounced, fresh = outreach_pg.leads(5)
    with session_scope(db) as s:
        s.execute(update(Lead).where(Lead.id == messy).values(
            email=" <mailto:Jo.Owner@Bella.Example> ", email_norm="jo.owner@bella.example"))
        for lead_id, status in ((replied, "replied"), (unsubscribed, "unsubscribed"),
                                (bounced, "bounced")):
            s.execute(update(Lead).where(Lead.id == lead_id).values(status=status))

    report = enqueue_sequences(db, cid, [messy, replied, unsubscribed, bounced, fresh], T0)

    assert (report.queued_leads, report.emails_created) == (2, 4)
    assert report.stopped == {"replied": 1, "unsubscribed": 1, "bounced": 1}
    emails = outreach_pg.emails().values()
    assert {e.lead_id: e.to_email for e in emails} == {
        messy: "jo.owner@bella.example", fresh: "lead4@dest4.example"}
    links = _links(db, cid)
    assert {lead: (links[lead].status, links[lead].stop_reason)
            for lead in (replied, unsubscribed, bounced)} == {
        replied: ("stopped", "replied"), unsubscribed: ("stopped", "unsubscribed"),
        bounced: ("stopped", "bounced")}
    with session_scope(db) as s:  # their status is left as it was
        assert s.get_one(Lead, replied).status == "replied"
