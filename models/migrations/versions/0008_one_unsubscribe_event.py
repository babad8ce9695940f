"""one unsubscribe event per email

Revision ID: 0008
Revises: 0007

Written by hand. The tracking app records an email's unsubscribe once, but two app processes
receiving the same unsubscribe at once could each record it. A unique partial index on
email_events(email_id) for kind 'unsubscribe' makes it one (the app inserts those rows with
ON CONFLICT DO NOTHING); duplicates already stored are removed first, keeping the earliest.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHERE = "kind = 'unsubscribe'"


def upgrade() -> None:
    op.execute(
        "DELETE FROM email_events WHERE kind = 'unsubscribe' AND id NOT IN ("
        "SELECT MIN(id) FROM email_events WHERE kind = 'unsubscribe' GROUP BY email_id)"
    )
    op.create_index("uq_email_events_unsubscribe", "email_events", ["email_id"], unique=True,
                    postgresql_where=sa.text(WHERE), sqlite_where=sa.text(WHERE))


def downgrade() -> None:
    op.drop_index("uq_email_events_unsubscribe", table_name="email_events")
