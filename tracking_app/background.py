"""A coroutine that runs until stopped, woken when there is work (the event writer and the
figures refresher are two)."""

from __future__ import annotations

import asyncio
import contextlib


class BackgroundLoop:
    def __init__(self, name: str) -> None:
        self._name = name
        self._wakeup = asyncio.Event()
        self._closing = False
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        """Finish what is due (`_run` returns once closing and idle), then stop."""
        self._closing = True
        self._stopping.set()
        self._wakeup.set()
        if self._task is not None:
            await self._task

    async def _pause(self, seconds: float) -> None:
        """Sleep, but no longer than until stop() is called."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _run(self) -> None:
        raise NotImplementedError
