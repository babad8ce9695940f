"""Benchmark: the offline stages of lead generation (normalise, score, dedupe, validate, load) on
PostgreSQL, and dedupe of a 10,000-lead batch against 1,000,000 existing leads.

One command, no arguments needed: `python benchmarks/offline_stages.py`
(options: --batch 10000 --rounds 5 --existing 1000000 --dedupe-rounds 5 --profile).

It creates its own database `leadflow_bench_<random>` on 127.0.0.1:5432, migrates it with
Alembic and drops it at the end (also on error or SIGTERM). No HTTP and no Prefect: the real
stage functions are called directly, as the flow's tasks call them (orchestration is measured by
benchmarks/lead_pipeline.py).

Part A (throughput). Raw Apollo organization records are built from the sandbox dataset exactly
as the sandbox API serves them (sandbox.apis.apollo.organization), with the network stages'
outcome (Hunter email, website analysis) filled in from the same dataset, untimed. Before the
measured batches, the Google Places listings of a quarter of the businesses are loaded through
the same stages, so some Apollo rows merge into existing leads (by phone, domain or name +
address), and the source's own duplicate listings merge within the batch. One warm-up batch
(the first call builds the Great Expectations suite, ~3-5 s once per process) is excluded.
Then `--rounds` batches of fresh records run as the flows run their chunks: normalise ->
to_frame -> score -> dedupe (against the database) -> validate on the main thread, and the load
(quarantine + load_leads in one transaction: `tasks.steps.load_chunk_body`, the body of the
flow's `load_chunk`) through `tasks.steps.OrderedLoads`, the flows' helper: it starts this
batch's load in the background behind the previous one (loads run one at a time, in batch order;
here on worker threads, in the flows on Prefect's thread-pool task runner) and returns unless
more than one load is waiting, so the next batches' stages overlap the loads.
On PostgreSQL `load_chunk_body` hands the load to the worker process of `tasks.runtime`, as it
does in the flows (spawned at the first load, during the preload: a once-per-process cost).
leads_per_s = all measured leads / wall seconds from the first batch's normalise to the last
batch's commit. Stage seconds are measured as they run, i.e. while sharing the two cores with
the load (its thread here, its worker process and PostgreSQL).

Part B (dedupe at scale). The leads are truncated, 1,000,000 synthetic leads are COPYed in
(benchmarks/dedupe_db.seed_existing_leads) and `dedupe_frame(conn, batch).apply(batch)` (keys,
within-batch clustering, matching against the database) is timed on dedupe_db.make_batch's
10,000-row batch, key caches cleared each round. dedupe_10k_vs_1m_s = the median.

The last line is `leads_per_s=<n> dedupe_10k_vs_1m_s=<seconds>`."""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import (  # noqa: E402
    Stopwatch,
    cpu_by_group,
    cpu_used,
    cpus,
    machine_description,
    median,
    psycopg_dsn,
    quiet_environment,
    spread,
    throwaway_database,
)

quiet_environment()

STAGES = ("normalise", "to_frame", "score", "dedupe", "validate", "load")
SEED = 7
PRELOAD_EVERY = 4  # Google Places listings of every 4th business are in the database already


# --- data: raw vendor records from the sandbox dataset -----------------------------------------


