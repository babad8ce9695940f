"""Another writer in the middle of a critical section, for the SQLite races: its write is made
but not committed while the code under test starts, and commits a moment later."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.orm import Session

from models.db import session_scope


@contextmanager
def writer_committing_soon(url: str, write: Callable[[Session], Any],
                           after_s: float = 0.3) -> Iterator[None]:
    """Run `write` in a transaction of its own on another thread, and enter once its rows are
    written (the write lock held on SQLite); the transaction commits `after_s` later. Raises
    the writer's error, if any, on exit."""
    written, release = threading.Event(), threading.Event()
    failed: list[BaseException] = []

    def other() -> None:
        try:
            with session_scope(url) as session:
                write(session)
                session.flush()
                written.set()
                release.wait(10)
        except BaseException as exc:
            failed.append(exc)
            written.set()

    thread = threading.Thread(target=other)
    thread.start()
    try:
        assert written.wait(10)
        if failed:
            raise failed[0]
        threading.Timer(after_s, release.set).start()
        yield
    finally:
        release.set()
        thread.join(10)
    if failed:
        raise failed[0]
