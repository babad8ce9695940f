"""Send throughput: the outreach pipeline against the bare SMTP ceiling, and provider limits
under concurrent workers.

    python benchmarks/send_throughput.py [--emails 10000] [--runs 3] [--workers 4]

A local aiosmtpd server runs in its own process (loopback, no auth, no TLS) and keeps the
Message-ID of every message it accepts, per port, which the benchmark reads back over a pipe.
Each run measures, side by side on the same server:

- ceiling (before and after the pipeline, averaged): pre-built messages sent by `--workers`
  client processes with smtplib, one reused connection each, no database;
- pipeline: a fresh PostgreSQL database with `--emails` leads enqueued on a campaign (the
  default sequence), then `--workers` worker processes that compose the first emails
  (tasks.outreach.compose.compose_emails, each worker its share), claim, send and record them
  (tasks.outreach.queue.drain_queue), provider limits lifted. Enqueueing is timed apart.

Then a limits phase: two providers (hourly limits 3,000 and 2,000) on two ports, 6,000 emails,
the same workers; nothing may pass a limit. Ends with
`emails_per_s=<n> ceiling_per_s=<n> ratio=<n> workers=4 delivered=<n> duplicates=<n> missing=<n>
over_limit=<n>`: medians over the runs; delivered/duplicates/missing of the last run (every run
is checked), over_limit from the limits phase.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import re
import smtplib
import sys
import time
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._common import (  # noqa: E402
    machine_description,
    median,
    quiet_environment,
    throwaway_database,
)

_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)
NOW = dt.datetime(2025, 3, 3, 10, 0, tzinfo=dt.UTC)
TRACKING_SECRET = "send-throughput-benchmark-key-0123456789"


# --- the SMTP server process -------------------------------------------------------------


def serve(ports: list[int], mode: str, spool: Path, conn: Connection) -> None:
    """Run one aiosmtpd server per port until told to stop; answer 'ids' with the Message-IDs
    received per port, 'reset' by forgetting them.

    mode `parse` (the default) reads each message as a receiving server or a test would: the
    standard email parser, and the Message-ID appended to a spool file per port. mode `light`
    only finds the Message-ID with a regular expression: the cheapest server possible."""
    import logging
    from email import message_from_bytes
    from email.policy import default

    from aiosmtpd.controller import Controller

    logging.getLogger("mail.log").setLevel(logging.WARNING)
    received: dict[int, list[str]] = {p: [] for p in ports}

    class Sink:
        def __init__(self, port: int) -> None:
            self.ids = received[port]
            self.spool = open(spool / f"received-{port}.txt", "a")  # noqa: SIM115

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            if mode == "parse":
                msg = message_from_bytes(envelope.original_content, policy=default)
                message_id = str(msg["Message-ID"])
                self.spool.write(message_id + "\n")
                self.spool.flush()
            else:
                m = _MESSAGE_ID.search(envelope.original_content)
                message_id = m.group(1).decode() if m else ""
            self.ids.append(message_id)
            return "250 OK"

    controllers = [Controller(Sink(p), hostname="127.0.0.1", port=p, ident="bench")
                   for p in ports]
    for c in controllers:
        c.start()
    conn.send("ready")
    while True:
        command = conn.recv()
        if command == "ids":
            conn.send({p: list(ids) for p, ids in received.items()})
        elif command == "cpu":
            import resource

            usage = resource.getrusage(resource.RUSAGE_SELF)
            conn.send(usage.ru_utime + usage.ru_stime)
        elif command == "reset":
            for ids in received.values():
                ids.clear()
            conn.send("ok")
        else:
            break
    for c in controllers:
        c.stop()


class SmtpSink:
    def __init__(self, ports: list[int], mode: str, spool: Path) -> None:
        ctx = mp.get_context("spawn")
        self.ports = ports
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=serve, args=(ports, mode, spool, child), daemon=True)
        self.proc.start()
        assert self.conn.recv() == "ready"

    def ids(self) -> dict[int, list[str]]:
        self.conn.send("ids")
        return self.conn.recv()

    def cpu_s(self) -> float:
        self.conn.send("cpu")
        return self.conn.recv()

    def reset(self) -> None:
        self.conn.send("reset")
        self.conn.recv()

    def stop(self) -> None:
        self.conn.send("stop")
        self.proc.join(10)


def free_ports(n: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


# --- ceiling: bare smtplib clients ----------------------------------------------------------


def sample_message(i: int) -> bytes:
    """A message shaped like the pipeline's (multipart, ~3 KB), with its own Message-ID."""
    from tasks.outreach.message import OutgoingEmail, build_message

    text = ("Hi Jane,\n\nI noticed Bella Salon takes bookings by phone. " * 9 + "\n\n"
            "Best,\nSam\n\nSam at Booknex, 100 Example Street, Springfield\n"
            "Unsubscribe: https://t.example/u/u1.abcdefghijklmnopqrstuv\n")
    html = "<p>" + text.replace("\n", "<br>\n") + "</p><img src=\"https://t.example/o/x.gif\">"
    return build_message(OutgoingEmail(
        i, f"<bench.{i}@sender.example>", "Online bookings for Bella Salon", text, html,
        "Sam", "sam@sender.example", f"owner{i}@biz{i}.example", "Jane", NOW,
    )).as_bytes()


