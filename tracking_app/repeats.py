"""The repeat rule applied to stored events, after the fact.

The tracking app flags a repeat as it records a hit, against the stored hits and the hits of
its own batches in flight. Two app processes cannot see each other's batches in flight, so two
hits of one repeat key that arrive within milliseconds at two processes can both be stored as
human. `flag_repeats` finds those afterwards, from the events themselves: a human event whose
previous event of the same key (email, kind, link, client network, user agent; by time, then
id) lies within the repeat window is a repeat. It runs when the app starts and in the scheduled
repair (`refresh_engagement`), never on the request path; the figures are then recomputed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, bindparam, text

from models import EmailEvent
from tracking_app.bots import BotRules

_TIME = EmailEvent.__table__.c.occurred_at.type  # binds times as the column stores them

_WINDOWED = """
SELECT id, email_id, occurred_at, is_machine,
       LAG(occurred_at) OVER (
           PARTITION BY email_id, kind, link_position, ip_network, user_agent
           ORDER BY occurred_at, id) AS previous_at
FROM email_events
WHERE kind IN ({kinds}) AND occurred_at >= :look_from
"""
# Seconds between a row and its previous one: the engines spell it differently.
_GAP = {
    "postgresql": "EXTRACT(EPOCH FROM (w.occurred_at - w.previous_at))",
    "sqlite": "(julianday(w.occurred_at) - julianday(w.previous_at)) * 86400.0",
}


def flag_repeats(conn: Connection, rules: BotRules, since: datetime) -> set[int]:
    """Flag as repeats the human events from `since` on that repeat an earlier event of
    their key within the rules' window (the earlier one may be before `since`). The emails
    whose events changed."""
    rule = rules.repeat
    if rule is None or not rule.kinds:
        return set()
    kinds = sorted(rule.kinds)
    names = ", ".join(f":kind{i}" for i in range(len(kinds)))
    gap = _GAP.get(conn.dialect.name, _GAP["sqlite"])
    stmt = text(f"""
UPDATE email_events SET is_machine = :machine, machine_reason = :reason
WHERE id IN (
    SELECT w.id FROM ({_WINDOWED.format(kinds=names)}) AS w
    WHERE NOT w.is_machine AND w.occurred_at >= :since AND w.previous_at IS NOT NULL
      AND {gap} <= :window
)
RETURNING email_id""").bindparams(
        bindparam("look_from", type_=_TIME), bindparam("since", type_=_TIME),
    )
    params: dict[str, object] = {
        "machine": True, "reason": rule.reason, "window": rule.window.total_seconds(),
        "look_from": since - rule.window, "since": since,
        **{f"kind{i}": kind for i, kind in enumerate(kinds)},
    }
    return set(conn.scalars(stmt, params))


def recent_emails(conn: Connection, since: datetime) -> Sequence[int]:
    """Emails with an open or click from `since` on."""
    stmt = text(
        "SELECT DISTINCT email_id FROM email_events "
        "WHERE kind IN ('open', 'click') AND occurred_at >= :since"
    ).bindparams(bindparam("since", type_=_TIME))
    return list(conn.scalars(stmt, {"since": since}))
