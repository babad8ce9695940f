"""Recompute every engagement figure (emails' opens and clicks, leads' and campaigns' emails
opened, clicked and replied) from the events. The tracking app refreshes what it touches as it
goes; this scheduled run repairs anything a crash or a manual edit left behind, and the repeats
that two app processes could each store as human (tracking_app/repeats.py)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from prefect import flow, get_run_logger, task
from pydantic import Field

from leadflow.settings import get_settings
from tasks.steps import DB_TASK


@task(name="refresh-engagement-figures", **DB_TASK)
def refresh_all(repeat_lookback_hours: float) -> dict[str, int]:
    from tracking_app.figures import refresh_engagement

    since = datetime.now(UTC) - timedelta(hours=repeat_lookback_hours)
    return asdict(refresh_engagement(get_settings().database_url, repeats_since=since))


@flow(name="refresh-engagement", log_prints=False)
def refresh_engagement_figures(
    repeat_lookback_hours: Annotated[float, Field(gt=0, le=24 * 366)] = 2.0,
) -> dict[str, Any]:
    """Recompute every figure; first flag as repeats the events of the last
    `repeat_lookback_hours` that two tracking-app processes each stored as human (the
    schedule runs hourly, so 2 hours overlap)."""
    changed = refresh_all(repeat_lookback_hours)
    get_run_logger().info("rows whose figures changed: %s", changed)
    return changed
