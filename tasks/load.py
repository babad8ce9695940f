"""Loads a validated, deduplicated batch into `leads` and `lead_source_records`, merging
duplicates into existing leads (fill empty fields, keep every source) and never creating a
duplicate lead, even when the same batch is loaded twice (a retried task, a re-run flow).

Idempotence rests on the unique (source, external_id) of `lead_source_records`: a record seen
before always maps back to its lead. Concurrent loads are serialised by a transaction-scoped
advisory lock on PostgreSQL (SQLite serialises writers itself), and rows the dedupe step marked
as new are matched once more inside that lock, so two overlapping runs cannot both insert the
same business."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from models import Lead, LeadSourceRecord

LOAD_LOCK_KEY = 0x1EADF10  # pg_advisory_xact_lock key shared by every loader

# Lead columns filled from the staging frame (frame column -> lead column).
LEAD_FIELDS: dict[str, str] = {
    "company_name": "company_name",
    "contact_name": "contact_name",
    "contact_title": "contact_title",
    "email": "email",
    "email_norm": "email_norm",
    "email_status": "email_status",
    "email_confidence": "email_confidence",
    "phone": "phone",
    "phone_e164": "phone_e164",
    "website": "website",
    "domain": "domain",
    "address": "address",
    "city": "city",
    "state": "state",
    "postal_code": "postal_code",
    "country": "country",
    "industry": "industry",
    "linkedin_url": "linkedin_url",
    "name_key": "name_key",
    "name_block": "name_block",
    "city_key": "city_key",
    "address_key": "address_key",
    "booking_tools": "booking_tools",
    "has_contact_form": "has_contact_form",
    "booking_keyword_count": "booking_keyword_count",
    "digital_maturity": "digital_maturity",
    "quality_score": "quality_score",
    "tier": "tier",
    "score_breakdown": "score_breakdown",
}


@dataclass(slots=True)
class LoadResult:
    inserted: int  # new leads
    merged: int  # rows merged into an existing lead or into another row of the batch
    lead_ids: list[int]  # lead id per input row, in input order


def _clean(value: Any) -> Any:
    """pandas missing values (NaN, NA, NaT) become None; numpy scalars become Python ones."""
    if value is None:
        return None
    if isinstance(value, list | dict | tuple):
        return value
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        return value
    if hasattr(value, "item"):
        return value.item()
    return value


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {} or (
        isinstance(value, float) and math.isnan(value)
    )


def _lead_values(row: dict[str, Any]) -> dict[str, Any]:
    values = {col: _clean(row.get(field)) for field, col in LEAD_FIELDS.items()}
    if values.get("booking_tools") is None:
        values["booking_tools"] = []
    if values.get("score_breakdown") is None:
        values["score_breakdown"] = {}
    return values


def _merge_cluster(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One lead from the rows of a cluster: the best-scored row first, gaps filled from others."""
    ordered = sorted(rows, key=lambda r: -(_clean(r.get("quality_score")) or 0))
    merged = _lead_values(ordered[0])
    for other in ordered[1:]:
        for col, value in _lead_values(other).items():
            if _is_empty(merged.get(col)) and not _is_empty(value):
                merged[col] = value
    return merged


def insert_ignore(session: Session, table: Any, rows: list[dict[str, Any]], keys: list[str]):  # type: ignore[no-untyped-def]
    dialect = session.get_bind().dialect.name
    stmt = (pg_insert if dialect == "postgresql" else sqlite_insert)(table)
    session.execute(stmt.on_conflict_do_nothing(index_elements=keys), rows)


