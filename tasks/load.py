"""Loads a validated, deduplicated batch into `leads` and `lead_source_records`, merging
duplicates into existing leads (fill empty fields, keep every source) and never creating a
duplicate lead, even when the same batch is loaded twice (a retried task, a re-run flow).

Idempotence rests on the unique (source, external_id) of `lead_source_records`: a record seen
before always maps back to its lead. Concurrent loads are serialised by a transaction-scoped
advisory lock on PostgreSQL (on SQLite, by taking the write lock first), and rows the dedupe
step marked as new are matched once more inside that lock, so two overlapping runs cannot both
insert the same business. When the caller says what the dedupe step could see (`Seen`: the
highest lead id and key version committed before it read the database), only rows that share
a match key with a lead committed since are matched again, and none when there is no such
lead. "Committed since" covers both the leads inserted since (higher ids) and the existing
leads a load gave a match key they lacked (a merge filled their phone, say): each load that
re-keys leads stamps them with one `key_version`, above every one committed before (taken
inside the lock, so versions follow the commit order).

The work is done on whole columns and in bulk: on PostgreSQL new leads get their ids from the
sequence up front and are written, like the new source records, with one COPY whose text is
built column by column (no Python call per row), and merges are one UPDATE from a JSON array of
each lead's changed columns. SQLite uses executemany for all three."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np
import orjson
import pandas as pd
from psycopg.adapt import Dumper
from psycopg.copy import QueuedLibpqWriter
from psycopg.postgres import types as postgres_types
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Integer,
    Table,
    and_,
    any_,
    bindparam,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from models import Lead, LeadSourceRecord
from models.db import insert_ignore
from tasks.keys import KEY_COLUMNS, address_key, name_block, name_key

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

_LEADS: Table = Lead.__table__  # type: ignore[assignment]
_RECORDS: Table = LeadSourceRecord.__table__  # type: ignore[assignment]
_FIELD_COLUMNS: tuple[str, ...] = tuple(LEAD_FIELDS.values())
_INT_COLUMNS = frozenset(
    c.name for c in _LEADS.columns if isinstance(c.type, Integer) and not c.primary_key
) - {"batch_id"}
# Columns a merge never fills from an incoming row (the score moves as a whole, below).
_SCORE_COLUMNS = ("quality_score", "tier", "score_breakdown")
_ROWS_PER_QUERY = 5000
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _json_text(value: Any) -> str:
    """JSON text of one value (orjson; json for what it refuses)."""
    try:
        return orjson.dumps(value, option=_ORJSON_OPTIONS).decode()
    except TypeError:
        return json.dumps(value)


class Seen(NamedTuple):
    """What a dedupe step could see of `leads`: the highest lead id and the highest key
    version committed when it read the database (0 when there is none)."""

    lead_id: int
    key_version: int


@dataclass(slots=True)
class LoadResult:
    inserted: int  # new leads
    merged: int  # rows merged into an existing lead or into another row of the batch
    lead_ids: list[int]  # lead id per input row, in input order
    # Existing leads this load gave a match key they lacked (a merge filled their email,
    # domain, phone, name or address), stamped with this load's key version.
    rekeyed_lead_ids: list[int] = field(default_factory=list)


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


def _column(frame: pd.DataFrame, name: str) -> list[Any]:
    """A frame column as Python values, missing values (NaN, NA, NaT) as None, in one pass
    over the whole column; a column the frame lacks is all None."""
    if name not in frame.columns:
        return [None] * len(frame)
    series = frame[name]
    values = series.astype(object).where(series.notna(), None).tolist()
    # An object column may hold numpy scalars, which tolist() leaves alone.
    if series.dtype == object and any(issubclass(t, np.generic) for t in set(map(type, values))):
        values = [_clean(v) for v in values]
    return values


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {} or (
        isinstance(value, float) and math.isnan(value)
    )


def _int_or_none(value: Any) -> Any:
    """Integer columns get ints (a float score 75.0 from pandas is 75), as the database's
    assignment cast would do."""
    if isinstance(value, float) and not isinstance(value, bool):
        return None if math.isnan(value) else int(round(value))
    return value


def _int_column(frame: pd.DataFrame, name: str) -> list[Any]:
    """An integer column's values as Python ints or None: a float column (pandas' type for
    integers with gaps) is rounded as a whole, as the database's assignment cast would."""
    if name in frame.columns and pd.api.types.is_float_dtype(frame[name].dtype):
        series = frame[name]
        return series.round().astype("Int64").astype(object).where(series.notna(), None).tolist()
    return [_int_or_none(v) for v in _column(frame, name)]


