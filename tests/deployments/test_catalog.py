"""The deployments: prefect.yaml is current, schedules have the seed's cron and an explicit time
zone, sending jobs never overlap themselves, and every entrypoint is a typed flow."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path

import yaml

from deployments.catalog import JOBS, load_flow, render_prefect_yaml, runner_deployments

ROOT = Path(__file__).resolve().parents[2]


def test_prefect_yaml_is_rendered_from_the_catalog() -> None:
    assert (ROOT / "prefect.yaml").read_text() == render_prefect_yaml("UTC"), (
        "prefect.yaml is stale: run `leadflow deployments --write`"
    )


def test_prefect_yaml_schedules_follow_the_seed_with_an_explicit_time_zone() -> None:
    config = yaml.safe_load(render_prefect_yaml("Europe/Berlin"))
    by_name = {d["name"]: d for d in config["deployments"]}
    crons = {name: d["schedules"][0]["cron"] for name, d in by_name.items() if "schedules" in d}
    assert crons == {
        "daily-lead-generation": "0 9 * * *",
        "daily-outreach": "0 * * * *",
        "follow-up-checker": "0 */6 * * *",
        "refresh-engagement": "30 * * * *",
    }
    for name in crons:
        assert by_name[name]["schedules"][0]["timezone"] == "Europe/Berlin"
    for name in ("execute-campaign", "daily-outreach", "follow-up-checker"):
        assert by_name[name]["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
    assert "concurrency_limit" not in by_name["generate-leads"]
    assert {d["work_pool"]["name"] for d in config["deployments"]} == {"leadflow-process"}


def test_prefect_yaml_leaves_the_operators_extra_loggers_alone() -> None:
    """The pool's job variables would replace the worker's PREFECT_LOGGING_EXTRA_LOGGERS (one
    value, no adding to it): the deployments set nothing in the flow run's environment."""
    config = yaml.safe_load(render_prefect_yaml("UTC"))
    pools = [config["definitions"]["work_pools"]["process_pool"],
             *(d["work_pool"] for d in config["deployments"])]
    for pool in pools:
        env = (pool.get("job_variables") or {}).get("env") or {}
        assert "PREFECT_LOGGING_EXTRA_LOGGERS" not in env


def test_daily_job_runs_at_nine_local_time() -> None:
    from prefect.server.schemas.schedules import CronSchedule

    deployment = next(d for d in runner_deployments("America/Chicago")
                      if d.name == "daily-lead-generation")
    cron = deployment.schedules[0].schedule
    assert (cron.cron, cron.timezone) == ("0 9 * * *", "America/Chicago")
    start = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)  # 06:00 in Chicago (CST, UTC-6)
    first, second = asyncio.run(_dates(CronSchedule(cron=cron.cron, timezone=cron.timezone),
                                       start))
    assert first.astimezone(UTC) == datetime(2026, 1, 15, 15, 0, tzinfo=UTC)
    assert second.astimezone(UTC) == datetime(2026, 1, 16, 15, 0, tzinfo=UTC)


async def _dates(schedule: object, start: datetime) -> list[datetime]:
    return list(await schedule.get_dates(n=2, start=start))  # type: ignore[attr-defined]


def test_every_deployment_has_a_typed_parameter_form() -> None:
    from prefect.utilities.callables import parameter_schema

    assert {d.name for d in runner_deployments("UTC")} == {job.name for job in JOBS}
    schemas = {job.name: parameter_schema(load_flow(job).fn) for job in JOBS}
    generate = schemas["generate-leads"]
    assert set(generate.properties) >= {"source", "industry", "location", "max_results"}
    assert generate.properties["max_results"]["type"] == "integer"
    execute = schemas["execute-campaign"]
    assert execute.required == ["campaign_id"]
    assert execute.properties["campaign_id"]["type"] == "integer"


def test_leadflow_deployments_prints_prefect_yaml_unwrapped_when_piped() -> None:
    import subprocess
    import sys

    env = {**os.environ, "COLUMNS": "60"}
    done = subprocess.run([sys.executable, "-m", "leadflow.cli", "deployments"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == render_prefect_yaml(os.environ.get("LEADFLOW_SCHEDULE_TIMEZONE",
                                                              "UTC"))
    yaml.safe_load(done.stdout)


def test_leadflow_deployments_check_finds_prefect_yaml_from_any_directory(
    tmp_path: Path,
) -> None:
    """From outside the checkout, without LEADFLOW_PROJECT_DIR: the checkout's prefect.yaml
    (found from the package's location) is checked, not ./prefect.yaml."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "LEADFLOW_PROJECT_DIR"}
    env["LEADFLOW_SCHEDULE_TIMEZONE"] = "UTC"  # as the committed file
    done = subprocess.run([sys.executable, "-m", "leadflow.cli", "deployments", "--check"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "prefect.yaml is current" in done.stdout
