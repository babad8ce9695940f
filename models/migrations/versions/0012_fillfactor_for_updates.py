"""emails and leads leave room on their pages, so that updating their figures is HOT

Revision ID: 0012
Revises: 0011

Written by hand. The tracking app refreshes the figures of the emails it records hits of every
couple of seconds (and a lead's when one of its emails becomes opened or clicked). Tables
filled to 100% had no room on the page for the new row version, so 98% of those updates were
not HOT: each wrote a new entry into every index of the table (five on emails, nine on leads)
and left them bloated. With room on the page the update stays on it and writes no index
entry. PostgreSQL only: the setting applies to pages filled from now on (no rewrite).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The models' EMAILS_FILLFACTOR and LEADS_FILLFACTOR when this was written.
_FILLFACTORS = {"emails": 70, "leads": 90}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, fillfactor in _FILLFACTORS.items():
        op.execute(f"ALTER TABLE {table} SET (fillfactor = {fillfactor})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in _FILLFACTORS:
        op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
