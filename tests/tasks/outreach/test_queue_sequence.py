"""A lead's steps go out in order and a step that did not go out ends the sequence: follow-ups
wait for the previous step to be sent, a failed or reviewed step cancels the later ones, late
outcomes of expired claims are kept, review rows are requeued or marked sent by a person, and
one batch with two steps of a lead leaves the lead at the higher one."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from sqlalchemy import select, update

from leadflow.settings import get_settings
from models import CampaignLead, Email, Lead, Suppression
from models.db import session_scope
from tasks.outreach.compose import compose_due_emails
from tasks.outreach.outcomes import Outcome, record_outcomes
from tasks.outreach.queue import (
    claim_due_emails,
    drain_queue,
    mark_review_sent,
    release_expired_claims,
    requeue_review,
    send_claimed_emails,
)
from tests.tasks.outreach.mailserver import ACCEPT_AND_DROP, T0, Outreach

pytest_plugins = ["tests.tasks.outreach.sending_fixtures"]


def _by_step(outreach: Outreach) -> dict[tuple[int, int], Email]:
    return {(e.lead_id, e.step_number): e for e in outreach.emails().values()}


def _link(db: str, lead_id: int) -> CampaignLead:
    with session_scope(db) as s:
        return s.scalars(select(CampaignLead).where(CampaignLead.lead_id == lead_id)).one()


def test_step_1_failed_step_2_is_cancelled_never_composed_nor_claimed(
    outreach_pg: Outreach, smtp_servers, send_clock
):
    db = outreach_pg.db_url
    leads = outreach_pg.leads(2)
    refused = "lead0@dest0.example"
    server = smtp_servers(script=lambda stage, rcpt, n: "554 5.7.1 rejected as spam"
                          if stage == "data" and rcpt == refused else None)
    outreach_pg.provider("relay", server.port)
    cid = outreach_pg.campaign(steps=(0, 3, 5))
    outreach_pg.queue(cid, leads)

    report = drain_queue(db, "w", now_fn=send_clock())

    assert (report.sent, report.failed) == (1, 1)
    steps = _by_step(outreach_pg)
    assert steps[(leads[0], 1)].status == "failed"
    assert [steps[(leads[0], n)].status for n in (2, 3)] == ["cancelled", "cancelled"]
    assert "step 1 failed" in steps[(leads[0], 2)].last_error
    assert [steps[(leads[1], n)].status for n in (1, 2, 3)] == ["sent", "scheduled", "scheduled"]
    link = _link(db, leads[0])
    assert (link.status, link.stop_reason) == ("stopped", "failed")
    # A non-recipient 5xx suppresses nothing.
    with session_scope(db) as s:
        assert s.scalars(select(Suppression)).all() == []

    later = T0 + dt.timedelta(days=30)
    assert compose_due_emails(db, later).skipped.keys() <= {steps[(leads[1], 2)].id}
    assert steps[(leads[0], 2)].id not in claim_due_emails(db, "w", 10, later)
    assert _by_step(outreach_pg)[(leads[0], 2)].status == "cancelled"
    assert len(server.received) == 1


def test_review_cancels_the_later_steps(outreach_pg: Outreach, smtp_servers, send_clock):
    db = outreach_pg.db_url
    server = smtp_servers(script=lambda stage, rcpt, n: ACCEPT_AND_DROP
                          if stage == "data" else None)
    outreach_pg.provider("relay", server.port)
    cid = outreach_pg.campaign(steps=(0, 3))
    lead = outreach_pg.leads(1)
    outreach_pg.queue(cid, lead)

    assert drain_queue(db, "w", now_fn=send_clock()).review == 1

    steps = _by_step(outreach_pg)
    assert (steps[(lead[0], 1)].status, steps[(lead[0], 2)].status) == ("review", "cancelled")


def test_follow_up_is_not_claimed_before_the_previous_step_is_sent(
    outreach_pg: Outreach, smtp_servers, send_clock
):
    db = outreach_pg.db_url
    server = smtp_servers()
    outreach_pg.provider("relay", server.port, hourly=1)
    cid = outreach_pg.campaign(steps=(0, 3))
    leads = outreach_pg.leads(2)
    outreach_pg.queue(cid, leads)
    # Step 2 composed with its provisional date already passed.
    outreach_pg.queue(cid, leads, at=T0 - dt.timedelta(days=4), step=2)
    now = send_clock()

    report = drain_queue(db, "w", now_fn=now)

    # The provider takes one message this hour: one step 1 goes, the other waits.
    assert (report.sent, report.waiting) == (1, 1)
    assert len(server.received) == 1
    steps = _by_step(outreach_pg)
    sent_lead = next(lead for lead in leads if steps[(lead, 1)].status == "sent")
    waiting_lead = next(lead for lead in leads if lead != sent_lead)
    assert steps[(waiting_lead, 1)].status == "queued"
    assert steps[(waiting_lead, 2)].status == "queued"  # due, but its step 1 is not sent
    assert steps[(sent_lead, 2)].scheduled_at == now.now + dt.timedelta(days=3)
    # An hour later only the waiting step 1 is claimed, never its follow-up.
    claimed = claim_due_emails(db, "w2", 10, now.now + dt.timedelta(hours=1))
    assert claimed == [steps[(waiting_lead, 1)].id]


def test_compose_skips_a_follow_up_whose_previous_step_is_not_sent(outreach_pg: Outreach):
    db = outreach_pg.db_url
    cid = outreach_pg.campaign(steps=(0, 3))
    lead = outreach_pg.leads(1)
    outreach_pg.queue(cid, lead)  # step 1 queued, step 2 scheduled at T0 + 3 days

    report = compose_due_emails(db, T0 + dt.timedelta(days=5))

    assert (report.composed, report.not_pending, report.skipped) == (0, 0, {})
    assert _by_step(outreach_pg)[(lead[0], 2)].status == "scheduled"


def test_late_outcomes_of_an_expired_claim_are_recorded(outreach_pg: Outreach, smtp_servers,
                                                        send_clock):
    db = outreach_pg.db_url
    expired: list[int] = []
    now = send_clock()

    def script(stage: str, rcpt: str, n: int) -> str | None:
        if stage == "data" and n == 0:  # the worker stalls past its claim mid-batch
            now.advance(minutes=11)
            expired.append(release_expired_claims(db, now.now))
        return None

    server = smtp_servers(script=script)
    outreach_pg.provider("relay", server.port)
    cid = outreach_pg.campaign(steps=(0, 3))
    leads = outreach_pg.leads(3)
    ids = outreach_pg.queue(cid, leads)
    claimed = claim_due_emails(db, "slow", 10, T0)

    report = send_claimed_emails(db, claimed, "slow", now_fn=now)

    assert expired == [3]
    # The message on the wire when the claims expired is recorded sent (its review replaced);
    # the two not handed over yet are not sent under a lost claim: queued again, no attempt
    # used, their follow-ups restored.
    assert (report.sent, report.waiting, report.lost) == (1, 2, 0)
    rows = outreach_pg.emails(ids)
    assert [(rows[i].status, rows[i].attempts, rows[i].claimed_by) for i in ids] == [
        ("sent", 1, "slow"), ("queued", 0, None), ("queued", 0, None)]
    assert len(server.received) == 1
    steps = _by_step(outreach_pg)
    assert {steps[(lead, 2)].status for lead in leads} == {"scheduled"}
    with session_scope(db) as s:
        assert s.scalar(select(Lead.status).where(Lead.id == leads[0])) == "contacted"


def _review(outreach: Outreach, n: int, name: str = "c") -> tuple[list[int], list[int]]:
    """n step-1 emails whose claims expired (review), their follow-ups cancelled."""
    db = outreach.db_url
    cid = outreach.campaign(steps=(0, 3), name=name)
    leads = outreach.leads(n, prefix=name)
    ids = outreach.queue(cid, leads)
    claimed = claim_due_emails(db, "dead", n, T0)
    assert release_expired_claims(db, T0 + dt.timedelta(minutes=11)) == len(claimed) == n
    return leads, ids


def test_requeue_review_sends_again_and_restores_the_follow_ups(
    outreach_pg: Outreach, smtp_servers, send_clock
):
    db = outreach_pg.db_url
    server = smtp_servers()
    outreach_pg.provider("relay", server.port)
    leads, ids = _review(outreach_pg, 2)
    assert {_by_step(outreach_pg)[(lead, 2)].status for lead in leads} == {"cancelled"}

    assert requeue_review(db, ids + [10_000], now=T0 + dt.timedelta(minutes=20)) == 2
    assert requeue_review(db, ids) == 0  # no longer in review

    steps = _by_step(outreach_pg)
    assert {(steps[(lead, 1)].status, steps[(lead, 2)].status) for lead in leads} == {
        ("queued", "scheduled")}
    now = send_clock(T0 + dt.timedelta(minutes=20))
    assert drain_queue(db, "w", now_fn=now).sent == 2
    assert len(server.received) == 2
    steps = _by_step(outreach_pg)
    assert {steps[(lead, 2)].scheduled_at for lead in leads} == {now.now + dt.timedelta(days=3)}


def test_mark_review_sent_records_the_send_and_schedules_the_next_step(outreach_pg: Outreach):
    db = outreach_pg.db_url
    leads, ids = _review(outreach_pg, 2)
    other_leads, _ = _review(outreach_pg, 1, name="other")

    assert mark_review_sent(db, ids) == 2
    assert mark_review_sent(db, ids) == 0

    steps = _by_step(outreach_pg)
    for lead in leads:
        first, second = steps[(lead, 1)], steps[(lead, 2)]
        assert (first.status, first.sent_at) == ("sent", T0)  # sent when it was claimed
        assert (second.status, second.scheduled_at) == ("scheduled", T0 + dt.timedelta(days=3))
    assert steps[(other_leads[0], 1)].status == "review"
    assert steps[(other_leads[0], 2)].status == "cancelled"
    with session_scope(db) as s:
        assert set(s.scalars(select(Lead.status).where(Lead.id.in_(leads)))) == {"contacted"}
    assert {_link(db, lead).status for lead in leads} == {"active"}


def test_review_follow_ups_stay_cancelled_when_the_lead_stopped_meanwhile(outreach_pg: Outreach):
    from tasks.outreach.suppression import stop_sequence

    db = outreach_pg.db_url
    leads, ids = _review(outreach_pg, 1)
    with session_scope(db) as s:
        stop_sequence(s, leads[0], "replied")

    assert requeue_review(db, ids) == 1
    assert _by_step(outreach_pg)[(leads[0], 2)].status == "cancelled"


def test_two_steps_of_a_lead_in_one_batch_leave_it_at_the_higher_step(outreach_pg: Outreach):
    db = outreach_pg.db_url
    cid = outreach_pg.campaign(steps=(0, 3, 5))
    leads = outreach_pg.leads(2)
    outreach_pg.queue(cid, leads)
    steps = _by_step(outreach_pg)
    ids = {key: e.id for key, e in steps.items()}
    with session_scope(db) as s:
        s.execute(update(Email).where(Email.id.in_(ids.values()), Email.step_number < 3)
                  .values(status="sending", claimed_by="w"))
    a, b = leads
    # Both orders within one batch: the higher step must win either way.
    outcomes = [Outcome(ids[(a, 1)], "sent", T0), Outcome(ids[(a, 2)], "sent", T0),
                Outcome(ids[(b, 2)], "sent", T0), Outcome(ids[(b, 1)], "sent", T0)]

    counts = record_outcomes(db, "w", outcomes, get_settings())

    assert counts["sent"] == 4
    with session_scope(db) as s:
        assert Counter(s.scalars(select(Lead.status).where(Lead.id.in_(leads)))) == {
            "follow_up_1": 2}
    steps = _by_step(outreach_pg)
    assert {steps[(lead, 3)].scheduled_at for lead in leads} == {T0 + dt.timedelta(days=5)}
