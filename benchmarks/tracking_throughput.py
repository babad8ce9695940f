"""Tracking app throughput against its ceiling, on PostgreSQL.

    python benchmarks/tracking_throughput.py [--rounds 3] [--duration 20] [--connections 64]
        [--emails 3000] [--http h11|httptools] [--loop auto|asyncio|uvloop]
        [--profile app.pstats]

Makes a throwaway PostgreSQL database (migrated) with a campaign and `--emails` sent emails,
then measures, one after the other on the same server stack (uvicorn as `tracking_app.serve`
configures it, one process each):
  - the ceiling: a bare Starlette endpoint answering /o/<token>.gif with the same GIF response,
    no database;
  - the app: `tracking_app.serve` on that database;
as ceiling, app, ceiling, app, ... ceiling: `--rounds` app runs, each compared with the mean of
the ceiling runs on either side of it (the machine is shared), each on an emptied events table.
Both are driven by the same load generator, a separate process (raw asyncio HTTP/1.1
keep-alive on uvloop, `--connections` connections) on loopback, with valid signed pixel URLs
of random emails from random client networks (X-Forwarded-For from a trusted proxy, so some
hits are repeats, as in real traffic). Each run gets `--warmup` seconds, then `--duration`
measured. After the app has stopped (its writer drains on shutdown), the events in the
database are counted: lost = 2xx responses - rows written (must be 0).

The machine has 2 cores: generator, server and PostgreSQL share them, so only the side-by-side
ratio is meaningful. The last line is the rounds' median (lost: their sum):
    ratio=<app/ceiling> app_rps=... ceiling_rps=... p99_ms=... lost=<2xx - rows written> rounds=N
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import psutil
from _common import ROOT, machine_description, psycopg_dsn, throwaway_database

SECRET = "benchmark-tracking-secret-0123456789"
USER_AGENT = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 "
              "(KHTML, like Gecko) Version/17.5 Safari/605.1.15")
ENV = {
    "LEADFLOW_TRACKING_SECRET": SECRET,
    "LEADFLOW_TRACKING_TRUSTED_PROXIES": '["127.0.0.1/32"]',
}


# --- the two servers -------------------------------------------------------------------------

def serve_ceiling(port: int, http: str, loop: str) -> None:
    """The ceiling: same route shape (a plain ASGI endpoint in a Starlette route, as the app's
    open route is), same GIF response object, same uvicorn configuration, no database."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Route
    from starlette.types import Receive, Scope, Send

    from tracking_app.app import PIXEL_RESPONSE
    from tracking_app.serve import server_config

    class OpenPixel:
        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            await PIXEL_RESPONSE(scope, receive, send)

    app = Starlette(routes=[Route("/o/{token}.gif", OpenPixel(), methods=["GET", "HEAD"])])
    uvicorn.Server(server_config(app, "127.0.0.1", port, http=http, loop=loop)).run()


def start_server(kind: str, port: int, db_url: str,
                 args: argparse.Namespace) -> subprocess.Popen[bytes]:
    if kind == "app":
        code = (f"from tracking_app.serve import serve; serve('127.0.0.1', {port}, {db_url!r}, "
                f"http={args.http!r}, loop={args.loop!r})")
        if args.profile:
            # cProfile of the whole app process (start-up, load and shutdown), written when it
            # stops; its overhead lowers the app's figures: use them for where the CPU goes,
            # not for the ratio.
            # uvicorn raises the SIGTERM again once it has shut down: exit through `finally`.
            # Wall-clock timer: a CPU-time timer is a system call per function call here,
            # which swamps the figures. So a send() that hands the core to the peer process
            # counts as the sender's time.
            code = (f"import cProfile, signal, sys\n"
                    f"signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
                    f"prof = cProfile.Profile()\nprof.enable()\ntry:\n"
                    f"    {code}\nfinally:\n    prof.disable()\n"
                    f"    prof.dump_stats({args.profile!r})")
        cmd = [sys.executable, "-c", code]
    else:
        cmd = [sys.executable, __file__, "--serve-ceiling", str(port), args.http, args.loop]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **ENV},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    import socket

    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{kind} server did not start")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(timeout=60)


# --- the load generator (its own process) ---------------------------------------------------

