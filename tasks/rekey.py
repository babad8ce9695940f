"""Recomputes the dedupe match keys stored on `leads` with today's key rules (`tasks.keys`), for
leads loaded before a rule was fixed, whose old keys the dedupe step would miss: `leadflow rekey`.

Leads are read in id order, a chunk per transaction, under the load lock (`lock_loads`): a
concurrent load neither changes a lead's fields between the read and the write nor misses a
lead re-keyed after its dedupe step read the database, since each chunk stamps the leads it
changes with the next `key_version`, as a load does with the leads a merge re-keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from models import Lead
from models.db import session_scope
from tasks.keys import KEY_COLUMNS, add_keys
from tasks.load import lock_loads, seen_leads

REKEY_BATCH_SIZE = 5000  # leads per chunk (one transaction holding the load lock)

_LEADS: Table = Lead.__table__  # type: ignore[assignment]
# The lead columns `add_keys` derives the keys from (staging columns of the same names).
KEY_SOURCES: tuple[str, ...] = (
    "company_name", "email", "website", "phone", "address", "city", "country",
)  # fmt: skip
# Each stored key read back as the staging value it is a key of, to ask whether today's rules
# still give it (a name block goes with its name key, the country says how to read a phone).
_KEY_AS_SOURCE = {"company_name": "name_key", "email": "email_norm", "website": "domain",
                  "phone": "phone_e164", "address": "address_key", "city": "city_key",
                  "country": "country"}
_KEY_OF = {c: "name_key" if c == "name_block" else c for c in KEY_COLUMNS}


@dataclass(frozen=True, slots=True)
class LeadRekey:
    """One lead whose stored keys differ from today's: its keys before and after."""

    lead_id: int
    before: dict[str, str | None]
    after: dict[str, str | None]

    @property
    def changed(self) -> list[tuple[str, str | None, str | None]]:
        """(column, before, after) of each key that changes."""
        return [(c, self.before[c], self.after[c]) for c in KEY_COLUMNS
                if self.before[c] != self.after[c]]


@dataclass(frozen=True, slots=True)
class RekeyChunk:
    last_id: int  # the last lead id read (the `after_id` given when there was none)
    scanned: int  # leads read
    changes: list[LeadRekey]  # the leads whose keys changed (or would, in a dry run)


@dataclass(slots=True)
class RekeyResult:
    scanned: int = 0  # leads read
    rekeyed: int = 0  # leads whose keys changed (or would, in a dry run)
    examples: list[LeadRekey] = field(default_factory=list)  # the first few of them


def _values(frame: pd.DataFrame, column: str) -> list[Any]:
    """A column as Python values, missing and empty values as None."""
    return [v or None for v in frame[column].astype(object).where(frame[column].notna(), None)]


def current_keys(leads: pd.DataFrame) -> pd.DataFrame:
    """The match keys (KEY_COLUMNS) of stored leads by today's rules, from their KEY_SOURCES
    columns and stored KEY_COLUMNS, same index.

    A key is what `add_keys` gives from the lead's own fields, as the load computes it for a
    new row. Where those give none, a stored key is kept if today's rules still give it back
    from itself: a merge took it from another row of the business, whose field the lead does
    not hold (the other source's website, when the lead's own is a Facebook page). A stored
    key today's rules refuse (a webmail provider as "domain") goes."""
    fresh = add_keys(leads[list(KEY_SOURCES)])
    again = add_keys(pd.DataFrame({src: leads[col] for src, col in _KEY_AS_SOURCE.items()}))
    out: dict[str, list[Any]] = {}
    for col in KEY_COLUMNS:
        of = _KEY_OF[col]
        out[col] = [
            new if own else (kept if stored and stored == check else None)
            for new, own, kept, stored, check in zip(
                _values(fresh, col), _values(fresh, of), _values(again, col),
                _values(leads, of), _values(again, of), strict=True)
        ]
    return pd.DataFrame(out, index=leads.index, dtype=object)


def rekey_chunk(session: Session, after_id: int, limit: int = REKEY_BATCH_SIZE,
                dry_run: bool = False) -> RekeyChunk:
    """Re-key up to `limit` leads with ids above `after_id`, in id order, inside the caller's
    transaction: the load lock first, then the changed leads' keys written with the next key
    version (`dry_run`: no lock, nothing written)."""
    if not dry_run:
        lock_loads(session)  # before the read: no load merges into these leads until commit
    c = _LEADS.c
    rows = session.execute(
        select(c.id, *(c[s] for s in KEY_SOURCES), *(c[k] for k in KEY_COLUMNS))
        .where(c.id > after_id).order_by(c.id).limit(limit)
    ).all()
    if not rows:
        return RekeyChunk(after_id, 0, [])
    leads = pd.DataFrame(rows, columns=["id", *KEY_SOURCES, *KEY_COLUMNS], dtype=object)
    keys = current_keys(leads)
    before = {col: _values(leads, col) for col in KEY_COLUMNS}
    after = {col: keys[col].tolist() for col in KEY_COLUMNS}
    changes = [
        LeadRekey(int(lead_id), {col: before[col][i] for col in KEY_COLUMNS},
                  {col: after[col][i] for col in KEY_COLUMNS})
        for i, lead_id in enumerate(leads["id"])
        if any(before[col][i] != after[col][i] for col in KEY_COLUMNS)
    ]
    if changes and not dry_run:
        # Above every version committed before (read inside the lock), as a load stamps the
        # leads it re-keys: a load whose dedupe step read the database earlier re-matches
        # its new rows against these leads' new keys.
        version = seen_leads(session).key_version + 1
        now = datetime.now(UTC)
        session.execute(
            update(_LEADS).where(c.id == bindparam("_id")),
            [{**change.after, "key_version": version, "updated_at": now, "_id": change.lead_id}
             for change in changes],
        )
    return RekeyChunk(int(rows[-1][0]), len(rows), changes)


def rekey_leads(url: str | None = None, batch_size: int = REKEY_BATCH_SIZE,
                dry_run: bool = False, examples: int = 5) -> RekeyResult:
    """Re-key every lead of the database at `url`, `batch_size` leads per transaction, so a
    load waits at most one chunk (`rekey_chunk`); `dry_run` counts what would change and
    writes nothing. Returns the counts and the first `examples` leads re-keyed."""
    result = RekeyResult()
    after_id = 0
    while True:
        with session_scope(url) as session:
            chunk = rekey_chunk(session, after_id, batch_size, dry_run)
        result.scanned += chunk.scanned
        result.rekeyed += len(chunk.changes)
        result.examples += chunk.changes[: max(0, examples - len(result.examples))]
        if chunk.scanned < batch_size:
            return result
        after_id = chunk.last_id
