"""Every Prefect deployment of leadflow, defined once.

`prefect.yaml` (for `prefect deploy --all` against a Prefect server and a process work pool) is
rendered from this list by `leadflow deployments --write`, and `leadflow serve` serves the same
list from one process; a test fails when prefect.yaml is stale. Schedules carry the time zone
from `LEADFLOW_SCHEDULE_TIMEZONE`. Jobs that send email have a concurrency limit of one: a new
run waits for the previous one (the send queue would keep them safe anyway)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prefect import Flow
    from prefect.deployments.runner import RunnerDeployment

WORK_POOL = "leadflow-process"


@dataclass(frozen=True)
class Job:
    name: str
    entrypoint: str  # "flows/<file>.py:<function>"
    description: str
    tags: tuple[str, ...]
    parameters: dict[str, Any] = field(default_factory=dict)
    cron: str | None = None
    schedule_slug: str | None = None
    # One run at a time; later runs wait in line (ENQUEUE) rather than being cancelled.
    single_run: bool = False


JOBS: tuple[Job, ...] = (
    Job("generate-leads", "flows/generate_leads.py:generate_leads",
        "The seed's \"Generate Leads\": fetch, enrich, analyse, score, dedupe, validate and "
        "load leads from one source.", ("lead-generation",),
        {"source": "apollo", "industry": "salon", "location": "Austin, TX", "max_results": 200,
         "enrich": True, "analyse": True}),
    Job("import-csv", "flows/import_csv.py:import_csv",
        "Import a LinkedIn Sales Navigator export or a generic companies/contacts CSV.",
        ("lead-generation",)),
    Job("execute-campaign", "flows/execute_campaign.py:execute_campaign",
        "The seed's \"Execute Campaign\": route each new lead of the campaign, schedule its "
        "sequence and send the first email.", ("outreach",), single_run=True),
    Job("daily-lead-generation", "flows/daily_lead_generation.py:daily_lead_generation",
        "Every day at 9:00: leads-per-day new leads for each active automated daily campaign, "
        "linked to it.", ("lead-generation", "scheduled"), cron="0 9 * * *",
        schedule_slug="daily-9am", single_run=True),
    Job("daily-outreach", "flows/daily_outreach.py:daily_outreach",
        "Every hour: campaigns whose local outreach hour has come contact their new leads.",
        ("outreach", "scheduled"), cron="0 * * * *", schedule_slug="hourly",
        single_run=True),
    Job("follow-up-checker", "flows/follow_up_checker.py:follow_up_checker",
        "Every 6 hours: compose and send due follow-ups; stopped sequences are skipped.",
        ("outreach", "scheduled"), cron="0 */6 * * *", schedule_slug="every-6-hours",
        single_run=True),
    Job("refresh-engagement", "flows/refresh_engagement.py:refresh_engagement_figures",
        "Every hour at :30: recompute opens, clicks and replies of emails, leads and "
        "campaigns from the tracking events, after flagging the repeats two tracking-app "
        "processes each stored as human (a repair; the tracking app keeps them current).",
        ("tracking", "scheduled"), cron="30 * * * *", schedule_slug="hourly-repair",
        single_run=True),
)


def load_flow(job: Job) -> Flow[Any, Any]:
    path, function = job.entrypoint.split(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return getattr(module, function)


def runner_deployments(timezone: str) -> list[RunnerDeployment]:
    """The jobs as deployments `prefect.serve` can run from this process."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.deployments.runner import RunnerDeployment
    from prefect.schedules import Cron

    deployments = []
    for job in JOBS:
        limit = (ConcurrencyLimitConfig(limit=1,
                                        collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)
                 if job.single_run else None)
        schedules = ([Cron(job.cron, timezone=timezone, slug=job.schedule_slug)]
                     if job.cron else None)
        deployment = load_flow(job).to_deployment(
            name=job.name, description=job.description, tags=list(job.tags),
            parameters=job.parameters or None, schedules=schedules, concurrency_limit=limit,
        )
        # Called outside an event loop, Prefect's sync-compatible method returns the value.
        assert isinstance(deployment, RunnerDeployment)
        deployments.append(deployment)
    return deployments


def render_prefect_yaml(timezone: str) -> str:
    """prefect.yaml for `prefect deploy --all`, from JOBS."""
    import json

    def scalar(value: Any) -> str:
        return json.dumps(value)  # JSON scalars are valid YAML scalars

    lines = [
        "# Prefect deployments of leadflow, rendered from deployments/catalog.py by",
        "# `leadflow deployments --write` (do not edit by hand: a test checks it is current).",
        "# `prefect deploy --all` registers them against a Prefect server; workers of the",
        f"# `{WORK_POOL}` process pool run them from a checkout of this repository.",
        "name: leadflow",
        "prefect-version: 3.4.0",
        "",
        "build: null",
        "push: null",
        "",
        "pull:",
        "  - prefect.deployments.steps.set_working_directory:",
        '      directory: "{{ $LEADFLOW_PROJECT_DIR }}"',
        "",
        "definitions:",
        "  work_pools:",
        "    process_pool: &process_pool",
        f"      name: {WORK_POOL}",
        "      work_queue_name: default",
        "      # No job_variables env: a flow run takes the worker's environment as it is, so",
        "      # the operator's PREFECT_LOGGING_EXTRA_LOGGERS holds; leadflow's own loggers",
        "      # reach the run log without it (leadflow/run_log.py).",
        "  concurrency:",
        "    one_at_a_time: &one_at_a_time",
        "      limit: 1",
        "      collision_strategy: ENQUEUE",
        "",
        "deployments:",
    ]
    for job in JOBS:
        lines += [
            f"  - name: {job.name}",
            f"    description: {scalar(job.description)}",
            f"    entrypoint: {job.entrypoint}",
            f"    tags: [{', '.join(job.tags)}]",
        ]
        if job.parameters:
            lines.append("    parameters:")
            lines += [f"      {k}: {scalar(v)}" for k, v in job.parameters.items()]
        if job.cron:
            lines += [
                "    schedules:",
                f"      - cron: {scalar(job.cron)}",
                f"        timezone: {scalar(timezone)}",
                f"        slug: {job.schedule_slug}",
                "        active: true",
            ]
        if job.single_run:
            lines.append("    concurrency_limit: *one_at_a_time")
        lines += ["    work_pool: *process_pool", ""]
    return "\n".join(lines)
