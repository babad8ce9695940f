"""api_reservations: quota set aside for API calls in flight

Revision ID: 0005
Revises: 0004

Written by hand. Runs working at the same time (chunks in flight, overlapping flows, several
workers) each checked a source's monthly quota before calling it and recorded the usage after,
so together they could spend past the limit. A run now sets the units aside first, in a
transaction serialised on the plan's row, and removes the reservation when it records the
calls; a reservation of a run that died stops counting when it expires.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_reservations",
        sa.Column("id", sa.Integer(), nullable=False, comment="Reservation id"),
        sa.Column("source", sa.String(length=40), nullable=False,
                  comment="API the units are set aside for"),
        sa.Column("units", sa.Integer(), nullable=False, comment="Units set aside"),
        sa.Column("reserved_at", sa.DateTime(timezone=True), nullable=False,
                  comment="When (UTC)"),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False,
                  comment="When the units stop counting if never released (UTC)"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_reservations")),
        comment="Units of a source's monthly quota set aside for calls in flight, so that runs "
                "working at the same time cannot together exceed the limit. Removed when the "
                "calls are recorded in api_usage; ignored once expired (a run that died).",
    )
    op.create_index("ix_api_reservations_source_expires_at", "api_reservations",
                    ["source", "expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_api_reservations_source_expires_at", table_name="api_reservations")
    op.drop_table("api_reservations")