class _Columns:
    """The lead fields of a frame as column lists (what every row contributes to a lead)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.values = {col: _int_column(frame, field) if col in _INT_COLUMNS
                       else _column(frame, field) for field, col in LEAD_FIELDS.items()}

    def row(self, pos: int) -> dict[str, Any]:
        values = {col: vals[pos] for col, vals in self.values.items()}
        if values["booking_tools"] is None:
            values["booking_tools"] = []
        if values["score_breakdown"] is None:
            values["score_breakdown"] = {}
        return values


# Columns that describe one email address: a merge takes them from rows with that address.
_EMAIL_VERDICT = ("email_status", "email_confidence")


def _other_email(have: dict[str, Any], row: dict[str, Any]) -> bool:
    """Whether `row` carries an email address and `have` (a lead, or a merge so far) another
    one, so that the row's verification verdict says nothing about `have`'s address."""
    if _is_empty(have.get("email")) and _is_empty(have.get("email_norm")):
        return False
    return _is_empty(row["email_norm"]) or row["email_norm"] != have.get("email_norm")


def _merge_cluster(columns: _Columns, positions: list[int]) -> dict[str, Any]:
    """One lead from the rows of a cluster: the best-scored row first, gaps filled from others
    (an email's status and confidence only from rows with the same address)."""
    scores = columns.values["quality_score"]
    ordered = sorted(positions, key=lambda p: -(scores[p] or 0))
    merged = columns.row(ordered[0])
    for other in ordered[1:]:
        row = columns.row(other)
        if _other_email(merged, row):
            for col in _EMAIL_VERDICT:
                row[col] = None
        for col, value in row.items():
            if _is_empty(merged.get(col)) and not _is_empty(value):
                merged[col] = value
    return merged


def _chunks(values: list[Any], size: int = _ROWS_PER_QUERY) -> Iterable[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


class _TextArray(str):
    """A text[] literal ("{...}") sent as a text[] parameter: PostgreSQL parses it when the
    statement is bound, so the planner sees a constant array, as with a list parameter,
    which psycopg would adapt value by value in Python (~25 ms per 10,000 values)."""

    @classmethod
    def of(cls, values: Iterable[str]) -> _TextArray:
        return cls("{" + ",".join(
            '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}")


class _TextArrayDumper(Dumper):
    oid = postgres_types["text"].array_oid

    def dump(self, obj: Any) -> bytes:
        encoding = self.connection.info.encoding if self.connection else "utf-8"
        return obj.encode(encoding)


def _known_source_records(
    session: Session, pairs: list[tuple[str, str]], postgres: bool
) -> dict[tuple[str, str], int]:
    """The lead of every (source, external_id) already recorded."""
    found: dict[tuple[str, str], int] = {}
    by_source: dict[str, list[str]] = {}
    for source, ext in pairs:
        by_source.setdefault(source, []).append(ext)
    for source, ids in by_source.items():
        ids = sorted(set(ids))
        if postgres:
            _raw_connection(session).adapters.register_dumper(_TextArray, _TextArrayDumper)
            query = text(
                "SELECT external_id, lead_id FROM lead_source_records "
                "WHERE source = :source AND external_id = ANY(:ids)"
            )
            rows = session.execute(query, {"source": source, "ids": _TextArray.of(ids)}).all()
            found.update(((source, ext), lead_id) for ext, lead_id in rows)
            continue
        for chunk in _chunks(ids):
            stmt = select(_RECORDS.c.external_id, _RECORDS.c.lead_id).where(
                _RECORDS.c.source == source, _RECORDS.c.external_id.in_(chunk)
            )
            found.update(((source, ext), lead_id) for ext, lead_id in session.execute(stmt))
    return found


# --- re-matching rows still new, inside the lock ------------------------------------------------


def _leads_since(seen: Seen) -> Any:
    """The condition on `leads` for the leads committed after `seen`: inserted since (a
    higher id) or given a match key since (a higher key version)."""
    c = _LEADS.c
    return or_(c.id > seen.lead_id, c.key_version > seen.key_version)


def _keys_of_leads(session: Session, where: Any) -> set[tuple[str, Any]]:
    """The match keys of the leads `where` selects, as `match_existing` indexes them: email,
    domain, phone, (city, name block) and (city, address), with name block and address
    computed when not stored."""
    c = _LEADS.c
    stmt = select(c.email_norm, c.domain, c.phone_e164, c.name_key, c.city_key, c.name_block,
                  c.address_key, c.address, c.company_name).where(where)
    keys: set[tuple[str, Any]] = set()
    for email, domain, phone, nkey, city, block, akey, address, company in session.execute(
            stmt).all():
        for kind, value in (("e", email), ("d", domain), ("p", phone)):
            if value:
                keys.add((kind, value))
        if city:
            nkey = nkey or name_key(company) or None
            block = block or name_block(nkey)
            akey = akey or address_key(address)
            if block:
                # As match_existing's name index: by street number (None: no number).
                keys.add(("b", (city, block, _street_number(akey))))
                keys.add(("B", (city, block)))
            if akey:
                keys.add(("a", (city, akey)))
    return keys


def _row_keys(frame: pd.DataFrame, positions: list[int]) -> list[list[Any]]:
    """The rows' match keys, column by column: email, domain, phone, city, name block,
    address (empty values as None)."""
    sub = frame.iloc[positions]
    return [[v or None for v in _column(sub, c)]
            for c in ("email_norm", "domain", "phone_e164", "city_key", "name_block",
                      "address_key")]


def _rows_sharing_keys(frame: pd.DataFrame, positions: list[int],
                       keys: set[tuple[str, Any]]) -> list[int]:
    """The positions whose row shares a match key with `keys`; all of them when the frame
    lacks the dedupe key columns (then nothing can be ruled out)."""
    if not all(c in frame.columns for c in KEY_COLUMNS):
        return positions
    email, domain, phone, city, block, addr = _row_keys(frame, positions)
    out = []
    for i, pos in enumerate(positions):
        exact = ("e", email[i]) in keys or ("d", domain[i]) in keys or ("p", phone[i]) in keys
        c = city[i]
        if exact or c and (("a", (c, addr[i])) in keys or _shares_name_block(
                keys, c, block[i], _street_number(addr[i]))):
            out.append(pos)
    return out


# Leads whose name block or address key is not stored: their keys are computed in Python.
_UNSTORED_KEYS = text(
    "coalesce(city_key, '') <> '' AND ("
    "(coalesce(name_block, '') = '' AND (coalesce(name_key, '') <> '' "
    "OR coalesce(company_name, '') <> '')) "
    "OR (coalesce(address_key, '') = '' AND coalesce(address, '') <> ''))"
)
# The rows (JSON records i, e, d, p, c, b, a, n) sharing a stored key with the leads the
# condition selects: one hash join per key; a name block needs the same street number, or
# none on either side (a head that is not all digits counts as none: at worst one row more is
# matched again).
_SHARING_KEYS_SQL = """
WITH l AS MATERIALIZED (
    SELECT email_norm AS e, domain AS d, phone_e164 AS p, city_key AS c, name_block AS b,
           address_key AS a, split_part(address_key, ' ', 1) AS head
    FROM leads WHERE id > :after OR key_version > :version
), r AS MATERIALIZED (
    SELECT * FROM json_to_recordset(CAST(:rows AS json))
        AS r(i int, e text, d text, p text, c text, b text, a text, n text)
)
SELECT r.i FROM r JOIN l ON l.e = r.e
UNION SELECT r.i FROM r JOIN l ON l.d = r.d
UNION SELECT r.i FROM r JOIN l ON l.p = r.p
UNION SELECT r.i FROM r JOIN l ON l.c = r.c AND l.a = r.a
UNION SELECT r.i FROM r JOIN l ON l.c = r.c AND l.b = r.b
    AND (r.n IS NULL OR l.head = r.n OR l.head !~ '^[0-9]+$')
"""


def _rows_sharing_keys_sql(session: Session, frame: pd.DataFrame, positions: list[int],
                           seen: Seen) -> list[int]:
    """`_rows_sharing_keys` against the leads committed after `seen`, found by PostgreSQL:
    the rows' keys go in as one JSON array and only the positions sharing a key come back
    (no read of the leads' keys into Python). Leads lacking a stored name block or address
    key are checked in Python, as on SQLite."""
    if not all(c in frame.columns for c in KEY_COLUMNS):
        return positions
    email, domain, phone, city, block, addr = _row_keys(frame, positions)
    rows = [{"i": k, "e": e, "d": d, "p": p, "c": c, "b": b, "a": a, "n": _street_number(a)}
            for k, (e, d, p, c, b, a) in enumerate(
                zip(email, domain, phone, city, block, addr, strict=True))]
    found = session.scalars(text(_SHARING_KEYS_SQL), {
        "rows": orjson.dumps(rows).decode(), "after": seen.lead_id,
        "version": seen.key_version})
    out = {positions[k] for k in found.all()}
    unstored = _keys_of_leads(session, and_(_leads_since(seen), _UNSTORED_KEYS))
    if unstored:
        out.update(_rows_sharing_keys(frame, positions, unstored))
    return sorted(out)


def _street_number(address_key: str | None) -> str | None:
    head = address_key.partition(" ")[0] if address_key else ""
    return head if head.isdigit() else None


def _shares_name_block(keys: set[tuple[str, Any]], city: str, block: str | None,
                       num: str | None) -> bool:
    """Whether match_existing's name index would offer a lead of `keys` for this row: same
    city and name block, and the same street number or none on either side."""
    if not block:
        return False
    if num is None:
        return ("B", (city, block)) in keys
    return ("b", (city, block, num)) in keys or ("b", (city, block, None)) in keys


def _rematch(session: Session, frame: pd.DataFrame, targets: list[int | None],
             rematch: Callable[[Any, pd.DataFrame], Any], seen: Seen | None,
             newest: Seen) -> None:
    """Match the rows still new once more, now that no other loader can write: all of them
    when `seen` is unknown, else only those sharing a key with a lead committed after `seen`
    (none when `newest`, what is committed now, is not past it)."""
    positions = [i for i, t in enumerate(targets) if t is None]
    if not positions:
        return
    if seen is not None:
        if newest.lead_id <= seen.lead_id and newest.key_version <= seen.key_version:
            return
        if session.get_bind().dialect.name == "postgresql":
            positions = _rows_sharing_keys_sql(session, frame, positions, seen)
        else:
            positions = _rows_sharing_keys(frame, positions,
                                           _keys_of_leads(session, _leads_since(seen)))
        if not positions:
            return
    again = rematch(session.connection(), frame.iloc[positions])
    for pos, lead_id in zip(positions, list(again), strict=True):
        if _clean(lead_id) is not None:
            targets[pos] = int(lead_id)


# --- the load -------------------------------------------------------------------------------------


RAW_JSON = "raw_json"  # optional frame column: each row's raw payload as JSON text


def load_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns of `frame` that `load_leads` reads, with the `raw` payloads as JSON text
    (column raw_json): what is sent to a load in another process, since JSON text pickles
    at a fraction of the cost of nested dicts, and it is what the COPY writes anyway."""
    wanted = (*LEAD_FIELDS, *KEY_COLUMNS, "source", "source_record_id", "cluster_id",
              "existing_lead_id")
    out = frame[[c for c in dict.fromkeys(wanted) if c in frame.columns]].copy()
    if "raw" in frame.columns:
        out[RAW_JSON] = [_json_text(v if v else {}) for v in _column(frame, "raw")]
    return out


def seen_leads(conn: Any) -> Seen:
    """The highest lead id and key version committed so far (0 when there is none): what the
    dedupe step can see when it runs after this, to pass to `load_leads(..., seen=...)`."""
    lead_id, version = conn.execute(
        select(func.max(_LEADS.c.id), func.max(_LEADS.c.key_version))).one()
    return Seen(int(lead_id or 0), int(version or 0))


def lock_loads(session: Session) -> None:
    """Wait for the lock every writer of leads' match keys takes (a load, `leadflow rekey`)
    and hold it until the session's transaction ends: the advisory lock on PostgreSQL, the
    write lock on SQLite."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOAD_LOCK_KEY})
    else:
        # SQLite's transactions start deferred: the caller's reads would run before the write
        # lock. A first write takes it now, so the reads and the writes form one critical
        # section, as the advisory lock makes them on PostgreSQL.
        session.execute(text("DELETE FROM leads WHERE 0"))


def load_leads(
    session: Session,
    frame: pd.DataFrame,
    batch_id: int | None,
    rematch: Any = None,
    seen: Seen | None = None,
) -> LoadResult:
    """Insert or merge every row of `frame` inside the caller's transaction.

    `frame` needs the staging columns, the dedupe keys, the scores, `cluster_id` (rows of one
    business share it) and `existing_lead_id` (a matched lead or NA). `rematch(conn, frame)`,
    if given, re-matches rows still new against the database once the load lock is held.
    `seen`, if given, is `seen_leads()` read before the dedupe step matched the frame against
    the database: then only rows sharing a match key with a lead committed since (inserted,
    or given a new match key) are re-matched, none when there is no such lead.
    """
    if frame.empty:
        return LoadResult(0, 0, [])
    postgres = session.get_bind().dialect.name == "postgresql"
    lock_loads(session)

    n = len(frame)
    sources = [str(v) for v in _column(frame, "source")]
    externals = [str(v) for v in _column(frame, "source_record_id")]
    pairs = list(zip(sources, externals, strict=True))
    known = _known_source_records(session, pairs, postgres)
    existing_ids = _column(frame, "existing_lead_id")
    targets: list[int | None] = [
        known.get(pair) or (int(e) if e is not None else None)
        for pair, e in zip(pairs, existing_ids, strict=True)
    ]
    newest = seen_leads(session)  # inside the lock: every load before this one
    if rematch is not None:
        _rematch(session, frame, targets, rematch, seen, newest)

    # A cluster goes to the lowest existing lead any of its rows matched, else to a new lead.
    clusters: dict[Any, list[int]] = {}
    for pos, cid in enumerate(_column(frame, "cluster_id")):
        clusters.setdefault(f"row{pos}" if cid is None else cid, []).append(pos)
    cluster_target: dict[Any, int | None] = {}
    for cid, positions in clusters.items():
        matched = [t for p in positions if (t := targets[p]) is not None]
        cluster_target[cid] = min(matched) if matched else None

    columns = _Columns(frame)
    now = datetime.now(UTC)
    new_clusters = [cid for cid, target in cluster_target.items() if target is None]
    existing: dict[Any, int] = {cid: t for cid, t in cluster_target.items() if t is not None}
    current = (_read_leads(session, sorted(set(existing.values())), postgres)
               if existing else {})
    values = _new_lead_columns(columns, clusters, new_clusters, sources) if new_clusters else {}
    # Source payloads: JSON text on PostgreSQL (written as is), objects on SQLite.
    if RAW_JSON in frame.columns:
        texts = _column(frame, RAW_JSON)
        payloads = texts if postgres else [json.loads(t) for t in texts]
    else:
        objects = [v if v else {} for v in _column(frame, "raw")]
        payloads = [_json_text(v) for v in objects] if postgres else objects

    def lead_ids_of_rows(new_ids: list[int]) -> list[int]:
        for cid, lead_id in zip(new_clusters, new_ids, strict=True):
            cluster_target[cid] = lead_id
        out: list[int] = [0] * n
        for cid, positions in clusters.items():
            target = int(cluster_target[cid])  # type: ignore[arg-type]
            for p in positions:
                out[p] = target
        return out

    if postgres:
        # Ids first (inside the load lock they follow the insertion order); the merges and
        # the source records' COPY text are prepared while PostgreSQL writes the new leads.
        new_ids = _next_lead_ids(session, len(new_clusters))
        lead_ids = lead_ids_of_rows(new_ids)
        with _copying_leads(session, values, new_ids, batch_id, now):
            merges, rekeyed = _merge_changes(existing, current, clusters, columns, sources,
                                             newest.key_version + 1)
            records = _source_records_text(lead_ids, pairs, known, batch_id, payloads, now)
        _write_merges(session, merges, now, postgres)
        _copy_source_records(session, records)
    else:
        lead_ids = lead_ids_of_rows(_insert_leads_sqlite(session, values, batch_id, now)
                                    if new_clusters else [])
        merges, rekeyed = _merge_changes(existing, current, clusters, columns, sources,
                                             newest.key_version + 1)
        _write_merges(session, merges, now, postgres)
        records_in = [
            {"lead_id": lead_id, "source": source, "external_id": ext, "batch_id": batch_id,
             "payload": payload, "seen_at": now}
            for lead_id, (source, ext), payload in zip(lead_ids, pairs, payloads, strict=True)
        ]
        insert_ignore(session, _RECORDS, records_in, ["source", "external_id"])
    inserted = len(new_clusters)
    return LoadResult(inserted=inserted, merged=n - inserted, lead_ids=lead_ids,
                      rekeyed_lead_ids=rekeyed)


def _new_lead_columns(columns: _Columns, clusters: dict[Any, list[int]],
                      new_clusters: list[Any], sources: list[str]) -> dict[str, list[Any]]:
    """The new leads' values column by column (_FIELD_COLUMNS, then source and sources), one
    per new cluster: straight from the column lists, only clusters of several rows go through
    a merged dict."""
    firsts = [clusters[cid][0] for cid in new_clusters]
    out = {c: [vals[p] for p in firsts] for c, vals in columns.values.items()
           if c in _FIELD_SET}
    out["source"] = [sources[p] for p in firsts]
    out["sources"] = [[sources[p]] for p in firsts]
    for k, cid in enumerate(new_clusters):
        positions = clusters[cid]
        if len(positions) > 1:
            lead = _merge_cluster(columns, positions)
            for c in _FIELD_COLUMNS:
                out[c][k] = lead[c]
            out["sources"][k] = sorted({sources[q] for q in positions})
    out["booking_tools"] = [[] if v is None else v for v in out["booking_tools"]]
    out["score_breakdown"] = [{} if v is None else v for v in out["score_breakdown"]]
    out["company_name"] = [c or e or "(unnamed)"
                           for c, e in zip(out["company_name"], out["email"], strict=True)]
    return out


_FIELD_SET = frozenset(_FIELD_COLUMNS)
# New leads: the varying columns in COPY order; batch, status and times are constants.
_NEW_LEAD_COLUMNS = ("id", *_FIELD_COLUMNS, "source", "sources")
_JSON_COLUMNS = frozenset(c.name for c in _LEADS.columns if isinstance(c.type, JSON))
_BOOL_COLUMNS = frozenset(c.name for c in _LEADS.columns if isinstance(c.type, Boolean))


def _insert_leads_sqlite(session: Session, values: dict[str, list[Any]],
                         batch_id: int | None, now: datetime) -> list[int]:
    """Insert new leads (`values`: _FIELD_COLUMNS, source and sources, column by column);
    their ids in row order."""
    names = (*_FIELD_COLUMNS, "source", "sources")
    rows = [dict(zip(names, row, strict=True)) | {
        "batch_id": batch_id, "status": "new", "created_at": now, "updated_at": now}
        for row in zip(*(values[c] for c in names), strict=True)]
    stmt = insert(_LEADS).returning(_LEADS.c.id, sort_by_parameter_order=True)
    return list(session.scalars(stmt, rows).all())


def _next_lead_ids(session: Session, n: int) -> list[int]:
    """`n` new lead ids from the sequence, ascending."""
    if not n:
        return []
    return sorted(session.scalars(
        text("SELECT nextval(pg_get_serial_sequence('leads', 'id')) "
             "FROM generate_series(1, :n)"), {"n": n}
    ).all())


@contextmanager
def _copying_leads(session: Session, values: dict[str, list[Any]], ids: list[int],
                   batch_id: int | None, now: datetime) -> Iterator[None]:
    """COPY the new leads (`values` column by column, `ids` theirs); the body runs while
    PostgreSQL writes them (a psycopg thread sends the data), and the COPY ends after it.
    The text is formatted column by column: a list comprehension per column, no Python call
    per row or value (a COPY row per lead took ~0.2 s of the GIL per 10,000 leads)."""
    if not ids:
        yield
        return
    fields = [_copy_column(ids if c == "id" else values[c], c) for c in _NEW_LEAD_COLUMNS]
    constant = f"{_copy_field(batch_id)}\tnew\t{_copy_field(now)}\t{_copy_field(now)}"
    fields.append([constant] * len(ids))
    data = "\n".join(map("\t".join, zip(*fields, strict=True))) + "\n"
    cursor = _raw_cursor(session)
    try:
        with cursor.copy(f"COPY leads ({', '.join(_NEW_LEAD_COLUMNS)}, batch_id, status, "
                         "created_at, updated_at) FROM STDIN",
                         writer=QueuedLibpqWriter(cursor)) as copy:
            copy.write(data)
            yield
    finally:
        cursor.close()


# COPY's text format: backslash, tab, newline and carriage return are escaped in a field.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(values: list[str]) -> list[str]:
    """COPY text-format fields for a column of strings: escaped value by value only when the
    column holds a character that needs it (one scan of the joined column otherwise)."""
    joined = "".join(values)
    if any(c in joined for c in "\\\t\n\r"):
        return [v.translate(_COPY_ESCAPES) for v in values]
    return values


def _copy_field(value: Any) -> str:
    """One constant COPY text field: NULL as \\N, a timestamp in ISO form."""
    if value is None:
        return "\\N"
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _copy_column(values: list[Any], column: str) -> list[str]:
    """A lead column's values as COPY text fields: JSON columns as JSON text, booleans as
    t/f, everything else as its text, NULL as \\N."""
    if column in _JSON_COLUMNS:
        return _copy_text([_json_text(v) for v in values])
    if column in _BOOL_COLUMNS:
        return ["\\N" if v is None else ("t" if v else "f") for v in values]
    texts = [v if type(v) is str else str(v) for v in values if v is not None]
    if len(texts) == len(values):
        return _copy_text(texts)
    escaped = iter(_copy_text(texts))
    return ["\\N" if v is None else next(escaped) for v in values]


def _raw_connection(session: Session) -> Any:
    """The session's psycopg connection (same transaction)."""
    return session.connection().connection.driver_connection


def _raw_cursor(session: Session) -> Any:
    """A cursor of the session's psycopg connection (same transaction), for COPY."""
    return _raw_connection(session).cursor()


def _source_records_text(lead_ids: list[int], pairs: list[tuple[str, str]],
                         known: dict[tuple[str, str], int], batch_id: int | None,
                         payloads: list[str], now: datetime) -> str:
    """The COPY text of the new source records (`payloads` as JSON text). Inside the load
    lock no other loader writes source records, so the pairs not found before are new; a pair
    repeated within the batch is recorded once (its first occurrence). Built column by
    column: the payloads (most of the bytes) go in as JSON text, parsed once by the server."""
    seen = set(known)
    keep: list[int] = []
    for pos, pair in enumerate(pairs):
        if pair not in seen:
            seen.add(pair)
            keep.append(pos)
    constant = f"\t{_copy_field(batch_id)}\t{_copy_field(now)}\n"
    return "".join(
        f"{lead_id}\t{source}\t{ext}\t{payload}{constant}"
        for lead_id, source, ext, payload in zip(
            [lead_ids[p] for p in keep],
            _copy_text([pairs[p][0] for p in keep]),
            _copy_text([pairs[p][1] for p in keep]),
            _copy_text([payloads[p] for p in keep]),
            strict=True,
        )
    )


def _copy_source_records(session: Session, data: str) -> None:
    """Record where every row came from (`_source_records_text`)."""
    if not data:
        return
    cursor = _raw_cursor(session)
    try:
        with cursor.copy("COPY lead_source_records "
                         "(lead_id, source, external_id, payload, batch_id, seen_at) "
                         "FROM STDIN") as copy:
            copy.write(data)
    finally:
        cursor.close()


_MERGE_COLUMNS = ("id", *LEAD_FIELDS.values(), "sources")
_FILL_COLUMNS = (*LEAD_FIELDS.values(), "sources")  # what a merge may fill
_UPDATE_COLUMNS = (*_FILL_COLUMNS, "key_version")  # what a merge may change
# Lead columns `match_existing` matches on (or derives a key from).
_MATCH_KEY_COLUMNS = frozenset((*KEY_COLUMNS, "address", "company_name"))


def _read_leads(session: Session, ids: list[int], postgres: bool) -> dict[int, dict[str, Any]]:
    """The columns a merge reads of existing leads, by id."""
    cols = [_LEADS.c[c] for c in _MERGE_COLUMNS]
    if postgres:
        # One array parameter, not a bound parameter per id to render and adapt.
        stmt = select(*cols).where(
            _LEADS.c.id == any_(bindparam("ids", type_=postgresql.ARRAY(BigInteger))))
        found = session.execute(stmt, {"ids": ids}).all()
    else:
        found = [row for chunk in _chunks(ids)
                 for row in session.execute(select(*cols).where(_LEADS.c.id.in_(chunk))).all()]
    return {row[0]: dict(zip(_MERGE_COLUMNS, row, strict=True)) for row in found}


def _merge_changes(
    targets: dict[Any, int],
    current: dict[int, dict[str, Any]],
    clusters: dict[Any, list[int]],
    columns: _Columns,
    sources: list[str],
    key_version: int,
) -> tuple[list[dict[str, Any]], list[int]]:
    """What merging the clusters into their existing leads (`current`, from `_read_leads`)
    changes: fill the leads' empty fields from the new rows, keep the better score and add
    the rows' sources. The changed columns per lead (with its id), and the leads that got a
    match key they lacked, which are stamped with `key_version`."""
    changes: dict[int, dict[str, Any]] = {}
    for cid, lead_id in targets.items():
        lead = current.get(lead_id)
        if lead is None:
            continue
        positions = clusters[cid]
        incoming = columns.row(positions[0]) if len(positions) == 1 else _merge_cluster(
            columns, positions)
        change = changes.setdefault(lead_id, {})
        if _other_email({c: change.get(c, lead[c]) for c in ("email", "email_norm")}, incoming):
            incoming = {**incoming, **dict.fromkeys(_EMAIL_VERDICT)}
        for col, value in incoming.items():
            if col in _SCORE_COLUMNS:
                continue
            if _is_empty(lead[col]) and _is_empty(change.get(col)) and not _is_empty(value):
                change[col] = value
        # A merged lead keeps the better of its scores; its tier follows that score.
        score = incoming["quality_score"]
        best = change.get("quality_score", lead["quality_score"])
        if score is not None and (best is None or score > best):
            change.update(quality_score=score, tier=incoming["tier"],
                          score_breakdown=incoming["score_breakdown"] or {})
        had = set(lead["sources"] or [])
        seen = had | set(change.get("sources", ())) | {sources[p] for p in positions}
        if seen != had:
            change["sources"] = sorted(seen)
    rekeyed = sorted(lead_id for lead_id, change in changes.items()
                     if not _MATCH_KEY_COLUMNS.isdisjoint(change))
    for lead_id in rekeyed:
        changes[lead_id]["key_version"] = key_version
    rows = [{**change, "id": lead_id} for lead_id, change in changes.items() if change]
    return rows, rekeyed


def _write_merges(session: Session, rows: list[dict[str, Any]], now: datetime,
                  postgres: bool) -> None:
    """UPDATE the merged leads by primary key (`rows` from `_merge_changes`)."""
    if not rows:
        return
    if postgres:
        # One statement: each lead's changed columns travel as one JSON object; a column
        # absent from it keeps its value.
        sets = ", ".join(
            f"{c} = CASE WHEN d.doc ? '{c}' THEN v.{c} ELSE l.{c} END" for c in _UPDATE_COLUMNS
        )
        session.execute(
            text(
                f"UPDATE leads AS l SET {sets}, updated_at = :now "
                "FROM jsonb_array_elements(CAST(:rows AS jsonb)) AS d(doc) "
                "CROSS JOIN LATERAL jsonb_populate_record(NULL::leads, d.doc) AS v "
                "WHERE l.id = v.id"
            ),
            {"rows": "[" + ",".join(_json_text(r) for r in rows) + "]", "now": now},
        )
        return
    # One executemany per set of changed columns (a few distinct sets per batch).
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        fields = {k: v for k, v in row.items() if k != "id"}
        groups.setdefault(tuple(sorted(fields)), []).append({**fields, "_id": row["id"],
                                                             "updated_at": now})
    stmt = update(_LEADS).where(_LEADS.c.id == bindparam("_id"))  # SET: the rows' keys
    for group in groups.values():
        session.execute(stmt, group)


def leads_created_by_batch(session: Session, batch_id: int) -> int:
    """New leads a batch created, counted in the database so a retried load can't skew it."""
    return int(session.scalar(select(func.count()).where(Lead.batch_id == batch_id)) or 0)