def ceiling_client(port: int, messages: list[bytes], nice: int, start: Any, out: Any) -> None:
    import os

    os.nice(nice)
    start.wait()
    t0 = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.ehlo()
        for i, msg in enumerate(messages):
            smtp.sendmail("sam@sender.example", [f"r{i}@dest.example"], msg)
    out.put(time.perf_counter() - t0)


def measure_ceiling(sink: SmtpSink, port: int, total: int, workers: int, offset: int,
                    nice: int) -> float:
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    shares = [[sample_message(offset + i) for i in range(w, total, workers)]
              for w in range(workers)]
    procs = [ctx.Process(target=ceiling_client, args=(port, s, nice, start, out))
             for s in shares]
    for p in procs:
        p.start()
    time.sleep(1.0)  # let the clients import and connect before the clock starts
    t0 = time.perf_counter()
    start.set()
    for p in procs:
        p.join()
    wall = time.perf_counter() - t0
    got = len(sink.ids()[port])
    if got != total:
        raise RuntimeError(f"ceiling: server got {got} of {total} messages")
    return total / wall


# --- pipeline: queue, compose, claim, send, record -----------------------------------------


def bench_env(outbox: Path) -> dict[str, str]:
    return {
        "LEADFLOW_TRACKING_SECRET": TRACKING_SECRET,
        "LEADFLOW_TRACKING_BASE_URL": "https://t.example",
        "LEADFLOW_OUTBOX_DIR": str(outbox),
        "LEADFLOW_SEND_BATCH_SIZE": "100",
        "LEADFLOW_DB_POOL_SIZE": "2",
    }


