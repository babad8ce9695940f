"""The Prefect tasks the flows compose: thin, retryable wrappers over the plain functions of
`tasks/`. Each works on a whole batch (a Prefect task costs tens of milliseconds here) and takes
plain values or DataFrames, never sessions or ORM objects."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from leadflow.settings import get_settings
from models.db import session_scope
from tasks.batches import BatchSummary, Rejected, finish_batch, quarantine, start_batch
from tasks.staging import CANDIDATE_COLUMNS, CandidateLead


def retry_unless_permanent(task, task_run, state) -> bool:  # type: ignore[no-untyped-def]
    """Prefect retry condition: retry transient failures, never a refused request or a quota."""
    from clients.http import PermanentApiError, QuotaExceededError

    try:
        state.result()
    except (PermanentApiError, QuotaExceededError, ValueError):
        return False
    except Exception:
        return True
    return True


# Network tasks: exponential backoff with jitter; the clients already retry single requests,
# so these retries cover a whole batch failing (e.g. the API down for a minute).
NETWORK_TASK = dict(
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_unless_permanent,
    cache_policy=NO_CACHE,
)
DB_TASK = dict(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
PURE_TASK = dict(cache_policy=NO_CACHE)


def to_frame(candidates: list[CandidateLead]) -> pd.DataFrame:
    frame = pd.DataFrame([c.to_dict() for c in candidates], columns=list(CANDIDATE_COLUMNS))
    frame["contact_name"] = [c.contact_name for c in candidates]
    return frame


@dataclass(slots=True)
class StageTimer:
    """Seconds spent inside each stage's own code (for the benchmark's orchestration share)."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, elapsed: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + elapsed


@task(name="open-batch", **DB_TASK)
def open_batch(run_key: str, kind: str, source: str, industry: str | None,
               location: str | None, max_results: int | None) -> int:
    with session_scope() as session:
        return start_batch(session, run_key, kind, source, industry, location, max_results)


@task(name="close-batch", **DB_TASK)
def close_batch(batch_id: int, rows_loaded: int, sources_used: list[str],
                validation: dict[str, Any], notes: list[str], status: str = "done") -> BatchSummary:
    with session_scope() as session:
        return finish_batch(session, batch_id, rows_loaded, sources_used, validation, notes, status)


@task(name="quarantine-rows", **DB_TASK)
def quarantine_rows(batch_id: int | None, rows: list[Rejected]) -> int:
    with session_scope() as session:
        return quarantine(session, batch_id, rows)


def run_async(coro: Any) -> Any:
    """Run a coroutine from a sync task (each task thread gets its own event loop)."""
    return asyncio.run(coro)
