"""Which rows are the same business: clustering within a batch and matching against the `leads`
table, on normalised email, registrable domain, E.164 phone and blocked fuzzy company names.

The load step does the merging; this module only decides what matches what, and why."""

from __future__ import annotations

import csv
import io
import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from rapidfuzz import fuzz, process
from sqlalchemy import Connection, Table, select, tuple_

from leadflow.settings import get_settings
from models import Lead
from tasks.csv_import import decode_errors, detect_encoding, looks_binary
from tasks.keys import KEY_COLUMNS, add_keys, address_key, is_webmail, name_block, name_key
from tasks.validation import looks_like_formula

log = logging.getLogger(__name__)

# Two names sharing a webmail address must agree at least this much (token-set ratio, 0-100):
# a receptionist's gmail used by two businesses is not a reason to merge them.
WEBMAIL_NAME_MIN = 60.0
# Two names sharing a phone number must agree at least this much (token-set ratio): a shared
# reception desk (salon suites, a medical building) answers for businesses of other names.
SHARED_PHONE_NAME_MIN = 50.0
# Street names with the same house number agree above this ratio ("Main" vs "Main Street").
STREET_MIN = 85.0
# Exact-key groups larger than this are compared against group leaders, not pairwise.
PAIRWISE_MAX = 100
# Blocking groups up to this size are judged pairwise, without a cdist call.
SMALL_GROUP = 4
# Rows per rapidfuzz cdist call inside one name block (bounds memory on huge blocks).
CDIST_ROWS = 1000
# Strength of each reason, strongest first: picks among several matching leads.
REASON_RANK: dict[str, int] = {
    "email": 0, "domain": 1, "phone": 2, "name+address": 3, "name+city": 4,
}
# Values per bulk lookup query.
LOOKUP_CHUNK = 5000  # larger arrays make PostgreSQL seq-scan a 1M-row table
SQLITE_PAIR_CHUNK = 400


class _Rec(NamedTuple):
    """The match keys of one row or one existing lead."""

    email: str | None
    webmail: bool
    domain: str | None
    phone: str | None
    name: str | None
    city: str | None
    block: str | None
    addr: str | None
    num: str | None  # the address's street number, None without one
    street: str  # the address without its number ("" without an address)


def _rec(email: str | None, domain: str | None, phone: str | None, name: str | None,
         city: str | None, block: str | None, addr: str | None) -> _Rec:
    num, street = _split_number(addr) if addr else (None, "")
    return _Rec(email, is_webmail(email), domain, phone, name, city, block, addr, num, street)


def _none(v: Any) -> Any:
    if v is None or v is pd.NA or (isinstance(v, float) and v != v):
        return None
    return v or None


def _none_column(values: list[Any]) -> list[Any]:
    """_none over a column, without a call per value."""
    na = pd.NA
    return [None if v is None or v is na or (isinstance(v, float) and v != v) else (v or None)
            for v in values]


def _records(df: pd.DataFrame) -> list[_Rec]:
    cols = [_none_column(df[c].astype(object).tolist()) for c in KEY_COLUMNS]
    return [_rec(email, domain, phone, name, city, block, addr)
            for email, domain, phone, name, city, block, addr in zip(*cols, strict=True)]


def _with_keys(df: pd.DataFrame) -> pd.DataFrame:
    return df if all(c in df.columns for c in KEY_COLUMNS) else add_keys(df)


def _split_number(addr: str) -> tuple[str | None, str]:
    head, _, rest = addr.partition(" ")
    return (head, rest) if head.isdigit() else (None, addr)


def _address_relation(a: _Rec, b: _Rec) -> int:
    """1 when two records' address keys name the same place, -1 when they differ, 0 when one
    is missing."""
    if not a.addr or not b.addr:
        return 0
    if a.addr == b.addr:
        return 1
    if a.num is not None and b.num is not None:
        if a.num != b.num:
            return -1
        return 1 if fuzz.ratio(a.street, b.street, score_cutoff=STREET_MIN) else -1
    return 1 if fuzz.ratio(a.addr, b.addr, score_cutoff=90.0) else -1


