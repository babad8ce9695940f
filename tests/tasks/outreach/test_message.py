"""build_message(): the MIME message of a composed email, parsed back with the standard
library's parser: both parts, one-click unsubscribe headers, no header injection."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default

import pytest

from leadflow.tokens import TrackingToken, verify
from tasks.outreach.compose import ComposedEmail, compose
from tasks.outreach.message import OutgoingEmail, build_message
from tests.tasks.outreach.test_compose import FACTS, inputs

pytestmark = pytest.mark.usefixtures("tracking_secret")


def message_of(email: ComposedEmail, to_name: str | None = "Jane Doe") -> EmailMessage:
    outgoing = OutgoingEmail(
        email_id=41, message_id=email.message_id, subject=email.subject,
        body_text=email.body_text, body_html=email.body_html, from_name="Sam at Booknex",
        from_email="sam@booknex.example", to_email="jane@bella.example", to_name=to_name,
        date=datetime(2025, 3, 3, 10, 0, tzinfo=UTC),
    )
    raw = build_message(outgoing).as_bytes()
    parsed = BytesParser(policy=default).parsebytes(raw)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_message_is_multipart_alternative_with_both_parts_and_unsubscribe_headers() -> None:
    email = compose(inputs())
    msg = message_of(email)
    assert msg.get_content_type() == "multipart/alternative"
    text, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert text is not None and html is not None
    assert text.get_content().replace("\r\n", "\n").strip() == email.body_text.strip()
    assert html.get_content().replace("\r\n", "\n").strip() == email.body_html.strip()
    unsubscribe = re.fullmatch(r"<(https://t\.example\.test/u/(\S+))>",
                               str(msg["List-Unsubscribe"]))
    assert unsubscribe and verify(unsubscribe.group(2)) == TrackingToken("unsubscribe", 41)
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Message-ID"] == email.message_id
    assert msg["Subject"] == "Online booking for <script>alert(1)</script> & Co"


def test_header_injection_through_lead_fields_adds_no_header() -> None:
    evil = "Acme\r\nBcc: victim@x.com"
    email = compose(inputs(facts={**FACTS, "company_name": evil, "contact_name": evil}))
    msg = message_of(email, to_name=evil)
    assert msg["Bcc"] is None and "victim@x.com" not in str(msg["To"]).split("<")[-1]
    assert [a.addr_spec for a in msg["To"].addresses] == ["jane@bella.example"]
    assert msg["Subject"] == "Online booking for Acme Bcc: victim@x.com"
    header_names = [k.lower() for k in msg]
    assert sorted(header_names) == sorted(
        ["message-id", "date", "from", "to", "subject", "list-unsubscribe",
         "list-unsubscribe-post", "mime-version", "content-type"])
