"""emails.failed_at: when an email was refused or failed, so v_daily_activity's days stay put

Revision ID: 0013
Revises: 0012

Written by hand. v_daily_activity dated an email the SMTP server refused (status bounced, no
`sent_at`) by `updated_at`, both as sent (0009) and as bounced (0003); but `updated_at` moves
whenever the row changes later (a figures repair, a person's note), and the refusal moved to
that day with it. The sender now records when an email was refused or failed for good in
`failed_at`, once; existing refused and failed emails get their `updated_at`, the best
estimate there is (their last change was most often the refusal). The view dates them by
`failed_at`; its SQL is 0009's with the two `updated_at` expressions changed.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.migrations import revision_module

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIEW = "v_daily_activity"
_COMMENT = ("When the email failed for good (UTC), set once: the SMTP server refused it "
            "(status bounced) or it failed permanently (status failed); NULL otherwise")
# (expression in 0009's view, expression from this revision on)
CHANGES = (
    ("COALESCE(sent_at, updated_at)", "COALESCE(sent_at, failed_at)"),
    ("COALESCE(b.bounced_at, e.sent_at, e.updated_at)",
     "COALESCE(b.bounced_at, e.sent_at, e.failed_at)"),
)


def _sql(dialect: str, upgraded: bool) -> str:
    """The view as 0009 left it, or with this revision's change."""
    sql: str = revision_module("0009_refused_emails_sent_daily.py")._sql(dialect, True)
    day = revision_module("0003_warehouse.py")._Dialect(dialect).day
    for old, new in CHANGES:
        if sql.count(day(old)) != 1:
            raise RuntimeError(f"0009's {VIEW} is not the SQL this revision expects")
        if upgraded:
            sql = sql.replace(day(old), day(new))
    return sql


def _create_view(upgraded: bool) -> None:
    sql = _sql(op.get_bind().dialect.name, upgraded)
    op.execute(f"DROP VIEW IF EXISTS {VIEW}")
    op.execute(f"CREATE VIEW {VIEW} AS {sql.strip()}")


def upgrade() -> None:
    op.add_column("emails", sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True,
                                      comment=_COMMENT))
    op.execute("UPDATE emails SET failed_at = updated_at "
               "WHERE status IN ('bounced', 'failed') AND failed_at IS NULL")
    _create_view(upgraded=True)


def downgrade() -> None:
    _create_view(upgraded=False)  # before the column goes: SQLite checks the views then
    op.drop_column("emails", "failed_at")
