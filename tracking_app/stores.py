"""Where the event writer commits a batch: the same transaction (recording.py) through one of
two doors.

- `ThreadStore`: SQLAlchemy in a thread of its own; any database (SQLite, the embedded
  default), and on PostgreSQL the door for unsubscribes (rare, and they go through the
  suppression functions, which take a Session).
- `AsyncPgStore`: opens and clicks on PostgreSQL with psycopg's async connection on the app's
  event loop. No thread means no contention for the GIL with the requests; a batch is one
  prepared statement that looks up, decides and appends (one round trip).

Both raise the driver's error when a batch cannot be committed; `failure_kind` tells a refused
row ("data": worth retrying the rest without it) from an unreachable database ("unreachable")."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, Literal

import orjson
import psycopg
from psycopg import sql
from sqlalchemy import Engine, make_url, text
from sqlalchemy.exc import DBAPIError

from models.db import SQLITE_BUSY_TIMEOUT_MS
from tracking_app.bots import BotRules
from tracking_app.hits import NOT_FOUND, Hit, Outcome
from tracking_app.recording import (
    EVENT_COLUMNS,
    REDIRECTABLE_PATTERN,
    TRACKED_KINDS,
    BatchResult,
    prejudge,
    record_hits,
)

FailureKind = Literal["data", "unreachable"]
# Per hit, the latest hit with its repeat key in batches still in flight (plan_batch).
Earlier = Sequence[datetime | None] | None


class ThreadStore:
    """`timeout_s` of a write: the writer's deadline for the batch. A batch still waiting for
    the thread when it has passed is not started (its requests already got 503), and a
    started one gives up at that point (PostgreSQL cancels the statement; SQLite stops waiting
    for another writer) rather than commit after its requests were told it failed."""

    def __init__(self, engine: Engine, rules: BotRules) -> None:
        self._engine = engine
        self._rules = rules
        # One thread: batches commit in order, and a SQLite connection stays on one thread.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tracking-writer")

    async def write(self, hits: Sequence[Hit], earlier: Earlier = None,
                    timeout_s: float | None = None) -> BatchResult:
        deadline = time.monotonic() + (timeout_s if timeout_s is not None else 3600.0)
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._write, hits, earlier, deadline
        )

    def _write(self, hits: Sequence[Hit], earlier: Earlier, deadline: float) -> BatchResult:
        remaining_ms = int((deadline - time.monotonic()) * 1000)
        if remaining_ms <= 0:
            raise TimeoutError("the batch waited past its deadline; nothing was written")
        with self._engine.connect() as conn:
            sqlite = conn.dialect.name == "sqlite"
            try:
                with conn.begin():
                    if sqlite:
                        # Wait for another writer only until the deadline, then give up.
                        conn.exec_driver_sql(f"PRAGMA busy_timeout = {remaining_ms}")
                        # Take SQLite's write lock before the reads, so a writer in another
                        # process cannot make this transaction's later write fail as stale.
                        conn.execute(text("DELETE FROM email_events WHERE 0"))
                    else:
                        conn.execute(text(f"SET LOCAL statement_timeout = {remaining_ms}"))
                    return record_hits(conn, hits, self._rules, earlier)
            finally:
                if sqlite:  # the pooled connection serves other callers too
                    conn.exec_driver_sql(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")

    def failure_kind(self, exc: BaseException) -> FailureKind | None:
        dbapi = self._engine.dialect.loaded_dbapi
        orig = exc.orig if isinstance(exc, DBAPIError) else exc
        if not isinstance(orig, dbapi.Error):
            return None
        if isinstance(orig, dbapi.OperationalError) or (
            isinstance(exc, DBAPIError) and exc.connection_invalidated
        ):
            return "unreachable"
        return "data"

    async def close(self) -> None:
        self._executor.shutdown(wait=True)


def record_batch_sql(rules: BotRules) -> str:
    """The one statement that records a batch of opens and clicks on PostgreSQL, given the
    hits as a JSON array of rows with their prejudged verdicts (recording.prejudge). It keeps
    the hits whose email (and, for a click, redirectable link) exists, completes each verdict
    with the delivery-time rules and the repeat rule against stored hits, in the rules'
    order, appends the events and answers, per recorded hit, its position in the batch
    (1-based), its destination and its machine reason. The rules' constants are written into
    the text: they are fixed for the app's life, so the statement is prepared once per
    connection."""
    delivery = [
        sql.SQL("WHEN b.kind = ANY({kinds}::text[]) AND b.occurred_at - b.sent_at "
                "<= {seconds} * interval '1 second' THEN {reason}").format(
            kinds=_literal(sorted(d.kinds)), seconds=_literal(d.window.total_seconds()),
            reason=_literal(d.reason))
        for d in rules.soon_after_delivery
    ]
    # One range of ix_email_events_repeat_key per hit that needs it: the stored hits of its
    # email, kind and client network from the start of its window, up to the first with its
    # whole repeat key at or before the hit's time (a later one, another process's, makes this
    # hit no repeat: the repair flags that one instead). The network is compared as the index
    # stores it, coalesced, so that it is an index condition: with only email and kind in the
    # index every hit read all of its email's events in the window (hundreds for an email
    # opened often) and PostgreSQL's CPU per event grew with them; the exact comparison
    # (IS NOT DISTINCT FROM) stays, as a filter.
    # The upper bound is written so that it is not an index condition: as a plain `<=`, the
    # range closed on both sides changed the prepared statement's plan and PostgreSQL's CPU
    # per recorded event went from ~80 to ~390 us (benchmarks/tracking_throughput.py).
    stored_repeat = sql.SQL("""
        WHEN b.repeated OR EXISTS (
            SELECT FROM email_events x
            WHERE x.email_id = b.email_id AND x.kind = b.kind AND x.occurred_at >= b.since
              AND (x.occurred_at <= b.occurred_at) IS NOT FALSE
              AND coalesce(x.ip_network, '') = coalesce(b.ip_network, '')
              AND x.link_position IS NOT DISTINCT FROM b.link_position
              AND x.ip_network IS NOT DISTINCT FROM b.ip_network
              AND x.user_agent IS NOT DISTINCT FROM b.user_agent) THEN {reason}""").format(
        reason=_literal(rules.repeat.reason)) if rules.repeat else sql.SQL("")
    verdict: sql.Composable = sql.SQL("b.request_reason")
    if delivery or rules.repeat:
        verdict = sql.SQL("COALESCE(b.request_reason, CASE {delivery} {repeat} END)").format(
            delivery=sql.SQL(" ").join(delivery), repeat=stored_repeat)
    return sql.SQL("""
