"""Where the event writer commits a batch: the same transaction (recording.py) through one of
two doors.

- `ThreadStore`: SQLAlchemy in a thread of its own; any database (SQLite, the embedded
  default), and on PostgreSQL the door for unsubscribes (rare, and they go through the
  suppression functions, which take a Session).
- `AsyncPgStore`: opens and clicks on PostgreSQL with psycopg's async connection on the app's
  event loop. No thread means no contention for the GIL with the requests, the batch's reads go
  in one pipelined round trip and its rows in one COPY.

Both raise the driver's error when a batch cannot be committed; `failure_kind` tells a refused
row ("data": worth retrying the rest without it) from an unreachable database ("unreachable")."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, Literal

import psycopg
from sqlalchemy import Engine, make_url, text
from sqlalchemy.exc import DBAPIError

from tracking_app.bots import BotRules
from tracking_app.hits import Hit
from tracking_app.recording import (
    COPY_SQL,
    BatchContext,
    BatchResult,
    EmailFacts,
    plan_batch,
    record_hits,
    redirectable,
    repeat_key,
    repeat_since,
)

FailureKind = Literal["data", "unreachable"]
# Per hit, the latest hit with its repeat key in batches still in flight (plan_batch).
Earlier = Sequence[datetime | None] | None


class ThreadStore:
    def __init__(self, engine: Engine, rules: BotRules) -> None:
        self._engine = engine
        self._rules = rules
        # One thread: batches commit in order, and a SQLite connection stays on one thread.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tracking-writer")

    async def write(self, hits: Sequence[Hit], earlier: Earlier = None) -> BatchResult:
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._write, hits, earlier
        )

    def _write(self, hits: Sequence[Hit], earlier: Earlier) -> BatchResult:
        with self._engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                # Take SQLite's write lock before the reads, so a writer in another process
                # cannot make this transaction's later write fail as stale.
                conn.execute(text("DELETE FROM email_events WHERE 0"))
            return record_hits(conn, hits, self._rules, earlier)

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


_EMAILS = "SELECT id, lead_id, to_email, sent_at FROM emails WHERE id = ANY(%s)"
_LINKS = "SELECT email_id, position, url FROM email_links WHERE email_id = ANY(%s)"
# Per repeat key of the batch, its latest stored hit within the window: one backward step of
# ix_email_events_email_id_kind_occurred_at per key (more only when other networks or links of
# the same email hit it within the window).
_RECENT = """
SELECT k.email_id, k.kind, k.link_position, k.ip_network, r.occurred_at
FROM unnest(%s::bigint[], %s::text[], %s::int[], %s::text[])
     AS k(email_id, kind, link_position, ip_network)
CROSS JOIN LATERAL (
    SELECT e.occurred_at FROM email_events e
    WHERE e.email_id = k.email_id AND e.kind = k.kind AND e.occurred_at >= %s
      AND e.link_position IS NOT DISTINCT FROM k.link_position
      AND e.ip_network IS NOT DISTINCT FROM k.ip_network
    ORDER BY e.occurred_at DESC LIMIT 1) r"""
class AsyncPgStore:
    """Opens and clicks on PostgreSQL. Autocommit: the reads need no transaction of their own
    (events are only appended, and batches still in flight are known to the writer), and the
    COPY is one statement, committed before PostgreSQL reports it complete. So a batch costs
    one pipelined read (emails, links, the repeat check) and one COPY."""

    def __init__(self, db_url: str, rules: BotRules) -> None:
        url = make_url(db_url).set(drivername="postgresql")
        self._dsn = url.render_as_string(hide_password=False)
        self._rules = rules
        # Idle connections: batches in flight at once each take one.
        self._idle: list[psycopg.AsyncConnection[Any]] = []

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(self._dsn, connect_timeout=5,
                                                     autocommit=True)

    async def write(self, hits: Sequence[Hit], earlier: Earlier = None) -> BatchResult:
        conn = self._idle.pop() if self._idle else await self._connect()
        try:
            ctx = await self._context(conn, hits)
            plan = plan_batch(hits, ctx, self._rules, earlier)
            if plan.unsubscribes:
                raise ValueError("unsubscribes go through the ThreadStore")
            if plan.rows:
                await self._append(conn, plan.rows)
        except BaseException:
            await conn.close()  # its state is unknown: the next batch gets a fresh one
            raise
        self._idle.append(conn)
        return BatchResult(plan.outcomes, plan.touched)

    @staticmethod
    async def _append(conn: psycopg.AsyncConnection[Any], rows: list[tuple[Any, ...]]) -> None:
        # COPY: psycopg formats its rows in C (an INSERT from unnest(arrays) saves a round
        # trip but costs more CPU per row here, measured).
        async with conn.cursor() as cur, cur.copy(COPY_SQL) as copy:
            for row in rows:
                await copy.write_row(row)

    async def _context(
        self, conn: psycopg.AsyncConnection[Any], hits: Sequence[Hit]
    ) -> BatchContext:
        ids = list({h.email_id for h in hits})
        click_ids = list({h.email_id for h in hits if h.kind == "click"})
        keys = list({repeat_key(h) for h in hits}) if self._rules.repeat else []
        links = recent = None
        async with conn.pipeline():
            emails = await conn.execute(_EMAILS, (ids,))
            if click_ids:
                links = await conn.execute(_LINKS, (click_ids,))
            if keys:
                recent = await conn.execute(_RECENT, (
                    [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys],
                    [k[3] for k in keys], repeat_since(hits, self._rules)))
            email_rows = await emails.fetchall()
            link_rows = await links.fetchall() if links else []
            recent_rows = await recent.fetchall() if recent else []
        return BatchContext(
            emails={r[0]: EmailFacts(r[0], r[1], r[2], r[3]) for r in email_rows},
            links={(r[0], r[1]): r[2] for r in link_rows if redirectable(r[2])},
            last_seen={(r[0], r[1], r[2], r[3]): r[4] for r in recent_rows},
            unsubscribed=set(),
        )

    def failure_kind(self, exc: BaseException) -> FailureKind | None:
        if isinstance(exc, psycopg.OperationalError):
            return "unreachable"
        if isinstance(exc, psycopg.Error):
            return "data"
        return None

    async def close(self) -> None:
        while self._idle:
            await self._idle.pop().close()
