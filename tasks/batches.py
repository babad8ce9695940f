"""The batch record of a lead-generation run or CSV import (the seed's `leadBatches`), and the
quarantine where rejected rows are kept with their reason."""

from __future__ import annotations

import hashlib
import json
import math
import signal
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import Lead, LeadBatch, LeadSourceRecord, QuarantinedRow
from models.db import insert_ignore, take_write_lock
from tasks.load import leads_created_by_batch
from tasks.stale_batches import touch_batch


@dataclass(slots=True)
class Rejected:
    """A row that failed a rule; becomes a quarantined_rows row."""

    source: str
    stage: str  # normalise | enrich | validate | csv
    rule: str
    reason: str
    row_ref: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class BatchSummary:
    batch_id: int
    source: str
    sources_used: list[str]
    leads_generated: int
    leads_merged: int
    rows_rejected: int
    avg_score: float | None
    tier_distribution: dict[str, int]
    notes: list[str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def start_batch(session: Session, run_key: str, kind: str, source: str, industry: str | None,
                location: str | None, max_results: int | None) -> int:
    """Create the batch record, or return the one this run (same run_key) already made; either
    way its heartbeat says the run is alive. A retried run finds its batch closed (failed, or
    swept as dead) and works on it again: the batch is `running` until the run closes it.
    The batch's row is locked before it is read (SQLite: the write lock first): a sweep
    committing between the read and the write would otherwise leave the live run's batch
    failed; a sweep that comes later skips the locked row."""
    take_write_lock(session)
    existing = session.scalar(select(LeadBatch).where(LeadBatch.run_key == run_key)
                              .with_for_update())
    if existing is not None:
        if existing.status != "running":
            existing.status = "running"
            existing.finished_at = None
        touch_batch(session, existing.id)
        return existing.id
    batch = LeadBatch(run_key=run_key, kind=kind, source=source, industry=industry,
                      location=location, max_results=max_results, status="running",
                      sources_used=[], tier_distribution={}, validation={}, notes=[],
                      heartbeat_at=datetime.now(UTC))
    session.add(batch)
    session.flush()
    return batch.id


def stopped_by_signal(exc: BaseException) -> BaseException | None:
    """What stopped the run from outside, if `exc` is it or was raised while it was being
    handled: Prefect's cancellation (TerminationSignal, for SIGTERM) or Ctrl-C
    (KeyboardInterrupt). Raised in the middle of a database call, the signal can come out as
    another error (psycopg's rollback of the interrupted query fails): such an error is not
    retried, and the batch's note says what stopped the run."""
    from prefect.exceptions import ExternalSignal

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt | ExternalSignal):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def failure_note(exc: BaseException) -> str:
    """What ended a failed run, for its batch's notes: the error's message, or what stopped a
    run from outside (Prefect's cancellation raises TerminationSignal, whose message is only
    the signal's number; Ctrl-C's KeyboardInterrupt has none)."""
    stop = stopped_by_signal(exc)
    if stop is None:
        if isinstance(exc, Exception):
            return str(exc) or type(exc).__name__
        stop = exc
    signum = getattr(stop, "signal", None)  # TerminationSignal's, however it was raised
    if not isinstance(signum, int):
        signum = stop.args[0] if stop.args and isinstance(stop.args[0], int) else None
    if signum is None:
        return f"stopped ({type(stop).__name__})"
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    return f"stopped by {name} (the run was cancelled or its process ended)"