def prepare_queue(db_url: str, emails: int, providers: list[tuple[str, int, int]]
                  ) -> dict[str, float]:
    """Leads, a campaign on the default sequence, the providers (name, port, hourly limit);
    every lead enqueued. Returns the seconds of each preparation step."""
    from sqlalchemy import insert, select

    from models import Lead, SmtpProvider
    from models.db import session_scope
    from tasks.outreach.campaign_leads import link_leads
    from tasks.outreach.defaults import create_campaign
    from tasks.outreach.queue import enqueue_sequences

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    with session_scope(db_url) as s:
        s.execute(insert(Lead), [
            {"company_name": f"Bella Salon {i}", "contact_name": f"Jane {i}",
             "email": f"owner{i}@biz{i}.example", "email_norm": f"owner{i}@biz{i}.example",
             "website": f"https://biz{i}.example/", "domain": f"biz{i}.example",
             "city": "Austin", "industry": "salon", "phone": "+1 512 555 0100",
             "booking_tools": [], "digital_maturity": 40, "booking_keyword_count": 0,
             "source": "apollo", "sources": ["apollo"], "score_breakdown": {}}
            for i in range(emails)
        ])
        campaign_id = create_campaign(
            s, name="bench", status="active", send_window_start_hour=0, send_window_end_hour=0,
            send_weekdays=[0, 1, 2, 3, 4, 5, 6], timezone="UTC")
        for priority, (name, port, hourly) in enumerate(providers):
            s.add(SmtpProvider(name=name, host="127.0.0.1", port=port, security="none",
                               hourly_limit=hourly, daily_limit=10**9, priority=priority))
        lead_ids = list(s.scalars(select(Lead.id).order_by(Lead.id)))
    link_leads(db_url, campaign_id, lead_ids)
    timings["seed_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = enqueue_sequences(db_url, campaign_id, lead_ids, NOW)
    timings["enqueue_s"] = time.perf_counter() - t0
    if report.queued_leads != emails:
        raise RuntimeError(f"enqueue: {report}")
    return timings


def pipeline_worker(db_url: str, env: dict[str, str], worker: int, workers: int, nice: int,
                    start: Any, out: Any) -> None:
    import os

    os.nice(nice)
    os.environ.update(env)
    from sqlalchemy import select

    from models import Email
    from models.db import session_scope
    from tasks.outreach.compose import compose_emails
    from tasks.outreach.queue import drain_queue

    with session_scope(db_url) as s:  # warm the pool and the imports before the clock
        mine = [i for i in s.scalars(select(Email.id).where(Email.step_number == 1)
                                     .order_by(Email.id)) if i % workers == worker]
    import resource

    start.wait()
    t0 = time.perf_counter()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    compose_s = 0.0
    sent = 0
    name = f"bench-{worker}"
    for at in range(0, len(mine), 200):
        c0 = time.perf_counter()
        compose_emails(db_url, mine[at : at + 200], NOW)
        compose_s += time.perf_counter() - c0
        sent += drain_queue(db_url, name, now_fn=lambda: NOW, max_emails=200).sent
    report = drain_queue(db_url, name, now_fn=lambda: NOW)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
    out.put({"worker": worker, "wall_s": time.perf_counter() - t0, "compose_s": compose_s,
             "cpu_s": cpu_s,
             "sent": sent + report.sent, "waiting": report.waiting})


def run_pipeline(db_url: str, workers: int, outbox: Path, nice: int
                 ) -> tuple[float, list[dict[str, Any]]]:
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    env = bench_env(outbox)
    procs = [ctx.Process(target=pipeline_worker,
                         args=(db_url, env, w, workers, nice, start, out))
             for w in range(workers)]
    for p in procs:
        p.start()
    time.sleep(3.0)  # imports and the first query, outside the clock
    t0 = time.perf_counter()
    start.set()
    results = [out.get() for _ in procs]
    wall = time.perf_counter() - t0
    for p in procs:
        p.join()
    return wall, results


def delivery_check(received: list[str], expected: set[str]) -> tuple[int, int, int]:
    """(delivered, duplicates, missing) of the expected Message-IDs."""
    counts = Counter(received)
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    return len(set(counts) & expected), duplicates, len(expected - set(counts))


def sent_message_ids(db_url: str) -> set[str]:
    from sqlalchemy import select

    from models import Email
    from models.db import session_scope

    with session_scope(db_url) as s:
        return set(s.scalars(select(Email.message_id).where(Email.status == "sent")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=10_000)
    parser.add_argument("--ceiling-emails", type=int, default=4_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--limits-emails", type=int, default=6_000)
    parser.add_argument("--nice", type=int, default=10,
                        help="niceness of the client and worker processes, so that the SMTP "
                        "server, another machine in production, is not starved of CPU by them")
    parser.add_argument("--server", choices=["parse", "light"], default="parse",
                        help="what the SMTP server does with each message (see serve())")
    args = parser.parse_args()
    quiet_environment()
    import os
    import tempfile

    outbox = Path(tempfile.mkdtemp(prefix="send-bench-outbox-"))
    os.environ.update(bench_env(outbox))
    ports = free_ports(3)
    sink = SmtpSink(ports, args.server, outbox)
    rates, ceilings, ratios = [], [], []
    checks: tuple[int, int, int] = (0, 0, 0)
    duplicates_total = 0
    try:
        for run in range(1, args.runs + 1):
            # The ceiling is taken just before and just after the pipeline and averaged, so a
            # change in the machine's load during the run weighs on both sides alike.
            sink.reset()
            before = measure_ceiling(sink, ports[0], args.ceiling_emails, args.workers,
                                     offset=run * 1_000_000, nice=args.nice)
            sink.reset()
            server_cpu0 = sink.cpu_s()
            with throwaway_database("leadflow_bench_send") as db_url:
                prep = prepare_queue(db_url, args.emails, [("relay", ports[0], 10**9)])
                wall, results = run_pipeline(db_url, args.workers, outbox, args.nice)
                expected = sent_message_ids(db_url)
                if run == 1:
                    print(f"machine: {machine_description(db_url)}; server mode {args.server}, "
                          f"clients at nice {args.nice}")
            received = sink.ids()[ports[0]]
            server_ms = (sink.cpu_s() - server_cpu0) * 1000 / max(1, len(received))
            sink.reset()
            after = measure_ceiling(sink, ports[0], args.ceiling_emails, args.workers,
                                    offset=run * 1_000_000 + 500_000, nice=args.nice)
            ceiling = (before + after) / 2
            worker_ms = sum(r["cpu_s"] for r in results) * 1000 / max(1, len(received))
            checks = delivery_check(received, expected)
            delivered, duplicates, missing = checks
            missing += args.emails - len(expected)  # never sent at all
            checks = (delivered, duplicates, missing)
            duplicates_total += duplicates
            rate = len(received) / wall
            rates.append(rate)
            ceilings.append(ceiling)
            ratios.append(rate / ceiling)
            compose = sorted(r["compose_s"] for r in results)
            print(f"run {run}: ceiling {ceiling:.0f}/s ({before:.0f} before, {after:.0f} "
                  f"after), pipeline {rate:.0f}/s "
                  f"({len(received):,} in {wall:.1f} s; ratio {rate / ceiling:.2f}); "
                  f"seed {prep['seed_s']:.1f} s, enqueue {prep['enqueue_s']:.1f} s "
                  f"({3 * args.emails:,} rows); compose per worker "
                  f"{compose[0]:.1f}-{compose[-1]:.1f} s; CPU per email: workers "
                  f"{worker_ms:.2f} ms, server {server_ms:.2f} ms; delivered {delivered:,} "
                  f"duplicates {duplicates} missing {missing}", flush=True)

        # Limits: two providers, hourly 3,000 and 2,000, more emails than both allow.
        sink.reset()
        limits = {ports[1]: 3_000, ports[2]: 2_000}
        with throwaway_database("leadflow_bench_send") as db_url:
            prepare_queue(db_url, args.limits_emails,
                          [("a", ports[1], limits[ports[1]]), ("b", ports[2], limits[ports[2]])])
            wall, results = run_pipeline(db_url, args.workers, outbox, args.nice)
            expected = sent_message_ids(db_url)
        ids = sink.ids()
        over_limit = sum(max(0, len(ids[p]) - limit) for p, limit in limits.items())
        both = ids[ports[1]] + ids[ports[2]]
        delivered, duplicates, missing = delivery_check(both, expected)
        duplicates_total += duplicates
        print(f"limits: a {len(ids[ports[1]]):,}/{limits[ports[1]]:,}, "
              f"b {len(ids[ports[2]]):,}/{limits[ports[2]]:,}, waiting for the next hour "
              f"{args.limits_emails - len(expected):,}; "
              f"duplicates {duplicates}, missing {missing}, over_limit {over_limit} "
              f"({wall:.1f} s)", flush=True)
    finally:
        sink.stop()
    delivered, _dups, missing = checks
    print(f"emails_per_s={median(rates):.0f} ceiling_per_s={median(ceilings):.0f} "
          f"ratio={median(ratios):.2f} workers={args.workers} delivered={delivered} "
          f"duplicates={duplicates_total} missing={missing} over_limit={over_limit}")


if __name__ == "__main__":
    main()
