"""email_events: on PostgreSQL the repeat check's index leads with the client network too

Revision ID: 0015
Revises: 0014

Written by hand. For each hit it records, the tracking app asks whether the same client (email,
kind, link, client network, user agent) made a hit within the repeat window. With the index of
0004, (email_id, kind, occurred_at), PostgreSQL's one-statement probe visited every event of the
email in the window and fetched each row to compare the network: the cost of a hit grew with
how often its email had been opened (measured: 31 -> 54 us of PostgreSQL CPU per event within
one minute of benchmark load, 24-27 us flat with this index). The new index adds the network,
coalesced so that a NULL one can be sought too, before occurred_at; it replaces the old one
(same leading columns: per-email reads still use it), so each inserted event still maintains
one.

SQLite keeps the index of 0004: there the app reads a batch's events of the window in one
query by email, kind and time, which the network in the middle of the index would split into a
seek per network.

On a large existing table, building the index takes a while and blocks inserts meanwhile: run
the upgrade while the tracking app is stopped, or build the index first by hand with
CREATE INDEX CONCURRENTLY under the same name (this migration then only drops the old one).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NEW = "ix_email_events_repeat_key"
_OLD = "ix_email_events_email_id_kind_occurred_at"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.create_index(_NEW, "email_events",
                    ["email_id", "kind", sa.text("coalesce(ip_network, '')"), "occurred_at"],
                    unique=False, if_not_exists=True)
    op.drop_index(_OLD, table_name="email_events")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.create_index(_OLD, "email_events", ["email_id", "kind", "occurred_at"], unique=False)
    op.drop_index(_NEW, table_name="email_events")