def _json_safe(value: Any) -> Any:
    """A payload any JSON column accepts: NaN/Infinity become null, NUL bytes are dropped,
    anything else unknown becomes its string."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value.replace("\x00", "")
    if value is None or isinstance(value, bool | int):
        return value
    return str(value)


def _fingerprint(batch_id: int | None, r: Rejected) -> str:
    blob = json.dumps([batch_id, r.source, r.stage, r.rule, r.row_ref, r.payload],
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def quarantine(session: Session, batch_id: int | None, rows: list[Rejected]) -> int:
    """Keep rejected rows with their reason; idempotent, so a retried step adds no copies."""
    if not rows:
        return 0
    values = [
        {"batch_id": batch_id, "source": r.source, "stage": r.stage, "rule": r.rule,
         "reason": r.reason[:2000], "row_ref": (r.row_ref or None) and str(r.row_ref)[:200],
         "payload": _json_safe(r.payload),
         "fingerprint": _fingerprint(batch_id, r), "created_at": datetime.now(UTC)}
        for r in rows
    ]
    insert_ignore(session, QuarantinedRow.__table__, values, ["fingerprint"])
    return len(rows)


def finish_batch(
    session: Session, batch_id: int, rows_loaded: int, sources_used: list[str],
    validation: dict[str, Any], notes: list[str], status: str = "done",
    lead_ids: Iterable[int] | None = None,
) -> BatchSummary:
    """Write the batch's summary, derived from the database (exact under retries). Scores and
    tiers cover every lead the batch contributed to, new or merged into: `lead_ids`, what its
    loads reported (a record seen again keeps its first batch in lead_source_records), else
    the leads of the records it added."""
    batch = session.get_one(LeadBatch, batch_id)
    generated = leads_created_by_batch(session, batch_id)
    rejected = int(session.scalar(
        select(func.count()).where(QuarantinedRow.batch_id == batch_id)) or 0)
    if lead_ids is None:
        ids = select(LeadSourceRecord.lead_id).where(LeadSourceRecord.batch_id == batch_id)
        tiers, avg = _scores(session, [Lead.id.in_(ids)])
    else:
        tiers, avg = _scores(session, [Lead.id.in_(chunk) for chunk in _chunked(lead_ids)])
    batch.leads_generated = generated
    batch.leads_merged = max(rows_loaded - generated, 0)
    batch.rows_rejected = rejected
    batch.avg_score = round(float(avg), 1) if avg is not None else None
    batch.tier_distribution = {t: int(tiers.get(t, 0)) for t in ("hot", "warm", "cold")}
    batch.sources_used = sources_used
    batch.validation = validation
    batch.notes = notes
    batch.status = status
    batch.finished_at = datetime.now(UTC)
    return BatchSummary(
        batch_id=batch_id, source=batch.source, sources_used=sources_used,
        leads_generated=generated, leads_merged=batch.leads_merged, rows_rejected=rejected,
        avg_score=batch.avg_score, tier_distribution=batch.tier_distribution, notes=notes,
    )


def _chunked(ids: Iterable[int], size: int = 10_000) -> Iterator[list[int]]:
    values = sorted(set(ids))
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _scores(session: Session,
            conditions: list[Any]) -> tuple[dict[str | None, int], float | None]:
    """Tier counts and average score of the leads the conditions (ORed in chunks) select."""
    tiers: dict[str | None, int] = {}
    total = count = 0.0
    for condition in conditions:
        for tier, n in session.execute(
                select(Lead.tier, func.count()).where(condition).group_by(Lead.tier)).all():
            tiers[tier] = tiers.get(tier, 0) + int(n)
        chunk_sum, chunk_count = session.execute(
            select(func.sum(Lead.quality_score), func.count(Lead.quality_score))
            .where(condition)).one()
        total += float(chunk_sum or 0)
        count += int(chunk_count or 0)
    return tiers, (total / count if count else None)


def merge_validation(total: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """Add one chunk's validation summary (tasks.validation) to the run's running total."""
    for key in ("rows_in", "rows_valid", "rows_rejected"):
        total[key] = total.get(key, 0) + summary.get(key, 0)
    by_rule = total.setdefault("rejected_by_rule", {})
    for rule, count in summary.get("rejected_by_rule", {}).items():
        by_rule[rule] = by_rule.get(rule, 0) + count
    return total


def summary_rows(summary: dict[str, Any], validation: dict[str, Any]) -> list[dict[str, Any]]:
    """A batch summary and its validation totals as rows of a Prefect table artifact."""
    tiers = summary["tier_distribution"]
    return [
        {"metric": "batch id", "value": summary["batch_id"]},
        {"metric": "sources used", "value": ", ".join(summary["sources_used"]) or "-"},
        {"metric": "leads generated", "value": summary["leads_generated"]},
        {"metric": "merged duplicates", "value": summary["leads_merged"]},
        {"metric": "rejected rows", "value": summary["rows_rejected"]},
        {"metric": "average score", "value": summary["avg_score"]},
        *({"metric": f"tier {t}", "value": tiers.get(t, 0)} for t in ("hot", "warm", "cold")),
        {"metric": "validated rows", "value": validation.get("rows_in", 0)},
        {"metric": "validation rejects", "value": validation.get("rows_rejected", 0)},
        *({"metric": f"rule failed: {rule}", "value": n}
          for rule, n in sorted(validation.get("rejected_by_rule", {}).items())),
        *({"metric": "note", "value": note} for note in summary["notes"]),
    ]
