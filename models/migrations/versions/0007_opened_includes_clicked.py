"""opened = a human open or a human click, in the views as in the figures

Revision ID: 0007
Revises: 0006

Written by hand. The engagement figures (`campaigns.emails_opened`, `leads.emails_opened`)
count an email as opened when a human opened or clicked it (a click means the email was read,
even with its images blocked); the views of 0003 counted human opens only, so
`v_campaign_funnel.human_opens` and `v_daily_activity.human_opens` disagreed with them for
click-only emails. This revision re-creates those two views with the figures' definition and
says so in the two columns' comments. The views' SQL is 0003's (frozen), with the one
expression changed.
"""

from collections.abc import Sequence

from alembic import op

from models.migrations import revision_module

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (view, expression in 0003, expression from this revision on)
CHANGES = (
    ("v_campaign_funnel",
     "MAX(CASE WHEN kind = 'open' AND NOT is_machine THEN 1 ELSE 0 END) AS human_open",
     "MAX(CASE WHEN kind IN ('open', 'click') AND NOT is_machine THEN 1 ELSE 0 END) "
     "AS human_open"),
    ("v_daily_activity",
     "COUNT(DISTINCT CASE WHEN what = 'open' THEN ref END) AS human_opens",
     "COUNT(DISTINCT CASE WHEN what IN ('open', 'click') THEN ref END) AS human_opens"),
)
# table -> column -> (comment before, comment after)
COMMENTS = {
    "campaigns": {"emails_opened": ("Emails with a human open",
                                    "Emails a human opened or clicked")},
    "leads": {"emails_opened": ("Emails to the lead with a human open, all campaigns",
                                "Emails to the lead a human opened or clicked, all campaigns")},
}


def _views(dialect: str, upgraded: bool) -> dict[str, str]:
    warehouse = revision_module("0003_warehouse.py")  # whose view SQL this one starts from
    views = warehouse._views(warehouse._Dialect(dialect))
    out = {}
    for name, old, new in CHANGES:
        if old not in views[name]:
            raise RuntimeError(f"0003's {name} is not the SQL this revision expects")
        out[name] = views[name].replace(old, new) if upgraded else views[name]
    return out


def _apply(upgraded: bool) -> None:
    dialect = op.get_bind().dialect.name
    for name, sql in _views(dialect, upgraded).items():
        op.execute(f"DROP VIEW IF EXISTS {name}")
        op.execute(f"CREATE VIEW {name} AS {sql.strip()}")
    if dialect == "postgresql":
        for table, columns in COMMENTS.items():
            for column, (before, after) in columns.items():
                new, old = (after, before) if upgraded else (before, after)
                op.alter_column(table, column, comment=new, existing_comment=old)


def upgrade() -> None:
    _apply(upgraded=True)


def downgrade() -> None:
    _apply(upgraded=False)
