"""v_email_engagement: each email's engagement figures and the seed's email status

Revision ID: 0006
Revises: 0005

Written by hand. The seed's email statuses `opened` and `clicked` are derived, not stored
(`emails.status` keeps the delivery state; tracking_app/figures.py `seed_status`): this view
gives analysts both, next to the human figures the tracking app keeps current. Documented in
models/views.py; the same SQL on PostgreSQL and SQLite.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As figures.seed_status: a sent email a human clicked is clicked, else one a human opened
# is opened, else its delivery status.
VIEW_SQL = """
SELECT e.id AS email_id,
       e.campaign_id,
       e.lead_id,
       e.step_number,
       e.to_email,
       e.sent_at,
       CASE WHEN e.status = 'sent' AND e.click_count > 0 THEN 'clicked'
            WHEN e.status = 'sent' AND e.open_count > 0 THEN 'opened'
            ELSE e.status END AS status,
       e.status AS delivery_status,
       e.open_count AS human_opens,
       e.first_opened_at,
       e.click_count AS human_clicks,
       e.first_clicked_at,
       e.machine_event_count AS machine_events
FROM emails AS e
"""


def upgrade() -> None:
    op.execute(f"CREATE VIEW v_email_engagement AS {VIEW_SQL.strip()}")


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS v_email_engagement")
