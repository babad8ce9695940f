"""deliver() against a real aiosmtpd server on PostgreSQL: what an unexpected error in the middle
of a batch leaves for the record."""

from __future__ import annotations

import pytest

from leadflow.settings import get_settings
from tasks.outreach.delivery import DeliveryInterrupted, Parcel, deliver
from tasks.outreach.smtp import SenderPool
from tests.tasks.outreach.mailserver import Outreach

pytest_plugins = ["tests.tasks.outreach.sending_fixtures"]


def _parcel(n: int, message: bytes | str) -> Parcel:
    return Parcel(n, f"<m{n}@sender.example>", "sam@sender.example", f"to{n}@dest.example",
                  message)  # type: ignore[arg-type]


def test_an_error_while_sending_one_message_keeps_every_other_result(
    outreach_pg: Outreach, smtp_servers, send_clock
):
    # The second message is not bytes: sending it raises TypeError, not an SMTP outcome. It may
    # or may not have reached the server (review, never resent blindly); the first was taken
    # (sent); the third never went (retried later). The error itself is carried along.
    server = smtp_servers()
    pid = outreach_pg.provider("relay", server.port)
    message = b"Subject: hi\r\nMessage-ID: <m1@sender.example>\r\n\r\nhello\r\n"
    parcels = [_parcel(1, message), _parcel(2, "not bytes"), _parcel(3, message)]

    with SenderPool() as pool, pytest.raises(DeliveryInterrupted) as caught:
        deliver(outreach_pg.db_url, parcels, get_settings(), pool, send_clock())

    assert isinstance(caught.value.cause, TypeError)
    results = {r.email_id: r for r in caught.value.results}
    assert {i: (r.outcome, r.provider_id) for i, r in results.items()} == {
        1: ("sent", pid), 2: ("unknown", pid), 3: ("temporary", None)}
    assert all("TypeError" in results[i].response for i in (2, 3))
    assert [r.rcpt_tos for r in server.received] == [["to1@dest.example"]]
