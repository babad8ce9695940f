"""Group commit of tracking events.

A request appends its hit to an in-process queue and awaits that hit's commit. One writer
takes whatever is waiting (once the oldest hit has waited `window_s`, or at once when
`max_batch` are waiting) and records it in one transaction, in a thread of its own so the
event loop keeps serving. A request is answered only after its event is committed; when a
commit fails its requests get 503 and the transaction leaves nothing behind. No request takes
a row lock: events are appended, figures are derived afterwards (figures.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from tracking_app.background import ThreadedLoop
from tracking_app.bots import BotRules
from tracking_app.hits import Hit, Outcome
from tracking_app.recording import record_hits

log = logging.getLogger("leadflow.tracking")

# (hit, its request's future, loop time it was queued)
_Waiting = tuple[Hit, "asyncio.Future[Outcome]", float]


class WriterUnavailable(Exception):
    """The event could not be committed (the request gets 503)."""


class EventWriter(ThreadedLoop):
    def __init__(
        self,
        engine: Engine,
        rules: BotRules,
        *,
        window_s: float = 0.002,
        max_batch: int = 500,
        max_pending: int = 20_000,
        commit_timeout_s: float = 10.0,
        on_committed: Callable[[set[int]], None] | None = None,
    ) -> None:
        super().__init__("tracking-writer")
        self._engine = engine
        self._rules = rules
        self._window_s = window_s
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._commit_timeout_s = commit_timeout_s
        self._on_committed = on_committed
        self._queue: list[_Waiting] = []
        self.batches = 0
        self.events = 0

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def record(self, hit: Hit) -> Outcome:
        """The hit's outcome once its event is committed; WriterUnavailable if it was not."""
        if self._closing or len(self._queue) >= self._max_pending:
            raise WriterUnavailable("event queue full or closing")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self._queue.append((hit, future, loop.time()))
        self._wakeup.set()
        try:
            async with asyncio.timeout(self._commit_timeout_s):
                return await future
        except TimeoutError:
            raise WriterUnavailable("commit timed out") from None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if len(self._queue) < self._max_batch and not self._closing:
                # Under load the oldest hit has already waited out the window while the
                # previous batch committed: then there is no added wait at all.
                wait = self._queue[0][2] + self._window_s - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            await self._commit(batch)

    async def _commit(self, batch: list[_Waiting]) -> None:
        loop = asyncio.get_running_loop()
        try:
            outcomes, touched = await loop.run_in_executor(
                self._executor, self._write, [hit for hit, _, _ in batch]
            )
        except Exception:  # a bug, not a database error (those are handled in _write)
            log.exception("tracking writer failed")
            outcomes, touched = [None] * len(batch), set()
        for (_, future, _), outcome in zip(batch, outcomes, strict=True):
            if future.done():  # the request timed out or its client went away
                continue
            if outcome is None:
                future.set_exception(WriterUnavailable("commit failed"))
            else:
                future.set_result(outcome)
        self.batches += 1
        self.events += sum(o is not None for o in outcomes)
        if touched and self._on_committed is not None:
            self._on_committed(touched)

    def _write(self, hits: Sequence[Hit]) -> tuple[list[Outcome | None], set[int]]:
        """Outcomes of a batch (None: not committed) and the emails it touched."""
        try:
            with self._engine.begin() as conn:
                if conn.dialect.name == "sqlite":
                    # Take SQLite's write lock before the reads, so a writer in another
                    # process cannot make this transaction's later write fail as stale.
                    conn.execute(text("DELETE FROM email_events WHERE 0"))
                result = record_hits(conn, hits, self._rules)
            return list(result.outcomes), result.touched
        except Exception as exc:
            # COPY runs on the driver's connection: its errors arrive unwrapped.
            dbapi = self._engine.dialect.loaded_dbapi
            orig = exc.orig if isinstance(exc, DBAPIError) else exc
            if not isinstance(orig, dbapi.Error):
                raise
            log.warning("tracking batch of %d not committed: %s", len(hits), type(orig))
            unreachable = isinstance(orig, dbapi.OperationalError) or (
                isinstance(exc, DBAPIError) and exc.connection_invalidated)
            if len(hits) == 1 or unreachable:
                return [None] * len(hits), set()
        # A row the database refuses (a constraint, a trigger) must not cost the other
        # requests of the batch their events: halve the batch until it is isolated.
        mid = len(hits) // 2
        first, touched_first = self._write(hits[:mid])
        second, touched_second = self._write(hits[mid:])
        return first + second, touched_first | touched_second
