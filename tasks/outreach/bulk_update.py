"""Updating many rows, each with its own values, in one round: on PostgreSQL one
`UPDATE ... FROM unnest(arrays)` statement whatever the number of rows (the SQL text is
constant, so it is parsed and planned once per batch, not per row); elsewhere an executemany."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, and_, bindparam, text
from sqlalchemy.orm import Session


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
        arrays = ", ".join(
            f"CAST(:{c} AS {table.c[c].type.compile(dialect=dialect)}[])" for c in columns)
        # The arrays' columns are v_<name>, so the extra condition's names mean the table's.
        assignments = [f"{c} = v.v_{c}" for c in sets]
        if "updated_at" in table.c and "updated_at" not in sets:
            assignments.append("updated_at = now()")
        conditions = [f"t.{c} = v.v_{c}" for c in match] + ([f"({where})"] if where else [])
        sql = (f"UPDATE {table.name} AS t SET {', '.join(assignments)} "
               f"FROM unnest({arrays}) AS v({', '.join(f'v_{c}' for c in columns)}) "
               f"WHERE {' AND '.join(conditions)}")
        session.execute(text(sql), {c: [r[c] for r in rows] for c in columns})
        return
    # Bind names must differ from column names in an executemany UPDATE.
    stmt = table.update().where(
        and_(*(table.c[c] == bindparam(f"m_{c}") for c in match),
             *([text(where)] if where else []))
    ).values({c: bindparam(f"v_{c}") for c in sets})
    session.execute(stmt, [{**{f"m_{c}": r[c] for c in match},
                            **{f"v_{c}": r[c] for c in sets}} for r in rows])