class SandboxRecords:
    """Apollo organization records (as the sandbox API returns them) in fresh slices of `batch`,
    the Google Places records used to preload the database, and each record's business so the
    network stages' outcome can be filled in without HTTP."""

    def __init__(self, batch: int, slices: int, seed: int = SEED) -> None:
        from sandbox.apis.apollo import organization
        from sandbox.apis.google_places import place
        from sandbox.dataset import generate_businesses
        from sandbox.listings import COVERAGE, DUPLICATE_SHARE, build_listings

        needed = batch * slices
        per_business = COVERAGE["apollo"] * (1 + DUPLICATE_SHARE)
        businesses = generate_businesses(int(needed / per_business * 1.03) + 500, seed)
        apollo = build_listings(businesses, "apollo", seed)
        while len(apollo) < needed:  # pragma: no cover - the margin above covers it
            businesses = generate_businesses(int(len(businesses) * 1.2), seed)
            apollo = build_listings(businesses, "apollo", seed)
        apollo = apollo[:needed]
        used = {x.business.index for x in apollo}
        google = [x for x in build_listings(businesses, "google_places", seed)
                  if x.business.index % PRELOAD_EVERY == 0 and x.business.index in used]
        self.business = {x.id: x.business for x in apollo} | {x.id: x.business for x in google}
        self.apollo = [organization(x) for x in apollo]
        self.google = [place(x) for x in google]
        self.batch = batch
        self.businesses = len(businesses)

    def apollo_slice(self, k: int) -> list[dict[str, Any]]:
        return self.apollo[k * self.batch : (k + 1) * self.batch]


def simulate_network_stages(candidates: list[Any], business: dict[str, Any]) -> None:
    """What enrichment (Hunter find + verify) and website analysis would have set, taken from
    the sandbox dataset (the sandbox's Hunter and websites serve the same data)."""
    for c in candidates:
        b = business.get(c.source_record_id)
        if b is None:
            continue
        if b.emails:
            best = sorted(b.emails, key=lambda e: (e.kind != "personal", -e.confidence))[0]
            c.email, c.email_status, c.email_confidence = best.address, best.status, best.confidence
            if best.first_name and best.last_name:
                c.contact_first_name, c.contact_last_name = best.first_name, best.last_name
                c.contact_title = best.position
        site = b.site
        if c.website and site is not None:
            c.website_reachable = site.fault is None
            if site.fault is None:
                c.booking_tools = [site.booking_tool] if site.booking_tool else []
                c.has_contact_form = site.has_contact_form
                c.booking_keyword_count = (3 if site.booking_tool else 0) + site.phone_booking
                c.has_analytics = site.analytics
                c.digital_maturity = min(100, 15 * site.https + 15 * site.viewport
                                         + 15 * site.analytics + 10 * site.social
                                         + 15 * site.structured_data
                                         + 10 * site.has_contact_form
                                         + 20 * (site.layout == "modern"))


# --- part A: the stages, batches pipelined as the flows run them ---------------------------------


