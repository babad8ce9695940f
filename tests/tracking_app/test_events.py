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

    async def write(self, hits: Sequence[Hit], earlier: Earlier = None) -> BatchResult:
        self.writes += 1
        if any(h.email_id == self.email_id for h in hits):
            raise TypeError("can't compare offset-naive and offset-aware datetimes")
        return await super().write(hits, earlier)


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