class _Connection(asyncio.Protocol):
    """One keep-alive connection sending one request at a time and timing each response."""

    def __init__(self, gen: _Load) -> None:
        self.gen = gen
        self.buf = b""
        self.sent_at = 0.0
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.send()

    def send(self) -> None:
        if time.perf_counter() >= self.gen.stop_at:
            assert self.transport is not None
            self.transport.close()
            return
        self.sent_at = time.perf_counter()
        assert self.transport is not None
        self.transport.write(self.gen.next_request())

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length:]
            self.gen.record(int(head[9:12]), time.perf_counter() - self.sent_at, self.sent_at)
            self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class _Load:
    def __init__(self, paths: list[str], warmup: float, duration: float) -> None:
        self.requests = [
            (f"GET {p} HTTP/1.1\r\nHost: tracking\r\nUser-Agent: {USER_AGENT}\r\n"
             f"X-Forwarded-For: {random.randint(1, 223)}.{random.randint(0, 255)}."
             f"{random.randint(0, 255)}.{random.randint(1, 254)}\r\n\r\n").encode()
            for p in paths
        ]
        self.i = 0
        now = time.perf_counter()
        self.measure_from = now + warmup
        self.stop_at = self.measure_from + duration
        self.status: dict[int, int] = {}
        self.ok_total = 0
        self.ok_measured = 0
        self.latencies: list[float] = []

    def next_request(self) -> bytes:
        self.i = (self.i + 1) % len(self.requests)
        return self.requests[self.i]

    def record(self, status: int, latency: float, sent_at: float) -> None:
        self.status[status] = self.status.get(status, 0) + 1
        ok = 200 <= status < 300
        self.ok_total += ok
        if sent_at >= self.measure_from:
            self.ok_measured += ok
            self.latencies.append(latency)


