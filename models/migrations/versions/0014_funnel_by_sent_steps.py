"""v_campaign_funnel counts the steps emails were sent as, not the campaign's current sequence

Revision ID: 0014
Revises: 0013

Written by hand. The funnel had one row per step of the campaign's *current* sequence and
counted emails under it by step number: a campaign moved to another sequence, or a step taken
out of its sequence, lost the rows of what it had sent, and the steps kept their current names
whatever the emails were. Each email records the step it is (`step_id`, `step_number`, fixed
when it is queued), as the run's funnel artifact (tasks/outreach/funnel.py) already counts
them: the view now has a row for every step number the campaign has emails for, named after
the step those emails are, plus the current sequence's steps with no email yet (zeros, as
before). The view's SQL is 0007's with the `steps` part changed.
"""

from collections.abc import Sequence

from alembic import op

from models.migrations import revision_module

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIEW = "v_campaign_funnel"
OLD_STEPS = """steps AS (
    SELECT c.id AS campaign_id, c.name AS campaign_name, s.step_number, s.name AS step_name,
           COUNT(se.campaign_id) AS sent,"""
OLD_FROM = """    FROM campaigns c
    JOIN sequence_steps s ON s.sequence_id = c.sequence_id
    LEFT JOIN sent_emails se ON se.campaign_id = c.id AND se.step_number = s.step_number
    GROUP BY c.id, c.name, s.step_number, s.name
)"""
# The steps the campaign's emails are (MIN: one name should a campaign have emails of one
# number from two sequences), and those of its current sequence.
NEW_STEPS = """emailed_steps AS (
    SELECT e.campaign_id, e.step_number, MIN(s.name) AS step_name
    FROM emails e
    JOIN sequence_steps s ON s.id = e.step_id
    GROUP BY e.campaign_id, e.step_number
),
sequence_steps_now AS (
    SELECT c.id AS campaign_id, s.step_number, s.name AS step_name
    FROM campaigns c
    JOIN sequence_steps s ON s.sequence_id = c.sequence_id
),
funnel_steps AS (
    SELECT campaign_id, step_number FROM emailed_steps
    UNION
    SELECT campaign_id, step_number FROM sequence_steps_now
),
steps AS (
    SELECT c.id AS campaign_id, c.name AS campaign_name, f.step_number,
           COALESCE(es.step_name, sn.step_name) AS step_name,
           COUNT(se.campaign_id) AS sent,"""
NEW_FROM = """    FROM funnel_steps f
    JOIN campaigns c ON c.id = f.campaign_id
    LEFT JOIN emailed_steps es
           ON es.campaign_id = f.campaign_id AND es.step_number = f.step_number
    LEFT JOIN sequence_steps_now sn
           ON sn.campaign_id = f.campaign_id AND sn.step_number = f.step_number
    LEFT JOIN sent_emails se ON se.campaign_id = f.campaign_id AND se.step_number = f.step_number
    GROUP BY c.id, c.name, f.step_number, es.step_name, sn.step_name
)"""


def _sql(dialect: str, upgraded: bool) -> str:
    """The view as 0007 left it, or with this revision's change."""
    sql: str = revision_module("0007_opened_includes_clicked.py")._views(dialect, True)[VIEW]
    for old, new in ((OLD_STEPS, NEW_STEPS), (OLD_FROM, NEW_FROM)):
        if sql.count(old) != 1:
            raise RuntimeError(f"0007's {VIEW} is not the SQL this revision expects")
        if upgraded:
            sql = sql.replace(old, new)
    return sql


def _apply(upgraded: bool) -> None:
    sql = _sql(op.get_bind().dialect.name, upgraded)
    op.execute(f"DROP VIEW IF EXISTS {VIEW}")
    op.execute(f"CREATE VIEW {VIEW} AS {sql.strip()}")


def upgrade() -> None:
    _apply(upgraded=True)


def downgrade() -> None:
    _apply(upgraded=False)
