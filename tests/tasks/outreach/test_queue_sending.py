"""Sending the queue over SMTP to real aiosmtpd servers, on PostgreSQL: what arrives, what is
recorded, and every fault: temporary refusals, dropped connections, bounces, limits reached
mid-run, concurrent workers, a worker killed mid-batch, suppression after queueing."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
from collections import Counter

from sqlalchemy import select, update

from leadflow.tokens import verify
from models import Campaign, CampaignLead, Lead, SmtpSendCount, Suppression
from models.db import session_scope
from tasks.outreach.queue import drain_queue, release_expired_claims, requeue_review
from tasks.outreach.suppression import stop_sequence, suppress
from tests.conftest import ROOT
from tests.tasks.outreach.mailserver import (
    ACCEPT_AND_DROP,
    DROP,
    SMTP_PASSWORD,
    SMTP_USER,
    T0,
    Outreach,
)

pytest_plugins = ["tests.tasks.outreach.sending_fixtures"]


def _status(outreach: Outreach, ids: list[int]) -> Counter[str]:
    return Counter(e.status for e in outreach.emails(ids).values())


def test_sent_emails_arrive_whole_and_move_lead_campaign_and_next_step(
    outreach_pg: Outreach, smtp_servers, send_clock
):
    db = outreach_pg.db_url
    server = smtp_servers(security="starttls")
    pid = outreach_pg.provider("relay", server.port)
    cid = outreach_pg.campaign(steps=(0, 3, 5))
    leads = outreach_pg.leads(4)
    ids = outreach_pg.queue(cid, leads)
    now = send_clock(T0 + dt.timedelta(minutes=7))

    report = drain_queue(db, "w1", now_fn=now)

    assert (report.claimed, report.sent, report.by_provider) == (4, 4, {"relay": 4})
    rows = outreach_pg.emails(ids)
    assert sorted(server.message_ids()) == sorted(r.message_id for r in rows.values())
    for received in server.received:
        msg = received.message
        row = next(r for r in rows.values() if r.message_id == msg["Message-ID"])
        assert received.tls and received.auth_user == SMTP_USER
        assert received.rcpt_tos == [row.to_email]
        assert msg["From"].addresses[0].addr_spec == "sam@sender.example"
        assert msg["Subject"] == row.subject
        assert msg.get_body(("plain",)).get_content().replace("\r\n", "\n") == row.body_text + "\n"
        assert msg.get_body(("html",)).get_content().strip() == row.body_html
        unsubscribe = msg["List-Unsubscribe"].strip("<>")
        token = verify(unsubscribe.rsplit("/", 1)[1])
        assert token is not None and token.email_id == row.id
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert (row.status, row.provider_id, row.sent_at) == ("sent", pid, now.now)
        assert row.smtp_response.startswith("250")
    with session_scope(db) as s:
        lead_rows = list(s.scalars(select(Lead).where(Lead.id.in_(leads))))
        assert {(lead.status, lead.last_contacted_at) for lead in lead_rows} == {
            ("contacted", now.now)}
        campaign = s.get_one(Campaign, cid)
        assert (campaign.emails_sent, campaign.leads_contacted) == (4, 4)
        assert {c.status for c in s.scalars(select(CampaignLead))} == {"active"}
    second = [e for e in outreach_pg.emails().values() if e.step_number == 2]
    # Dated from the actual send, not from the enqueue time.
    assert {e.scheduled_at for e in second} == {now.now + dt.timedelta(days=3)}


def test_the_last_step_completes_the_lead_in_the_campaign(outreach_pg, smtp_servers, send_clock):
    server = smtp_servers(security="tls")
    outreach_pg.provider("relay", server.port, security="tls")
    cid = outreach_pg.campaign(steps=(0,))
    outreach_pg.queue(cid, outreach_pg.leads(2))
    assert drain_queue(outreach_pg.db_url, "w", now_fn=send_clock()).sent == 2
    with session_scope(outreach_pg.db_url) as s:
        assert {c.status for c in s.scalars(select(CampaignLead))} == {"completed"}


def test_temporary_refusal_is_retried_later_on_another_provider(outreach_pg, smtp_servers,
                                                                send_clock):
    db = outreach_pg.db_url
    busy = smtp_servers(script=lambda stage, rcpt, n: "451 4.3.0 try later"
                        if stage == "rcpt" else None)
    spare = smtp_servers()
    first = outreach_pg.provider("first", busy.port, priority=1)
    outreach_pg.provider("spare", spare.port, priority=2)
    cid = outreach_pg.campaign()
    ids = outreach_pg.queue(cid, outreach_pg.leads(3))
    now = send_clock()

    report = drain_queue(db, "w", now_fn=now)

    assert (report.retried, report.sent) == (3, 0)
    rows = outreach_pg.emails(ids)
    for row in rows.values():
        assert (row.status, row.provider_id, row.attempts) == ("queued", first, 1)
        assert "451" in row.last_error
        # Backoff: base 60 s, plus up to half again.
        assert now.now + dt.timedelta(seconds=60) <= row.scheduled_at
        assert row.scheduled_at <= now.now + dt.timedelta(seconds=90)
    assert drain_queue(db, "w", now_fn=now).claimed == 0  # not due yet

    now.advance(seconds=91)
    report = drain_queue(db, "w", now_fn=now)
    assert (report.sent, report.by_provider) == (3, {"spare": 3})
    assert busy.received == [] and len(spare.received) == 3
    assert {r.attempts for r in outreach_pg.emails(ids).values()} == {2}


def test_421_everywhere_gives_up_after_max_attempts(outreach_pg, smtp_servers, send_clock):
    db = outreach_pg.db_url
    server = smtp_servers(script=lambda stage, rcpt, n: "421 4.7.0 too busy, closing"
                          if stage == "mail" else None)
    outreach_pg.provider("only", server.port)
    cid = outreach_pg.campaign()
    ids = outreach_pg.queue(cid, outreach_pg.leads(2))
    now = send_clock()
    for _ in range(3):  # LEADFLOW_SEND_MAX_ATTEMPTS=3
        drain_queue(db, "w", now_fn=now)
        now.advance(hours=1)
    rows = outreach_pg.emails(ids).values()
    assert {(r.status, r.attempts) for r in rows} == {("failed", 3)}
    assert all("gave up after 3 attempts" in r.last_error and "421" in r.last_error
               for r in rows)
    assert server.received == []


def test_connection_dropped_mid_batch_rest_retried_nothing_sent_twice(outreach_pg,
                                                                      smtp_servers, send_clock):
    db = outreach_pg.db_url
    broken = {"on": False}

    def script(stage: str, rcpt: str, n: int) -> str | None:
        if stage == "data" and n == 2:
            return ACCEPT_AND_DROP  # message 3 is taken, but its reply never comes
        if stage == "mail" and n >= 3 and broken["on"]:
            return DROP  # then the server keeps hanging up before taking anything
        return None

    server = smtp_servers(script=script)
    outreach_pg.provider("relay", server.port)
    cid = outreach_pg.campaign()
    ids = outreach_pg.queue(cid, outreach_pg.leads(8))
    now = send_clock()
    broken["on"] = True

    report = drain_queue(db, "w", now_fn=now)

    assert (report.sent, report.review, report.retried) == (2, 1, 5)
    rows = outreach_pg.emails(ids)
    assert Counter(r.status for r in rows.values()) == {"sent": 2, "review": 1, "queued": 5}
    in_review = next(r for r in rows.values() if r.status == "review")
    assert "may have been delivered" in in_review.last_error

    broken["on"] = False
    now.advance(minutes=5)
    report = drain_queue(db, "w", now_fn=now)
    assert report.sent == 5
    received = Counter(server.message_ids())
    assert set(received.values()) == {1} and len(received) == 8  # each message exactly once
    assert _status(outreach_pg, ids) == {"sent": 7, "review": 1}


def test_550_bounces_suppresses_the_address_and_stops_the_sequence(outreach_pg, smtp_servers,
                                                                   send_clock):
    db = outreach_pg.db_url
    leads = outreach_pg.leads(3)
    bad = "lead1@dest1.example"
    server = smtp_servers(script=lambda stage, rcpt, n: "550 5.1.1 no such user"
                          if stage == "rcpt" and rcpt == bad else None)
    outreach_pg.provider("relay", server.port)
    cid = outreach_pg.campaign(steps=(0, 3))
    ids = outreach_pg.queue(cid, leads)

    report = drain_queue(db, "w", now_fn=send_clock())

    assert (report.sent, report.bounced) == (2, 1)
    everything = outreach_pg.emails()
    bounced = next(e for e in everything.values() if e.to_email == bad and e.step_number == 1)
    assert bounced.status == "bounced" and "550" in bounced.smtp_response
    follow_up = next(e for e in everything.values() if e.to_email == bad and e.step_number == 2)
    assert follow_up.status == "cancelled"
    with session_scope(db) as s:
        sup = s.scalars(select(Suppression)).one()
        assert (sup.value, sup.reason, sup.email_id) == (bad, "bounced", bounced.id)
        assert s.get_one(Lead, bounced.lead_id).status == "bounced"
        link = s.scalars(select(CampaignLead).where(CampaignLead.lead_id == bounced.lead_id)).one()
        assert (link.status, link.stop_reason) == ("stopped", "bounced")
        assert s.get_one(Campaign, cid).emails_sent == 2
    assert len(server.received) == 2 and _status(outreach_pg, ids)["sent"] == 2


def test_other_5xx_fails_without_suppressing(outreach_pg, smtp_servers, send_clock):
    server = smtp_servers(script=lambda stage, rcpt, n: "554 5.7.1 rejected as spam"
                          if stage == "data" else None)
    outreach_pg.provider("relay", server.port)
    cid = outreach_pg.campaign()
    ids = outreach_pg.queue(cid, outreach_pg.leads(1))
    assert drain_queue(outreach_pg.db_url, "w", now_fn=send_clock()).failed == 1
    assert _status(outreach_pg, ids) == {"failed": 1}
    with session_scope(outreach_pg.db_url) as s:
        assert s.scalars(select(Suppression)).all() == []


def test_a_non_ascii_local_part_without_smtputf8_fails_alone_and_the_rest_is_recorded(
    outreach_pg, smtp_servers, send_clock
):
    # smtplib encodes commands as ASCII: "RCPT TO:<josé@...>" raised out of the batch, and the
    # messages already handed over stayed `sending` (then review), their follow-ups cancelled.
    # A server without SMTPUTF8 cannot take the address at all: that email alone fails.
    db = outreach_pg.db_url
    server = smtp_servers()
    outreach_pg.provider("relay", server.port)
    cid = outreach_pg.campaign(steps=(0, 3))
    leads = outreach_pg.leads(3)
    with session_scope(db) as s:
        s.execute(update(Lead).where(Lead.id == leads[1]).values(email="josé@café.example"))
    ids = outreach_pg.queue(cid, leads)

    report = drain_queue(db, "w", now_fn=send_clock())

    assert (report.sent, report.failed) == (2, 1)
    rows = outreach_pg.emails(ids)
    assert {r.to_email: r.status for r in rows.values()} == {
        "lead0@dest0.example": "sent", "josé@café.example": "failed",
        "lead2@dest2.example": "sent"}
    error = next(r.last_error for r in rows.values() if r.status == "failed")
    assert "non-ASCII" in error and "SMTPUTF8" in error
    assert sorted(r.rcpt_tos[0] for r in server.received) == [
        "lead0@dest0.example", "lead2@dest2.example"]
    with session_scope(db) as s:
        assert s.scalars(select(Suppression)).all() == []


def test_internationalised_addresses_are_sent_with_idna_domains_and_smtputf8(
    outreach_pg, smtp_servers, send_clock
):
    # An internationalised domain goes as IDNA (ASCII) in the envelope and the To: header; a
    # non-ASCII local part goes with SMTPUTF8, which this server offers, as UTF-8 (RFC 6532).
    db = outreach_pg.db_url
    server = smtp_servers(smtputf8=True)
    outreach_pg.provider("relay", server.port)
    cid = outreach_pg.campaign()
    leads = outreach_pg.leads(3)
    with session_scope(db) as s:
        s.execute(update(Lead).where(Lead.id == leads[0]).values(email="jo@café.example"))
        s.execute(update(Lead).where(Lead.id == leads[1]).values(email="josé@café.example"))
    ids = outreach_pg.queue(cid, leads)

    report = drain_queue(db, "w", now_fn=send_clock())

    assert report.sent == 3 and _status(outreach_pg, ids) == {"sent": 3}
    by_rcpt = {r.rcpt_tos[0]: r for r in server.received}
    assert set(by_rcpt) == {"jo@xn--caf-dma.example", "josé@xn--caf-dma.example",
                            "lead2@dest2.example"}
    assert {rcpt: r.smtp_utf8 for rcpt, r in by_rcpt.items()} == {
        "jo@xn--caf-dma.example": False, "josé@xn--caf-dma.example": True,
        "lead2@dest2.example": False}
    for rcpt, received in by_rcpt.items():
        raw_to = next(line for line in received.data.split(b"\r\n") if line.startswith(b"To:"))
        assert b"=?" not in raw_to.split(b"<")[-1]  # no encoded word inside the address
        assert [a.addr_spec for a in received.message["To"].addresses] == [rcpt]
        assert received.message["Subject"].startswith("Bookings for")


def test_hourly_limit_reached_mid_run_moves_on_then_waits(outreach_pg, smtp_servers, send_clock):
    db = outreach_pg.db_url
    a, b = smtp_servers(), smtp_servers()
    pa = outreach_pg.provider("a", a.port, hourly=3, priority=1)
    pb = outreach_pg.provider("b", b.port, hourly=2, priority=2)
    cid = outreach_pg.campaign()
    ids = outreach_pg.queue(cid, outreach_pg.leads(8))
    now = send_clock()

    report = drain_queue(db, "w", now_fn=now)

    assert (report.sent, report.waiting, report.by_provider) == (5, 3, {"a": 3, "b": 2})
    assert (len(a.received), len(b.received)) == (3, 2)
    waiting = [e for e in outreach_pg.emails(ids).values() if e.status == "queued"]
    assert {(e.scheduled_at, e.attempts) for e in waiting} == {(T0 + dt.timedelta(hours=1), 0)}
    with session_scope(db) as s:
        counts = {(c.provider_id, c.window): c.count for c in s.scalars(select(SmtpSendCount))}
    assert counts == {(pa, "hour"): 3, (pa, "day"): 3, (pb, "hour"): 2, (pb, "day"): 2}

    now.advance(hours=1)
    assert drain_queue(db, "w", now_fn=now).sent == 3
    assert len(set(a.message_ids() + b.message_ids())) == 8


def test_concurrent_workers_never_exceed_limits_or_send_twice(outreach_pg, smtp_servers,
                                                              send_clock):
    db = outreach_pg.db_url
    a, b = smtp_servers(), smtp_servers()
    outreach_pg.provider("a", a.port, hourly=20, priority=1)
    outreach_pg.provider("b", b.port, hourly=100, daily=15, priority=2)
    cid = outreach_pg.campaign()
    outreach_pg.queue(cid, outreach_pg.leads(60))
    reports = []

    def work(name: str) -> None:
        reports.append(drain_queue(db, name, now_fn=send_clock(), batch_size=4))

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert (len(a.received), len(b.received)) == (20, 15)
    ids = a.message_ids() + b.message_ids()
    assert len(set(ids)) == len(ids) == 35
    assert sum(r.sent for r in reports) == 35 and sum(r.waiting for r in reports) == 25
    assert _status(outreach_pg, list(outreach_pg.emails())) == {"sent": 35, "queued": 25,
                                                                "scheduled": 120}


def test_two_drains_at_once_deliver_each_message_once(outreach_pg, smtp_servers, send_clock):
    db = outreach_pg.db_url
    server = smtp_servers()
    outreach_pg.provider("relay", server.port)
    cid = outreach_pg.campaign()
    outreach_pg.queue(cid, outreach_pg.leads(40))
    threads = [threading.Thread(target=drain_queue, args=(db, f"run{i}"),
                                kwargs={"now_fn": send_clock(), "batch_size": 3}) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    received = Counter(server.message_ids())
    assert len(received) == 40 and set(received.values()) == {1}


_DOOMED_WORKER = """
import datetime as dt, sys
from tasks.outreach.queue import claim_due_emails, send_claimed_emails
T0 = dt.datetime(2025, 3, 3, 10, 0, tzinfo=dt.UTC)
ids = claim_due_emails(sys.argv[1], "doomed", 5, T0)
print("claimed", *ids, flush=True)
send_claimed_emails(sys.argv[1], ids, "doomed", now_fn=lambda: T0)
"""


def test_worker_killed_mid_batch_leaves_review_and_another_sends_the_rest(
    outreach_pg, smtp_servers, send_clock
):
    db = outreach_pg.db_url
    in_flight, resume = threading.Event(), threading.Event()

    def script(stage: str, rcpt: str, n: int) -> str | None:
        if stage == "data" and n == 2 and not resume.is_set():
            in_flight.set()  # the doomed worker's third message is on the wire
            resume.wait(30)
        return None

    server = smtp_servers(script=script)
    outreach_pg.provider("relay", server.port)
    cid = outreach_pg.campaign()
    ids = outreach_pg.queue(cid, outreach_pg.leads(12))
    proc = subprocess.Popen([sys.executable, "-c", _DOOMED_WORKER, db], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        claimed = [int(x) for x in proc.stdout.readline().split()[1:]]  # type: ignore[union-attr]
        assert len(claimed) == 5
        assert in_flight.wait(30)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        resume.set()
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()  # type: ignore[union-attr]
    now = send_clock(T0 + dt.timedelta(minutes=11))  # the claims (600 s) have expired

    assert release_expired_claims(db, now.now) == 5
    report = drain_queue(db, "survivor", now_fn=now)

    assert report.sent == 7
    rows = outreach_pg.emails(ids)
    assert {rows[i].status for i in claimed} == {"review"}
    received = Counter(server.message_ids())
    assert set(received.values()) == {1}
    claimed_ids = {rows[i].message_id for i in claimed}
    # The doomed worker got 3 messages out (the third was taken after it died); none again.
    assert len(claimed_ids & set(received)) == 3 and len(received) == 10


def test_suppression_added_after_queueing_is_honoured_at_send_time(outreach_pg, smtp_servers,
                                                                   send_clock):
    db = outreach_pg.db_url
    server = smtp_servers()
    outreach_pg.provider("relay", server.port)
    cid = outreach_pg.campaign(steps=(0, 3))
    leads = outreach_pg.leads(4)
    ids = outreach_pg.queue(cid, leads)
    with session_scope(db) as s:
        suppress(s, "lead0@dest0.example", "unsubscribed")
        suppress(s, "dest1.example", "complained", kind="domain")

    report = drain_queue(db, "w", now_fn=send_clock())

    assert (report.sent, report.cancelled) == (2, 2)
    sent_to = {r.rcpt_tos[0] for r in server.received}
    assert sent_to == {"lead2@dest2.example", "lead3@dest3.example"}
    everything = outreach_pg.emails().values()
    stopped = [e for e in everything if e.to_email in ("lead0@dest0.example",
                                                       "lead1@dest1.example")]
    assert {e.status for e in stopped} == {"cancelled"}
    links = {c.lead_id: c for c in _links(db)}
    assert {(links[e.lead_id].status, links[e.lead_id].stop_reason) for e in stopped} == {
        ("stopped", "suppressed")}
    assert _status(outreach_pg, ids)["cancelled"] == 2


def test_an_unsubscribe_or_reply_during_a_batch_stops_its_later_messages(
    outreach_pg, smtp_servers, send_clock
):
    """The batch is loaded and checked once, then handed over message by message; once
    LEADFLOW_SEND_RECHECK_AFTER_S (1 s) has passed, what is left is checked again before the
    next message goes, so an address unsubscribed (or a lead that replied) while a slow
    earlier message of the batch was on the wire gets nothing."""
    db = outreach_pg.db_url
    now = send_clock()
    cid = outreach_pg.campaign(steps=(0, 3))
    leads = outreach_pg.leads(3)
    ids = outreach_pg.queue(cid, leads)

    def script(stage: str, rcpt: str, n: int) -> str | None:
        if stage == "data" and n == 0 and rcpt == "lead0@dest0.example":
            now.advance(seconds=2)  # a slow server
            # The tracking app's unsubscribe and a recorded reply, committed meanwhile.
            with session_scope(db) as s:
                suppress(s, "lead1@dest1.example", "unsubscribed")
                stop_sequence(s, leads[1], "unsubscribed")
                stop_sequence(s, leads[2], "replied")
        return None

    server = smtp_servers(script=script)
    outreach_pg.provider("relay", server.port)

    report = drain_queue(db, "w", now_fn=now)

    assert [r.rcpt_tos for r in server.received] == [["lead0@dest0.example"]]
    assert (report.sent, report.cancelled) == (1, 2)
    rows = outreach_pg.emails(ids)
    assert [rows[i].status for i in ids] == ["sent", "cancelled", "cancelled"]
    follow_ups = {e.lead_id: e.status for e in outreach_pg.emails().values()
                  if e.step_number == 2}
    assert follow_ups == {leads[0]: "scheduled", leads[1]: "cancelled", leads[2]: "cancelled"}
    with session_scope(db) as s:  # the slots set aside for them are given back
        assert {c.count for c in s.scalars(select(SmtpSendCount))} == {1}


def test_a_claim_lost_mid_batch_stops_the_worker_sending_the_rest(outreach_pg, smtp_servers,
                                                                  send_clock):
    """A slow batch outlives its claims: another run's start puts them up for review and a
    person, finding nothing at the provider yet, requeues them. The first worker must not send
    them as well (each message arrives once)."""
    db = outreach_pg.db_url
    now = send_clock()
    ids: list[int] = []

    def script(stage: str, rcpt: str, n: int) -> str | None:
        if stage == "data" and n == 0 and rcpt == "lead0@dest0.example":
            now.advance(minutes=11)  # the claims (600 s) expire while this message is sent
            assert release_expired_claims(db, now.now) == 3
            assert requeue_review(db, ids[1:], now=now.now) == 2
        return None

    server = smtp_servers(script=script)
    outreach_pg.provider("relay", server.port)
    cid = outreach_pg.campaign(steps=(0, 3))
    ids += outreach_pg.queue(cid, outreach_pg.leads(3))

    drain_queue(db, "slow", now_fn=now)
    drain_queue(db, "other", now_fn=now)

    received = Counter(server.message_ids())
    assert len(received) == 3 and set(received.values()) == {1}
    assert {e.status for e in outreach_pg.emails(ids).values()} == {"sent"}


def test_a_claim_expired_mid_batch_is_not_sent_but_queued_again(outreach_pg, smtp_servers,
                                                                 send_clock):
    """The worker's own clock passes the claim's expiry mid-batch: what it has not handed over
    yet goes back to the queue (no attempt used), not out under a claim it no longer holds."""
    db = outreach_pg.db_url
    now = send_clock()

    def script(stage: str, rcpt: str, n: int) -> str | None:
        if stage == "data" and n == 0 and rcpt == "lead0@dest0.example":
            now.advance(minutes=11)
        return None

    server = smtp_servers(script=script)
    outreach_pg.provider("relay", server.port)
    cid = outreach_pg.campaign(steps=(0, 3))
    ids = outreach_pg.queue(cid, outreach_pg.leads(3))

    report = drain_queue(db, "slow", now_fn=now)

    assert [r.rcpt_tos for r in server.received] == [["lead0@dest0.example"]]
    assert (report.sent, report.waiting) == (1, 2)
    rows = outreach_pg.emails(ids)
    assert [(rows[i].status, rows[i].attempts, rows[i].claimed_by) for i in ids[1:]] == [
        ("queued", 0, None)] * 2
    now.advance(hours=1)
    assert drain_queue(db, "later", now_fn=now).sent == 2
    assert len(set(server.message_ids())) == len(server.message_ids()) == 3


def test_a_message_moved_to_another_provider_is_checked_again_before_it_goes(
    outreach_pg, smtp_servers, send_clock
):
    """A provider refusing everything (5.7.x in a row) hands its refused messages to the next
    one; an address unsubscribed while they were refused is not sent to the second provider
    (each was checked once already, before the first provider, and not again)."""
    db = outreach_pg.db_url
    now = send_clock()
    leads = outreach_pg.leads(3)

    def refuse(stage: str, rcpt: str, n: int) -> str | None:
        if stage != "rcpt":
            return None
        if rcpt == "lead2@dest2.example":  # the third refusal in a row: the provider is dropped
            now.advance(seconds=2)
            with session_scope(db) as s:
                suppress(s, "lead0@dest0.example", "unsubscribed")
                stop_sequence(s, leads[0], "unsubscribed")
        return "553 5.7.1 sender address rejected"

    policy = smtp_servers(script=refuse)
    spare = smtp_servers()
    outreach_pg.provider("policy", policy.port, priority=1)
    outreach_pg.provider("spare", spare.port, priority=2)
    cid = outreach_pg.campaign()
    ids = outreach_pg.queue(cid, leads)

    report = drain_queue(db, "w", now_fn=now)

    assert sorted(r.rcpt_tos[0] for r in spare.received) == [
        "lead1@dest1.example", "lead2@dest2.example"]
    assert (report.sent, report.cancelled) == (2, 1)
    rows = outreach_pg.emails(ids)
    assert [rows[i].status for i in ids] == ["cancelled", "sent", "sent"]


def test_a_worker_clock_stepped_back_mid_batch_still_checks_again(outreach_pg, smtp_servers,
                                                                   send_clock):
    """The worker's clock stepped back (an NTP correction) while a message was on the wire:
    the messages left are still checked again, not only once the clock is back where it was."""
    db = outreach_pg.db_url
    now = send_clock()
    now.advance(minutes=30)  # stepping back stays in the same hour's sending window
    cid = outreach_pg.campaign(steps=(0, 3))
    leads = outreach_pg.leads(3)
    ids = outreach_pg.queue(cid, leads)

    def script(stage: str, rcpt: str, n: int) -> str | None:
        if stage == "data" and n == 0 and rcpt == "lead0@dest0.example":
            now.advance(seconds=-30)
            with session_scope(db) as s:
                suppress(s, "lead1@dest1.example", "unsubscribed")
                stop_sequence(s, leads[1], "unsubscribed")
        return None

    server = smtp_servers(script=script)
    outreach_pg.provider("relay", server.port)

    report = drain_queue(db, "w", now_fn=now)

    assert [r.rcpt_tos for r in server.received] == [["lead0@dest0.example"],
                                                     ["lead2@dest2.example"]]
    assert (report.sent, report.cancelled) == (2, 1)
    rows = outreach_pg.emails(ids)
    assert [rows[i].status for i in ids] == ["sent", "cancelled", "sent"]


def test_a_claim_expired_mid_batch_is_said_so_even_when_a_provider_was_down(
    outreach_pg, smtp_servers, send_clock
):
    """A provider down earlier in the batch turns the batch's leftovers into "no SMTP provider
    reachable" (a short backoff); a message the last check found with its claim expired keeps
    its own reason and waits like any lost claim."""
    from tests.conftest import free_port

    db = outreach_pg.db_url
    now = send_clock()

    def script(stage: str, rcpt: str, n: int) -> str | None:
        if stage == "data" and n == 0 and rcpt == "lead0@dest0.example":
            now.advance(minutes=11)
        return None

    good = smtp_servers(script=script)
    outreach_pg.provider("down", free_port(), priority=1)
    outreach_pg.provider("good", good.port, priority=2)
    cid = outreach_pg.campaign(steps=(0, 3))
    ids = outreach_pg.queue(cid, outreach_pg.leads(3))

    report = drain_queue(db, "slow", now_fn=now)

    assert [r.rcpt_tos for r in good.received] == [["lead0@dest0.example"]]
    assert (report.sent, report.waiting) == (1, 2)
    rows = outreach_pg.emails(ids)
    for i in ids[1:]:
        assert (rows[i].status, rows[i].attempts) == ("queued", 0)
        assert "claim expired" in rows[i].last_error
        assert "no SMTP provider reachable" not in rows[i].last_error


def _links(db: str) -> list[CampaignLead]:
    with session_scope(db) as s:
        return list(s.scalars(select(CampaignLead)))


def test_unreachable_provider_fails_over_and_never_leaks_the_password(
    outreach_pg, smtp_servers, send_clock, caplog, monkeypatch
):
    from leadflow.settings import reset_settings_cache
    from tests.conftest import free_port

    db = outreach_pg.db_url
    good = smtp_servers()
    wrong = smtp_servers()
    outreach_pg.provider("down", free_port(), priority=1)
    outreach_pg.provider("wrong-password", wrong.port, priority=2, password_ref="other_ref")
    outreach_pg.provider("good", good.port, priority=3)
    monkeypatch.setenv("LEADFLOW_SMTP_PASSWORDS__OTHER_REF", "not-the-password-42")
    reset_settings_cache()
    cid = outreach_pg.campaign()
    ids = outreach_pg.queue(cid, outreach_pg.leads(3))

    report = drain_queue(db, "w", now_fn=send_clock())

    assert (report.sent, report.by_provider) == (3, {"good": 3})
    assert len(good.received) == 3 and wrong.received == []
    text = caplog.text + repr(report) + repr(list(outreach_pg.emails(ids).values()))
    for secret in (SMTP_PASSWORD, "not-the-password-42"):
        assert secret not in text
    assert "unavailable" in caplog.text

    # With every provider down the emails wait (no attempt used), not failed.
    with session_scope(db) as s:
        from models import SmtpProvider
        s.get_one(SmtpProvider, 3).is_active = False
    more = outreach_pg.queue(cid, outreach_pg.leads(2, prefix="more"))
    report = drain_queue(db, "w", now_fn=send_clock())
    assert (report.waiting, report.retried) == (2, 0)
    rows = outreach_pg.emails(more).values()
    assert all(r.status == "queued" and r.attempts == 0
               and "no SMTP provider reachable" in r.last_error
               and "535" in r.last_error and "not-the-password-42" not in r.last_error
               for r in rows)


def test_550_5_7_1_at_rcpt_fails_without_bouncing_or_suppressing(outreach_pg, smtp_servers,
                                                                 send_clock):
    refused = "lead0@dest0.example"
    server = smtp_servers(script=lambda stage, rcpt, n: "550 5.7.1 Relaying denied"
                          if stage == "rcpt" and rcpt == refused else None)
    outreach_pg.provider("relay", server.port)
    cid = outreach_pg.campaign()
    ids = outreach_pg.queue(cid, outreach_pg.leads(3))

    report = drain_queue(outreach_pg.db_url, "w", now_fn=send_clock())

    assert (report.sent, report.failed, report.bounced) == (2, 1, 0)
    assert _status(outreach_pg, ids) == {"sent": 2, "failed": 1}
    with session_scope(outreach_pg.db_url) as s:
        assert s.scalars(select(Suppression)).all() == []
        assert "bounced" not in set(s.scalars(select(Lead.status)))


def test_many_5_7_refusals_from_one_provider_move_the_batch_to_another(
    outreach_pg, smtp_servers, send_clock
):
    db = outreach_pg.db_url
    policy = smtp_servers(script=lambda stage, rcpt, n: "553 5.7.1 sender address rejected"
                          if stage == "rcpt" else None)
    spare = smtp_servers()
    outreach_pg.provider("policy", policy.port, priority=1)
    outreach_pg.provider("spare", spare.port, priority=2)
    cid = outreach_pg.campaign()
    ids = outreach_pg.queue(cid, outreach_pg.leads(6))

    report = drain_queue(db, "w", now_fn=send_clock())

    assert (report.sent, report.failed, report.bounced, report.by_provider) == (
        6, 0, 0, {"spare": 6})
    assert len(spare.received) == 6 and policy.received == []
    assert _status(outreach_pg, ids) == {"sent": 6}
    with session_scope(db) as s:
        assert s.scalars(select(Suppression)).all() == []


def test_many_5_7_refusals_and_no_other_provider_the_emails_wait(outreach_pg, smtp_servers,
                                                                 send_clock):
    db = outreach_pg.db_url
    policy = smtp_servers(script=lambda stage, rcpt, n: "550 5.7.1 Relaying denied"
                          if stage == "rcpt" else None)
    outreach_pg.provider("policy", policy.port)
    cid = outreach_pg.campaign()
    ids = outreach_pg.queue(cid, outreach_pg.leads(5))

    report = drain_queue(db, "w", now_fn=send_clock())

    assert (report.failed, report.bounced, report.waiting) == (0, 0, 5)
    rows = outreach_pg.emails(ids).values()
    assert {(r.status, r.attempts) for r in rows} == {("queued", 0)}
    assert all("5.7.1" in r.last_error for r in rows)
    with session_scope(db) as s:
        assert s.scalars(select(Suppression)).all() == []


def test_providers_configured_but_none_active_emails_wait_not_outbox(outreach_pg, send_env,
                                                                      send_clock):
    db = outreach_pg.db_url
    outreach_pg.provider("paused", 2525, is_active=False)
    cid = outreach_pg.campaign()
    ids = outreach_pg.queue(cid, outreach_pg.leads(2))
    now = send_clock()

    report = drain_queue(db, "w", now_fn=now)

    assert (report.sent, report.outbox, report.waiting) == (0, 0, 2)
    assert list(send_env.glob("*.eml")) == []
    rows = outreach_pg.emails(ids).values()
    assert {(r.status, r.attempts, r.sent_at) for r in rows} == {("queued", 0, None)}
    assert all(r.scheduled_at > now.now and "no active SMTP provider" in r.last_error
               for r in rows)


def test_relay_down_longer_than_the_attempts_backoff_emails_wait_then_go(
    outreach_pg, smtp_servers, send_clock
):
    from tests.conftest import free_port

    db = outreach_pg.db_url
    port = free_port()
    pid = outreach_pg.provider("relay", port)
    cid = outreach_pg.campaign()
    ids = outreach_pg.queue(cid, outreach_pg.leads(3))
    now = send_clock()
    delays = []
    # Far more than LEADFLOW_SEND_MAX_ATTEMPTS=3 tries, for about 6 hours of outage.
    for _ in range(12):
        report = drain_queue(db, "w", now_fn=now)
        assert (report.failed, report.waiting) == (0, 3)
        rows = outreach_pg.emails(ids).values()
        assert {(r.status, r.attempts) for r in rows} == {("queued", 0)}
        due = max(r.scheduled_at for r in rows)
        delays.append((due - now.now).total_seconds())
        now.now = due
    assert delays[0] <= 90 and delays[1] >= 120  # base 60 s, doubling
    assert max(delays) <= 3600  # capped at an hour
    assert sum(delays) > 5 * 3600

    server = smtp_servers()
    with session_scope(db) as s:
        from models import SmtpProvider
        s.get_one(SmtpProvider, pid).port = server.port
    report = drain_queue(db, "w", now_fn=now)
    assert report.sent == 3 and len(server.received) == 3
    assert {(r.status, r.attempts) for r in outreach_pg.emails(ids).values()} == {("sent", 1)}


def test_an_hour_boundary_mid_batch_counts_each_send_in_its_own_hour(
    outreach_pg, smtp_servers, send_clock
):
    db = outreach_pg.db_url
    now = send_clock(T0.replace(minute=59))  # 10:59
    sent_in_hour: Counter[dt.datetime] = Counter()

    def script(stage: str, rcpt: str, n: int) -> str | None:
        if stage == "data":  # each message takes 20 s: the batch runs into 11:00
            sent_in_hour[now.now.replace(minute=0, second=0)] += 1
            now.advance(seconds=20)
        return None

    server = smtp_servers(script=script)
    pid = outreach_pg.provider("relay", server.port, hourly=5)
    cid = outreach_pg.campaign()
    outreach_pg.queue(cid, outreach_pg.leads(9))

    report = drain_queue(db, "w", now_fn=now)

    with session_scope(db) as s:
        counts = {c.window_start: c.count for c in s.scalars(
            select(SmtpSendCount).where(SmtpSendCount.provider_id == pid,
                                        SmtpSendCount.window == "hour"))}
    assert dict(sent_in_hour) == counts
    assert all(n <= 5 for n in counts.values())
    assert (report.sent, report.waiting, len(server.received)) == (8, 1, 8)  # 3 + 5


def test_a_database_error_mid_batch_records_what_was_sent_then_fails_the_run(
    outreach_pg, smtp_servers, send_clock
):
    # The provider's hourly limit ends the first reservation after 3 sends; choosing a provider
    # for the other 2 then hits a database error. The 3 messages the server took are recorded
    # sent (not left `sending`, later review, follow-ups cancelled), the 2 others wait for a
    # retry, and the error still fails the run.
    import pytest
    from sqlalchemy import text
    from sqlalchemy.exc import ProgrammingError

    from models.db import get_engine

    db = outreach_pg.db_url
    broken = {"done": False}

    def script(stage: str, rcpt: str, n: int) -> str | None:
        if stage == "data" and n == 2 and not broken["done"]:
            with get_engine(db).begin() as conn:
                conn.execute(text("ALTER TABLE smtp_send_counts RENAME TO smtp_send_counts_x"))
            broken["done"] = True
        return None

    server = smtp_servers(script=script)
    pid = outreach_pg.provider("relay", server.port, hourly=3)
    cid = outreach_pg.campaign(steps=(0, 3))
    ids = outreach_pg.queue(cid, outreach_pg.leads(5))
    now = send_clock()
    try:
        with pytest.raises(ProgrammingError, match="smtp_send_counts"):
            drain_queue(db, "w", now_fn=now)
    finally:
        with get_engine(db).begin() as conn:
            conn.execute(text("ALTER TABLE smtp_send_counts_x RENAME TO smtp_send_counts"))

    rows = outreach_pg.emails(ids).values()
    delivered = {r.message_id for r in server.received}
    assert len(delivered) == 3
    assert {(r.status, r.provider_id, r.sent_at) for r in rows if r.message_id in delivered} == {
        ("sent", pid, now.now)}
    waiting = [r for r in rows if r.message_id not in delivered]
    assert len(waiting) == 2 and all(
        r.status == "queued" and r.claimed_by is None and r.scheduled_at > now.now
        and "ProgrammingError" in r.last_error for r in waiting)
    follow_ups = [e for e in outreach_pg.emails().values() if e.step_number == 2]
    assert {e.status for e in follow_ups} == {"scheduled"}
    with session_scope(db) as s:
        assert s.get_one(Campaign, cid).emails_sent == 3

    now.advance(minutes=5)
    assert drain_queue(db, "w", now_fn=now).sent == 0  # the hour's limit is used up
    now.advance(hours=1)
    assert drain_queue(db, "w", now_fn=now).sent == 2
    assert Counter(server.message_ids()) == Counter({m: 1 for m in server.message_ids()})


def test_an_outbox_write_failing_mid_batch_records_the_messages_written(
    outreach_pg, send_env, send_clock
):
    import pytest

    db = outreach_pg.db_url
    cid = outreach_pg.campaign(steps=(0, 3))
    ids = outreach_pg.queue(cid, outreach_pg.leads(3))
    with session_scope(db) as s:  # a Message-ID the outbox cannot name a file after
        from models import Email
        s.execute(update(Email).where(Email.id == ids[1]).values(message_id="<>"))

    with pytest.raises(ValueError, match="empty Message-ID"):
        drain_queue(db, "w", now_fn=send_clock())

    rows = outreach_pg.emails(ids)
    assert [rows[i].status for i in ids] == ["sent", "queued", "queued"]
    assert len(list(send_env.glob("*.eml"))) == 1
    assert all("empty Message-ID" in rows[i].last_error for i in ids[1:])