async def _drive(port: int, paths: list[str], connections: int, warmup: float,
                 duration: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    gen = _Load(paths, warmup, duration)
    conns = []
    for _ in range(connections):
        _, proto = await loop.create_connection(lambda: _Connection(gen), "127.0.0.1", port)
        conns.append(proto)
    await asyncio.gather(*(c.closed for c in conns))
    lat = sorted(gen.latencies)
    return {
        "ok_total": gen.ok_total, "ok_measured": gen.ok_measured, "status": gen.status,
        "rps": gen.ok_measured / duration,
        "p50_ms": lat[len(lat) // 2] * 1000 if lat else None,
        "p99_ms": lat[int(len(lat) * 0.99)] * 1000 if lat else None,
    }


def run_load(port: int, paths_file: str, connections: int, warmup: float,
             duration: float) -> None:
    with open(paths_file) as fh:
        paths = json.load(fh)
    # uvloop: the generator shares the two cores with the server and PostgreSQL, so the less
    # CPU it needs per request the less it takes from either side (the same for both).
    import uvloop

    print(json.dumps(uvloop.run(_drive(port, paths, connections, warmup, duration))))


def load(port: int, paths_file: str, args: argparse.Namespace) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--load", str(port), paths_file,
         str(args.connections), str(args.warmup), str(args.duration)],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


# --- the data ---------------------------------------------------------------------------------

def seed(db_url: str, n: int) -> list[int]:
    """A campaign with n leads, each sent one email an hour ago; the emails' ids."""
    from models import Campaign, Email, EmailLink, Lead, Sequence, SequenceStep
    from models.db import session_scope

    sent = datetime.now(UTC) - timedelta(hours=1)
    with session_scope(db_url) as s:
        seq = Sequence(name="bench")
        s.add(seq)
        s.flush()
        step = SequenceStep(sequence_id=seq.id, step_number=1, name="initial",
                            lead_status="contacted")
        campaign = Campaign(name="bench", sequence_id=seq.id, sender_name="Sam",
                            sender_email="sam@booknex.example", sender_postal_address="1 St")
        s.add_all([step, campaign])
        s.flush()
        leads = [Lead(company_name=f"Salon {i}", source="apollo") for i in range(n)]
        s.add_all(leads)
        s.flush()
        emails = [Email(campaign_id=campaign.id, lead_id=lead.id, step_id=step.id,
                        step_number=1, status="sent", scheduled_at=sent, sent_at=sent,
                        to_email=f"owner{lead.id}@salon.example") for lead in leads]
        s.add_all(emails)
        s.flush()
        s.add_all(EmailLink(email_id=e.id, position=0, url="https://booknex.example/demo")
                  for e in emails)
        return [e.id for e in emails]


def _main_thread_cpu(proc: psutil.Process) -> float:
    """CPU seconds of the process's main thread (the event loop's)."""
    return next(t.user_time + t.system_time for t in proc.threads() if t.id == proc.pid)


def backend_cpu(db_url: str) -> float:
    """CPU seconds used so far by the PostgreSQL backends connected to the benchmark's database
    (the app's connections; WAL writer and checkpointer not included)."""
    import psycopg

    with psycopg.connect(psycopg_dsn(db_url)) as conn:
        pids = [r[0] for r in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()")]
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):  # gone meanwhile
            total += sum(psutil.Process(pid).cpu_times()[:2])
    return total


def count_events(db_url: str) -> int:
    import psycopg

    with psycopg.connect(psycopg_dsn(db_url)) as conn:
        return int(conn.execute("SELECT count(*) FROM email_events").fetchone()[0])  # type: ignore[index]


# --- the run ----------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--emails", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3,
                        help="app runs, each between two ceiling runs; the median is reported")
    # uvicorn's HTTP parser and event loop, the same for both sides (default: what
    # tracking_app.serve uses, h11 and uvloop when installed).
    parser.add_argument("--http", choices=("h11", "httptools"), default="h11")
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    parser.add_argument("--profile", metavar="PATH",
                        help="write a cProfile of the app process to PATH (pstats format)")
    args = parser.parse_args()

    os.environ.update(ENV)
    from leadflow import tokens
    from leadflow.settings import reset_settings_cache

    reset_settings_cache()
    from tests.conftest import free_port

    with throwaway_database("leadflow_bench_tracking") as db_url:
        print(machine_description(db_url), flush=True)
        print(f"server stack: uvicorn http={args.http} loop={args.loop}; load average "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
        ids = seed(db_url, args.emails)
        paths = [tokens.open_url(i).split("/", 3)[3] for i in ids]
        random.shuffle(paths)
        paths_file = f"/tmp/tracking_bench_paths_{os.getpid()}.json"
        with open(paths_file, "w") as fh:
            json.dump(["/" + p for p in paths], fh)
        rounds: list[dict[str, float]] = []
        try:
            # The machine is shared: each app run is compared with the mean of the ceiling
            # measured just before and just after it, and the rounds' median is reported.
            before = measure("ceiling", db_url, paths_file, args, free_port())
            for n in range(1, args.rounds + 1):
                reset_events(db_url)  # every round starts from the same database
                app = measure("app", db_url, paths_file, args, free_port())
                rows = count_events(db_url)
                after = measure("ceiling", db_url, paths_file, args, free_port())
                ceiling_rps = (before["rps"] + after["rps"]) / 2
                rounds.append({
                    "ratio": app["rps"] / ceiling_rps, "app_rps": app["rps"],
                    "ceiling_rps": ceiling_rps, "p99_ms": app["p99_ms"],
                    "lost": app["ok_total"] - rows,
                })
                print(f"round {n}: rows written {rows}, app 2xx {app['ok_total']}; "
                      + " ".join(f"{k}={v:.3f}" for k, v in rounds[-1].items()), flush=True)
                before = after
        finally:
            os.unlink(paths_file)
    mid = {k: statistics.median(r[k] for r in rounds) for k in ("ratio", "app_rps",
                                                                 "ceiling_rps", "p99_ms")}
    lost = sum(r["lost"] for r in rounds)
    print(f"ratio={mid['ratio']:.3f} app_rps={mid['app_rps']:.0f} "
          f"ceiling_rps={mid['ceiling_rps']:.0f} p99_ms={mid['p99_ms']:.1f} lost={lost:.0f} "
          f"rounds={len(rounds)}")


def measure(kind: str, db_url: str, paths_file: str, args: argparse.Namespace,
            port: int) -> dict[str, Any]:
    """Start the server, drive it, stop it (the app's writer drains on shutdown)."""
    proc = start_server(kind, port, db_url, args)
    try:
        server = psutil.Process(proc.pid)
        cpu_before = sum(server.cpu_times()[:2])
        main_before = _main_thread_cpu(server)
        result = load(port, paths_file, args)
        # CPU per response of the server process (startup excluded): unlike req/s, hardly
        # moved by what else the machine is doing. The event loop's thread apart: the app's
        # other threads (figures refresh, SQLAlchemy writer) are off the request path.
        cpu = sum(server.cpu_times()[:2]) - cpu_before
        answered = max(1, sum(result["status"].values()))
        result["server_cpu_us"] = round(cpu / answered * 1e6, 1)
        main = _main_thread_cpu(server) - main_before
        result["loop_thread_cpu_us"] = round(main / answered * 1e6, 1)
        # Share of the measured time the event loop's thread was on a core.
        result["loop_busy"] = round(result["loop_thread_cpu_us"] * result["rps"] / 1e6, 2)
        if kind == "app":
            result["pg_cpu_us"] = round(backend_cpu(db_url) / answered * 1e6, 1)
            # Group commit at work: hits per committed batch (warm-up included).
            health = json.loads(urllib.request.urlopen(
                f"http://127.0.0.1:{port}/healthz", timeout=10).read())
            result["hits_per_batch"] = round(
                health["events_committed"] / max(1, health["batches_committed"]), 1)
    finally:
        stop_server(proc)
    print(f"{kind}: {json.dumps(result)}", flush=True)
    return result


def reset_events(db_url: str) -> None:
    """No events and no figures, as after seeding."""
    import psycopg

    with psycopg.connect(psycopg_dsn(db_url)) as conn:
        conn.execute("TRUNCATE email_events")
        conn.execute("UPDATE emails SET open_count = 0, first_opened_at = NULL, click_count = 0,"
                     " first_clicked_at = NULL, machine_event_count = 0")
        conn.execute("UPDATE leads SET emails_opened = 0, emails_clicked = 0")
        conn.execute("UPDATE campaigns SET emails_opened = 0, emails_clicked = 0")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--serve-ceiling":
        serve_ceiling(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    elif len(sys.argv) > 2 and sys.argv[1] == "--load":
        run_load(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5]),
                 float(sys.argv[6]))
    else:
        main()
