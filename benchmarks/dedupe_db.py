"""Benchmark: match a 10,000-row batch against 1,000,000 existing leads in PostgreSQL.

One command: `python benchmarks/dedupe_db.py [--existing 1000000] [--batch 10000] [--rounds 5]`.
It creates its own database on 127.0.0.1:5432, bulk-loads synthetic leads with COPY, times
`tasks.dedupe.match_existing` (keys computed from raw columns, caches cleared each round) and
drops the database. The last line is `dedupe_10k_vs_1m_s=<median seconds>`.
`seed_existing_leads(url, n)` is reusable by other benchmarks."""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.db import dispose_engines, get_engine, upgrade_database  # noqa: E402
from tasks import keys  # noqa: E402
from tasks.dedupe import cluster_batch, match_existing_details  # noqa: E402

ADMIN_URL = os.environ.get(
    "LEADFLOW_BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)

# Synthetic vocabulary: 300 distinctive first words x 500 cities gives (city, name block)
# blocks of about 7 leads at 1,000,000 leads, like a dense metro's directory listings.
_SYLLABLES = ["ab", "bel", "cor", "dan", "el", "fen", "gal", "har", "is", "jor", "kel", "lor",
              "mar", "nov", "or", "pal", "quin", "ros", "sol", "tal", "ul", "ver", "wil", "zan"]
WORDS = sorted({a + b for a in _SYLLABLES for b in _SYLLABLES if a != b})[:300]
KINDS = ["Salon", "Hair Studio", "Nail Spa", "Med Spa", "Dental", "Barbershop", "Yoga Studio",
         "Pilates", "Massage", "Skin Clinic", "Lash Lounge", "Chiropractic"]
NOUNS = ["Rose", "Oak", "Lotus", "Bloom", "Glow", "Pearl", "Sage", "Willow", "Luxe", "Haven"]
CITIES = [f"{a.title()}{b}" for a in _SYLLABLES[:20] for b in
          ("ville", "ton", " Springs", " City", "burg", "field", " Falls", "wood", " Park",
           " Heights", "port", "dale", "mont", " Hills", "ford", " Lake", "view", "haven",
           " Bay", "crest", " Grove", " Ridge", "stead", " Point", "more")][:500]
STREETS = ["Main", "Oak", "Elm", "Pine", "Cedar", "Maple", "Lake", "Hill", "Park", "Washington",
           "Lincoln", "Church", "Market", "Spring", "River", "Sunset", "Highland", "Center"]
AREA_CODES = [201, 212, 213, 214, 303, 305, 312, 404, 415, 503, 512, 602, 617, 702, 713, 718,
              801, 813, 858, 919]
COPY_COLUMNS = ("company_name", "email", "email_norm", "phone", "phone_e164", "website",
                "domain", "address", "city", "name_key", "city_key", "name_block", "address_key",
                "source", "sources", "status", "booking_tools", "score_breakdown",
                "created_at", "updated_at")


def synthetic_lead(i: int) -> dict[str, Any]:
    """Existing lead number i (deterministic, so a batch can refer to it without a query).
    A multiplicative hash spreads leads evenly over (city, first word) blocks; some names
    repeat within a city, as chains' branches do."""
    h = (i * 2654435761) % 2**32
    word = WORDS[h % len(WORDS)]
    city = CITIES[(h // len(WORDS)) % len(CITIES)]
    name = f"{word.title()} {NOUNS[(h >> 20) % len(NOUNS)]} {KINDS[i % len(KINDS)]}"
    area = AREA_CODES[i % len(AREA_CODES)]
    local = 2_000_000 + i // len(AREA_CODES)  # exchanges 200-250: valid NANP numbers
    domain = f"{word}{i}.com"
    return {
        "company_name": name,
        "email": f"info@{domain}" if i % 5 < 3 else None,
        "phone": f"({area}) {local // 10000:03d}-{local % 10000:04d}",
        "phone_e164": f"+1{area}{local:07d}",
        "website": f"https://www.{domain}" if i % 4 else None,
        # The business domain is known from the website or, failing that, the email.
        "domain": domain if (i % 4 or i % 5 < 3) else None,
        "address": f"{1 + (h >> 12) % 9000} {STREETS[(h >> 8) % len(STREETS)]} St",
        "city": city,
    }


def seed_existing_leads(url: str, n: int) -> float:
    """COPY n synthetic leads (with their dedupe keys) into the migrated database at `url`;
    returns the seconds it took. Keys are computed once per distinct name and city."""
    started = time.perf_counter()
    dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
    name_keys: dict[str, tuple[str, str | None]] = {}
    city_keys = {c: keys.city_key(c) for c in CITIES}
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY leads ({', '.join(COPY_COLUMNS)}) FROM STDIN") as copy:
            for i in range(n):
                lead = synthetic_lead(i)
                name = lead["company_name"]
                if name not in name_keys:
                    nkey = keys.name_key(name)
                    name_keys[name] = (nkey, keys.name_block(nkey))
                nkey, block = name_keys[name]
                number, street, _ = lead["address"].split(" ", 2)
                copy.write_row((
                    name, lead["email"], lead["email"], lead["phone"], lead["phone_e164"],
                    lead["website"], lead["domain"], lead["address"], lead["city"], nkey,
                    city_keys[lead["city"]], block, f"{number} {street.lower()} street",
                    "seed", '["seed"]', "new", "[]", "{}", "now()", "now()",
                ))
        cur.execute("ANALYZE leads")
    return time.perf_counter() - started


def make_batch(n: int, existing: int, match_share: float = 0.3, seed: int = 11) -> pd.DataFrame:
    """A staging-shaped batch: `match_share` of rows are existing leads seen again (by email,
    website, phone or name+address, written differently), the rest are new businesses in the
    same cities, so name blocks are fetched and compared for every row."""
    rng = random.Random(seed)
    rows = []
    for r in range(n):
        if rng.random() < match_share:
            i = rng.randrange(existing)
            lead = synthetic_lead(i)
            how = r % 4
            # Ids follow COPY order in a fresh database: lead i has id i + 1.
            row = {"company_name": lead["company_name"] + " LLC", "city": lead["city"],
                   "expected_lead_id": i + 1}
            if how == 0 and lead["email"]:
                row["email"] = lead["email"].upper()
            elif how == 1 and lead["website"]:
                row["website"] = lead["website"].replace("https://www.", "http://") + "/book"
            elif how == 2:
                row["phone"] = "+1 " + lead["phone"].replace("(", "").replace(")", "")
            else:
                row["address"] = lead["address"].replace(" St", " Street, Suite 2")
        else:
            word = WORDS[rng.randrange(len(WORDS))]
            row = {
                "company_name": f"{word.title()} {rng.choice(['Fern', 'Ivy', 'Jade'])} "
                                f"{rng.choice(KINDS)}",
                "city": CITIES[rng.randrange(len(CITIES))],
                "email": f"hello@new{r}{word}.com",
                "website": f"https://new{r}{word}.com",
                "phone": f"({rng.choice(AREA_CODES)}) 9{rng.randrange(10, 99)}-"
                         f"{rng.randrange(10000):04d}",
                "address": f"{rng.randrange(1, 9999)} {rng.choice(STREETS)} Ave",
            }
        row.update(source="bench", source_record_id=str(r))
        rows.append(row)
    return pd.DataFrame(rows)


def clear_key_caches() -> None:
    for fn in (keys._normalise_email, keys._registrable_domain, keys._phone_e164,
               keys._name_key, keys._city_key, keys._address_key):
        fn.cache_clear()
    keys._nanp_valid.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--existing", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    name = f"leadflow_bench_dedupe_{uuid.uuid4().hex[:8]}"
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    url = f"{base}/{name}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        upgrade_database(url)
        seconds = seed_existing_leads(url, args.existing)
        print(f"seeded {args.existing:,} leads in {seconds:.1f} s "
              f"({args.existing / seconds:,.0f} rows/s)", flush=True)
        batch = make_batch(args.batch, args.existing)
        engine = get_engine(url)
        timings, cluster_timings = [], []
        matched = ambiguous = correct = wrong = 0
        for round_no in range(args.rounds):
            clear_key_caches()
            with engine.connect() as conn:
                started = time.perf_counter()
                result = match_existing_details(conn, batch)
                timings.append(time.perf_counter() - started)
            matched = int(result.lead_id.notna().sum())
            expected = batch["expected_lead_id"].astype("Int64")
            correct = int((result.lead_id == expected).fillna(False).sum())
            wrong = matched - correct
            ambiguous = len(result.ambiguous)
            clear_key_caches()
            started = time.perf_counter()
            cluster_batch(batch)
            cluster_timings.append(time.perf_counter() - started)
            print(f"round {round_no + 1}: match_existing {timings[-1]:.3f} s, "
                  f"cluster_batch {cluster_timings[-1]:.3f} s", flush=True)
        print(f"machine: {platform.machine()} {os.cpu_count()} CPUs, "
              f"Python {platform.python_version()}, {platform.system()} {platform.release()}")
        print(f"batch {args.batch:,} rows vs {args.existing:,} leads: {matched:,} matched "
              f"({matched / args.batch:.0%}), {ambiguous} ambiguous; {correct:,} of "
              f"{int(batch['expected_lead_id'].notna().sum()):,} planted matches found, "
              f"{wrong} rows matched another lead")
        print(f"median match_existing {statistics.median(timings):.3f} s "
              f"(min {min(timings):.3f}, max {max(timings):.3f}); "
              f"median cluster_batch {statistics.median(cluster_timings):.3f} s")
        print(f"dedupe_10k_vs_1m_s={statistics.median(timings):.3f}")
    finally:
        dispose_engines()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
