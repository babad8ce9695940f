"""Alembic migrations (versions/). Revisions are frozen: one that re-creates a view starts from
the SQL an earlier revision wrote, loaded with `revision_module`, never from today's models."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType


def revision_module(filename: str) -> ModuleType:
    """An earlier revision's module, by its file name in versions/ ("0003_warehouse.py")."""
    path = Path(__file__).with_name("versions") / filename
    spec = importlib.util.spec_from_file_location(f"leadflow_migration_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
