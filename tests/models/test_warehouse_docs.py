"""docs/warehouse.md is generated from the models and kept current; every table and column is
explained, in the models, in the document and in the PostgreSQL database itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import inspect

import models
from models.db import get_engine
from models.views import VIEWS
from models.warehouse_docs import DOC_PATH, render_warehouse_doc
from tests.conftest import ROOT


def test_committed_warehouse_doc_is_current() -> None:
    assert DOC_PATH.read_text(encoding="utf-8") == render_warehouse_doc(), (
        "docs/warehouse.md is stale: run `leadflow warehouse-doc` and commit it"
    )


def test_every_table_and_column_has_a_comment() -> None:
    missing = [t.name for t in models.Base.metadata.tables.values() if not t.comment]
    missing += [f"{t.name}.{c.name}" for t in models.Base.metadata.tables.values()
                for c in t.columns if not (c.comment or "").strip()]
    assert not missing


def test_doc_lists_every_table_column_and_view_with_its_meaning() -> None:
    doc = render_warehouse_doc()
    for table in models.Base.metadata.tables.values():
        assert f"### `{table.name}`\n\n{(table.comment or '').replace('|', chr(92) + '|')}\n" in doc
        for column in table.columns:
            assert f"| `{column.name}` |" in doc
            assert (column.comment or "").replace("|", "\\|") in doc
    for view in VIEWS:
        assert f"### `{view.name}`\n\n{view.description}\n" in doc
        for name, _ in view.columns:
            assert f"| `{name}` |" in doc


def test_postgres_database_carries_the_models_comments(pg_url: str) -> None:
    inspector = inspect(get_engine(pg_url))
    for table in models.Base.metadata.tables.values():
        assert inspector.get_table_comment(table.name)["text"] == table.comment
        in_db = {c["name"]: c.get("comment") for c in inspector.get_columns(table.name)}
        assert in_db == {c.name: c.comment for c in table.columns}, table.name


def _warehouse_doc_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    return subprocess.run([sys.executable, "-m", "leadflow.cli", "warehouse-doc", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_cli_check_fails_on_a_stale_doc_and_passes_once_written(tmp_path: Path) -> None:
    out = tmp_path / "warehouse.md"
    out.write_text("# an old version\n")
    stale = _warehouse_doc_cli("--check", "--out", str(out))
    assert stale.returncode == 1
    assert "stale" in stale.stderr
    assert out.read_text() == "# an old version\n"  # --check never writes

    assert _warehouse_doc_cli("--out", str(out)).returncode == 0
    assert out.read_text(encoding="utf-8") == render_warehouse_doc()
    assert _warehouse_doc_cli("--check", "--out", str(out)).returncode == 0