class Pipeline:
    """A sequence of batches through the offline stages with the real functions, run as the
    flows run their chunks: normalise -> to_frame -> score -> dedupe -> validate on this
    thread, then the load handed to `tasks.steps.OrderedLoads` (the flows' own helper), which
    queues it behind the previous batch's load on a background thread (the flows use
    Prefect's thread-pool task runner, `load_chunk.submit`; the body is the same
    `tasks.steps.load_chunk_body`, which runs the load in `tasks.runtime`'s worker process on
    PostgreSQL). So the next batches' pure stages overlap the loads."""

    def __init__(self, url: str, batch_id: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        from tasks.steps import OrderedLoads, load_chunk_body

        self.url = url
        self.batch_id = batch_id
        # Two threads: the running load and the next one, queued behind it (OrderedLoads).
        self.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="load")
        self.watches: list[Stopwatch] = []
        self.counts: list[dict[str, int]] = []
        self.wait_seconds: list[float] = []  # this thread blocked on earlier loads

        def submit(frame: Any, rejected: Any, seen: Any, previous: Any) -> Any:
            def job() -> dict[str, Any]:
                started = time.perf_counter()
                outcome = load_chunk_body(url, batch_id, frame, rejected, seen, previous)
                ended = time.perf_counter()
                # The load's own seconds: from when it could start (the previous one ended).
                after = previous.result()["ended"] if previous is not None else started
                return {**outcome, "seconds": ended - max(started, after), "ended": ended}

            return self.executor.submit(job)

        def loaded(k: int, outcome: dict[str, Any]) -> None:
            self.watches[k].seconds["load"] = outcome["seconds"]
            self.counts[k].update(inserted=outcome["inserted"], merged=outcome["merged"],
                                  quarantined=outcome["quarantined"])

        self.loads = OrderedLoads(submit, loaded)

    def add(self, source: str, records: list[dict[str, Any]], business: dict[str, Any]) -> None:
        from models.db import get_engine
        from tasks.batches import Rejected
        from tasks.dedupe import dedupe_frame
        from tasks.load import seen_leads
        from tasks.normalise import normalise_records
        from tasks.scoring import score_leads
        from tasks.steps import to_frame
        from tasks.validation import validate_batch

        watch = Stopwatch()
        with watch("normalise"):
            candidates, rejected = normalise_records(source, records)
        simulate_network_stages(candidates, business)  # untimed: enrichment and analysis
        with watch("to_frame"):
            frame = to_frame(candidates)
        with watch("score"):
            frame = score_leads(frame)
        with watch("dedupe"):  # as the flow's dedupe_chunk
            with get_engine(self.url).connect() as conn:
                seen = seen_leads(conn)  # the load re-matches against newer leads only
                deduped = dedupe_frame(conn, frame)
            frame = deduped.apply(frame)
        with watch("validate"):
            checked = validate_batch(frame)
        rejected = rejected + [Rejected(**r.as_quarantine()) for r in checked.rejected]
        self.watches.append(watch)
        self.counts.append({
            "records": len(records), "candidates": len(candidates),
            "merged_in_batch": deduped.merged_in_batch,
            "matched_existing": deduped.matched_existing,
        })
        started = time.perf_counter()
        self.loads.add(checked.valid, rejected, seen, len(self.watches) - 1)
        self.wait_seconds.append(time.perf_counter() - started)

    def wait(self) -> None:
        self.loads.wait()

    def close(self) -> None:
        self.loads.abandon()
        self.executor.shutdown()


def open_bench_batch(url: str, run_key: str, source: str, size: int) -> int:
    """The flow's open_batch (untimed)."""
    from models.db import session_scope
    from tasks.batches import start_batch

    with session_scope(url) as session:
        return start_batch(session, run_key, "generate", source, "any", "any", size)


def part_a(url: str, data: SandboxRecords, rounds: int, profile: bool) -> dict[str, Any]:
    from tasks.validation import _get_suite

    print(f"Part A: {data.businesses:,} sandbox businesses; preloading {len(data.google):,} "
          f"Google Places leads (every {PRELOAD_EVERY}th business) ...", flush=True)
    started = time.perf_counter()
    t = time.perf_counter()
    _get_suite()  # Great Expectations import + context + suite: once per process
    gx_setup = time.perf_counter() - t
    preload = Pipeline(url, open_bench_batch(url, "bench:preload", "google_places",
                                             len(data.google)))
    for i in range(0, len(data.google), data.batch):
        preload.add("google_places", data.google[i : i + data.batch], data.business)
    preload.wait()
    preload.close()
    print(f"  preload {time.perf_counter() - started:.1f} s (Great Expectations set-up "
          f"{gx_setup:.1f} s of it, excluded from the rounds)", flush=True)

    warm = Pipeline(url, open_bench_batch(url, "bench:warmup", "apollo", data.batch))
    warm.add("apollo", data.apollo_slice(0), data.business)
    warm.wait()
    warm.close()
    print(f"  warm-up batch (excluded): {warm.watches[0].total:.3f} s", flush=True)

    pipe = Pipeline(url, open_bench_batch(url, "bench:pipelined", "apollo", data.batch * rounds))
    cpu_before = cpu_by_group()
    started = time.perf_counter()
    try:
        for r in range(rounds):
            pipe.add("apollo", data.apollo_slice(1 + r), data.business)
        pipe.wait()
    finally:
        wall = time.perf_counter() - started
        cpu = cpu_used(cpu_before, cpu_by_group())
        pipe.close()
    for r, (w, c) in enumerate(zip(pipe.watches, pipe.counts, strict=True)):
        stages = " ".join(f"{s}={w.seconds[s]:.3f}" for s in STAGES)
        print(f"  batch {r + 1}: {stages} (load in the background); waited "
              f"{pipe.wait_seconds[r]:.3f} s for earlier loads; {c['inserted']:,} new, "
              f"{c['merged']:,} merged ({c['matched_existing']:,} into existing leads, "
              f"{c['merged_in_batch']:,} within the batch), {c['quarantined']} quarantined",
              flush=True)
    records = sum(c["records"] for c in pipe.counts)
    print(f"  {rounds} batches, {records:,} leads in {wall:.3f} s wall: "
          f"{records / wall:,.0f} leads/s", flush=True)

    prof_text = None
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        extra = Pipeline(url, open_bench_batch(url, "bench:profile", "apollo", data.batch))
        extra.add("apollo", data.apollo_slice(1 + rounds), data.business)
        extra.wait()
        extra.close()
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("cumulative").print_stats(45)
        stats.sort_stats("tottime").print_stats(30)
        prof_text = out.getvalue()

    return {
        "stages": {s: [w.seconds[s] for w in pipe.watches] for s in STAGES},
        "counts": pipe.counts,
        "records": records,
        "batch": pipe.counts[0]["records"] if pipe.counts else data.batch,
        "wall": wall,
        "waits": pipe.wait_seconds,
        "gx_setup": gx_setup,
        "warmup": warm.watches[0].total,
        "cpu": cpu,
        "profile": prof_text,
    }


