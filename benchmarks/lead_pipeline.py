"""End-to-end lead generation benchmark: the real flow (Prefect, httpx clients, Hunter enrichment,
website fetch and analysis, scoring, dedupe, Great Expectations, load) against the sandbox with a
fixed latency per call, on a throwaway PostgreSQL database.

    python benchmarks/lead_pipeline.py --leads 10000

Prints per-stage times and ends with `leads_per_s=<n> orchestration_share=<0..1> peak_rss_mb=<n>`.
Orchestration share is the part of the wall time spent outside every stage's own code (Prefect
task and flow overhead, glue); peak RSS is the flow process plus its parse workers, sampled."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from leadflow.runtime import apply_runtime_defaults  # noqa: E402

apply_runtime_defaults()

import psutil  # noqa: E402
import psycopg  # noqa: E402

ADMIN_URL = os.environ.get("LEADFLOW_BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


class RssSampler(threading.Thread):
    """Samples the RSS of this process and its children except `exclude` (the sandbox)."""

    def __init__(self, exclude: set[int]) -> None:
        super().__init__(daemon=True)
        self.exclude = exclude
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        me = psutil.Process()
        while not self.stop.is_set():
            total = me.memory_info().rss
            for child in me.children(recursive=True):
                if child.pid in self.exclude:
                    continue
                with contextlib.suppress(psutil.Error):  # a worker may have just exited
                    total += child.memory_info().rss
            self.peak = max(self.peak, total)
            self.stop.wait(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--industry", default="salon")
    parser.add_argument("--location", default="United States")
    parser.add_argument("--businesses", type=int, default=0, help="sandbox size (default: auto)")
    args = parser.parse_args()

    # Enough businesses that the search can return --leads rows: a salon-like industry is about
    # a third of the dataset and Apollo lists 80% of businesses (500 pages of 100 at most, after
    # which the flow falls back to the next source).
    share = 1.0 if args.industry.lower() == "any" else 0.3
    businesses = args.businesses or max(20_000, int(args.leads / (0.8 * share) * 1.2))
    name = f"leadflow_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    os.environ["LEADFLOW_DATABASE_URL"] = url

    from leadflow.demo import start_sandbox
    from sandbox.environment import sandbox_env

    print(f"sandbox: {businesses} businesses, {args.latency_ms} ms latency per response",
          flush=True)
    proc, port = start_sandbox(businesses=businesses, latency_ms=args.latency_ms)
    os.environ.update(sandbox_env("127.0.0.1", port))
    try:
        run(args, url, proc.pid)
    finally:
        proc.kill()
        proc.wait(timeout=10)
        from models.db import dispose_engines

        dispose_engines()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(args: argparse.Namespace, url: str, sandbox_pid: int) -> None:
    from prefect import flow
    from sqlalchemy import update

    from flows.generate_leads import generate_leads
    from leadflow.settings import get_settings, reset_settings_cache
    from models import ApiConfig
    from models.db import session_scope, upgrade_database
    from tasks.usage import ensure_api_configs

    reset_settings_cache()
    upgrade_database(url)
    with session_scope(url) as session:  # the benchmark must not hit the sandbox plans' limits
        ensure_api_configs(session)
        session.execute(update(ApiConfig).values(monthly_limit=100_000_000))

    @flow(name="warm-up")
    def warm_up() -> None:  # starts Prefect's server outside the measured time
        return None

    warm_up()
    # Once-per-process start-up costs, outside the measured time like the Prefect server: the
    # Great Expectations import and suite, and the worker processes of the site analyser.
    import pandas as pd

    from tasks.validation import validate_batch
    from tasks.website.analyse import parse_pool

    validate_batch(pd.DataFrame({"source": ["apollo"], "source_record_id": ["warm-up"]}))
    settings = get_settings()
    pool = parse_pool(settings.parse_workers * settings.pipeline_depth)
    if pool is not None:
        list(pool.map(abs, range(16)))
    sandbox = psutil.Process(sandbox_pid)
    me = psutil.Process()

    def cpu_seconds() -> tuple[float, float]:
        own = me.cpu_times()
        kids = sum((c.cpu_times().user + c.cpu_times().system) for c in me.children(recursive=True)
                   if c.pid != sandbox_pid)
        box = sandbox.cpu_times()
        return own.user + own.system + kids, box.user + box.system

    cpu_before = cpu_seconds()
    sampler = RssSampler(exclude={sandbox_pid})
    sampler.start()
    start = time.perf_counter()
    summary = generate_leads(source="apollo", industry=args.industry, location=args.location,
                             max_results=args.leads, enrich=True, analyse=True)
    wall = time.perf_counter() - start
    sampler.stop.set()
    sampler.join()
    cpu_after = cpu_seconds()
    pipeline_cpu, sandbox_cpu = (a - b for a, b in zip(cpu_after, cpu_before, strict=True))

    stages = summary["stage_seconds"]
    processed = summary["leads_generated"] + summary["leads_merged"] + summary["rows_rejected"]
    orchestration = stages.pop("orchestration")
    share = orchestration / wall
    print(f"{'stage':<12} {'seconds':>9}  (summed over chunks; chunks overlap, so the sum can "
          "exceed the wall time)")
    for stage, seconds in sorted(stages.items(), key=lambda kv: -kv[1]):
        print(f"{stage:<12} {seconds:>9.2f}")
    print(f"wall {wall:.2f} s, Prefect orchestration {orchestration:.2f} s, "
          f"processed {processed} rows "
          f"({summary['leads_generated']} new leads, {summary['leads_merged']} merged, "
          f"{summary['rows_rejected']} quarantined), sources {summary['sources_used']}")
    print(f"cpu: pipeline {pipeline_cpu:.1f} s (incl. parse workers), sandbox {sandbox_cpu:.1f} s, "
          f"of {2 * wall:.1f} core-seconds available on 2 cores")
    for note in summary["notes"]:
        print(f"note: {note}")
    print(f"leads_per_s={processed / wall:.1f} orchestration_share={share:.3f} "
          f"peak_rss_mb={sampler.peak / 2**20:.0f}")


if __name__ == "__main__":
    main()