def _known_source_records(session: Session, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    found: dict[tuple[str, str], int] = {}
    by_source: dict[str, list[str]] = {}
    for source, ext in pairs:
        by_source.setdefault(source, []).append(ext)
    for source, ids in by_source.items():
        for start in range(0, len(ids), 5000):
            chunk = ids[start : start + 5000]
            stmt = select(
                LeadSourceRecord.external_id, LeadSourceRecord.lead_id
            ).where(LeadSourceRecord.source == source, LeadSourceRecord.external_id.in_(chunk))
            for ext, lead_id in session.execute(stmt):
                found[(source, ext)] = lead_id
    return found


def load_leads(
    session: Session,
    frame: pd.DataFrame,
    batch_id: int | None,
    rematch: Any = None,
) -> LoadResult:
    """Insert or merge every row of `frame` inside the caller's transaction.

    `frame` needs the staging columns, the dedupe keys, the scores, `cluster_id` (rows of one
    business share it) and `existing_lead_id` (a matched lead or NA). `rematch(conn, frame)`,
    if given, re-matches rows still new against the database once the load lock is held.
    """
    if frame.empty:
        return LoadResult(0, 0, [])
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOAD_LOCK_KEY})

    rows = frame.to_dict("records")
    pairs = [(str(r["source"]), str(r["source_record_id"])) for r in rows]
    known = _known_source_records(session, pairs)
    targets: list[int | None] = [
        known.get(pair) or _clean(r.get("existing_lead_id")) for pair, r in zip(pairs, rows)
    ]

    if rematch is not None:
        new_positions = [i for i, t in enumerate(targets) if t is None]
        if new_positions:
            again = rematch(session.connection(), frame.iloc[new_positions])
            for pos, lead_id in zip(new_positions, list(again)):
                if _clean(lead_id) is not None:
                    targets[pos] = int(lead_id)

    # A cluster goes to the lowest existing lead any of its rows matched, else to a new lead.
    clusters: dict[Any, list[int]] = {}
    for pos, row in enumerate(rows):
        clusters.setdefault(_clean(row.get("cluster_id")) or f"row{pos}", []).append(pos)
    cluster_target: dict[Any, int | None] = {}
    for cid, positions in clusters.items():
        matched = [targets[p] for p in positions if targets[p] is not None]
        cluster_target[cid] = min(matched) if matched else None  # type: ignore[type-var]

    now = datetime.now(UTC)
    new_clusters = [cid for cid, target in cluster_target.items() if target is None]
    if new_clusters:
        values = []
        for cid in new_clusters:
            cluster_rows = [rows[p] for p in clusters[cid]]
            lead = _merge_cluster(cluster_rows)
            sources = sorted({str(r["source"]) for r in cluster_rows})
            lead.update(
                source=str(cluster_rows[0]["source"]),
                sources=sources,
                batch_id=batch_id,
                status="new",
                created_at=now,
                updated_at=now,
            )
            if not lead.get("company_name"):
                lead["company_name"] = lead.get("email") or "(unnamed)"
            values.append(lead)
        new_ids = session.scalars(
            insert(Lead).returning(Lead.id, sort_by_parameter_order=True), values
        ).all()
        for cid, lead_id in zip(new_clusters, new_ids):
            cluster_target[cid] = lead_id

    existing = [cid for cid in clusters if cid not in new_clusters]
    if existing:
        _merge_into_existing(session, {cid: cluster_target[cid] for cid in existing},
                             {cid: [rows[p] for p in clusters[cid]] for cid in existing}, now)

    lead_ids: list[int] = [0] * len(rows)
    for cid, positions in clusters.items():
        for p in positions:
            lead_ids[p] = int(cluster_target[cid])  # type: ignore[arg-type]

    records = [
        {
            "lead_id": lead_ids[i],
            "source": pairs[i][0],
            "external_id": pairs[i][1],
            "batch_id": batch_id,
            "payload": _clean(rows[i].get("raw")) or {},
            "seen_at": now,
        }
        for i in range(len(rows))
    ]
    insert_ignore(session, LeadSourceRecord.__table__, records, ["source", "external_id"])
    inserted = len(new_clusters)
    return LoadResult(inserted=inserted, merged=len(rows) - inserted, lead_ids=lead_ids)


def _merge_into_existing(
    session: Session,
    targets: dict[Any, int | None],
    cluster_rows: dict[Any, list[dict[str, Any]]],
    now: datetime,
) -> None:
    """Fill the existing leads' empty fields from the new rows and add their sources."""
    ids = sorted({t for t in targets.values() if t is not None})
    current: dict[int, Lead] = {}
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        for lead in session.scalars(select(Lead).where(Lead.id.in_(chunk))):
            current[lead.id] = lead
    updates: dict[int, dict[str, Any]] = {}
    for cid, lead_id in targets.items():
        lead = current.get(lead_id)  # type: ignore[arg-type]
        if lead is None:
            continue
        incoming = _merge_cluster(cluster_rows[cid])
        change = updates.setdefault(lead.id, {"id": lead.id})
        for col, value in incoming.items():
            if col in ("quality_score", "tier", "score_breakdown"):
                continue
            if _is_empty(getattr(lead, col)) and _is_empty(change.get(col)) and not _is_empty(value):
                change[col] = value
        # A merged lead keeps the better of its scores; its tier follows that score.
        score = incoming.get("quality_score")
        if score is not None and (lead.quality_score is None or score > lead.quality_score):
            change.update(quality_score=score, tier=incoming.get("tier"),
                          score_breakdown=incoming.get("score_breakdown") or {})
        sources = set(lead.sources or []) | set(change.get("sources", []))
        sources |= {str(r["source"]) for r in cluster_rows[cid]}
        if sources != set(lead.sources or []):
            change["sources"] = sorted(sources)
    rows = [dict(c, updated_at=now) for c in updates.values() if len(c) > 1]
    if rows:
        session.execute(update(Lead), rows)


def leads_created_by_batch(session: Session, batch_id: int) -> int:
    """New leads a batch created, counted in the database so a retried load can't skew it."""
    return int(session.scalar(select(func.count()).where(Lead.batch_id == batch_id)) or 0)
