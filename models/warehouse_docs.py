"""docs/warehouse.md, rendered from the models and models/views.py so it never drifts from the
schema: every table and view with its comment, every column with type, nullability, key and
meaning. `leadflow warehouse-doc` writes it; `--check` (and a test) fails when it is stale."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Column, Table
from sqlalchemy.dialects import postgresql

import models
from models.views import DEFINITIONS, VIEWS

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "warehouse.md"

_HEADER = """\
# The warehouse: tables and views

<!-- Generated from the models by `leadflow warehouse-doc` (models/warehouse_docs.py).
     Do not edit: change the models' comments or models/views.py, then regenerate. -->

Analysts query leadflow's database directly. Every table and column carries a comment in the
database itself (PostgreSQL `COMMENT`, shown by `\\d+` and most SQL clients); this page lists
them. Types are PostgreSQL's; on SQLite (the embedded default) the same columns hold the same
values, with JSON as text and timestamps as UTC text.

- **Time**: every timestamp is `TIMESTAMP WITH TIME ZONE` and stored in UTC; the views cut days
  and months in UTC whatever the session's time zone.
- **Read-only access** (PostgreSQL): the role `leadflow_analyst` (NOLOGIN) may `SELECT` every
  table and view, including tables added later, and change nothing. Give it to a login role:
  `CREATE ROLE alice LOGIN PASSWORD '...' IN ROLE leadflow_analyst;`
- **Views** (`v_*`) answer the usual questions (funnel, lead quality, ROI, API usage, daily
  activity); they are created by migrations, so they exist wherever the schema does.
"""


def _md(text: str | None) -> str:
    """Text fit for a Markdown table cell."""
    return (text or "").replace("|", "\\|").replace("\n", " ")


def _first_sentence(text: str) -> str:
    return text.split(". ", 1)[0].rstrip(".") + "."


def _type(column: Column[object]) -> str:
    return str(column.type.compile(dialect=postgresql.dialect())).lower()


def _key(column: Column[object]) -> str:
    keys = []
    if column.primary_key:
        keys.append("PK")
    keys += [f"→ {fk.target_fullname}" for fk in sorted(column.foreign_keys,
                                                         key=lambda fk: fk.target_fullname)]
    if column.unique:
        keys.append("unique")
    return ", ".join(keys)


def _table_section(table: Table) -> list[str]:
    lines = [f"### `{table.name}`", "", _md(table.comment), "",
             "| column | type | null | key | meaning |", "|---|---|---|---|---|"]
    for column in table.columns:
        lines.append(
            f"| `{column.name}` | {_type(column)} | {'yes' if column.nullable else 'no'} "
            f"| {_key(column)} | {_md(column.comment)} |"
        )
    return [*lines, ""]


def render_warehouse_doc() -> str:
    """The whole of docs/warehouse.md."""
    tables = sorted(models.Base.metadata.tables.values(), key=lambda t: t.name)
    lines = [_HEADER, "## Contents", "", "| table or view | what it holds |", "|---|---|"]
    lines += [f"| [`{t.name}`](#{t.name}) | {_md(t.comment)} |" for t in tables]
    lines += [f"| [`{v.name}`](#{v.name}) | {_md(_first_sentence(v.description))} |"
              for v in VIEWS]
    lines += ["", "## Tables", ""]
    for table in tables:
        lines += _table_section(table)
    lines += ["## Views", "", DEFINITIONS, ""]
    for view in VIEWS:
        lines += [f"### `{view.name}`", "", view.description, "",
                  "| column | meaning |", "|---|---|"]
        lines += [f"| `{name}` | {_md(meaning)} |" for name, meaning in view.columns]
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def write_warehouse_doc(path: Path = DOC_PATH) -> bool:
    """Write the doc; True when the file changed."""
    text = render_warehouse_doc()
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return True


def warehouse_doc_is_current(path: Path = DOC_PATH) -> bool:
    return path.exists() and path.read_text(encoding="utf-8") == render_warehouse_doc()
