"""Recording a reply on PostgreSQL: the email replied to is found and the lead's sequence
stops."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from models import Email
from models.db import session_scope
from tasks.outreach.replies import record_reply
from tests.tasks.outreach.mailserver import T0, Outreach

pytest_plugins = ["tests.tasks.outreach.sending_fixtures"]


@pytest.mark.parametrize("given", [
    "{mid}",  # the In-Reply-To header's value
    "  {mid}\r\n",
    "{bare}",  # as many mail clients and CRMs show it: without the angle brackets
    " {bare} ",
])
def test_a_reply_found_by_its_message_id_stops_the_follow_ups(outreach_pg: Outreach,
                                                               given: str) -> None:
    db = outreach_pg.db_url
    cid = outreach_pg.campaign(steps=(0, 3, 5))
    (first,) = outreach_pg.queue(cid, outreach_pg.leads(1))
    with session_scope(db) as s:
        s.execute(update(Email).where(Email.id == first).values(status="sent", sent_at=T0))
    mid = outreach_pg.emails([first])[first].message_id
    assert mid.startswith("<") and mid.endswith(">")

    recorded = record_reply(db, message_id=given.format(mid=mid, bare=mid[1:-1]))

    assert recorded is not None and recorded.email_id == first
    assert recorded.steps_cancelled == 2
    assert {e.step_number: e.status for e in outreach_pg.emails().values()} == {
        1: "sent", 2: "cancelled", 3: "cancelled"}
