"""Compose benchmark: 10,000 scheduled emails (leads spread over every routing scenario) composed
and queued on PostgreSQL by `compose_due_emails`, AI off. Prints per-run seconds and the
median rate, ending with `composed=<n> median_s=<s> emails_per_s=<n>`.

    python benchmarks/compose_throughput.py [--emails 10000] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime

from _common import Stopwatch, machine_description, median, quiet_environment, throwaway_database

# Lead shapes that route to each scenario (so every variant's template is exercised).
SHAPES = [
    {"website": None, "domain": None, "digital_maturity": None},
    {"booking_tools": ["fresha"], "digital_maturity": 70},
    {"booking_tools": ["google_calendar"], "digital_maturity": 80},
    {"booking_keyword_count": 3},
    {},
    {"digital_maturity": None},
]


def seed(url: str, count: int, now: datetime) -> None:
    from sqlalchemy import insert, select

    from models import Email, Lead, SequenceStep
    from models.db import session_scope
    from tasks.outreach.defaults import create_campaign
    from tasks.outreach.routing import route_lead

    with session_scope(url) as session:
        campaign_id = create_campaign(session, name="bench", status="active")
        step_id = session.scalar(select(SequenceStep.id).where(SequenceStep.step_number == 1))
        leads = []
        for i in range(count):
            lead = {"company_name": f"Business {i}", "contact_name": f"Alex Smith{i}",
                    "email": f"owner{i}@biz{i}.example", "website": f"https://biz{i}.example/",
                    "domain": f"biz{i}.example", "city": "Austin", "industry": "salon",
                    "phone": "+1 512 555 0100", "booking_tools": [], "digital_maturity": 40,
                    "booking_keyword_count": 0, "source": "apollo"}
            lead.update(SHAPES[i % len(SHAPES)])
            leads.append(lead)
        ids = list(session.scalars(insert(Lead).returning(Lead.id), leads))
        from tasks.outreach.routing import lead_facts

        rows = []
        for lead_id, values in zip(ids, leads, strict=True):
            scenario = route_lead(lead_facts(Lead(**values))).scenario
            rows.append({"campaign_id": campaign_id, "lead_id": lead_id, "step_id": step_id,
                         "step_number": 1, "scenario": scenario, "status": "scheduled",
                         "scheduled_at": now, "to_email": values["email"]})
        session.execute(insert(Email), rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--emails", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    quiet_environment()
    os.environ.setdefault("LEADFLOW_TRACKING_SECRET", "benchmark-tracking-secret-0123456789")

    from tasks.outreach.compose import compose_due_emails

    now = datetime.now(UTC)
    seconds: list[float] = []
    composed = 0
    description = ""
    for run in range(args.runs):
        with throwaway_database("leadflow_bench_compose") as url:
            description = description or machine_description(url)
            seed(url, args.emails, now)
            watch = Stopwatch()
            with watch("compose"):
                report = compose_due_emails(url, now)
            composed = report.composed
            assert composed == args.emails, report
            seconds.append(watch.total)
            print(f"run {run + 1}: composed {composed} in {watch.total:.2f} s "
                  f"({composed / watch.total:,.0f} emails/s)")
    print(description)
    best = median(seconds)
    print(f"composed={composed} median_s={best:.2f} emails_per_s={composed / best:.0f}")


if __name__ == "__main__":
    main()
