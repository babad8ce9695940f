"""Writing many rows, each with its own values, in one statement on PostgreSQL: the rows go as
one array per column through `unnest()`, so the SQL text is the same whatever the number of
rows (parsed and planned once, a handful of parameters). SQLite gets the equivalent through
SQLAlchemy (an executemany, or a multi-row INSERT)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import JSON, Table, and_, bindparam, text
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session


def _arrays(table: Table, columns: list[str], dialect: Any) -> str:
    casts = []
    for c in columns:
        if isinstance(table.c[c].type, JSON):  # JSON values travel as text, then cast
            casts.append(f"CAST(CAST(:{c} AS text[]) AS jsonb[])")
        else:
            casts.append(f"CAST(:{c} AS {table.c[c].type.compile(dialect=dialect)}[])")
    return ", ".join(casts)


def _column_values(table: Table, rows: list[dict[str, Any]], columns: list[str]
                   ) -> dict[str, list[Any]]:
    return {c: [json.dumps(r[c]) if isinstance(table.c[c].type, JSON) else r[c] for r in rows]
            for c in columns}


def _with_defaults(table: Table, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows completed with the Python-side column defaults (SQL text does not apply them)."""
    missing = {}
    for col in table.c:
        default = col.default
        if col.name in rows[0] or default is None:
            continue
        if default.is_scalar:
            missing[col.name] = default.arg  # type: ignore[attr-defined]
        elif default.is_callable:
            missing[col.name] = default.arg(None)  # type: ignore[attr-defined]
    return [{**r, **missing} for r in rows] if missing else rows


def insert_rows(
    session: Session, table: Table, rows: list[dict[str, Any]], conflict: tuple[str, ...],
    returning: str,
) -> list[Any]:
    """INSERT the rows, skipping any that conflicts on `conflict` (a unique key); returns the
    `returning` column of the rows inserted now. Every row carries the same keys."""
    if not rows:
        return []
    dialect = session.get_bind().dialect
    if dialect.name != "postgresql":
        stmt = sqlite_insert(table).on_conflict_do_nothing(index_elements=list(conflict))
        return list(session.scalars(stmt.returning(table.c[returning]), rows))
    rows = _with_defaults(table, rows)
    columns = list(rows[0])
    sql = (f"INSERT INTO {table.name} ({', '.join(columns)}) "
           f"SELECT * FROM unnest({_arrays(table, columns, dialect)}) "
           f"ON CONFLICT ({', '.join(conflict)}) DO NOTHING RETURNING {returning}")
    return list(session.scalars(text(sql), _column_values(table, rows, columns)))


def update_rows(
    session: Session,
    table: Table,
    rows: list[dict[str, Any]],
    match: tuple[str, ...],
    where: str | None = None,
) -> None:
    """For each row, `UPDATE table SET <its other keys> WHERE <its match keys> [AND where]`.
    Every row carries the same keys, named after columns; `where` is extra SQL on the table's
    columns (unqualified names). Sets `updated_at` too when the table has one."""
    if not rows:
        return
    columns = list(rows[0])
    sets = [c for c in columns if c not in match]
    dialect = session.get_bind().dialect
    if dialect.name == "postgresql":
        arrays = _arrays(table, columns, dialect)
        # The arrays' columns are v_<name>, so the extra condition's names mean the table's.
        assignments = [f"{c} = v.v_{c}" for c in sets]
        if "updated_at" in table.c and "updated_at" not in sets:
            assignments.append("updated_at = now()")
        conditions = [f"t.{c} = v.v_{c}" for c in match] + ([f"({where})"] if where else [])
        sql = (f"UPDATE {table.name} AS t SET {', '.join(assignments)} "
               f"FROM unnest({arrays}) AS v({', '.join(f'v_{c}' for c in columns)}) "
               f"WHERE {' AND '.join(conditions)}")
        session.execute(text(sql), _column_values(table, rows, columns))
        return
    # Bind names must differ from column names in an executemany UPDATE.
    stmt = table.update().where(
        and_(*(table.c[c] == bindparam(f"m_{c}") for c in match),
             *([text(where)] if where else []))
    ).values({c: bindparam(f"v_{c}") for c in sets})
    session.execute(stmt, [{**{f"m_{c}": r[c] for c in match},
                            **{f"v_{c}": r[c] for c in sets}} for r in rows])