def _name_similarity(a: str, b: str) -> float:
    """The best of plain ratio ("barbershop" vs "barber shop") and token-sort ratio (word
    order); token-set ratio (one name contains the other: "Bella Salon" in "Bella Salon and
    Spa") counts too when the names share at least two words."""
    sim = max(fuzz.ratio(a, b), fuzz.token_sort_ratio(a, b))
    if len(set(a.split()) & set(b.split())) >= 2:
        sim = max(sim, fuzz.token_set_ratio(a, b))
    return sim


def judge(a: _Rec, b: _Rec, threshold: float) -> str | None:
    """Why two records are the same business ("email", "domain", "phone", "name+address",
    "name+city"), or None when they are not.

    Every key is vetoed by a location conflict: different cities, or different street
    addresses without the same phone (a chain's branches share a website, not a street). A
    phone or name match is also vetoed by an identity conflict: two different registrable
    domains (websites, or business email domains when there is no website) are two
    businesses, however alike, as in salon suites and medical buildings that share a
    reception number; and a phone match needs names that are not plainly different."""
    if a.city and b.city and a.city != b.city:
        return None
    addr = _address_relation(a, b)
    phone = 0 if not (a.phone and b.phone) else (1 if a.phone == b.phone else -1)
    apart = addr < 0 and phone < 1
    if a.email and a.email == b.email and not apart:
        if not a.webmail:
            return "email"
        if a.name and b.name and fuzz.token_set_ratio(a.name, b.name) >= WEBMAIL_NAME_MIN:
            return "email"
    if a.domain and b.domain:
        if a.domain == b.domain:
            return None if apart else "domain"
        return None  # two websites: two businesses
    if phone == 1 and (not (a.name and b.name)
                       or fuzz.token_set_ratio(a.name, b.name) >= SHARED_PHONE_NAME_MIN):
        return "phone"
    if a.city and a.city == b.city and a.name and b.name:
        if addr == 1 and _name_similarity(a.name, b.name) >= threshold:
            return "name+address"
        # Without an address on one side, only names that agree closely and no phone conflict.
        if (addr == 0 and phone == 0 and a.block == b.block
                and max(fuzz.ratio(a.name, b.name), fuzz.token_sort_ratio(a.name, b.name))
                >= threshold):
            return "name+city"
    return None


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            # The smaller position is the root, so the root is the cluster's first row.
            if ri < rj:
                self.parent[rj] = ri
            else:
                self.parent[ri] = rj


def _groups(values: Sequence[Any]) -> Iterator[list[int]]:
    by: dict[Any, list[int]] = {}
    for i, v in enumerate(values):
        if v is not None:
            by.setdefault(v, []).append(i)
    return (g for g in by.values() if len(g) > 1)


def _candidate_pairs(recs: list[_Rec], threshold: float) -> Iterator[tuple[int, int]]:
    """Pairs worth judging: rows sharing an exact key, and rows of one (city, name block) or
    one (city, address) whose names are close enough (rapidfuzz cdist, in C)."""
    for key in ("email", "domain", "phone"):
        for group in _groups([getattr(r, key) for r in recs]):
            if len(group) <= PAIRWISE_MAX:
                for x, i in enumerate(group):
                    for j in group[x + 1 :]:
                        yield i, j
            else:
                yield from _leader_pairs(recs, group, threshold)
    # Two blocking passes: same city and name block, and same city and address (which
    # catches "Green Leaf" vs "Greenleaf" at one address).
    blocks = [(r.city, r.block) if r.city and r.block and r.name else None for r in recs]
    at_address = [(r.city, r.addr) if r.city and r.addr and r.name else None for r in recs]
    for group in [*_subgroups(recs, _groups(blocks)), *_groups(at_address)]:
        if len(group) <= SMALL_GROUP:
            # judge is cheaper than a cdist call on a handful of names.
            for x, i in enumerate(group):
                for j in group[x + 1 :]:
                    yield i, j
            continue
        names = [recs[i].name for i in group]
        for start in range(0, len(group), CDIST_ROWS):
            # Token-set ratio bounds token-sort ratio from above, not plain ratio: ask both.
            rows = names[start : start + CDIST_ROWS]
            scores = np.maximum(*(
                process.cdist(rows, names, scorer=scorer, score_cutoff=threshold,
                              dtype=np.uint8, workers=1)
                for scorer in (fuzz.token_set_ratio, fuzz.ratio)
            ))
            for x, y in zip(*np.nonzero(scores), strict=True):
                x = int(x) + start
                if x < int(y):
                    yield group[x], group[int(y)]


