"""The heartbeat of a running lead batch, and the sweep that closes the batches of runs killed
outright (SIGKILL, out of memory, a reboot), which never got to close them themselves.

A run stamps its batch's heartbeat when it starts, with each chunk it loads, and from a
thread of its own (`keep_alive`) a few times per `LEADFLOW_BATCH_STALE_AFTER_S`: a live run
whose chunk waits long on a source (rate limits, slow sites) is never taken for a dead one."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Select, func, select, update
from sqlalchemy.orm import Session

from models import LeadBatch
from models.db import session_scope, take_write_lock

log = logging.getLogger(__name__)

# When a batch last showed a sign of life (batches from before heartbeat_at: when it started).
LAST_SEEN = func.coalesce(LeadBatch.heartbeat_at, LeadBatch.started_at)


@dataclass(frozen=True, slots=True)
class StaleBatch:
    batch_id: int
    kind: str
    last_seen: datetime  # UTC


def _utc(moment: datetime) -> datetime:
    """An aware UTC instant: PostgreSQL returns the session's TimeZone (often the machine's),
    SQLite a naive UTC value."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def touch_batch(session: Session, batch_id: int) -> None:
    """The run of this batch is alive: stamp its heartbeat (at its start and each chunk load)."""
    session.execute(update(LeadBatch).where(LeadBatch.id == batch_id)
                    .values(heartbeat_at=datetime.now(UTC)))


@contextmanager
def keep_alive(batch_id: int, stale_after_s: float, db_url: str | None = None) -> Iterator[None]:
    """Stamp the batch's heartbeat every quarter of `stale_after_s` (at most every 10 minutes)
    from a daemon thread while the block runs. A stamp that fails (the database briefly away)
    is logged and tried again at the next beat: the sweep needs four missed beats in a row."""
    every_s = min(stale_after_s / 4, 600.0)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every_s):
            try:
                with session_scope(db_url) as session:
                    touch_batch(session, batch_id)
            except Exception as exc:  # noqa: BLE001 - the next beat tries again
                log.warning("heartbeat of batch %s not stamped: %s", batch_id,
                            type(exc).__name__)

    thread = threading.Thread(target=beat, name=f"batch-{batch_id}-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        # A beat stuck on an unreachable database must not hold the run's end for long; a
        # late stamp on a closed batch changes nothing.
        thread.join(timeout=30)


def _stale(stale_after_s: float) -> Select[int, str, datetime]:
    cutoff = datetime.now(UTC) - timedelta(seconds=stale_after_s)
    return (select(LeadBatch.id, LeadBatch.kind, LAST_SEEN)
            .where(LeadBatch.status == "running", cutoff > LAST_SEEN)
            .order_by(LeadBatch.id))


def stale_batches(conn: Connection | Session, stale_after_s: float) -> list[StaleBatch]:
    """Running batches without a sign of life for more than `stale_after_s` (reads only)."""
    return [StaleBatch(batch_id, kind, _utc(seen))
            for batch_id, kind, seen in conn.execute(_stale(stale_after_s))]


def sweep_stale_batches(session: Session, stale_after_s: float) -> list[StaleBatch]:
    """Mark failed, with a note saying why and when, every running batch without a sign of life
    for more than `stale_after_s`; its figures are what it loaded before it died. A batch whose
    load is committing right now is locked by that load and skipped (on PostgreSQL): its run
    is alive; on SQLite the sweep takes the write lock first, so it waits for such a load
    and then reads the heartbeat the load stamped. Returns the batches swept."""
    from tasks.batches import finish_batch

    take_write_lock(session)
    locked = _stale(stale_after_s).with_for_update(skip_locked=True, of=LeadBatch)
    swept = [StaleBatch(batch_id, kind, _utc(seen))
             for batch_id, kind, seen in session.execute(locked)]
    now = datetime.now(UTC)
    for stale in swept:
        batch = session.get_one(LeadBatch, stale.batch_id)
        note = (f"run failed: marked failed at {now:%Y-%m-%d %H:%M:%S} UTC, no sign of life "
                f"since {stale.last_seen:%Y-%m-%d %H:%M:%S} UTC (more than "
                f"LEADFLOW_BATCH_STALE_AFTER_S={stale_after_s:g} s): its process was killed "
                "or its machine stopped; the figures are what it loaded before, merges not "
                "counted")
        finish_batch(session, stale.batch_id, 0, list(batch.sources_used),
                     dict(batch.validation), [*batch.notes, note], status="failed")
    return swept
