"""The MIME message of a composed email: multipart text and HTML, a deterministic Message-ID,
the sender's identity and RFC 8058 one-click unsubscribe headers.

Every header value goes through the standard library's header registry with the SMTP policy,
so a CR or LF in any lead field can never start a new header (it raises instead)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from leadflow.tokens import unsubscribe_url

_CONTROL = {i: " " for i in range(32)} | {127: " "}


@dataclass(frozen=True)
class OutgoingEmail:
    email_id: int
    message_id: str
    subject: str
    body_text: str
    body_html: str | None
    from_name: str
    from_email: str
    to_email: str
    to_name: str | None
    date: datetime


def clean_header_text(value: str) -> str:
    """One line of header text: control characters (CR, LF, TAB, NUL...) become spaces."""
    return " ".join(value.translate(_CONTROL).split())


def make_message_id(campaign_id: int, lead_id: int, step_number: int, sender_email: str) -> str:
    """The same email always gets the same Message-ID, so a resend would be recognisable and
    the SMTP server and the benchmarks can count deliveries exactly."""
    domain = sender_email.rsplit("@", 1)[-1].strip().lower() or "leadflow.invalid"
    digest = hashlib.sha256(f"{campaign_id}:{lead_id}:{step_number}".encode()).hexdigest()[:16]
    return f"<lf.{campaign_id}.{lead_id}.{step_number}.{digest}@{domain}>"


def _address(name: str | None, email: str) -> Address:
    local, _, domain = email.strip().rpartition("@")
    if not local or not domain:
        raise ValueError("not an email address")
    return Address(display_name=clean_header_text(name or ""), username=local, domain=domain)


def build_message(email: OutgoingEmail) -> EmailMessage:
    msg = EmailMessage(policy=SMTP)
    msg["Message-ID"] = email.message_id
    msg["Date"] = format_datetime(email.date)
    msg["From"] = _address(email.from_name, email.from_email)
    msg["To"] = _address(email.to_name, email.to_email)
    msg["Subject"] = clean_header_text(email.subject)
    unsubscribe = unsubscribe_url(email.email_id)
    msg["List-Unsubscribe"] = f"<{unsubscribe}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(email.body_text)
    if email.body_html:
        msg.add_alternative(email.body_html, subtype="html")
    return msg