# --- part B: dedupe of a 10k batch against 1M existing leads --------------------------------------


def part_b(url: str, existing: int, batch_size: int, rounds: int) -> dict[str, Any]:
    import psycopg
    from dedupe_db import clear_key_caches, make_batch, seed_existing_leads

    from models.db import get_engine
    from tasks.dedupe import dedupe_frame

    with psycopg.connect(psycopg_dsn(url), autocommit=True) as conn:
        # Ids must follow COPY order (lead i has id i + 1) for make_batch's planted matches.
        conn.execute("TRUNCATE leads, lead_source_records, quarantined_rows RESTART IDENTITY "
                     "CASCADE")
    print(f"Part B: seeding {existing:,} existing leads ...", flush=True)
    seed_seconds = seed_existing_leads(url, existing)
    print(f"  seeded in {seed_seconds:.1f} s ({existing / seed_seconds:,.0f} rows/s)", flush=True)
    batch = make_batch(batch_size, existing)
    planted = batch["expected_lead_id"].astype("Int64")
    engine = get_engine(url)
    timings: list[float] = []
    found = wrong = 0
    result = None
    for r in range(rounds):
        clear_key_caches()
        with engine.connect() as conn:
            started = time.perf_counter()
            result = dedupe_frame(conn, batch)
            result.apply(batch)
            timings.append(time.perf_counter() - started)
        matched = result.existing_lead_id.notna()
        found = int((result.existing_lead_id == planted).fillna(False).sum())
        wrong = int((matched & planted.notna() & (result.existing_lead_id != planted))
                    .fillna(False).sum())
        print(f"  round {r + 1}: dedupe_frame {timings[-1]:.3f} s", flush=True)
    assert result is not None
    return {
        "timings": timings, "seed_seconds": seed_seconds, "planted": int(planted.notna().sum()),
        "found": found, "wrong": wrong, "matched": result.matched_existing,
        "clusters": result.clusters, "batch": batch_size, "existing": existing,
    }


# --- report ------------------------------------------------------------------------------------


