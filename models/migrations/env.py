"""Alembic environment: migrates the database named by the config (from settings)."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import event

import models
from models.db import _create_engine

config = context.config
target_metadata = models.Base.metadata


def _sqlite_migration_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # A batch migration rebuilds a table: it drops the original and renames a copy into place.
    # With foreign keys on, the drop would cascade-delete every row that references the table;
    # without legacy_alter_table, SQLite refuses the rename while the v_* views read the table.
    dbapi_conn.execute("PRAGMA foreign_keys=OFF")
    dbapi_conn.execute("PRAGMA legacy_alter_table=ON")


def _for_dialect(dialect: str) -> Any:
    """Alembic's include_object: an index the models create only on other databases
    (`Index.ddl_if(dialect=...)`) is not expected on this one."""

    def include(obj: Any, _name: Any, type_: str, reflected: bool, _compare_to: Any) -> bool:
        only = getattr(obj, "_ddl_if", None) if type_ == "index" and not reflected else None
        if only is None or only.dialect is None:
            return True
        wanted = (only.dialect,) if isinstance(only.dialect, str) else tuple(only.dialect)
        return dialect in wanted

    return include


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url
    engine = _create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_migration_pragmas)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            include_object=_for_dialect(connection.dialect.name),
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
