"""The event writer's failure isolation, on a real store (SQLite): a hit that trips a bug in
recording costs only its own request; its batchmates are still committed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from models.db import get_engine
from tests.tracking_app.conftest import event_count, make_outreach
from tracking_app.bots import load_rules
from tracking_app.events import EventWriter, WriterUnavailable
from tracking_app.hits import Hit, Outcome
from tracking_app.recording import BatchResult
from tracking_app.stores import Earlier, ThreadStore


class TrippingStore(ThreadStore):
    """The real SQLite store, except that a batch holding `email_id` raises a TypeError, as
    a bug in recording would, before anything is written."""

    def __init__(self, *args: object, email_id: int) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.email_id = email_id
        self.writes = 0

    async def write(self, hits: Sequence[Hit], earlier: Earlier = None,
                    timeout_s: float | None = None) -> BatchResult:
        self.writes += 1
        if any(h.email_id == self.email_id for h in hits):
            raise TypeError("can't compare offset-naive and offset-aware datetimes")
        return await super().write(hits, earlier, timeout_s)


def _hit(email_id: int, n: int) -> Hit:
    return Hit(kind="open", email_id=email_id, link_position=None, method="GET",
               user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/127.0", client_ip=None,
               ip_network=f"10.7.{n}.0/24", occurred_at=datetime.now(UTC))


def test_a_hit_that_trips_a_bug_costs_only_its_own_request(
        sqlite_url: str, caplog: pytest.LogCaptureFixture) -> None:
    good, bad, _ = make_outreach(sqlite_url).email_ids
    engine = get_engine(sqlite_url)
    store = TrippingStore(engine, load_rules(), email_id=bad)

    async def run() -> list[Outcome | BaseException]:
        # A window long enough for all 16 hits to form one batch.
        writer = EventWriter(store, store, window_s=0.5, max_batch=100)
        await writer.start()
        try:
            return await asyncio.gather(
                *(writer.record(_hit(bad if n == 5 else good, n)) for n in range(16)),
                return_exceptions=True)
        finally:
            await writer.stop()

    with caplog.at_level(logging.ERROR, logger="leadflow.tracking"):
        results = asyncio.run(run())
    assert isinstance(results[5], WriterUnavailable)
    assert all(isinstance(r, Outcome) and r.recorded for i, r in enumerate(results) if i != 5)
    assert event_count(sqlite_url) == 15
    # One batch, then halves down to the lone failing hit; the bug is logged once.
    assert store.writes > 2
    assert [r.getMessage() for r in caplog.records] == ["tracking batch of 16 failed"]


class StuckStore(ThreadStore):
    """A database that never answers: every write hangs until it is cancelled."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.writes = 0

    async def write(self, hits: Sequence[Hit], earlier: Earlier = None,
                    timeout_s: float | None = None) -> BatchResult:
        self.writes += 1
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


def test_every_request_is_answered_within_a_commit_timeout_of_its_arrival(
        sqlite_url: str) -> None:
    """The database hangs: hits that arrive while every batch slot is stuck are answered 503
    by their own deadline (arrival + commit timeout), not a timeout after they got a slot."""
    store = StuckStore(get_engine(sqlite_url), load_rules())

    async def run() -> list[tuple[float, bool]]:
        writer = EventWriter(store, store, max_in_flight=1, commit_timeout_s=0.6)
        await writer.start()
        loop = asyncio.get_running_loop()

        async def one(n: int) -> tuple[float, bool]:
            await asyncio.sleep(n * 0.2)  # the first takes the one slot; the others queue
            started = loop.time()
            try:
                await writer.record(_hit(1, n))
                return loop.time() - started, True
            except WriterUnavailable:
                return loop.time() - started, False

        try:
            return list(await asyncio.gather(*(one(n) for n in range(3))))
        finally:
            await writer.stop()

    results = asyncio.run(run())
    assert [ok for _, ok in results] == [False, False, False]
    # Without a deadline per hit, the queued ones would wait for the slot, then a timeout more.
    assert all(waited < 0.6 + 0.15 for waited, _ in results), results
    assert store.writes == 2  # the first hit's batch, then the queued hits' one
