"""Recompute every engagement figure (emails' opens and clicks, leads' and campaigns' emails
opened, clicked and replied) from the events. The tracking app refreshes what it touches as it
goes; this scheduled run repairs anything a crash or a manual edit left behind."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from prefect import flow, get_run_logger, task

from leadflow.settings import get_settings
from tasks.steps import DB_TASK


@task(name="refresh-engagement-figures", **DB_TASK)
def refresh_all() -> dict[str, int]:
    from tracking_app.figures import refresh_engagement

    return asdict(refresh_engagement(get_settings().database_url))


@flow(name="refresh-engagement", log_prints=False)
def refresh_engagement_figures() -> dict[str, Any]:
    changed = refresh_all()
    get_run_logger().info("rows whose figures changed: %s", changed)
    return changed
