"""Row locks for the send queue's critical sections, on PostgreSQL and SQLite alike.

PostgreSQL locks rows (`SELECT ... FOR UPDATE`); SQLite has one writer, so a critical section
takes the database's write lock before it reads anything."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session


def is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def take_write_lock(session: Session) -> None:
    """On SQLite, take the write lock now: its transactions start deferred, and a write after
    a read could otherwise act on what another writer has changed since. No-op elsewhere."""
    if is_sqlite(session):
        # Any write statement takes the lock, even one that matches no row.
        session.execute(text("UPDATE smtp_providers SET id = id WHERE 0"))
