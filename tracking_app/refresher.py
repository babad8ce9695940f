"""Keeps the engagement figures of the emails the tracking app touches current, off the
request path: the writer reports the emails of each committed batch, and their figures (and
their leads' and campaigns') are recomputed in a transaction of their own, coalesced to at
most one refresh every `interval_s`.

When the app starts, it first catches up on the last `CATCH_UP` of events: what a process that
died (SIGKILL, a crash) recorded but never refreshed, and repeats that two processes each
stored as human (tracking_app/repeats.py). The scheduled `refresh-engagement` run repairs
anything older."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from tracking_app.background import BackgroundLoop
from tracking_app.bots import BotRules
from tracking_app.figures import refresh_figures
from tracking_app.repeats import recent_emails

log = logging.getLogger("leadflow.tracking")


CATCH_UP = timedelta(hours=1)


class EngagementRefresher(BackgroundLoop):
    def __init__(self, engine: Engine, rules: BotRules, *, interval_s: float = 2.0) -> None:
        super().__init__("tracking-figures")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._name)
        self._engine = engine
        self._rules = rules
        self._interval_s = interval_s
        self._dirty: set[int] = set()
        self._in_flight = 0

    @property
    def pending(self) -> int:
        """Emails whose figures are not refreshed yet."""
        return len(self._dirty) + self._in_flight

    async def stop(self) -> None:
        await super().stop()
        self._executor.shutdown(wait=True)

    def mark(self, email_ids: set[int]) -> None:
        self._dirty |= email_ids
        self._wakeup.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        self._in_flight = 1  # pending until caught up
        try:
            await loop.run_in_executor(self._executor, self._catch_up)
        except Exception:  # the scheduled repair will do it; the app serves regardless
            log.warning("engagement catch-up at start failed", exc_info=True)
        finally:
            self._in_flight = 0
        while True:
            if not self._dirty:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            ids, self._dirty = self._dirty, set()
            self._in_flight = len(ids)
            try:
                await loop.run_in_executor(self._executor, self._refresh, ids)
            except DBAPIError as exc:
                # The events are committed: the figures catch up at the next refresh (or the
                # scheduled full refresh, if the app is stopping).
                log.warning("engagement refresh failed: %s", type(exc.orig))
                if self._closing:
                    return
                self._dirty |= ids
            except Exception:
                log.exception("engagement refresh failed")
            finally:
                self._in_flight = 0
            await self._pause(self._interval_s)

    def _catch_up(self) -> None:
        since = datetime.now(UTC) - CATCH_UP
        with self._engine.begin() as conn:
            refresh_figures(conn, recent_emails(conn, since), repeats_since=since,
                            rules=self._rules)

    def _refresh(self, ids: set[int]) -> None:
        with self._engine.begin() as conn:
            refresh_figures(conn, ids)
