"""A coroutine that runs until stopped and does its blocking database work in one thread of
its own (the event writer and the figures refresher are two)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor


class ThreadedLoop:
    def __init__(self, name: str) -> None:
        self._name = name
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        # One thread: its work is serialised and a SQLite connection stays on one thread.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        """Finish what is due (`_run` returns once closing and idle), then stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        raise NotImplementedError
