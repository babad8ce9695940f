"""One engine and sessionmaker per process and database URL, and schema migration on demand."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from leadflow.settings import get_settings

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS = 30_000  # how long a SQLite statement waits for another writer


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the tracking app read while a flow writes; busy_timeout waits instead of failing.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.close()


_LONG_DIGITS = re.compile(rb"\d{19}")


def _json_loads(text: bytes | str) -> Any:
    """JSON and JSONB values as read from PostgreSQL: orjson (several times the speed of
    json.loads on the lead columns a load reads back), except where a run of 19 digits may be
    an integer beyond 64 bits, which orjson would turn into a float: json keeps it exact."""
    data = text.encode() if isinstance(text, str) else bytes(text)
    if _LONG_DIGITS.search(data):
        return json.loads(data)
    return orjson.loads(data)


_engines: dict[str, Engine] = {}


def get_engine(url: str | None = None) -> Engine:
    url = url or get_settings().database_url
    if url not in _engines:
        _engines[url] = _create_engine(url)
    return _engines[url]


def _create_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url,
        pool_size=get_settings().db_pool_size,
        max_overflow=10,
        pool_pre_ping=True,
        pool_recycle=1800,
        json_deserializer=_json_loads,
    )


@lru_cache(maxsize=8)
def get_sessionmaker(url: str | None = None) -> sessionmaker[Session]:
    return sessionmaker(get_engine(url), expire_on_commit=False)


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on error."""
    with get_sessionmaker(url).begin() as session:
        yield session


def alembic_config(url: str | None = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", (url or get_settings().database_url).replace("%", "%%"))
    return cfg


def upgrade_database(url: str | None = None, revision: str = "head") -> None:
    """Create or upgrade the schema with Alembic (the only way the schema is made)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def insert_ignore(
    session: Session, table: Any, rows: list[dict[str, Any]], keys: list[str]
) -> None:
    """INSERT ... ON CONFLICT (keys) DO NOTHING, on PostgreSQL and SQLite: a retried step that
    writes the same rows again changes nothing."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    dialect = session.get_bind().dialect.name
    stmt = (pg_insert if dialect == "postgresql" else sqlite_insert)(table)
    session.execute(stmt.on_conflict_do_nothing(index_elements=keys), rows)


def is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def take_write_lock(session: Session) -> None:
    """On SQLite, take the database's write lock now, for a critical section that reads and
    then writes: its transactions start deferred (and pysqlite runs a SELECT outside any
    transaction), so a write after a read could otherwise act on what another writer changed
    since. PostgreSQL callers lock rows instead (`SELECT ... FOR UPDATE`); no-op there."""
    if is_sqlite(session):
        # Any write statement takes the lock, even one that matches no row.
        session.execute(text("UPDATE lead_batches SET id = id WHERE 0"))


def dispose_engines() -> None:
    """Close every pooled connection (tests, and after a fork)."""
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()
    get_sessionmaker.cache_clear()


def safe_url(url: str) -> str:
    """A database URL fit to print: the password masked."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