def _subgroups(recs: list[_Rec], groups: Iterable[list[int]]) -> Iterator[list[int]]:
    """Name-block groups split by street number when every row has one: two numbered
    addresses with different numbers never meet a name rule (see `_address_relation`)."""
    for group in groups:
        if any(recs[i].num is None for i in group):
            yield group
            continue
        by: dict[str | None, list[int]] = {}
        for i in group:
            by.setdefault(recs[i].num, []).append(i)
        yield from (g for g in by.values() if len(g) > 1)


def _leader_pairs(recs: list[_Rec], group: list[int], threshold: float) -> Iterator[
    tuple[int, int]
]:
    """For a huge group (a chain's central phone on 500 rows): each row against the first row
    of each cluster found so far, which is linear in the number of distinct businesses."""
    leaders: list[int] = []
    for i in group:
        for lead in leaders:
            if judge(recs[lead], recs[i], threshold):
                yield lead, i
                break
        else:
            leaders.append(i)


def _place(rec: _Rec) -> tuple[Any, ...]:
    return (rec.city, rec.addr, rec.phone)


def _clusters_compatible(places: dict[int, dict[tuple[Any, ...], _Rec]], recs: list[_Rec],
                         ri: int, rj: int, reason: str) -> bool:
    """Whether the clusters of roots `ri` and `rj` (two rows of them judged the same business
    for `reason`) may become one: no row of one is apart from a row of the other (another
    city, or another address without the same phone), and for a name+city link no two phones
    differ, as `judge` requires of a pair. On success the locations move to the new root.
    Single rows were judged already; clusters hold a few distinct locations each, so this is
    a handful of comparisons per link."""
    pi = places.get(ri) or {_place(recs[ri]): recs[ri]}
    pj = places.get(rj) or {_place(recs[rj]): recs[rj]}
    if ri in places or rj in places:  # else two single rows, which `judge` compared
        for a in pi.values():
            for b in pj.values():
                if a.city and b.city and a.city != b.city:
                    return False
                phone = 0 if not (a.phone and b.phone) else (1 if a.phone == b.phone else -1)
                if phone < 1 and _address_relation(a, b) < 0:
                    return False
                if reason == "name+city" and phone < 0:
                    return False
    places.pop(ri, None)
    places.pop(rj, None)
    small, large = (pi, pj) if len(pi) < len(pj) else (pj, pi)
    large.update(small)
    places[min(ri, rj)] = large
    return True


def _cluster(recs: list[_Rec], threshold: float,
             records: Sequence[Any] | None = None) -> tuple[list[int], list[str | None]]:
    """Union-find over the judged candidate pairs; rows with the same `records` value (the
    same source record seen twice in a batch; None for none) are one business whatever
    their keys say."""
    uf = _UnionFind(len(recs))
    reasons: list[str | None] = [None] * len(recs)
    # Per cluster root of several rows, their distinct locations (city, address, phone): a
    # link between two clusters must not put rows that are apart into one (union-find is
    # transitive).
    places: dict[int, dict[tuple[Any, ...], _Rec]] = {}
    for group in _groups(records or ()):
        for j in group[1:]:
            uf.union(group[0], j)
            reasons[j] = "record"
        root = uf.find(group[0])
        known = places.setdefault(root, {})
        known.update((_place(recs[k]), recs[k]) for k in group)
    judged: set[tuple[int, int]] = set()
    for i, j in _candidate_pairs(recs, threshold):
        if (i, j) in judged:
            continue
        judged.add((i, j))
        ri, rj = uf.find(i), uf.find(j)
        if ri == rj:
            continue
        reason = judge(recs[i], recs[j], threshold)
        if reason and _clusters_compatible(places, recs, ri, rj, reason):
            uf.union(i, j)
            # The first (strongest: email, domain, phone, name) link that reached each row.
            reasons[i] = reasons[i] or reason
            reasons[j] = reasons[j] or reason
    roots = [uf.find(i) for i in range(len(recs))]
    return roots, [None if roots[i] == i else reasons[i] for i in range(len(recs))]