def report(machine: str, a: dict[str, Any] | None, b: dict[str, Any] | None,
           args: argparse.Namespace) -> tuple[float, float]:
    print()
    print(f"machine: {machine}")
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    leads_per_s = dedupe_s = float("nan")
    if a:
        n = a["batch"]
        leads_per_s = a["records"] / a["wall"]
        print(f"Part A: {len(a['counts'])} batches of {n:,} Apollo records, pipelined as the "
              f"flows run them (each batch's load in the background while the next batch is "
              f"normalised, scored, deduped and validated), after one warm-up batch (Great "
              f"Expectations set-up {a['gx_setup']:.1f} s, excluded)")
        print(f"{'stage':<10} {'median s':>9} {'min':>7} {'max':>7} {'leads/s':>9}")
        for stage in STAGES:
            values = a["stages"][stage]
            med = median(values)
            print(f"{stage:<10} {med:>9.3f} {min(values):>7.3f} {max(values):>7.3f} "
                  f"{n / med:>9,.0f}")
        pure = sum(median(a["stages"][s]) for s in STAGES if s != "load")
        print(f"this thread per batch (stages before the load, medians): {pure:.3f} s; "
              f"waiting for earlier loads: median {median(a['waits'][1:] or a['waits']):.3f}"
              f" s; sum of all stage medians (one after another): "
              f"{pure + median(a['stages']['load']):.3f} s")
        print(f"pipelined: {a['records']:,} leads in {a['wall']:.3f} s wall = "
              f"{leads_per_s:,.0f} leads/s")
        batches = len(a["counts"])
        if a["cpu"]:
            used = ", ".join(f"{k} {v / batches:.3f}" for k, v in a["cpu"].items())
            total = sum(a["cpu"].values())
            print(f"CPU seconds per batch: {used}; total {total / batches:.3f} of "
                  f"{a['wall'] / batches * cpus():.3f} available ({cpus()} CPUs x wall)")
        c = a["counts"][-1]
        print(f"last round: {c['candidates']:,} candidates, {c['inserted']:,} new leads, "
              f"{c['merged']:,} merged ({c['matched_existing']:,} rows matched existing leads, "
              f"{c['merged_in_batch']:,} merged within the batch), {c['quarantined']} quarantined")
        if a["profile"]:
            print("\n--- cProfile of one extra round ---")
            print(a["profile"])
    if b:
        dedupe_s = median(b["timings"])
        print(f"Part B: dedupe_frame of {b['batch']:,} rows vs {b['existing']:,} existing leads "
              f"(seeded in {b['seed_seconds']:.1f} s): median {spread(b['timings'])} s over "
              f"{len(b['timings'])} rounds; {b['found']:,} of {b['planted']:,} planted matches "
              f"found, {b['wrong']} matched to another lead, {b['matched']:,} rows matched, "
              f"{b['clusters']:,} clusters")
    return leads_per_s, dedupe_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=10_000, help="leads per batch (Part A)")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (Part A)")
    parser.add_argument("--existing", type=int, default=1_000_000, help="seeded leads (Part B)")
    parser.add_argument("--dedupe-batch", type=int, default=10_000)
    parser.add_argument("--dedupe-rounds", type=int, default=5)
    parser.add_argument("--skip-a", action="store_true", help="only Part B")
    parser.add_argument("--skip-b", action="store_true", help="only Part A")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile one extra Part A round and print the top functions "
                             "(of this process: on PostgreSQL the load runs in a worker)")
    args = parser.parse_args()

    prep = time.perf_counter()
    data = None
    if not args.skip_a:
        data = SandboxRecords(args.batch, args.rounds + 2 + args.profile)
        print(f"built {len(data.apollo):,} Apollo and {len(data.google):,} Google Places records "
              f"in {time.perf_counter() - prep:.1f} s", flush=True)
    with throwaway_database() as url:
        os.environ["LEADFLOW_DATABASE_URL"] = url  # anything reading settings uses this database
        machine = machine_description(url)
        a = part_a(url, data, args.rounds, args.profile) if data is not None else None
        b = None if args.skip_b else part_b(url, args.existing, args.dedupe_batch,
                                            args.dedupe_rounds)
    leads_per_s, dedupe_s = report(machine, a, b, args)
    print(f"leads_per_s={leads_per_s:.0f} dedupe_10k_vs_1m_s={dedupe_s:.3f}")


if __name__ == "__main__":
    main()
