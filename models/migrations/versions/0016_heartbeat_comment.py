"""lead_batches.heartbeat_at: its comment says a live run also stamps it from a thread

Revision ID: 0016
Revises: 0015

Written by hand. A run's heartbeat is now also stamped every quarter of
LEADFLOW_BATCH_STALE_AFTER_S while it runs (tasks/stale_batches.py `keep_alive`), not only at
its start and with each chunk loaded; the column's comment (PostgreSQL keeps comments, SQLite
does not) says so.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BEFORE = ("Last sign of life of the run (UTC): when it started and each chunk it loaded; "
           "NULL for batches older than this column")
_AFTER = ("Last sign of life of the run (UTC): when it started, each chunk it loaded and "
          "every quarter of LEADFLOW_BATCH_STALE_AFTER_S while it runs; NULL for batches "
          "older than this column")


def _comment(new: str, old: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("lead_batches", "heartbeat_at", comment=new, existing_comment=old)


def upgrade() -> None:
    _comment(_AFTER, _BEFORE)


def downgrade() -> None:
    _comment(_BEFORE, _AFTER)
