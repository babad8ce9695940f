"""The per-campaign funnel a person reads after an outreach run: for each step, how many emails
are waiting, sent, bounced or failed, and how many were opened or clicked by a human."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import case, func, select

from models import Campaign, Email
from models.db import session_scope

_STATUSES = ("scheduled", "queued", "sending", "sent", "bounced", "failed", "cancelled",
             "review")


def campaign_funnel(db_url: str, campaign_ids: Sequence[int]) -> list[dict[str, Any]]:
    """One row per campaign and step, in campaign and step order."""
    if not campaign_ids:
        return []
    counts = [func.sum(case((Email.status == s, 1), else_=0)).label(s) for s in _STATUSES]
    query = (
        select(
            Campaign.id, Campaign.name, Email.step_number, *counts,
            func.sum(case((Email.open_count > 0, 1), else_=0)).label("opened"),
            func.sum(case((Email.click_count > 0, 1), else_=0)).label("clicked"),
        )
        .join(Email, Email.campaign_id == Campaign.id)
        .where(Campaign.id.in_(campaign_ids))
        .group_by(Campaign.id, Campaign.name, Email.step_number)
        .order_by(Campaign.id, Email.step_number)
    )
    with session_scope(db_url) as session:
        rows = session.execute(query).all()
    funnel = []
    for row in rows:
        item = dict(row._mapping)
        item = {"campaign_id": item.pop("id"), "campaign": item.pop("name"), **item}
        for key, value in item.items():
            if value is None:
                item[key] = 0
        sent = item["sent"] + item["bounced"]
        item["open_rate"] = round(item["opened"] / sent, 3) if sent else None
        item["click_rate"] = round(item["clicked"] / sent, 3) if sent else None
        funnel.append(item)
    return funnel
