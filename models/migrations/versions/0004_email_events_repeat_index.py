"""email_events: (email_id, kind, occurred_at) index for the tracking app's repeat check

Revision ID: 0004
Revises: 0003

Written by hand. The tracking app asks, for each hit of a batch, for the latest earlier event
of the same email and kind within the repeat window. With (email_id, kind) that read visits
every event the email ever had; with occurred_at appended it is one backward index step. The
new index replaces the old one (same leading columns, so every query that used it still can):
one index to maintain per inserted event, not two.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_email_events_email_id_kind_occurred_at", "email_events",
                    ["email_id", "kind", "occurred_at"], unique=False)
    op.drop_index("ix_email_events_email_id_kind", table_name="email_events")


def downgrade() -> None:
    op.create_index("ix_email_events_email_id_kind", "email_events", ["email_id", "kind"],
                    unique=False)
    op.drop_index("ix_email_events_email_id_kind_occurred_at", table_name="email_events")
