"""leads.key_version: which load last gave a lead a match key, so other runs re-match against it

Revision ID: 0010
Revises: 0009

Written by hand. A load re-matches the rows its dedupe step found new against the leads
committed since that step read the database (tasks/load.py). New leads are found by id (ids
grow in commit order, as loads are serialised); an existing lead that another run's merge
gave a match key it lacked (its phone, say) was not, so a row matching it by that key only
became a second lead. Each load that re-keys leads now stamps them with one number, above
every number committed before (taken inside the load lock): the dedupe step reads the highest,
the load re-matches against the leads above it. The column is NULL for a lead never re-keyed;
the index is partial, so inserting new leads does not maintain it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COMMENT = ("Load that last gave the lead a match key it lacked (a merge filled its email, "
            "domain, phone, name or address), numbered in commit order; NULL = never")
_PARTIAL = sa.text("key_version IS NOT NULL")


def upgrade() -> None:
    op.add_column("leads", sa.Column("key_version", sa.BigInteger(), nullable=True,
                                     comment=_COMMENT))
    op.create_index("ix_leads_key_version", "leads", ["key_version"], unique=False,
                    postgresql_where=_PARTIAL, sqlite_where=_PARTIAL)


def downgrade() -> None:
    op.drop_index("ix_leads_key_version", table_name="leads")
    op.drop_column("leads", "key_version")
