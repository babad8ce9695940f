"""Group commit of tracking events.

A request appends its hit to an in-process queue and awaits that hit's commit. Whenever fewer
than `max_in_flight` batches are committing, one writer takes whatever is waiting (up to
`max_batch`; once the oldest hit has waited `window_s`, 0 by default) and records it in one
transaction through a store (stores.py): idle, each hit is committed at once; busy, a batch
holds what arrived while the others were committing. A
request is answered only after its event is committed; when a commit fails its requests get
503 and the transaction leaves nothing behind (a batch the database refuses, or that trips a
bug, is halved until the failing hit is alone, so the others are still committed). No request
takes a row lock: events are appended, figures are derived afterwards (figures.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from tracking_app.background import BackgroundLoop
from tracking_app.hits import Hit, Outcome
from tracking_app.recording import TRACKED_KINDS, BatchResult, RepeatKey, repeat_key
from tracking_app.stores import Earlier, FailureKind

log = logging.getLogger("leadflow.tracking")

# (hit, its request's future, loop time it was queued)
_Waiting = tuple[Hit, "asyncio.Future[Outcome]", float]


class WriterUnavailable(Exception):
    """The event could not be committed (the request gets 503)."""


class Store(Protocol):
    async def write(self, hits: Sequence[Hit], earlier: Earlier = None,
                    timeout_s: float | None = None) -> BatchResult: ...
    def failure_kind(self, exc: BaseException) -> FailureKind | None: ...
    async def close(self) -> None: ...


class EventWriter(BackgroundLoop):
    """Commits queued hits in batches: opens and clicks through `store`, unsubscribes (rare,
    and they suppress and cancel too) through `unsubscribe_store`."""

    def __init__(
        self,
        store: Store,
        unsubscribe_store: Store,
        *,
        window_s: float = 0.0,
        max_batch: int = 500,
        max_pending: int = 20_000,
        max_in_flight: int = 3,
        commit_timeout_s: float = 10.0,
        on_committed: Callable[[set[int]], None] | None = None,
    ) -> None:
        super().__init__("tracking-writer")
        self._store = store
        self._unsubscribe_store = unsubscribe_store
        self._window_s = window_s
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._commit_timeout_s = commit_timeout_s
        self._on_committed = on_committed
        self._queue: list[_Waiting] = []
        # Batches commit concurrently (while one waits for its WAL flush, the next is on its
        # way), so a batch cannot see the rows of those still in flight: the writer tells it
        # their hits' repeat keys instead. Value: (latest hit time, batch number).
        self._slots = asyncio.Semaphore(max_in_flight)
        self._in_flight: dict[RepeatKey, tuple[datetime, int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._committing = 0  # hits of the batches being committed
        # Loop times of the last batch committed and of the last one the database could not
        # take (unreachable, timed out): for the health endpoint.
        self._last_committed: float | None = None
        self._last_unreachable: float | None = None
        self.batches = 0
        self.events = 0

    @property
    def pending(self) -> int:
        """Hits waiting for their commit: queued or in a batch being committed."""
        return len(self._queue) + self._committing

    def failing(self, recent_s: float = 30.0) -> bool:
        """Whether events are not being committed: the last batch that reached the database
        found it unreachable or timed out, within `recent_s` (so an instance taken out of
        rotation comes back), or the oldest queued hit has waited longer than a commit may
        take."""
        now = asyncio.get_running_loop().time()
        if self._queue and now - self._queue[0][2] > self._commit_timeout_s:
            return True
        last = self._last_unreachable
        return last is not None and now - last < recent_s and (
            self._last_committed is None or last > self._last_committed)

    async def record(self, hit: Hit) -> Outcome:
        """The hit's outcome once its event is committed; WriterUnavailable if it was not."""
        if self._closing or len(self._queue) >= self._max_pending:
            raise WriterUnavailable("event queue full or closing")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self._queue.append((hit, future, loop.time()))
        self._wakeup.set()
        return await future

    async def stop(self) -> None:
        await super().stop()
        await self._store.close()
        if self._unsubscribe_store is not self._store:
            await self._unsubscribe_store.close()

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
            await self._acquire_slot()
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            if not batch:  # drained while waiting for a slot
                self._slots.release()
                continue
            task = asyncio.create_task(self._commit(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await asyncio.gather(*self._tasks)

    async def _acquire_slot(self) -> None:
        """A batch slot. While every slot is taken (a slow database), the queued hits whose
        deadline passes are answered 503 without being sent: nothing of them is written."""
        loop = asyncio.get_running_loop()
        acquire = asyncio.ensure_future(self._slots.acquire())  # one waiter: no lost permit
        while True:
            wait = (self._queue[0][2] + self._commit_timeout_s - loop.time() if self._queue
                    else self._commit_timeout_s)
            done, _ = await asyncio.wait({acquire}, timeout=max(wait, 0.0))
            if done:
                return
            now = loop.time()
            while self._queue and self._queue[0][2] + self._commit_timeout_s <= now:
                _, future, _ = self._queue.pop(0)
                if not future.done():
                    future.set_exception(WriterUnavailable("queued longer than a commit may take"))

    def _register(self, hits: list[Hit], number: int) -> list[datetime | None]:
        """Note the batch's repeat keys as in flight; per hit, the latest earlier one."""
        earlier: list[datetime | None] = []
        for hit in hits:
            key = repeat_key(hit)
            previous = self._in_flight.get(key)
            earlier.append(previous[0] if previous else None)
            self._in_flight[key] = (hit.occurred_at, number)
        return earlier

    def _unregister(self, hits: list[Hit], number: int) -> None:
        for hit in hits:
            key = repeat_key(hit)
            entry = self._in_flight.get(key)
            if entry is not None and entry[1] == number:
                del self._in_flight[key]

    async def _commit(self, batch: list[_Waiting]) -> None:
        hits = [hit for hit, _, _ in batch]
        # Every request is answered within a commit timeout of its arrival: the batch has
        # until its oldest hit's deadline.
        deadline = min(queued for _, _, queued in batch) + self._commit_timeout_s
        outcomes: list[Outcome | None] = [None] * len(hits)
        touched: set[int] = set()
        self.batches += 1
        number = self.batches
        earlier = self._register(hits, number)
        self._committing += len(hits)
        try:
            for store, indexes in self._route(hits):
                part, part_touched = await self._write(
                    store, [hits[i] for i in indexes], [earlier[i] for i in indexes], deadline)
                for i, outcome in zip(indexes, part, strict=True):
                    outcomes[i] = outcome
                touched |= part_touched
        except Exception:  # a bug, not a database error (those are handled in _write)
            log.exception("tracking writer failed")
        finally:
            self._committing -= len(hits)
            self._unregister(hits, number)
            self._slots.release()
        for (_, future, _), outcome in zip(batch, outcomes, strict=True):
            if future.done():  # the request timed out or its client went away
                continue
            if outcome is None:
                future.set_exception(WriterUnavailable("commit failed"))
            else:
                future.set_result(outcome)
        self.events += sum(o is not None for o in outcomes)
        if touched and self._on_committed is not None:
            self._on_committed(touched)

    def _route(self, hits: list[Hit]) -> list[tuple[Store, list[int]]]:
        tracked = [i for i, h in enumerate(hits) if h.kind in TRACKED_KINDS]
        others = [i for i, h in enumerate(hits) if h.kind not in TRACKED_KINDS]
        routes = [(self._store, tracked), (self._unsubscribe_store, others)]
        return [(store, indexes) for store, indexes in routes if indexes]

    async def _write(
        self, store: Store, hits: Sequence[Hit], earlier: Sequence[datetime | None],
        deadline: float, part: bool = False,
    ) -> tuple[list[Outcome | None], set[int]]:
        """Outcomes of a batch (None: not committed) and the emails it touched, committed by
        `deadline` (loop time) or not at all. `part`: the batch is a half of a failed one."""
        try:
            # A hung database answers 503; the store makes sure nothing commits after it.
            async with asyncio.timeout_at(deadline):
                remaining = deadline - asyncio.get_running_loop().time()
                result = await store.write(hits, earlier, remaining)
            self._last_committed = asyncio.get_running_loop().time()
            return list(result.outcomes), result.touched
        except Exception as exc:
            kind = "unreachable" if isinstance(exc, TimeoutError) else store.failure_kind(exc)
            if kind == "unreachable":
                self._last_unreachable = asyncio.get_running_loop().time()
            if kind is None:
                # A bug, not a database error: logged once with its traceback, and then
                # treated as a refused row, so the hit that trips it costs only its request.
                if not part:
                    log.exception("tracking batch of %d failed", len(hits))
            else:
                log.warning("tracking batch of %d not committed: %s", len(hits),
                            type(exc).__name__)
            if len(hits) == 1 or kind == "unreachable":
                return [None] * len(hits), set()
        # A row the database refuses (a constraint, a trigger) must not cost the other
        # requests of the batch their events: halve the batch until it is isolated.
        mid = len(hits) // 2
        first, touched_first = await self._write(store, hits[:mid], earlier[:mid], deadline,
                                                 True)
        second, touched_second = await self._write(store, hits[mid:], earlier[mid:], deadline,
                                                   True)
        return first + second, touched_first | touched_second
