"""v_daily_activity counts an email the SMTP server refused among the day's emails sent

Revision ID: 0009
Revises: 0008

Written by hand. An email is *sent* once handed to an SMTP server, `bounced` when the server
refused it (models/views.py DEFINITIONS), and v_campaign_funnel counts it so. But the sender
records `sent_at` only for an accepted email, and v_daily_activity counted only emails with a
`sent_at`: a refused email was a bounce of its day and never one of its emails sent, so the
daily totals of emails sent fell short of the funnel's. This revision dates a sent email by
`sent_at`, else (refused) by when it was refused (`updated_at`), as the view already dates
its bounce. The view's SQL is 0007's, with the one branch changed.
"""

from collections.abc import Sequence

from alembic import op

from models.migrations import revision_module

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIEW = "v_daily_activity"


def _sql(dialect: str, upgraded: bool) -> str:
    """The view as 0007 left it, or with this revision's change."""
    sql: str = revision_module("0007_opened_includes_clicked.py")._views(dialect, True)[VIEW]
    day = revision_module("0003_warehouse.py")._Dialect(dialect).day
    old = (f"SELECT {day('sent_at')}, 'sent', id FROM emails\n"
           "    WHERE sent_at IS NOT NULL AND status IN ('sent', 'bounced')")
    new = (f"SELECT {day('COALESCE(sent_at, updated_at)')}, 'sent', id FROM emails\n"
           "    WHERE status IN ('sent', 'bounced')")
    if sql.count(old) != 1:
        raise RuntimeError(f"0007's {VIEW} is not the SQL this revision expects")
    return sql.replace(old, new) if upgraded else sql


def _apply(upgraded: bool) -> None:
    sql = _sql(op.get_bind().dialect.name, upgraded)
    op.execute(f"DROP VIEW IF EXISTS {VIEW}")
    op.execute(f"CREATE VIEW {VIEW} AS {sql.strip()}")


def upgrade() -> None:
    _apply(upgraded=True)


def downgrade() -> None:
    _apply(upgraded=False)