def _threshold(threshold: float | None) -> float:
    return float(threshold if threshold is not None else get_settings().dedupe_name_threshold)


def cluster_batch(df: pd.DataFrame, threshold: float | None = None) -> pd.Series:
    """Cluster id per row (same index): rows judged to be the same business share the row
    position of the cluster's first row. Keys are computed when `df` lacks them."""
    roots, _ = _cluster(_records(_with_keys(df)), _threshold(threshold))
    return pd.Series(roots, index=df.index, dtype="int64", name="cluster_id")


# --- against the database ---------------------------------------------------------------------

_LEAD_COLS = ("id", "email_norm", "domain", "phone_e164", "name_key", "city_key", "name_block",
              "address_key", "address", "company_name")


def _lead_rec(row: Sequence[Any]) -> _Rec:
    _, email, domain, phone, nkey, city, block, akey, address, company = row
    nkey = nkey or (name_key(company) or None)
    return _rec(email, domain, phone, nkey, city, block or name_block(nkey),
                akey or address_key(address))


def _chunks(values: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


# A lead of a block qualifies when it has no address, an unnumbered one (the first word of a
# normalised address key is all digits when it is a number), or a street number some row of
# the block has (`nums` is " 12 345 ", or NULL when some row has no number: the whole block).
def _candidates_sql(arr: Any) -> tuple[str, ...]:
    """Three statements, each planned on its own (one UNION of them plans badly on a large
    table): exact keys (a BitmapOr of their indexes), same (city, address), same (city, name
    block) with a street number that can meet."""
    cols = ", ".join(_LEAD_COLS)
    cols_l = ", ".join(f"l.{c}" for c in _LEAD_COLS)
    return (
        f"""SELECT {cols} FROM leads
    WHERE email_norm = ANY({arr('emails')}) OR domain = ANY({arr('domains')})
       OR phone_e164 = ANY({arr('phones')})""",
        f"""SELECT {cols_l} FROM leads AS l
    JOIN unnest({arr('acities')}, {arr('akeys')}) AS k(city, key)
      ON l.city_key = k.city AND l.address_key = k.key""",
        f"""SELECT {cols_l} FROM leads AS l
    JOIN unnest({arr('bcities')}, {arr('blocks')}, {arr('nums')}) AS k(city, block, nums)
      ON l.city_key = k.city AND l.name_block = k.block
     AND (k.nums IS NULL OR l.address_key IS NULL
          OR strpos(k.nums, ' ' || split_part(l.address_key, ' ', 1) || ' ') > 0
          OR l.address_key !~ '^[0-9]+( |$)')""",
    )


_PARAMS = (("emails", "domains", "phones"), ("acities", "akeys"), ("bcities", "blocks", "nums"))


# Each text[] parameter travels as one string of values joined by a unit separator ("" is
# NULL): psycopg would adapt a 10,000-item list value by value in Python. Values holding the
# separator (normalised keys never do) fall back to lists.
_SEP = "\x1f"
_CANDIDATES_SQL = _candidates_sql(lambda n: f"string_to_array(%({n})s, E'\\x1f', '')")
_CANDIDATES_SQL_LISTS = _candidates_sql(lambda n: f"%({n})s::text[]")


def _candidates_queries(params: dict[str, list[Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    lists = any(v is not None and (not v or _SEP in v) for vals in params.values() for v in vals)
    sqls = _CANDIDATES_SQL_LISTS if lists else _CANDIDATES_SQL
    for sql, names in zip(sqls, _PARAMS, strict=True):
        if any(params[n] for n in names):
            yield sql, {n: params[n] if lists else _SEP.join(v or "" for v in params[n])
                        for n in names}


def _fetch_candidates(conn: Connection, recs: list[_Rec]) -> dict[int, _Rec]:
    """Every existing lead that can match a batch row, in a few bulk queries that use the
    indexes on email_norm, domain, phone_e164, (city_key, name_block) and (city_key,
    address_key): leads sharing an exact key, leads at the same (city, address), and leads of
    the same (city, name block) that a name rule could accept. A row with a numbered address
    can only meet a name rule with a lead at the same street number, without an address, or
    with an unnumbered one, so on PostgreSQL the server drops the rest of the block (most of
    it where a city holds thousands of businesses); SQLite fetches the whole block."""
    table: Table = Lead.__table__  # type: ignore[assignment]
    cols = [table.c[c] for c in _LEAD_COLS]
    postgres = conn.dialect.name == "postgresql"
    found: dict[int, _Rec] = {}

    def run(stmt: Any, params: dict[str, Any] | None = None) -> None:
        for row in conn.execute(stmt, params or {}):
            if row[0] not in found:
                found[row[0]] = _lead_rec(row)

    exact = [sorted({getattr(r, key) for r in recs if getattr(r, key)})
             for key in ("email", "domain", "phone")]
    at_address = sorted({(r.city, r.addr) for r in recs if r.city and r.addr and r.name})
    # Per (city, name block): the street numbers of the rows, " 12 345 " (None: some row has
    # no number, so the whole block).
    numbers: dict[tuple[str, str], set[str | None]] = {}
    for r in recs:
        if r.city and r.block and r.name:
            numbers.setdefault((r.city, r.block), set()).add(r.num)
    blocks = sorted(numbers)
    if postgres:
        # Three statements on the psycopg cursor (rows as plain tuples), see `_candidates_sql`.
        nums = [numbers[b] for b in blocks]
        lists = {
            "emails": exact[0], "domains": exact[1], "phones": exact[2],
            "acities": [c for c, _ in at_address], "akeys": [k for _, k in at_address],
            "bcities": [c for c, _ in blocks], "blocks": [b for _, b in blocks],
            "nums": [None if None in n else f" {' '.join(sorted(n))} "  # type: ignore[arg-type]
                     for n in nums],
        }
        chunks = max(1, *(-(-len(v) // LOOKUP_CHUNK) for v in lists.values()))
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            for k in range(chunks):
                params = {name: v[k * LOOKUP_CHUNK : (k + 1) * LOOKUP_CHUNK]
                          for name, v in lists.items()}
                for sql, query_params in _candidates_queries(params):
                    cursor.execute(sql, query_params)
                    for row in cursor.fetchall():
                        if row[0] not in found:
                            found[row[0]] = _lead_rec(row)
        finally:
            cursor.close()
    else:
        for name, values in zip(("email_norm", "domain", "phone_e164"), exact, strict=True):
            for chunk in _chunks(values, LOOKUP_CHUNK):
                run(select(*cols).where(table.c[name].in_(list(chunk))))
        for name, pairs in (("address_key", at_address), ("name_block", blocks)):
            for chunk in _chunks(pairs, SQLITE_PAIR_CHUNK):
                run(select(*cols).where(
                    tuple_(table.c.city_key, table.c[name]).in_(list(chunk))))
    return found


def _close_names(name: str, names: list[str], threshold: float) -> list[int]:
    """Positions of `names` that a name rule could accept for `name`: max(ratio, token-set
    ratio) >= threshold bounds both rules' similarity from above (token-set >= token-sort)."""
    scores = np.maximum(*(
        process.cdist([name], names, scorer=scorer, score_cutoff=threshold, dtype=np.uint8,
                      workers=1)[0]
        for scorer in (fuzz.token_set_ratio, fuzz.ratio)
    ))
    return np.flatnonzero(scores).tolist()


@dataclass(slots=True)
class ExistingMatches:
    """Per batch row: the existing lead it matches (lowest id when several), why, and every
    lead it matched (more than one means the database already holds duplicates)."""

    lead_id: pd.Series  # Int64, <NA> for no match
    reason: pd.Series  # object: "email", "domain", ... or None
    ambiguous: dict[Any, list[int]]  # row label -> all matched lead ids, when more than one


def match_existing_details(
    conn: Connection, df: pd.DataFrame, threshold: float | None = None
) -> ExistingMatches:
    """Match every row of a batch against the `leads` table (see `match_existing`)."""
    return _match_records(conn, df, _records(_with_keys(df)), _threshold(threshold))


def _match_records(conn: Connection, df: pd.DataFrame, recs: list[_Rec],
                   limit: float) -> ExistingMatches:
    """`match_existing_details` on the rows' match keys (`recs`, one per row of `df`)."""
    leads = _fetch_candidates(conn, recs)
    # Exact keys; name blocks by (city, block, street number), numberless leads under None;
    # (city, block) for rows without a street number; (city, address).
    index: dict[tuple[str, Any], list[int]] = {}
    for lead_id, rec in leads.items():
        for kind, value in (("e", rec.email), ("d", rec.domain), ("p", rec.phone)):
            if value:
                index.setdefault((kind, value), []).append(lead_id)
        if rec.city and rec.block and rec.name:
            index.setdefault(("b", (rec.city, rec.block, rec.num)), []).append(lead_id)
            index.setdefault(("B", (rec.city, rec.block)), []).append(lead_id)
        if rec.city and rec.addr and rec.name:
            index.setdefault(("a", (rec.city, rec.addr)), []).append(lead_id)
    ids: list[Any] = [pd.NA] * len(recs)
    reasons: list[str | None] = [None] * len(recs)
    ambiguous: dict[Any, list[int]] = {}
    labels = list(df.index)
    empty: list[int] = []
    for pos, rec in enumerate(recs):
        exact: set[int] = set()
        for kind, value in (("e", rec.email), ("d", rec.domain), ("p", rec.phone)):
            if value:
                exact.update(index.get((kind, value), empty))
        # Leads sharing no exact key can only match by a name rule: the names must be close.
        fuzzy: set[int] = set()
        if rec.city and rec.name:
            if rec.block:
                if rec.num is None:
                    fuzzy.update(index.get(("B", (rec.city, rec.block)), empty))
                else:
                    fuzzy.update(index.get(("b", (rec.city, rec.block, rec.num)), empty))
                    fuzzy.update(index.get(("b", (rec.city, rec.block, None)), empty))
            if rec.addr:
                fuzzy.update(index.get(("a", (rec.city, rec.addr)), empty))
            fuzzy -= exact
        candidates = exact
        if len(fuzzy) > 2:
            others = sorted(fuzzy)
            names = [leads[lead_id].name or "" for lead_id in others]
            candidates |= {others[k] for k in _close_names(rec.name or "", names, limit)}
        else:
            candidates |= fuzzy
        # The strongest evidence wins (an email match over a same-named branch), then the
        # lowest id, so the choice is deterministic.
        matched = sorted(
            (REASON_RANK[reason], lead_id, reason) for lead_id in candidates
            if (reason := judge(rec, leads[lead_id], limit))
        )
        if matched:
            _, ids[pos], reasons[pos] = matched[0]
            if len(matched) > 1:
                ambiguous[labels[pos]] = sorted(lead_id for _, lead_id, _ in matched)
    if ambiguous:
        log.warning("%d rows match several existing leads; each goes to the strongest match "
                    "(then the lowest id)",
                    len(ambiguous))
    return ExistingMatches(
        lead_id=pd.Series(ids, index=df.index, dtype="Int64", name="existing_lead_id"),
        reason=pd.Series(reasons, index=df.index, dtype=object, name="match_reason"),
        ambiguous=ambiguous,
    )


def match_existing(conn: Connection, df: pd.DataFrame, threshold: float | None = None) -> pd.Series:
    """Existing lead id per row (Int64, <NA> when new), on PostgreSQL or SQLite. A row matching
    several leads goes to the one with the strongest reason (email, domain, phone, name+address,
    name+city), then the lowest id; it is logged and `match_existing_details` lists them."""
    return match_existing_details(conn, df, threshold).lead_id


# --- both together, for the flow ----------------------------------------------------------------


@dataclass(slots=True)
class DedupeResult:
    """What the load step needs: rows of one business share `cluster_id`; `existing_lead_id`
    is the lead the whole cluster merges into (<NA>: a new lead); `reason` says why a row was
    merged (None for the first row of a new business)."""

    cluster_id: pd.Series  # int64: row position of the cluster's first row
    existing_lead_id: pd.Series  # Int64
    reason: pd.Series  # object
    ambiguous: dict[Any, list[int]] = field(default_factory=dict)
    keys: pd.DataFrame | None = None  # the KEY_COLUMNS the rows were matched on

    @property
    def clusters(self) -> int:
        return int(self.cluster_id.nunique())

    @property
    def merged_in_batch(self) -> int:
        """Rows that are another row of the same batch."""
        return int(len(self.cluster_id) - self.clusters)

    @property
    def matched_existing(self) -> int:
        """Rows whose business is already in the database."""
        return int(self.existing_lead_id.notna().sum())

    def apply(self, df: pd.DataFrame) -> pd.DataFrame:
        """A copy of `df` with the match keys (which the load step stores on the lead) and
        columns cluster_id, existing_lead_id and dedupe_reason."""
        out = df.copy()
        if self.keys is not None:
            for column in KEY_COLUMNS:
                out[column] = self.keys[column]
        out["cluster_id"] = self.cluster_id
        out["existing_lead_id"] = self.existing_lead_id
        out["dedupe_reason"] = self.reason
        return out


def _source_records(df: pd.DataFrame) -> list[Any] | None:
    """Each row's (source, source_record_id), None where either is missing; None without
    those columns."""
    if "source" not in df.columns or "source_record_id" not in df.columns:
        return None
    return [None if s is None or r is None else (s, r) for s, r in zip(
        _none_column(df["source"].tolist()), _none_column(df["source_record_id"].tolist()),
        strict=True)]


def dedupe_frame(
    conn: Connection | None, df: pd.DataFrame, threshold: float | None = None
) -> DedupeResult:
    """Cluster a batch and, given a connection, match it against the database: a cluster
    merges into the lowest existing lead any of its rows matched. Keys are always computed
    afresh from the staging columns (enrichment may have added an email since normalise)."""
    limit = _threshold(threshold)
    keyed = add_keys(df)
    recs = _records(keyed)
    roots, reasons = _cluster(recs, limit, _source_records(df))
    existing: list[Any] = [pd.NA] * len(roots)
    ambiguous: dict[Any, list[int]] = {}
    if conn is not None and len(df):
        matches = _match_records(conn, keyed, recs, limit)
        ambiguous = dict(matches.ambiguous)
        # The cluster goes where its strongest row match points (then the lowest id).
        per_cluster: dict[int, set[tuple[int, int]]] = {}
        for pos, (lead_id, reason) in enumerate(zip(matches.lead_id, matches.reason, strict=True)):
            if lead_id is not pd.NA:
                per_cluster.setdefault(roots[pos], set()).add((REASON_RANK[reason], int(lead_id)))
                reasons[pos] = reason  # the row's own match to the database explains it best
        labels = list(df.index)
        for pos, root in enumerate(roots):
            found = per_cluster.get(root)
            if found:
                existing[pos] = min(found)[1]
                ids = sorted({lead_id for _, lead_id in found})
                if len(ids) > 1 and pos == root:
                    ambiguous.setdefault(labels[pos], ids)
        for pos, root in enumerate(roots):
            if existing[pos] is not pd.NA and reasons[pos] is None:
                reasons[pos] = reasons[root] or "cluster"
    return DedupeResult(
        cluster_id=pd.Series(roots, index=df.index, dtype="int64", name="cluster_id"),
        existing_lead_id=pd.Series(existing, index=df.index, dtype="Int64",
                                   name="existing_lead_id"),
        reason=pd.Series(reasons, index=df.index, dtype=object, name="dedupe_reason"),
        ambiguous=ambiguous,
        keys=keyed[list(KEY_COLUMNS)],
    )


# --- dedupe-csv ---------------------------------------------------------------------------------

CSV_REQUIRED: tuple[str, ...] = ("id", "company_name", "address", "city", "phone")
CSV_OPTIONAL: tuple[str, ...] = ("website", "email", "industry")


class DedupeCsvError(ValueError):
    """The input CSV cannot be deduplicated (unreadable, or a required column is missing)."""


@dataclass(slots=True)
class DedupeCsvReport:
    rows: int  # data rows read and written
    clusters: int  # distinct businesses
    duplicates: int  # rows that share a business with an earlier row
    encoding: str
    warnings: list[str] = field(default_factory=list)  # malformed rows, repaired and kept


def read_companies_csv(path: str | Path) -> tuple[pd.DataFrame, str, list[str]]:
    """The companies of a dedupe-csv input as a staging frame (all text), the encoding it was
    read with, and warnings about rows that had to be repaired (short rows padded, long rows
    cut). Header names are matched case-insensitively; extra columns are ignored."""
    try:
        # As import-csv reads files: a BOM (UTF-16 from Excel's "Unicode Text"), else UTF-8
        # (stray bytes as cp1252), else cp1252, else latin-1.
        encoding = detect_encoding(Path(path))
        text = Path(path).read_bytes().decode(encoding, errors=decode_errors(encoding))
    except OSError as exc:
        raise DedupeCsvError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if looks_binary(text[:65536]):
        raise DedupeCsvError(f"{path} looks like a binary file, not CSV")
    try:
        dialect: Any = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    header: list[str] | None = None
    rows: list[list[str]] = []
    warnings: list[str] = []
    try:
        for line in reader:
            if not any(cell.strip() for cell in line):
                continue  # blank lines carry no company
            if header is None:
                header = [h.strip().lstrip("\ufeff").lower() for h in line]
                continue
            if any("\n" in cell or "\r" in cell for cell in line):
                # Legal in CSV, but in a company list it is almost always a quote left open,
                # which swallows the lines after it into one field.
                warnings.append(f"line {reader.line_num}: a quoted field runs over several "
                                "lines (an unclosed quote?); the rows it spans are one row")
            if len(line) != len(header):
                warnings.append(
                    f"line {reader.line_num}: {len(line)} fields, expected {len(header)}"
                )
                line = (line + [""] * len(header))[: len(header)]
            rows.append(line)
    except csv.Error as exc:
        raise DedupeCsvError(f"{path}: malformed CSV near line {reader.line_num}: {exc}") from exc
    if header is None:
        raise DedupeCsvError(f"{path} is empty: expected a header with {', '.join(CSV_REQUIRED)}")
    missing = [c for c in CSV_REQUIRED if c not in header]
    if missing:
        raise DedupeCsvError(
            f"{path} lacks required column(s) {', '.join(missing)}; "
            f"found {', '.join(header) or 'none'}; expected {', '.join(CSV_REQUIRED)} "
            f"(optional: {', '.join(CSV_OPTIONAL)})"
        )
    wanted = [c for c in (*CSV_REQUIRED, *CSV_OPTIONAL) if c in header]
    positions = [header.index(c) for c in wanted]
    frame = pd.DataFrame(
        [[row[p].strip() for p in positions] for row in rows], columns=wanted, dtype=object
    )
    return frame, encoding, warnings


def dedupe_csv(
    input_path: str | Path, output_path: str | Path, threshold: float | None = None
) -> DedupeCsvReport:
    """Write `id,cluster_id` for every company of `input_path`, in input order; rows judged to
    be the same business share a cluster_id, which is the id of the cluster's first row."""
    frame, encoding, warnings = read_companies_csv(input_path)
    clusters = cluster_batch(frame, threshold) if len(frame) else pd.Series([], dtype="int64")
    ids = frame["id"].tolist() if len(frame) else []
    counts = Counter(ids)
    repeated = sorted(str(i) for i, n in counts.items() if n > 1)
    if repeated:  # the output stays row-aligned with the input, but the ids are ambiguous
        warnings.append(f"{len(repeated)} id values appear on several rows (e.g. "
                        f"{', '.join(repeated[:3])}); output rows follow the input order")
    if any(not str(i).strip() for i in ids):
        warnings.append("some rows have an empty id; their output rows have an empty id too")
    formulas = sum(1 for i in ids if looks_like_formula(str(i)))
    if formulas:  # the output is opened in spreadsheets: an id must not run there
        warnings.append(f"{formulas} id values start like a spreadsheet formula; they are "
                        "written with a leading ' so that a spreadsheet shows them as text")
    out = Path(output_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "cluster_id"])
        writer.writerows(_id_rows(ids, clusters.tolist()))
    n_clusters = len(set(clusters.tolist()))
    return DedupeCsvReport(
        rows=len(ids), clusters=n_clusters, duplicates=len(ids) - n_clusters,
        encoding=encoding, warnings=warnings,
    )


def _id_rows(ids: list[str], roots: Iterable[int]) -> Iterator[tuple[str, str]]:
    for row_id, root in zip(ids, roots, strict=True):
        yield _as_text(row_id), _as_text(ids[root])


def _as_text(value: str) -> str:
    """A cell a spreadsheet would run as a formula, quoted as text (OWASP CSV injection)."""
    return "'" + value if looks_like_formula(str(value)) else value
