"""lead_batches.heartbeat_at: a run killed outright no longer leaves its batch `running` for ever

Revision ID: 0011
Revises: 0010

Written by hand. A run closes its batch (done or failed) when it ends, even when it is cancelled,
but a process killed outright (SIGKILL, the OOM killer, a reboot) runs no code: its batch stayed
`running`. The run now stamps its batch when it starts and with each chunk it loads; the next
lead-generation or CSV-import run (or `leadflow sweep-batches`) marks a running batch whose
last stamp is older than LEADFLOW_BATCH_STALE_AFTER_S failed, with a note. Existing batches
keep NULL: for them the sweep reads started_at.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COMMENT = ("Last sign of life of the run (UTC): when it started and each chunk it loaded; "
            "NULL for batches older than this column")


def upgrade() -> None:
    op.add_column("lead_batches", sa.Column("heartbeat_at", sa.DateTime(timezone=True),
                                            nullable=True, comment=_COMMENT))


def downgrade() -> None:
    op.drop_column("lead_batches", "heartbeat_at")