WITH b AS (
    SELECT h.*, e.sent_at, l.url
    FROM (SELECT (j->>0)::bigint AS email_id, j->>1 AS kind, (j->>2)::int AS link_position,
                 (j->>3)::timestamptz AS occurred_at, j->>4 AS method, j->>5 AS user_agent,
                 j->>6 AS ip_network, j->>7 AS request_reason, (j->>8)::bool AS repeated,
                 (j->>9)::timestamptz AS since, n
          FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS r(j, n)) h
    -- OFFSET 0 keeps each lookup a subquery of its own: one primary-key (or unique-index)
    -- probe per hit, never a scan of the whole table into a hash.
    JOIN LATERAL (SELECT sent_at FROM emails WHERE id = h.email_id OFFSET 0) e ON true
    LEFT JOIN LATERAL (
        SELECT url FROM email_links
        WHERE h.kind = 'click' AND email_id = h.email_id AND position = h.link_position
        OFFSET 0) l ON true
    WHERE h.kind <> 'click' OR l.url ~ {redirectable}
), d AS (
    SELECT b.*, {verdict} AS reason FROM b
), ins AS (
    INSERT INTO email_events ({columns})
    SELECT email_id, kind, link_position, occurred_at, method, user_agent, ip_network,
           reason IS NOT NULL, reason
    FROM d ORDER BY n
)
SELECT n, url, reason FROM d""").format(
        redirectable=_literal(f"^({REDIRECTABLE_PATTERN})$"),
        verdict=verdict,
        columns=sql.SQL(", ").join(map(sql.Identifier, EVENT_COLUMNS)),
    ).as_string(None)


def _literal(value: object) -> sql.SQL:
    """`value` as an SQL literal in a query that also takes %s parameters (so % doubled)."""
    return sql.SQL(sql.Literal(value).as_string(None).replace("%", "%%"))


class AsyncPgStore:
    """Opens and clicks on PostgreSQL: one statement per batch (record_batch_sql), prepared
    once per connection, in autocommit, so PostgreSQL commits it before it answers. It needs
    no transaction around it: events are only appended, and the hits of batches still in
    flight (which it cannot see) are known to the writer and prejudged here. One round trip
    per batch, and only the recorded hits come back."""

    def __init__(self, db_url: str, rules: BotRules) -> None:
        url = make_url(db_url).set(drivername="postgresql")
        self._dsn = url.render_as_string(hide_password=False)
        self._rules = rules
        self._sql = record_batch_sql(rules)
        # Idle connections: batches in flight at once each take one.
        self._idle: list[psycopg.AsyncConnection[Any]] = []

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(self._dsn, connect_timeout=5,
                                                     autocommit=True)

    async def write(self, hits: Sequence[Hit], earlier: Earlier = None,
                    timeout_s: float | None = None) -> BatchResult:
        """`timeout_s` is not needed here: the statement runs in autocommit, and a batch the
        writer stops waiting for closes its connection, which cancels it."""
        if any(h.kind not in TRACKED_KINDS for h in hits):
            raise ValueError("unsubscribes go through the ThreadStore")
        pre = prejudge(hits, self._rules, earlier)
        # The batch as one JSON array of rows (orjson, in C): a tenth of the client CPU of ten
        # binary arrays, which psycopg dumps element by element in Python.
        batch = orjson.dumps([
            (h.email_id, h.kind, h.link_position, h.occurred_at, h.method, h.user_agent,
             h.ip_network, reason, repeated, since)
            for h, reason, repeated, since in zip(
                hits, pre.request_reasons, pre.repeated, pre.repeat_since, strict=True)
        ]).decode()
        conn = self._idle.pop() if self._idle else await self._connect()
        try:
            cur = await conn.execute(self._sql, (batch,), prepare=True)
            recorded = await cur.fetchall()
        except BaseException:
            await conn.close()  # its state is unknown: the next batch gets a fresh one
            raise
        self._idle.append(conn)
        outcomes = [NOT_FOUND] * len(hits)
        touched: set[int] = set()
        for n, url, reason in recorded:
            i = n - 1
            outcomes[i] = Outcome(recorded=True, redirect_url=url, machine_reason=reason)
            touched.add(hits[i].email_id)
        return BatchResult(outcomes, touched)

    def failure_kind(self, exc: BaseException) -> FailureKind | None:
        if isinstance(exc, psycopg.OperationalError):
            return "unreachable"
        if isinstance(exc, psycopg.Error):
            return "data"
        return None

    async def close(self) -> None:
        while self._idle:
            await self._idle.pop().close()
